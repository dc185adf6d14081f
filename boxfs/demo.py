"""The README's main job: Box as an fsspec filesystem, end to end, against the embedded emulator.

It does what a data engineer would: configure the filesystem with the JWT JSON the Box console
downloads, act as an enterprise user by login email, write a parquet file with pandas through a
``box://`` URL, read it back, and show what it cost in API calls.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("boxfs.demo")


def run(out=sys.stdout) -> int:
    import pandas as pd

    from boxfs import BoxFileSystem
    from boxfs.emulator import BoxEmulator

    with BoxEmulator() as emu:
        config = emu.create_jwt_app(name="boxfs demo")  # the JSON text, exactly as Box's console gives it
        emu.create_user("alice@example.com", "Alice Analyst")
        options = {"jwt_config": config, "as_user": "alice@example.com", "base_urls": emu.base_urls}
        print(f"Box emulator at {emu.url}; acting as alice@example.com through As-User", file=out)

        frame = pd.DataFrame({"region": ["north", "south", "east", "west"], "revenue": [120.5, 98.0, 143.25, 87.75]})
        frame.to_parquet("box://reports/q3.parquet", storage_options=options)
        back = pd.read_parquet("box://reports/q3.parquet", storage_options=options)
        assert back.equals(frame), "the parquet file did not round-trip"
        print(back.to_string(index=False), file=out)

        fs = BoxFileSystem(**options)
        info = fs.info("reports/q3.parquet")
        print(f"box://reports/q3.parquet: {info['size']} bytes, sha1 {info['sha1']}, file id {info['id']}", file=out)
        alice_calls = emu.request_log.count()
        print(f"{alice_calls} Box API requests in all (token, user lookup, uploads, reads)", file=out)
    print("demo: OK", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boxfs.demo", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="log every Box request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
