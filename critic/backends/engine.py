"""The interface of engine-style backends: scoring is a coroutine, the engine batches.

A subclass implements ``async _ascore(inputs) -> list[CriticResult]``. The service awaits
``ascore([item])`` once per request, concurrently, instead of batching with ``@serve.batch``;
``score`` (the synchronous ``Critic`` contract used by the CLI and tests) runs the same
coroutine on a private event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from contract.protocol import CriticResult
from critic.base import Critic
from critic.types import ScoreInput


class AsyncCritic(Critic):
    async def ascore(self, inputs: Sequence[ScoreInput]) -> list[CriticResult]:
        """Check and score a batch; returns exactly ``len(inputs)`` results, in order."""
        inputs = list(inputs)
        for item in inputs:
            self.validate(item)
        return await self.ascore_checked(inputs)

    async def ascore_checked(self, inputs: Sequence[ScoreInput]) -> list[CriticResult]:
        """Score a batch whose items were checked where they came in (``validate``)."""
        inputs = list(inputs)
        if not inputs:
            return []
        results = await self._ascore(inputs)
        if len(results) != len(inputs):
            raise RuntimeError(f"{type(self).__name__} returned {len(results)} results for {len(inputs)} inputs")
        return results

    async def _ascore(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        raise NotImplementedError

    def _score(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._ascore(inputs))
        raise RuntimeError("AsyncCritic.score was called inside an event loop; await ascore instead")
