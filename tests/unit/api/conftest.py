"""The product's whole API in-process, once per module (product_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from product_api import ProductApi, running_product_api


@pytest.fixture(scope="module")
def product_api(tmp_path_factory: pytest.TempPathFactory,
                migrated_sqlite_file: Path) -> Iterator[ProductApi]:
    with running_product_api(tmp_path_factory.mktemp("product-api"),
                             migrated_sqlite_file) as running:
        yield running
