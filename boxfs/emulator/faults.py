"""Seeded fault injection and the request log.

Tests assert what an operation cost (how many API calls, which routes) from the request log, and
how a client survives failure from faults injected by probability and route pattern. Both are
deterministic for a given seed and request order.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

FAULT_KINDS = ("429", "500", "502", "503", "504", "drop", "drop_after", "expire")


@dataclass
class RequestRecord:
    method: str
    path: str
    route: str
    host: str
    status: int
    user_id: str | None
    as_user: str | None
    bytes_in: int
    bytes_out: int
    request_id: str
    started: float
    finished: float
    fault: str | None = None


class RequestLog:
    """Every request the emulator received, in order of arrival.

    A record is added when its request arrives and completed in place (``status`` is set before the
    answer is sent), so a client that has received its answer always finds its request counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def filter(self, **filters: object) -> list[RequestRecord]:
        """Records whose attributes equal every given filter (``route=``, ``method=``, ``status=``...)."""
        return [r for r in self.records if all(getattr(r, k) == v for k, v in filters.items())]

    def count(self, **filters: object) -> int:
        return len(self.filter(**filters))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


class RateLimiter:
    """Box's per-user rate limit: a token bucket per acting user, whatever token they come with; over it, 429."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rate = 0.0  # requests per second; 0 = unlimited
        self.burst = 0.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def configure(self, rate: float, burst: float | None = None) -> None:
        with self._lock:
            self.rate = float(rate)
            self.burst = float(burst if burst is not None else max(1.0, rate))
            self._buckets.clear()

    def admit(self, key: str, now: float) -> float:
        """0 when the request may go ahead, else the seconds to wait (for Retry-After)."""
        with self._lock:
            if self.rate <= 0:
                return 0.0
            tokens, stamp = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


@dataclass
class FaultRule:
    kinds: tuple[str, ...]
    rate: float
    route: re.Pattern[str] | None
    method: str | None
    retry_after: int
    remaining: int | None  # None: unlimited
    fired: int = 0


@dataclass
class Fault:
    kind: str
    retry_after: int


@dataclass
class FaultInjector:
    rules: list[FaultRule] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        rate: float = 1.0,
        kinds: Iterable[str] = ("500",),
        route: str | None = None,
        method: str | None = None,
        seed: int | None = None,
        retry_after: int = 1,
        count: int | None = None,
    ) -> FaultRule:
        kinds = tuple(str(k) for k in kinds)
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {FAULT_KINDS}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        rule = FaultRule(
            kinds=kinds,
            rate=rate,
            route=re.compile(route) if route else None,
            method=method.upper() if method else None,
            retry_after=retry_after,
            remaining=count,
        )
        with self._lock:
            if seed is not None:
                self._rng.seed(seed)
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def jitter(self, amount: float) -> float:
        if not amount:
            return 0.0
        with self._lock:
            return self._rng.uniform(-amount, amount)

    def pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                if rule.method and rule.method != method:
                    continue
                if rule.route and not rule.route.search(path):
                    continue
                if self._rng.random() >= rule.rate:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.fired += 1
                return Fault(self._rng.choice(rule.kinds), rule.retry_after)
        return None
