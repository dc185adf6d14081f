"""``python -m boxfs.emulator``: run the emulator in the foreground with a ready demo app."""

from boxfs.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
