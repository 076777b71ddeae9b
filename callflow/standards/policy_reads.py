"""Which Policy keys some code reads: a key no code reads changes nothing when changed.

Read from the syntax trees of the product's modules (engine/policy.py, which declares the
keys, and callflow/policy_docs.py, which documents every key generically, do not count).
A leaf key ``section.leaf`` counts as read when some code

- takes ``<...>.section.leaf`` (also through ``for_queue(...)``), or ``getattr(<section>,
  "leaf")``;
- takes ``leaf`` from a name bound to the section: ``hold = policy.hold`` or a parameter
  annotated with the section's class (``hold: HoldPolicy``), then ``hold.limit_s``;
- reads the whole section generically: ``type(<section>).model_fields``,
  ``<section>.model_dump()`` or ``getattr(<section>, <computed name>)`` (every field);
- for a top-level key (``country``): ``<something named *policy*>.country``.

The check is syntactic, so it errs towards "read" for a common leaf name on a section of
the same name elsewhere; it never misses a direct read.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from callflow.engine.policy import Inline, Policy, Section

# the folders of the package (pyproject package-dir), scanned for reads
SOURCE_DIRS = ("callflow", "engine", "agents", "runtime", "ami", "stream", "dialplan", "api",
               "store", "board", "desktop", "outbound", "special_calls", "recordings",
               "tickets")
# files that name every key without giving any of them behaviour
NOT_READERS = ("engine/policy.py", "callflow/policy_docs.py")
NOT_READER_DIRS = ("callflow/standards",)


@dataclass(frozen=True, slots=True)
class Key:
    """One leaf setting: its dotted key, its parent field name and its own name."""

    dotted: str
    parent: str  # the section's field name ("hold"), "" at the top level
    leaf: str


@dataclass(slots=True)
class Reads:
    """What the scanned code reads: (parent, leaf) pairs and whole sections."""

    pairs: set[tuple[str, str]] = field(default_factory=set)
    whole: set[str] = field(default_factory=set)
    top: set[str] = field(default_factory=set)


def _is_section(value: object) -> bool:
    return isinstance(value, Section) and not isinstance(value, Inline)


def leaf_keys(policy: Policy | None = None) -> list[Key]:
    """Every leaf setting of the Policy (as docs/policy.md lists them)."""
    keys: list[Key] = []

    def walk(model: BaseModel, path: list[str]) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if _is_section(value):
                walk(value, [*path, name])
            elif isinstance(value, dict) and value and all(_is_section(v) for v in value.values()):
                continue  # per-queue overrides: the same fields, read through for_queue()
            else:
                keys.append(Key(".".join([*path, name]), path[-1] if path else "", name))

    walk(policy or Policy.defaults(), [])
    return keys


def section_classes(policy: Policy | None = None) -> dict[str, set[str]]:
    """Each Section class name -> the field names it is found under in the Policy."""
    found: dict[str, set[str]] = {}

    def walk(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if _is_section(value):
                found.setdefault(type(value).__name__, set()).add(name)
                walk(value)

    walk(policy or Policy.defaults())
    found["Policy"] = {""}
    return found


def source_files(root: Path) -> Iterator[Path]:
    """The product's Python files that may read Policy keys."""
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in NOT_READERS or rel.startswith(NOT_READER_DIRS):
                continue
            yield path


def _annotation_names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)} | {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
        and isinstance(n.value, str)}


def _scan_tree(tree: ast.AST, classes: dict[str, set[str]], reads: Reads,
               aliases: dict[str, set[str]] | None = None) -> None:
    """Add the reads found in ``tree`` (aliases: source text -> section field names)."""
    aliases = dict(aliases or {})
    nodes = list(ast.walk(tree))
    for node in nodes:  # parameters annotated with a section class
        if isinstance(node, ast.arg):
            for name in _annotation_names(node.annotation):
                if name in classes:
                    aliases.setdefault(node.arg, set()).update(classes[name])
    for _ in range(2):  # twice, so a chain (rules = policy.store; self.rules = rules) binds
        for node in nodes:
            if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                continue
            value = node.value
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            parents = set(aliases.get(ast.unparse(value), set()))
            if isinstance(value, ast.Attribute):
                parents.add(value.attr)
            if isinstance(node, ast.AnnAssign):
                for name in _annotation_names(node.annotation):
                    parents |= classes.get(name, set())
            if parents:
                for target in targets:
                    aliases.setdefault(ast.unparse(target), set()).update(parents)

    def parents_of(expr: ast.expr) -> set[str]:
        """The section field names ``expr`` may stand for."""
        found = set(aliases.get(ast.unparse(expr), set()))
        if isinstance(expr, ast.Attribute):
            found.add(expr.attr)
        return found

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            for parent in parents_of(node.value):
                reads.pairs.add((parent, node.attr))
            if node.attr == "model_dump":
                reads.whole |= parents_of(node.value)
            if node.attr == "model_fields" and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and node.value.func.id == "type" \
                    and node.value.args:
                reads.whole |= parents_of(node.value.args[0])
            if "policy" in ast.unparse(node.value).lower():
                reads.top.add(node.attr)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) >= 2):
            target, attr = node.args[0], node.args[1]
            if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                for parent in parents_of(target):
                    reads.pairs.add((parent, attr.value))
            else:
                reads.whole |= parents_of(target)


def _names_used(tree: ast.AST) -> set[str]:
    """Every name and attribute name ``tree`` refers to (what it may call)."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


def _policy_helpers(root: Path, classes: dict[str, set[str]]
                    ) -> list[tuple[str, ast.AST, dict[str, set[str]]]]:
    """engine/policy.py's own functions and Section methods (not validators), with ``self``
    bound to the section they belong to: their reads count once product code calls them
    (``policy.rings_to_seconds(...)`` reads ``country``)."""
    tree = ast.parse((root / "engine/policy.py").read_text("utf-8"))
    helpers: list[tuple[str, ast.AST, dict[str, set[str]]]] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            helpers.append((stmt.name, stmt, {}))
        elif isinstance(stmt, ast.ClassDef) and stmt.name in classes:
            for item in stmt.body:
                validator = any("validator" in ast.unparse(d) for d in item.decorator_list) \
                    if isinstance(item, ast.FunctionDef) else True
                if isinstance(item, ast.FunctionDef) and not validator:
                    helpers.append((item.name, item, {"self": classes[stmt.name],
                                                      "cls": classes[stmt.name]}))
    return helpers


def scan(root: Path, classes: dict[str, set[str]]) -> Reads:
    """Collect the reads of the product code, and of the Policy's helpers it calls."""
    reads = Reads()
    used: set[str] = set()
    for path in source_files(root):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        _scan_tree(tree, classes, reads)
        used |= _names_used(tree)
    pending = _policy_helpers(root, classes)
    grew = True
    while grew:  # a used helper makes the helpers it calls used too
        grew = False
        for helper in list(pending):
            name, node, aliases = helper
            if name in used:
                _scan_tree(node, classes, reads, aliases)
                used |= _names_used(node)
                pending.remove(helper)
                grew = True
    return reads


def unread_keys(root: Path, policy: Policy | None = None) -> list[str]:
    """The dotted leaf keys no product code reads."""
    policy = policy or Policy.defaults()
    reads = scan(root, section_classes(policy))
    unread = []
    for key in leaf_keys(policy):
        if key.parent:
            read = (key.parent, key.leaf) in reads.pairs or key.parent in reads.whole
        else:
            read = key.leaf in reads.top or ("", key.leaf) in reads.pairs
        if not read:
            unread.append(key.dotted)
    return unread
