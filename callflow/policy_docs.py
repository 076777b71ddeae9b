"""The Policy's documentation and command line, generated from the model (engine/policy.py).

``render_example_toml()`` and ``render_markdown()`` generate
``callflow/policy.example.toml`` and ``docs/policy.md`` from the model itself, so the
documentation can never drift from the code (a unit test compares them);
``policy_table()`` lists every leaf setting with the unit and STD id its
``setting(...)`` declares (``callflow policy``). They read the model's metadata and
sit outside the pure core, which keeps only the model, its validation and loading.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import typing
from collections.abc import Iterator, Sequence
from datetime import date, time
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from callflow.engine.policy import REMOVED_KEYS, Inline, Policy, Section, load_policy
from callflow.errors import PolicyError


class PolicyRow(NamedTuple):
    """One setting as shown by ``callflow policy show`` and docs/policy.md."""

    key: str
    value: Any
    unit: str
    std: str
    description: str


def _meta(info: FieldInfo) -> tuple[str, str]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("unit", "")), str(extra.get("std", ""))


def _is_section(value: object) -> bool:
    return isinstance(value, Section) and not isinstance(value, Inline)


def _plain(value: Any) -> Any:
    """A value as TOML would hold it: times as "HH:MM", models as dicts."""
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rows(model: BaseModel, prefix: str) -> Iterator[PolicyRow]:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if _is_section(value):
            yield from _rows(value, f"{key}.")
        elif isinstance(value, dict) and all(_is_section(v) for v in value.values()) and value:
            for sub, section in value.items():
                fields = section.model_dump(exclude_none=True)
                for field_name in fields:
                    sub_info = type(section).model_fields[field_name]
                    unit, std = _meta(sub_info)
                    yield PolicyRow(f"{key}.{sub}.{field_name}",
                                    _plain(getattr(section, field_name)), unit, std,
                                    sub_info.description or "")
        else:
            unit, std = _meta(info)
            yield PolicyRow(key, _plain(value), unit, std, info.description or "")


def policy_table(policy: Policy) -> list[PolicyRow]:
    """Every leaf setting of ``policy`` with its unit, STD id and description."""
    return list(_rows(policy, ""))


def _scalar_text(value: Any) -> str:
    """A value in TOML syntax (also used, unquoted strings aside, in the docs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, time):
        return json.dumps(value.strftime("%H:%M"))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Inline):
        inner = ", ".join(f"{k} = {_scalar_text(getattr(value, k))}"
                          for k in type(value).model_fields)
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_scalar_text(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _describe(info: FieldInfo) -> str:
    unit, std = _meta(info)
    tags = ", ".join(part for part in (f"unit: {unit}" if unit else "", std) if part)
    return ((info.description or "") + (f" [{tags}]" if tags else "")).strip()


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def _comment(info: FieldInfo) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(_describe(info), 96)]


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_section(v) for v in value)


_EXAMPLE_HEADER = """\
# callflow Policy: every number of the service standards, with its default.
#
# GENERATED from callflow.engine.policy (python -m callflow.policy_docs example);
# a unit test fails if this file and the model differ. Copy it, keep the keys you
# change, delete the rest: every key is optional and defaults to the value shown.
# Each comment gives the unit and the standard (STD-nnn, conflict C-n) it enforces.
"""

_QUEUE_EXAMPLE = """\
# Per-queue overrides (C-4 openings, service-level target), e.g.:
# [queues.sales]
# opening_template = "您好,{centre}销售热线,{agent_name}很高兴为您服务,请问有什么可以帮到您?"
# agent_identity = "name"
# service_level_target_pct = 90
"""


def _is_section_map(info: Any) -> bool:
    """A ``dict[str, <Section>]`` field (queue overrides), emitted as sub-tables."""
    args = typing.get_args(info.annotation)
    return len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel)


