"""The JSON Schemas of docs/agent-protocol.md, and a checker for the subset they use.

Shared by the unit and live tests (tests/ is on sys.path through tests/conftest.py), so
every frame a test receives is held to the documented protocol, not to the code's idea
of it. No jsonschema dependency: the documents use a small subset (oneOf, $ref, type,
const, enum, minimum, pattern, required, properties, additionalProperties, items,
maxItems, maxProperties, minLength, maxLength), implemented here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "agent-protocol.md"


def _load() -> dict[str, dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    schemas = [json.loads(b) for b in blocks if '"$schema"' in b]
    return {s["$id"]: s for s in schemas}


SCHEMAS = _load()
SERVER_FRAME = SCHEMAS["callflow:agent-protocol:v1:server-frame"]
EVENT_PAYLOAD = SCHEMAS["callflow:agent-protocol:v1:event-payload"]
CLIENT_FRAME = SCHEMAS["callflow:agent-protocol:v1:client-frame"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),)}


def _resolve(ref: str, root: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    doc_id, _, pointer = ref.partition("#")
    doc = SCHEMAS[doc_id] if doc_id else root
    node: Any = doc
    for part in pointer.strip("/").split("/") if pointer else []:
        node = node[part]
    return node, doc


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
           path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it conforms)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target, doc = _resolve(schema["$ref"], root)
        return errors(value, target, doc, path)
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not errors(value, s, root, path)]
        if len(matches) != 1:
            return [f"{path}: matches {len(matches)} of oneOf"]
    found: list[str] = []
    wanted = schema.get("type")
    if wanted is not None:
        kinds = [wanted] if isinstance(wanted, str) else wanted
        if not any(_is(value, k) for k in kinds):
            return [f"{path}: {value!r} is not {wanted}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        found.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        found.append(f"{path}: {value!r} < {schema['minimum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            found.append(f"{path}: length {len(value)} out of range")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 1e9):
            found.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += errors(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        found += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        if len(value) > schema.get("maxProperties", 1e9):
            found.append(f"{path}: more than {schema['maxProperties']} properties")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                found += errors(item, props[key], root, f"{path}.{key}")
            elif extra is False:
                found.append(f"{path}: unexpected {key}")
            elif isinstance(extra, dict):
                found += errors(item, extra, root, f"{path}.{key}")
    return found


def frame_errors(frame: Any) -> list[str]:
    """A server frame against the protocol, an event's payload against the payload schema."""
    found = errors(frame, SERVER_FRAME)
    if not found and frame.get("type") == "event":
        found = errors(frame["payload"], EVENT_PAYLOAD, path="$.payload")
    return found
