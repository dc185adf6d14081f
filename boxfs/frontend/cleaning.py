"""Periodic removal of old upload spool state, for long-running frontends (a mount, a server).

Large uploads leave resumable state and spool files under the acting user's spool folder
(:mod:`boxfs.upload.spoolfolder`); a process that runs for weeks would otherwise only clean them when it starts.
``BoxFileSystem.clean_spool(older_than=...)`` never touches files an upload still holds, so running it
from a background thread is safe.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CLEAN_INTERVAL", "SpoolCleaner"]

#: How often (seconds) the spool is cleaned by default.
DEFAULT_CLEAN_INTERVAL = 3600.0


class SpoolCleaner:
    """Calls ``fs.clean_spool(older_than=max_age)`` every ``interval`` seconds from a daemon thread.

    A filesystem without ``clean_spool`` (not Box) makes this a no-op. A failing clean is logged and
    tried again at the next interval: housekeeping must never take the frontend down.
    """

    def __init__(self, fs: Any, interval: float = DEFAULT_CLEAN_INTERVAL, max_age: float | None = None) -> None:
        self.fs = fs
        self.interval = interval
        self.max_age = max_age
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def clean_once(self) -> list[str]:
        """One pass; returns what was removed."""
        clean = getattr(self.fs, "clean_spool", None)
        if not callable(clean):
            return []
        try:
            removed = list(clean(older_than=self.max_age))
        except Exception as exc:  # noqa: BLE001 - logged; the next pass tries again
            log.warning("cleaning the upload spool failed: %s: %s", type(exc).__name__, exc)
            return []
        finally:
            self.runs += 1
        if removed:
            log.info("removed %d old upload spool file(s)", len(removed))
        return removed

    def start(self) -> None:
        if self._thread is not None or not callable(getattr(self.fs, "clean_spool", None)):
            return
        self._thread = threading.Thread(target=self._run, name="boxfs-spool-cleaner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.clean_once()
