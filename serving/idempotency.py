"""Results bound to their request: a byte-bounded LRU of answers keyed by (caller, request id),
each remembered with the digest of the request's content.

- same caller, same id, same content: the first answer (a retry is never scored twice;
  a duplicate that arrives while the first is in flight waits for it);
- same caller, same id, other content: ``request_id_conflict`` (409), never the other answer;
- another caller: another key, so never another caller's answer.

In the service one ``ResultStore`` runs as the ``ResultCache`` deployment (one replica),
shared by every ingress replica through its handle, so one id is scored once however many
ingress replicas there are. Its state lives in that replica's memory only: when it is lost
(replica restarted, application redeployed) answers are recomputed, never invented; while
it cannot be reached the ingress scores without it. Failures are not remembered: a retry
after an error is scored again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from pathlib import Path

HIT, RUN, CONFLICT = "hit", "run", "conflict"


class StoreUnavailable(Exception):
    """The shared store cannot be reached (its replica is restarting): go on without it."""


def video_digest(source: bytes | Path) -> str:
    """Bytes by their SHA-256; a server path by where it resolves to, its size and mtime."""
    if isinstance(source, Path):
        st = source.stat()
        return f"path:{source}:{st.st_size}:{st.st_mtime_ns}"
    return "sha256:" + hashlib.sha256(source).hexdigest()


def content_digest(kind: str, fields: dict, videos: list[str]) -> str:
    """Digest of everything that decides the answer (``fields`` without the request id)."""
    doc = json.dumps({"kind": kind, "fields": fields, "videos": videos}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


class ResultStore:
    """Answers by key, bounded to ``max_bytes`` (key + answer bytes), least recently used out first.

    ``lease_s`` bounds how long a duplicate waits for an answer in flight: past it (the first
    holder died), the duplicate runs the request itself.
    """

    def __init__(self, max_bytes: int, lease_s: float = 300.0):
        self.max_bytes, self.lease_s = max_bytes, lease_s
        self._done: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, tuple[str, asyncio.Event, float]] = {}

    async def claim(self, key: str, digest: str) -> tuple[str, bytes | None]:
        """(``hit``, answer) | (``conflict``, None) | (``run``, None): the caller must then ``put`` or ``release``."""
        while True:
            if key in self._done:
                known, value = self._done[key]
                if known != digest:
                    return CONFLICT, None
                self._done.move_to_end(key)
                return HIT, value
            if key in self._inflight:
                known, event, expires = self._inflight[key]
                if known != digest:
                    return CONFLICT, None
                remaining = expires - time.monotonic()
                if remaining > 0:
                    try:
                        await asyncio.wait_for(event.wait(), remaining)
                    except asyncio.TimeoutError:
                        pass
                    continue
            self._inflight[key] = (digest, asyncio.Event(), time.monotonic() + self.lease_s)
            return RUN, None

    async def put(self, key: str, digest: str, value: bytes) -> None:
        self._finish(key, digest)
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        if key in self._done:
            self._bytes -= len(key) + len(self._done.pop(key)[1])
        self._done[key] = (digest, value)
        self._bytes += size
        while self._bytes > self.max_bytes:
            old, (_, v) = self._done.popitem(last=False)
            self._bytes -= len(old) + len(v)

    async def release(self, key: str, digest: str) -> None:
        """The holder failed: forget the claim; waiting duplicates claim again (one of them runs)."""
        self._finish(key, digest)

    def _finish(self, key: str, digest: str) -> None:
        entry = self._inflight.get(key)
        if entry is not None and entry[0] == digest:
            del self._inflight[key]
            entry[1].set()

    async def stats(self) -> dict:
        return {"entries": len(self._done), "bytes": self._bytes, "in_flight": len(self._inflight)}
