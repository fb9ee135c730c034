"""Request rate limits for the HTTP service: token buckets, kept in the process or in
PostgreSQL.

A bucket holds up to `per_minute` tokens and refills at `per_minute` per minute; a request
takes one. Buckets are named by what they limit: "key:<owner>" (requests of one API key,
or of one client address without keys) and "auth:<address>" (failed authentications).

With one process (SQLite store) the buckets live in memory. With PostgreSQL they live in
its `rate_limits` table, so that `--workers N`, or several API processes on several
machines sharing one database, give a key its budget once, not N times.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


def refill(tokens: float, last: float, now: float, per_minute: int) -> float:
    """The bucket's tokens at `now`, refilled since `last` and capped at its size."""
    return min(float(per_minute), tokens + max(0.0, now - last) * per_minute / 60.0)


def take(tokens: float, per_minute: int, consume: bool) -> tuple[float, float]:
    """(tokens left, seconds to wait): 0 s when a token was there (taken if `consume`)."""
    if tokens >= 1:
        return (tokens - 1 if consume else tokens), 0.0
    return tokens, (1 - tokens) * 60.0 / per_minute


class RateLimiter(Protocol):
    def wait_s(self, bucket: str, per_minute: int, consume: bool = True) -> float:
        """0 when the request may go ahead (a token is taken if `consume`), else the
        seconds until it may."""


class MemoryRateLimiter:
    """The buckets of one process."""

    MAX_BUCKETS = 10_000

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float, int]] = {}  # tokens, last, per_minute
        self.lock = threading.Lock()

    def wait_s(self, bucket: str, per_minute: int, consume: bool = True) -> float:
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > self.MAX_BUCKETS:  # forget buckets that are full again
                self.buckets = {k: v for k, v in self.buckets.items()
                                if refill(v[0], v[1], now, v[2]) < v[2]}
            tokens, last, _ = self.buckets.get(bucket, (float(per_minute), now, per_minute))
            tokens, wait = take(refill(tokens, last, now, per_minute), per_minute, consume)
            self.buckets[bucket] = (tokens, now, per_minute)
            return wait


class SharedRateLimiter:
    """The buckets in PostgreSQL (PostgresStore.update_bucket), on the database's clock."""

    def __init__(self, store) -> None:
        self.store = store

    def wait_s(self, bucket: str, per_minute: int, consume: bool = True) -> float:
        def update(tokens: float | None, last: float, now: float) -> tuple[float, float]:
            start = float(per_minute) if tokens is None else refill(tokens, last, now,
                                                                    per_minute)
            return take(start, per_minute, consume)

        return self.store.update_bucket(bucket, update)
