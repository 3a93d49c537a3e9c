"""How the shop reads a control plane: the lab's topology it looks for, a cache that spares the
emulators and survives a failed read, and each cloud's SDK clients built once, on first use."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CACHE_SECONDS = 0.5
STALE_SECONDS = 10.0
CALL_TIMEOUT = 1.5


@dataclass(frozen=True)
class ShopConfig:
    """Where the shop lives in each cloud: the lab's topology (gameday/lab/*/seed.py)."""

    aws_vpc_name: str = "shop"
    aws_web_tier: str = "web"
    aws_domain: str = "shop.example.com"
    aws_record: str = "www"
    gcp_project: str = "gameday-lab"
    gcp_backend_service: str = "web"
    gcp_web_tier: str = "web"
    azure_subscription: str = "00000000-0000-0000-0000-000000000000"
    azure_resource_group: str = "shop"
    azure_profile: str = "shop-tm"


class NotConfigured(Exception):
    """The environment names no endpoint for this cloud."""


def short(exc: BaseException) -> str:
    """An error's first line, at most 300 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- the cache ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    at: float | None = None
    value: Any = None
    good_at: float | None = None
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReadCache:
    """Each read (by key) at most once per `ttl`, shared by concurrent callers; a failed read
    falls back to the last good value while it is younger than `stale_for`."""

    def __init__(self, ttl: float = CACHE_SECONDS, stale_for: float = STALE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.stale_for = stale_for
        self.clock = clock
        self._entries: dict[Any, _Entry] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: Any, load: Callable[[], Any], notes: list[str] | None = None) -> Any:
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        with entry.lock:
            if entry.at is not None and self.clock() - entry.at < self.ttl:
                return self._answer(key, entry, notes)
            try:
                self.loads += 1
                value = load()
            except Exception as exc:  # any SDK failure: remembered for ttl, like a value
                entry.at, entry.error = self.clock(), exc
            else:
                entry.at, entry.value, entry.good_at, entry.error = self.clock(), value, \
                    self.clock(), None
            return self._answer(key, entry, notes)

    def _answer(self, key: Any, entry: _Entry, notes: list[str] | None) -> Any:
        if entry.error is None:
            return entry.value
        if entry.good_at is not None and self.clock() - entry.good_at < self.stale_for:
            if notes is not None:
                notes.append(f"{_key_text(key)}: the read failed ({short(entry.error)}); using "
                             f"the one from {self.clock() - entry.good_at:.1f}s ago")
            return entry.value
        raise entry.error


def _key_text(key: Any) -> str:
    return " ".join(str(part) for part in key) if isinstance(key, tuple) else str(key)


# --- one cloud's clients -----------------------------------------------------------------------


class CloudReader(ABC):
    """One cloud's reads for the shop, over the shared cache. `clients()` raises `NotConfigured`
    while the environment lacks `endpoint_variable`, and otherwise connects once (`connect`), under
    a lock, however many requests ask at the same time."""

    endpoint_variable: str

    def __init__(self, env: Mapping[str, str], cache: ReadCache, config: ShopConfig):
        self.env = env
        self.cache = cache
        self.config = config
        self._clients: Any = None
        self._lock = threading.Lock()

    def clients(self) -> Any:
        endpoint = self.env.get(self.endpoint_variable)
        if not endpoint:
            raise NotConfigured(f"{self.endpoint_variable} is not set (see `gameday lab env`)")
        with self._lock:
            if self._clients is None:
                self._clients = self.connect(endpoint)
            return self._clients

    @abstractmethod
    def connect(self, endpoint: str) -> Any:
        """This cloud's SDK clients for the emulator at `endpoint`."""
