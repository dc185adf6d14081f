"""``python -m boxfs``: the same command line as the ``boxfs`` script."""

from boxfs.cli import main

raise SystemExit(main())
