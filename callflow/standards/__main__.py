"""``python -m callflow.standards ledger [--check] [--root DIR]``: write (or check) the ledger.

Writes docs/standards.md and the counts block of README.md from the code and the tests;
``--check`` writes nothing and exits 1 naming the file that differs from a fresh generation.
Run from the repository root (the tests and the README are not part of the package).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from callflow.standards.ledger import build, readme_block, render, replace_readme_block


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callflow.standards")
    parser.add_argument("what", choices=["ledger"])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/standards.md or README.md is stale")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    root: Path = args.root
    if not (root / "tests").is_dir() or not (root / "README.md").is_file():
        print(f"error: {root} is not the repository root (no tests/ or README.md)",
              file=sys.stderr)
        return 2
    doc_path, readme_path = root / "docs" / "standards.md", root / "README.md"
    built = build(root)
    wanted = {
        doc_path: render(root, built),
        readme_path: replace_readme_block(readme_path.read_text("utf-8"),
                                          readme_block(root, built)),
    }
    stale = [path for path, text in wanted.items()
             if not path.is_file() or path.read_text("utf-8") != text]
    if args.check:
        for path in stale:
            print(f"stale: {path} (regenerate: python -m callflow.standards ledger)",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], "utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
