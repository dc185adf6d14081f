"""Failed-login throttling shared by the FTP and SFTP servers.

Password guessing is cheap for a client and each guess costs the server an scrypt; without a
limit one machine tried 628 SFTP passwords in 10 s. Failures are counted per client address and
per login. Each failure is answered only after a delay that doubles with the count (the larger of
the two counts), and past a threshold the address or the login is locked out for a while: every
login attempt is then refused at once, without checking the password (so a lockout also ends the
scrypt cost). A success clears the counts of its address and login.

The two lockouts differ on purpose. An address lockout stops one guessing machine and harms no one
else. A login lockout stops guessing spread over many addresses, but lets anyone who knows a login
lock its owner out; its threshold is therefore higher, and either can be switched off (``0``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["LoginLocked", "LoginThrottle", "ThrottlePolicy"]


class LoginLocked(Exception):
    """Login attempts from this address or for this login are refused until ``until`` (monotonic)."""

    def __init__(self, what: str, until: float):
        super().__init__(f"too many failed logins for {what}")
        self.what = what
        self.until = until


@dataclass(frozen=True)
class ThrottlePolicy:
    """How failed logins are slowed down and locked out (see the module docstring)."""

    base_delay: float = 1.0  # seconds before the first failure is answered
    max_delay: float = 30.0  # the doubling stops here
    address_lockout_after: int = 10  # failures from one address; 0: never lock an address
    login_lockout_after: int = 30  # failures for one login, from anywhere; 0: never lock a login
    lockout_seconds: float = 900.0
    forget_after: float = 3600.0  # a count with no new failure for this long starts again at 0

    def __post_init__(self) -> None:
        numbers = (self.base_delay, self.max_delay, self.lockout_seconds, self.forget_after)
        if min(numbers) < 0 or self.address_lockout_after < 0 or self.login_lockout_after < 0:
            raise ValueError("login throttling settings must not be negative")

    def delay(self, failures: int) -> float:
        """Seconds to wait before answering the ``failures``-th failure (1, 2, 4, ... up to max)."""
        if failures <= 0 or self.base_delay == 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** min(failures - 1, 32))

    @classmethod
    def from_options(cls, options: dict[str, object] | None) -> ThrottlePolicy:
        """Build from a mapping (users file ``[login_throttle]`` table); unknown keys are refused."""
        options = dict(options or {})
        valid = set(cls.__dataclass_fields__)
        unknown = set(options) - valid
        if unknown:
            raise ValueError(f"login_throttle: unknown keys {sorted(unknown)}; valid keys: {sorted(valid)}")
        values: dict[str, float | int] = {}
        for key, value in options.items():
            convert = int if key in _COUNT_FIELDS else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"login_throttle.{key} must be a number, not {value!r}")
            values[key] = convert(value)
        return cls(**values)  # type: ignore[arg-type]


_COUNT_FIELDS = frozenset({"address_lockout_after", "login_lockout_after"})


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failure counts per address and per login, shared by every session of one server.

    At most ``max_tracked`` records are kept, least recently failed first out: addresses and logins
    are the client's to choose (an IPv6 /64, a made-up login per guess), and memory must not be.
    """

    #: Default bound on records; evicting one takes as long as the guesser needed for 100,000 failures.
    MAX_TRACKED = 100_000

    def __init__(self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = MAX_TRACKED):
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self.max_tracked = max(2, max_tracked)
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()  # least recently failed first

    def __repr__(self) -> str:
        return f"LoginThrottle({self.policy!r}, tracked={len(self._records)})"

    def _record(self, kind: str, key: str, now: float) -> _Record:
        record = self._records.get((kind, key))
        if record is None or (now - record.last > self.policy.forget_after and record.locked_until <= now):
            record = self._records[(kind, key)] = _Record()
        self._records.move_to_end((kind, key))  # the order stays "least recently failed first"
        return record

    def _prune(self, now: float) -> None:
        """Forget stale records, and the least recently failed ones past ``max_tracked``, from the
        front of the order: each failure costs O(1), however many addresses a scan uses."""
        records = self._records
        while records:
            key, oldest = next(iter(records.items()))
            stale = now - oldest.last > self.policy.forget_after and oldest.locked_until <= now
            if not stale and len(records) < self.max_tracked - 1:
                return
            del records[key]

    def check(self, address: str, login: str) -> None:
        """Raise :class:`LoginLocked` when this address or this login is locked out now."""
        now = self._clock()
        with self._lock:
            for kind, key in (("address", address), ("login", login)):
                record = self._records.get((kind, key))
                if record is not None and record.locked_until > now:
                    raise LoginLocked(f"{kind} {key!r}", record.locked_until)

    def is_address_locked(self, address: str) -> bool:
        """True while ``address`` is locked out (every method of login is then refused)."""
        record = self._records.get(("address", address))
        return record is not None and record.locked_until > self._clock()

    def failed(self, address: str, login: str, protocol: str) -> float:
        """Count a failure; returns the delay before answering it. Logs the lockouts it starts."""
        now = self._clock()
        policy = self.policy
        with self._lock:
            self._prune(now)
            worst = 0
            for kind, key, threshold in (
                ("address", address, policy.address_lockout_after),
                ("login", login, policy.login_lockout_after),
            ):
                record = self._record(kind, key, now)
                record.failures += 1
                record.last = now
                worst = max(worst, record.failures)
                if threshold and record.failures >= threshold and record.locked_until <= now:
                    record.locked_until = now + policy.lockout_seconds
                    logger.warning(
                        "%s: %s %r locked out for %.0f s after %d failed logins",
                        protocol,
                        kind,
                        key,
                        policy.lockout_seconds,
                        record.failures,
                    )
        return policy.delay(worst)

    def succeeded(self, address: str, login: str) -> None:
        """A correct login: its address and login start again from zero."""
        with self._lock:
            self._records.pop(("address", address), None)
            self._records.pop(("login", login), None)
