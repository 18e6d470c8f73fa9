"""An in-process data-key cache for the envelope helper, bounded by age, uses and entries, the
way the AWS Encryption SDK's caching materials manager bounds its cache.

Caching trades isolation for fewer daemon calls: while an entry lives, many envelopes share one
data key (each still gets its own per-message key, see envelope.py), and custody's audit log
records one datakey call for all of them. Keep the bounds tight: max_age limits how long a
plaintext data key stays in this process's memory, max_uses how many envelopes one key protects.

Python cannot promise to erase memory; the cache keeps its data keys in bytearrays and
overwrites them when an entry goes, which is the best a Python process can do.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, Optional, Tuple


@dataclass
class _Entry:
    key: bytearray      # the plaintext data key
    wrapped: bytes      # its custody blob
    created: float
    uses: int = 0


class DataKeyCache:
    """Entries keyed by (custody key, encoded context) for encryption, and by wrapped data key
    for decryption. An entry is used at most `max_uses` times and for at most `max_age`
    seconds; beyond `max_entries` the least recently used goes."""

    def __init__(self, max_age: float = 300.0, max_uses: int = 1000, max_entries: int = 64,
                 clock: Callable[[], float] = time.monotonic):
        if max_age <= 0 or max_uses < 1 or max_entries < 1:
            raise ValueError("max_age > 0, max_uses >= 1 and max_entries >= 1")
        self.max_age = max_age
        self.max_uses = max_uses
        self.max_entries = max_entries
        self._clock = clock
        self._entries: "OrderedDict[Hashable, _Entry]" = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._expired_age = 0
        self._expired_uses = 0
        self._evicted = 0

    def _drop(self, slot: Hashable) -> None:
        entry = self._entries.pop(slot)
        entry.key[:] = bytes(len(entry.key))

    def get(self, slot: Hashable) -> Optional[Tuple[bytes, bytes]]:
        """(data key, wrapped data key) for one more use, or None (a miss)."""
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and self._clock() - entry.created >= self.max_age:
                self._drop(slot)
                self._expired_age += 1
                entry = None
            if entry is None:
                self._misses += 1
                return None
            entry.uses += 1
            self._entries.move_to_end(slot)
            key, wrapped = bytes(entry.key), entry.wrapped
            if entry.uses >= self.max_uses:
                self._drop(slot)
                self._expired_uses += 1
            self._hits += 1
            return key, wrapped

    def put(self, slot: Hashable, key: bytes, wrapped: bytes, used: bool = True) -> None:
        """Adds a data key just fetched from custody; `used` counts the use it was fetched for."""
        with self._lock:
            if slot in self._entries:
                self._drop(slot)
            entry = _Entry(bytearray(key), bytes(wrapped), self._clock(), 1 if used else 0)
            if entry.uses >= self.max_uses:
                entry.key[:] = bytes(len(entry.key))
                self._expired_uses += 1
                return
            self._entries[slot] = entry
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))
                self._evicted += 1

    def clear(self) -> None:
        with self._lock:
            for slot in list(self._entries):
                self._drop(slot)

    def stats(self) -> Dict[str, float]:
        """hits, misses, hit_rate (hits / lookups, 0.0 before any), entries, and how many
        entries went for age, for uses and for room."""
        with self._lock:
            lookups = self._hits + self._misses
            return {"hits": self._hits, "misses": self._misses,
                    "hit_rate": self._hits / lookups if lookups else 0.0,
                    "entries": len(self._entries), "expired_age": self._expired_age,
                    "expired_uses": self._expired_uses, "evicted": self._evicted}
