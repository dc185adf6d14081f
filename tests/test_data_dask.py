"""dask on ``box://`` URLs with a real ``distributed.LocalCluster`` of worker PROCESSES (issue 9).

One cluster for the module (starting worker processes costs seconds): two workers, one thread each. The
emulator runs in this process; workers reach it over HTTP on 127.0.0.1. The ``BOXFS_*`` environment
variables are set before the cluster starts, so the workers inherit them (that is how URL-only use
reaches workers); the storage_options tests pass a complete configuration instead, which travels to the
workers pickled (configuration only, never a token) inside the task graph.

Functions run on workers are defined inside the tests: cloudpickle then ships them by value (the workers
cannot import this test module).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

N_FILES = 4


def part(i: int) -> Any:
    """Partition ``i`` of the test data: small, distinct values per file."""
    return pd.DataFrame({"id": [i * 10 + k for k in range(5)], "region": [f"r{i}"] * 5,
                         "value": [float(i) + k / 10 for k in range(5)]})


def expected() -> Any:
    return pd.concat([part(i) for i in range(N_FILES)], ignore_index=True)


def same_rows(got: Any, want: Any) -> None:
    """Frames equal regardless of partition order and index."""
    got = got.sort_values("id").reset_index(drop=True)
    want = want.sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[list(want.columns)], want, check_dtype=False)


@pytest.fixture(scope="module")
def data_env(emulator: Any, jwt_config: str, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A user of its own with CSV data, and the BOXFS_* variables naming it (set for the module)."""
    from boxfs import BoxFileSystem

    login = f"dask-{time.time_ns() % 10**9}@example.com"
    uid = emulator.create_user(login, name="Dask")
    cfg = tmp_path_factory.mktemp("dask") / "config.json"
    cfg.write_text(jwt_config)
    options = {"jwt_config": jwt_config, "as_user": login, "base_urls": emulator.base_urls}
    fs = BoxFileSystem(**options, skip_instance_cache=True)
    for i in range(N_FILES):
        fs.pipe_file(f"data/part-{i}.csv", part(i).to_csv(index=False).encode())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOXFS_JWT_CONFIG", str(cfg))
        mp.setenv("BOXFS_AS_USER", login)
        mp.setenv("BOXFS_BASE_URL", emulator.url)
        # fsspec caches instances by their arguments: a BoxFileSystem() made earlier in this process from
        # other BOXFS_* values would otherwise be handed back for "box://" with no options
        BoxFileSystem.clear_instance_cache()
        yield {"uid": uid, "login": login, "options": options, "fs": fs}
    BoxFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def client(data_env: dict[str, Any]) -> Iterator[Any]:
    """Two worker processes started after the BOXFS_* variables are set (they inherit them)."""
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def worker_pids(client: Any) -> set[int]:
    import os

    return set(client.run(os.getpid).values())


def test_workers_are_processes(client: Any) -> None:
    import os

    pids = worker_pids(client)
    assert len(pids) == 2 and os.getpid() not in pids


def test_read_csv_glob_with_storage_options(client: Any, data_env: dict[str, Any], emulator: Any) -> None:
    emulator.request_log.clear()
    ddf = dd.read_csv("box://data/*.csv", storage_options=data_env["options"])
    assert ddf.npartitions == N_FILES
    same_rows(ddf.compute(), expected())
    # the downloads were made by the workers (every file once), acting as the configured user
    downloads = emulator.request_log.filter(route="/files/{file_id}/content", as_user=data_env["uid"])
    assert len(downloads) >= N_FILES and all(r.status in (200, 206, 302) for r in downloads)
    # this process already held a token: the ones requested now are the workers' own (the pickled
    # filesystem carried the configuration, not a token)
    assert 1 <= emulator.request_log.count(route="/oauth2/token") <= 2


def test_to_parquet_and_read_parquet(client: Any, data_env: dict[str, Any], unique: str) -> None:
    opts = data_env["options"]
    ddf = dd.read_csv("box://data/*.csv", storage_options=opts)
    ddf.to_parquet(f"box://{unique}/pq", storage_options=opts, write_index=False)
    fs = data_env["fs"]
    fs.invalidate_cache()
    written = [p for p in fs.ls(f"{unique}/pq", detail=False) if p.endswith(".parquet")]
    assert len(written) == N_FILES
    back = dd.read_parquet(f"box://{unique}/pq", storage_options=opts)
    same_rows(back.compute(), expected())