def _emit_table(model: BaseModel, path: str, out: list[str]) -> None:
    fields = type(model).model_fields
    deferred = []
    for name, info in fields.items():
        value = getattr(model, name)
        if _is_section(value) or _is_table_list(value) or _is_section_map(info):
            deferred.append(name)
            continue
        out.extend(_comment(info))
        out.append(f"{name} = {_scalar_text(value)}")
    for name in deferred:
        value = getattr(model, name)
        key = f"{path}.{name}" if path else name
        info = fields[name]
        out.append("")
        if isinstance(value, dict):
            out.append(_QUEUE_EXAMPLE.rstrip())
            for sub, section in value.items():
                out.append(f"[{key}.{sub}]")
                out.extend(f"{k} = {_scalar_text(v)}"
                           for k, v in section.model_dump(exclude_none=True).items())
        elif isinstance(value, list):
            out.extend(_comment(info))
            item_model: type[BaseModel] = type(value[0])
            item_fields = item_model.model_fields
            out.extend(f"#   {sub_name}: {_describe(sub_info)}"
                       for sub_name, sub_info in item_fields.items())
            for item in value:
                out.append(f"[[{key}]]")
                out.extend(f"{k} = {_scalar_text(getattr(item, k))}" for k in item_fields)
        else:
            out.extend(_comment(info) or [f"# {_first_line(type(value).__doc__)}"])
            out.append(f"[{key}]")
            _emit_table(value, key, out)


def render_example_toml(policy: Policy | None = None) -> str:
    """The sample policy file: every key with its value, commented with unit and STD id."""
    out = [_EXAMPLE_HEADER.rstrip(), ""]
    _emit_table(policy or Policy.defaults(), "", out)
    return "\n".join(out).rstrip() + "\n"


def _md_cell(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and set(value) == {"value", "unit"}:
        text = f"{_scalar_text(value['value'])} {value['unit']}"
    elif isinstance(value, dict) or (isinstance(value, list) and any(
            isinstance(v, dict) for v in value)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = _scalar_text(value)
    return text.replace("|", "\\|")


def render_markdown(policy: Policy | None = None) -> str:
    """docs/policy.md: one table per section, list settings as their own tables."""
    policy = policy or Policy.defaults()
    lines = [
        "# Policy reference",
        "",
        "Generated from `callflow.engine.policy` (`python -m callflow.policy_docs markdown`);",
        "a unit test fails when this file and the code differ. Every value is the shipped",
        "default; a deployment overrides any of them in its TOML policy file (see",
        "`callflow/policy.example.toml`). Ring values convert to seconds by the ring cadence",
        "of `country` (cn: 5 s a ring, us: 6 s).",
        "",
    ]
    current = None
    lists: list[PolicyRow] = []
    for row in policy_table(policy):
        section = row.key.split(".")[0] if "." in row.key else "general"
        if section != current:
            lines += ["", f"## {section}", "", "| key | default | unit | rule | meaning |",
                      "|---|---|---|---|---|"]
            current = section
        if isinstance(row.value, list) and row.value and isinstance(row.value[0], dict):
            lists.append(row)
            shown = f"see [{row.key}](#{row.key.replace('.', '')})"
        else:
            shown = _md_cell(row.value)
        lines.append(f"| `{row.key}` | {shown} | {row.unit} | {row.std} | "
                     f"{_md_cell(row.description)} |")
    for row in lists:
        columns = list(row.value[0])
        lines += ["", f"### {row.key}", "", _md_cell(row.description) + f" ({row.std})", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_md_cell(item[c]) for c in columns) + " |"
                  for item in row.value]
    lines += ["", "## Removed keys", "",
              "Keys that had no behaviour behind them (issue 17). A policy file that still "
              "sets one is refused with the key and this reason; each returns with the work "
              "that gives it behaviour.", "", "| key | why |", "|---|---|"]
    lines += [f"| `{key}` | {_md_cell(why)} |" for key, why in REMOVED_KEYS.items()]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m callflow.policy_docs show|example|markdown [--policy FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m callflow.policy_docs")
    parser.add_argument("what", choices=["show", "example", "markdown"])
    parser.add_argument("--policy", type=Path, default=None, help="TOML policy file")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.what == "example":
        sys.stdout.write(render_example_toml())
    elif args.what == "markdown":
        sys.stdout.write(render_markdown(policy))
    else:
        for row in policy_table(policy):
            unit = f" {row.unit}" if row.unit and row.unit not in ("HH:MM",) else ""
            print(f"{row.key} = {_md_cell(row.value)}{unit}  [{row.std}] {row.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
