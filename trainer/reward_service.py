"""The critic service as the trainer sees it: an async client on a background event loop, so a
video is scored while the next one generates; ``submit`` returns a Future of the service's answer."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future

from clients import AsyncCriticClient


class RewardService:
    """Async client on a background event loop: ``submit`` returns a Future of the service's answer."""

    def __init__(self, url: str, api_key: str | None, concurrency: int):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = AsyncCriticClient(url, api_key=api_key)
        self._sem = asyncio.Semaphore(concurrency)
        self.busy_s = 0.0

    async def _score(self, **kwargs) -> dict:
        async with self._sem:
            t0 = time.perf_counter()
            try:
                return await self._client.score(**kwargs)
            finally:
                self.busy_s += time.perf_counter() - t0

    def submit(self, **kwargs) -> Future:
        return asyncio.run_coroutine_threadsafe(self._score(**kwargs), self._loop)

    def submit_compare(self, a: bytes, b: bytes, prompt: str, extra: dict) -> Future:
        async def compare():
            async with self._sem:
                return await self._client.compare(a, b, prompt=prompt, **extra)

        return asyncio.run_coroutine_threadsafe(compare(), self._loop)

    def close(self):
        async def shutdown():
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._client.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