def test_to_csv_from_workers(client: Any, data_env: dict[str, Any], unique: str) -> None:
    opts = data_env["options"]
    ddf = dd.read_csv("box://data/*.csv", storage_options=opts)
    ddf[ddf.value > 1.0].to_csv(f"box://{unique}/csv/out-*.csv", storage_options=opts, index=False)
    # The client's filesystem instance (fsspec caches it by options, pandas gets the same one) created
    # the folder for the workers, so it knows it as empty; the workers' files are news to it.
    import fsspec

    fs = fsspec.filesystem("box", **opts)
    fs.invalidate_cache(f"{unique}/csv")
    names = sorted(fs.ls(f"{unique}/csv", detail=False))
    assert names == [f"{unique}/csv/out-{i}.csv" for i in range(N_FILES)]
    want = expected()
    same_rows(pd.concat(pd.read_csv(f"box://{n}", storage_options=opts) for n in names),
              want[want.value > 1.0])


def test_environment_only(client: Any, data_env: dict[str, Any], unique: str) -> None:
    """No storage_options anywhere: the client and the workers configure themselves from BOXFS_*."""
    ddf = dd.read_csv("box://data/*.csv")
    same_rows(ddf.compute(), expected())
    ddf.to_parquet(f"box://{unique}/env-pq", write_index=False)
    same_rows(dd.read_parquet(f"box://{unique}/env-pq").compute(), expected())

    def from_worker_env(path: str) -> tuple[str, bytes]:
        """Runs in a worker: a filesystem built from the inherited environment alone."""
        import fsspec

        fs = fsspec.filesystem("box", skip_instance_cache=True)
        return fs.as_user_id, fs.cat_file(path)

    results = client.run(from_worker_env, "data/part-0.csv")
    assert len(results) == 2
    for as_user, content in results.values():
        assert as_user == data_env["uid"]
        assert content == part(0).to_csv(index=False).encode()


def test_token_expiring_mid_job(client: Any, data_env: dict[str, Any], emulator: Any, unique: str) -> None:
    """Workers read, every token is then expired while their tasks are running, and the job's writes
    still succeed: each worker gets a 401, refreshes its token once and goes on."""
    opts = data_env["options"]
    gate_name = f"gate-{unique}"

    def wait_for_gate(df: Any) -> Any:
        """Runs in a worker after its partition was read from Box: hold until the tokens are expired."""
        from distributed import Event

        if not Event(gate_name).wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return df

    emulator.request_log.clear()
    source = dd.read_csv("box://data/*.csv", storage_options=opts)
    ddf = source.map_partitions(wait_for_gate, meta=source._meta)  # meta given: never run in the client
    job = client.compute(ddf.to_parquet(f"box://{unique}/after-expiry", storage_options=opts,
                                        write_index=False, compute=False))
    deadline = time.monotonic() + 60
    while sum(r.status in (200, 206) for r in emulator.request_log.filter(route="/download/{token}")) < 2:
        # both workers have read a partition: they hold tokens that are about to expire
        assert time.monotonic() < deadline, "the workers never downloaded their partitions"
        time.sleep(0.05)
    tokens_before = emulator.request_log.count(route="/oauth2/token")
    emulator.expire_tokens()
    distributed.Event(gate_name, client=client).set()
    job.result(timeout=120)

    unauthorized = emulator.request_log.filter(status=401, as_user=data_env["uid"])
    assert unauthorized, "no request met the expired token"
    assert emulator.request_log.count(route="/oauth2/token") > tokens_before
    same_rows(dd.read_parquet(f"box://{unique}/after-expiry", storage_options=opts).compute(), expected())


def _forget_download_urls() -> None:
    """In a worker: drop the download URLs its filesystems keep from earlier tests (their listings stay)."""
    from boxfs import BoxFileSystem

    for fs in list(BoxFileSystem._cache.values()):
        fs.transport.download_urls.clear()


def test_workers_within_the_per_user_rate_limit(client: Any, data_env: dict[str, Any], emulator: Any) -> None:
    """Over Box's per-user rate limit the workers' requests are answered 429 + Retry-After; they wait and
    retry, and the job's result is complete."""
    ddf = dd.read_csv("box://data/*.csv", storage_options=data_env["options"])  # listed here, unthrottled
    client.run(_forget_download_urls)  # no download URL cached by an earlier test: each file costs a request
    emulator.request_log.clear()
    emulator.set_rate_limit(0.5, burst=1)  # one request per 2 s: 4 downloads over 2 workers meet it
    try:
        result = ddf.compute()
    finally:
        emulator.set_rate_limit(0)
    same_rows(result, expected())
    calls = [r for r in emulator.request_log.records if r.as_user == data_env["uid"] and r.host == "api"]
    assert any(r.status == 429 for r in calls), "the workers never met the rate limit"
    assert all(r.status in (200, 302, 429) for r in calls)
    assert sum(r.status == 302 for r in calls) == N_FILES  # each partition downloaded once in the end
