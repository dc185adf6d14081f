"""The dask round trip of issue 17, with the change watcher on and no ``invalidate_cache()`` anywhere.

``to_csv`` on a LocalCluster of two worker processes writes into a folder the client's filesystem
created (and so once assumed empty); ``read_csv`` in the same client must then find every file. A
second round into the same, by now listed, folder is seen through Box's event stream.
"""

from __future__ import annotations

import time
from typing import Any

import fsspec
import pytest

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

from test_data_dask import N_FILES, client, data_env, expected, same_rows  # noqa: E402, F401 - fixtures


def test_to_csv_then_read_csv_without_invalidate(client: Any, data_env: dict[str, Any],  # noqa: F811
                                                 unique: str) -> None:
    opts = dict(data_env["options"], watch_events=True)
    fs = fsspec.filesystem("box", **opts)  # the client's long-lived instance (fsspec hands back the same)
    source = dd.read_csv("box://data/*.csv", storage_options=opts)
    source.to_csv(f"box://{unique}/csv/part-*.csv", storage_options=opts, index=False)
    back = dd.read_csv(f"box://{unique}/csv/*.csv", storage_options=opts)
    same_rows(back.compute(), expected())
    assert fs._watcher is not None and fs._watcher.trusted_since is not None

    # the folder is now listed (and trusted while the watcher follows the stream): a second round of
    # files written by the workers reaches the client's cache through Box's events
    source.to_csv(f"box://{unique}/csv/more-*.csv", storage_options=opts, index=False)
    deadline = time.monotonic() + 15
    while len(fs.glob(f"{unique}/csv/*.csv")) < 2 * N_FILES:
        assert time.monotonic() < deadline, "the workers' second round was not seen"
        time.sleep(0.05)
    again = dd.read_csv(f"box://{unique}/csv/*.csv", storage_options=opts)
    same_rows(again.compute(), pd.concat([expected(), expected()], ignore_index=True))
