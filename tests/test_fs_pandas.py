"""pandas and pyarrow on ``box://`` URLs, with storage_options and with the environment only (issue 4)."""

from __future__ import annotations

from typing import Any

import pytest

pd = pytest.importorskip("pandas")
pa_ds = pytest.importorskip("pyarrow.dataset")


def frame() -> Any:
    return pd.DataFrame({"region": ["north", "south", "east"], "sales": [10.5, 20.25, 7.0], "n": [1, 2, 3]})


def test_csv_and_parquet_with_storage_options(emulator: Any, jwt_config: str, new_user: Any) -> None:
    _uid, login = new_user("pandas")
    options = {"jwt_config": jwt_config, "as_user": login, "base_urls": emulator.base_urls}
    df = frame()
    df.to_csv("box://reports/q3.csv", index=False, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_csv("box://reports/q3.csv", storage_options=options), df)
    df.to_parquet("box://reports/q3.parquet", storage_options=options)
    pd.testing.assert_frame_equal(pd.read_parquet("box://reports/q3.parquet", storage_options=options), df)


def test_parquet_and_dataset_with_environment_only(monkeypatch: Any, emulator: Any, jwt_config: str,
                                                   new_user: Any, tmp_path: Any) -> None:
    _uid, login = new_user("envdata")
    (tmp_path / "config.json").write_text(jwt_config)
    monkeypatch.setenv("BOXFS_JWT_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("BOXFS_BASE_URL", emulator.url)
    monkeypatch.setenv("BOXFS_AS_USER", login)
    df = frame()
    for part in ("a", "b"):
        df.assign(part=part).to_parquet(f"box://lake/part-{part}.parquet")
    back = pd.read_parquet("box://lake/part-a.parquet")
    pd.testing.assert_frame_equal(back, df.assign(part="a"))
    import fsspec

    fs = fsspec.filesystem("box")
    dataset = pa_ds.dataset("lake", filesystem=fs, format="parquet")
    table = dataset.to_table()
    assert table.num_rows == 6 and sorted(set(table.column("part").to_pylist())) == ["a", "b"]
