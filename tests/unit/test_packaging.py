"""The distribution carries what the package needs at run time: every package folder is
mapped, every page asset and migration is package data (an install that is not an
editable checkout must still serve the pages and migrate)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def data_files(package: str) -> list[str]:
    folder = REPO / SETUPTOOLS["package-dir"][package]
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and p.suffix != ".pyc" and "__pycache__" not in p.parts
            and not (p.suffix == ".py" and p.parent == folder)]


def covered(path: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, g) and path.count("/") == g.count("/") for g in globs)


def test_every_page_asset_and_migration_is_package_data() -> None:
    for package in SETUPTOOLS["package-data"]:
        globs = SETUPTOOLS["package-data"][package]
        missing = [p for p in data_files(package) if not covered(p, globs)]
        assert not missing, f"{package}: not in package-data: {missing}"


def test_every_package_folder_is_a_listed_package() -> None:
    listed = set(SETUPTOOLS["packages"])
    assert listed == set(SETUPTOOLS["package-dir"])
    for package, folder in SETUPTOOLS["package-dir"].items():
        assert (REPO / folder / "__init__.py").is_file(), package
