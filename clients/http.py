"""HTTP clients of the critic service (httpx), sync and async. Importable without torch.

    client = CriticClient("http://127.0.0.1:8000", api_key=...)
    result = client.score("video.mp4", prompt="a red ball rolls")   # {"request_id", "result", "timings"}
    reward = result["result"]["reward"]

Every logical call carries one request id across its retries, so the service answers a
retry from its request-id cache instead of scoring twice. Retries happen only on
connection errors, 5xx and 503 (honouring Retry-After) and a proxy's untyped 404 during a
redeploy; a typed 4xx (409 included) raises ``CriticRequestError`` at once, and giving up
raises ``CriticUnavailableError``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from clients.errors import CriticClientError, CriticRequestError, CriticUnavailableError
from clients.retry import RetryPolicy, parse_retry_after

VideoArg = bytes | str | os.PathLike


def _video_fields(video: VideoArg | None, video_path: str | None, prefix: str = "video") -> dict:
    if (video is None) == (video_path is None):
        raise ValueError(f"give exactly one of {prefix} (bytes or a local file) or {prefix}_path (a server path)")
    if video_path is not None:
        return {f"{prefix}_path": str(video_path)}
    data = video if isinstance(video, bytes) else Path(video).read_bytes()
    return {f"{prefix}_b64": base64.b64encode(data).decode()}


def score_body(prompt: str, video: VideoArg | None = None, *, video_path: str | None = None,
               rubric: str | None = None, sampling: dict | None = None, adapter: str | None = None,
               request_id: str | None = None) -> dict:
    body = {"prompt": prompt, **_video_fields(video, video_path), "request_id": request_id or uuid.uuid4().hex}
    body.update({k: v for k, v in {"rubric": rubric, "sampling": sampling, "adapter": adapter}.items() if v is not None})
    return body


def compare_body(prompt: str, video_a: VideoArg | None = None, video_b: VideoArg | None = None, *,
                 video_a_path: str | None = None, video_b_path: str | None = None, rubric: str | None = None,
                 sampling: dict | None = None, adapter: str | None = None, request_id: str | None = None) -> dict:
    body = {"prompt": prompt, **_video_fields(video_a, video_a_path, "video_a"),
            **_video_fields(video_b, video_b_path, "video_b"), "request_id": request_id or uuid.uuid4().hex}
    body.update({k: v for k, v in {"rubric": rubric, "sampling": sampling, "adapter": adapter}.items() if v is not None})
    return body


def _outcome(resp: httpx.Response | None, exc: Exception | None, policy: RetryPolicy, attempt: int, rid: str):
    """(value, None) when done; (None, wait seconds) to retry; raises when not retryable or out of attempts."""
    if exc is None and resp.status_code < 400:
        return resp.json(), None
    if exc is not None:
        message, status, code, retry_after = f"{type(exc).__name__}: {exc}", None, "connection_error", None
    else:
        try:
            err = resp.json()["error"]
            message, code = err["message"], err["code"]
        except (ValueError, KeyError, TypeError):
            message, code = resp.text[:200] or resp.reason_phrase, None
        status, retry_after = resp.status_code, parse_retry_after(resp.headers.get("retry-after"))
        if not policy.should_retry(status, typed=code is not None):
            raise CriticRequestError(message, status=status, code=code, request_id=rid, attempts=attempt)
    if attempt >= policy.max_attempts:
        raise CriticUnavailableError(f"gave up: {message}", status=status, code=code, request_id=rid, attempts=attempt)
    return None, policy.delay(attempt, retry_after)


class _Base:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 300.0, retry: RetryPolicy | None = None):
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout


class CriticClient(_Base):
    """Synchronous client; thread-safe (``score_many`` uses a thread pool)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", **kwargs):
        super().__init__(base_url, **kwargs)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    def close(self):
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method: str, path: str, json: dict | None = None, rid: str | None = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            resp = exc = None
            try:
                resp = self._http.request(method, path, json=json)
            except httpx.TransportError as e:
                exc = e
            value, wait = _outcome(resp, exc, self.retry, attempt, rid or (json or {}).get("request_id"))
            if wait is None:
                return value
            time.sleep(wait)

    def score(self, video: VideoArg | None = None, *, prompt: str, **kwargs) -> dict:
        body = score_body(prompt, video, **kwargs)
        return self._request("POST", "/score", body)

    def score_many(self, items: Iterable[dict], concurrency: int = 8) -> list[dict]:
        """``items``: dicts of ``score`` keyword arguments. Results in input order; the first failure raises."""
        items = list(items)
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(lambda kw: self.score(**kw), items))

    def score_batch(self, items: Iterable[dict]) -> list[dict]:
        """One ``POST /score/batch``: per-item ``result`` or ``error`` (not raised)."""
        body = {"items": [score_body(**kw) for kw in items]}
        return self._request("POST", "/score/batch", body)["items"]

    def compare(self, video_a: VideoArg | None = None, video_b: VideoArg | None = None, *, prompt: str, **kwargs):
        return self._request("POST", "/compare", compare_body(prompt, video_a, video_b, **kwargs))

    def models(self) -> list[dict]:
        return self._request("GET", "/models")

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout_s: float = 120.0, poll_s: float = 0.25) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise CriticUnavailableError(f"{self.base_url} not ready after {timeout_s}s")
            time.sleep(poll_s)


class AsyncCriticClient(_Base):
    """asyncio client; ``score_many`` bounds concurrency with a semaphore."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", **kwargs):
        super().__init__(base_url, **kwargs)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                       limits=limits)

    async def aclose(self):
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def _request(self, method: str, path: str, json: dict | None = None, rid: str | None = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            resp = exc = None
            try:
                resp = await self._http.request(method, path, json=json)
            except httpx.TransportError as e:
                exc = e
            value, wait = _outcome(resp, exc, self.retry, attempt, rid or (json or {}).get("request_id"))
            if wait is None:
                return value
            await asyncio.sleep(wait)

    async def score(self, video: VideoArg | None = None, *, prompt: str, **kwargs) -> dict:
        return await self._request("POST", "/score", score_body(prompt, video, **kwargs))

    async def score_many(self, items: Iterable[dict], concurrency: int = 8) -> list[dict]:
        sem = asyncio.Semaphore(max(1, concurrency))

        async def one(kw):
            async with sem:
                return await self.score(**kw)

        return list(await asyncio.gather(*(one(kw) for kw in items)))

    async def score_batch(self, items: Iterable[dict]) -> list[dict]:
        body = {"items": [score_body(**kw) for kw in items]}
        return (await self._request("POST", "/score/batch", body))["items"]

    async def compare(self, video_a: VideoArg | None = None, video_b: VideoArg | None = None, *, prompt: str, **kw):
        return await self._request("POST", "/compare", compare_body(prompt, video_a, video_b, **kw))

    async def models(self) -> list[dict]:
        return await self._request("GET", "/models")

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False


__all__ = ["AsyncCriticClient", "CriticClient", "CriticClientError", "CriticRequestError", "CriticUnavailableError",
           "RetryPolicy"]
