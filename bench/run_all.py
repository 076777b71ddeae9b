"""``make bench``: every ``bench/bench_*.py`` in turn, one table of ratios against peers.

Each script runs as ``python bench/bench_X.py --json PATH`` in its own process (its
output goes by as it runs) and writes a list of rows
``{"figure", "ours", "peer", "peer_value", "ratio", "unit", "goal", "pass"}``. A script
that fails, runs past its share of the time or writes no rows becomes one failed row
saying why: the table is never silently shorter, and the exit status is 1 (a goal
missed is a finding the table shows, exit status 0). The table goes to
``bench/results/<UTC timestamp>.md`` and ``.json`` and to stdout.

Why one process per script, one after another: the machine has two cores and every
bench measures a server against its peer side by side; two benches at once would
measure each other.

    .venv/bin/python bench/run_all.py [--only board,timers] [--budget-s 900]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
FIELDS = ("figure", "ours", "peer", "peer_value", "ratio", "unit", "goal", "pass")


def scripts(only: set[str] | None) -> list[Path]:
    found = sorted(BENCH.glob("bench_*.py"))
    if only:
        found = [p for p in found if p.stem.removeprefix("bench_") in only]
    return found


def failed_row(script: Path, why: str) -> dict[str, Any]:
    return {"figure": f"{script.stem}: {why}", "ours": None, "peer": "-",
            "peer_value": None, "ratio": None, "unit": "", "goal": "runs",
            "pass": False, "script": script.name, "error": why}


def checked_rows(script: Path, raw: object) -> list[dict[str, Any]]:
    """The script's rows, each with every field; anything else is a failed row."""
    if not isinstance(raw, list) or not raw:
        return [failed_row(script, "wrote no rows")]
    rows = []
    for row in raw:
        if not isinstance(row, dict) or any(f not in row for f in FIELDS):
            rows.append(failed_row(script, f"malformed row {str(row)[:80]}"))
        else:
            rows.append({**{f: row[f] for f in FIELDS}, "pass": bool(row["pass"]),
                         "script": script.name})
    return rows


def run_one(script: Path, timeout_s: float) -> tuple[list[dict[str, Any]], float]:
    with tempfile.TemporaryDirectory(prefix="callflow-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        print(f"\n=== {script.name} (at most {timeout_s:.0f} s)", flush=True)
        t0 = time.monotonic()
        # Its own process group: a bench that overruns is stopped with every server and
        # client process it started, not just its main process.
        proc = subprocess.Popen([sys.executable, str(script), "--json", str(out)],
                                start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return [failed_row(script, f"ran past {timeout_s:.0f} s")], time.monotonic() - t0
        took = time.monotonic() - t0
        if returncode != 0:
            return [failed_row(script, f"exit status {returncode}")], took
        try:
            raw = json.loads(out.read_text())
        except (OSError, ValueError) as exc:
            return [failed_row(script, f"no --json rows ({type(exc).__name__})")], took
        return checked_rows(script, raw), took


def _num(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | ours | peer | peer value | ratio | goal | pass |",
             "|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['figure']} | {_num(r['ours'])} {r['unit']} | {r['peer']} | "
                     f"{_num(r['peer_value'])} {r['unit']} | {_num(r['ratio'])} | {r['goal']} | "
                     f"{'pass' if r['pass'] else '**FAIL**'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names, e.g. board,timers")
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="the whole run's budget; each script gets what is left")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    started = datetime.now(UTC)
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for script in scripts(only):
        left = args.budget_s - (time.monotonic() - t0)
        if left < 30:
            rows.append(failed_row(script, "not run: the time budget was spent"))
            continue
        got, took = run_one(script, left)
        rows.extend(got)
        timings[script.name] = round(took, 1)
    total = time.monotonic() - t0
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    head = (f"# make bench, {started:%Y-%m-%d %H:%M} UTC\n\n"
            f"{platform.node()}: {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{load} at the end, python {platform.python_version()}; "
            f"{total:.0f} s in all (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
            + "). Ratios are ours / peer of medians in the same run.\n\n")
    text = head + table(rows) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stamp}.md").write_text(text)
    (args.out / f"{stamp}.json").write_text(json.dumps(
        {"started": started.isoformat(), "seconds": round(total, 1), "timings": timings,
         "rows": rows}, indent=1))
    print("\n" + text + f"\nwritten: {args.out / stamp}.md and .json")
    # A missed goal is a finding the table shows; a bench that did not run is a failure.
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
