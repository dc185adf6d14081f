"""boxfs: Box (box.com) enterprise storage as an fsspec filesystem.

The filesystem class is imported lazily so that ``boxfs.emulator`` (a product of its
own) can be used without importing any client-side code.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["BoxFileSystem", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "BoxFileSystem":
        from boxfs.core import BoxFileSystem

        return BoxFileSystem
    raise AttributeError(f"module 'boxfs' has no attribute {name!r}")
