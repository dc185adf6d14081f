"""fsspec's abstract test-suite fixtures for Box (the way s3fs plugs its ``tests/derived`` in).

Each test runs as a brand-new emulator user (the shared ``fs`` fixture of ``tests/conftest.py``), under
the folder ``base``, so tests cannot see each other's files.
"""

from __future__ import annotations

from typing import Any

import pytest
from fsspec.tests.abstract import AbstractFixtures


class BoxFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, make_fs: Any, new_user: Any) -> Any:  # type: ignore[override]
        user_id, _login = new_user("derived")
        return make_fs(as_user=user_id)

    @pytest.fixture
    def fs_join(self) -> Any:
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self, fs: Any) -> str:
        fs.makedirs("base", exist_ok=True)
        return "base"

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return True
