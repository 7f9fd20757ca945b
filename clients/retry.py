"""What is safe to retry, and how long to wait: shared by the HTTP and gRPC clients."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# 408: the body did not arrive in time. The ingress measures the upload rate on its side, so an
# overloaded ingress (or host) reads a loopback upload as a slow link; the request never reached the
# critic, and HTTP lets a client repeat it (RFC 9110 15.5.9). A slow-loris sender is not our client.
RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_s: float = 0.25  # first wait; doubles each attempt
    max_backoff_s: float = 8.0
    jitter: float = 0.25  # +/- fraction of the wait
    retry_status: frozenset = field(default=RETRYABLE_STATUS)

    def should_retry(self, status: int | None, typed: bool) -> bool:
        """Connection errors (no status), the retryable statuses, and a 404 without the service's typed
        error body (a proxy answering while the app redeploys); never a typed 4xx: the input is wrong."""
        return status is None or status in self.retry_status or (status == 404 and not typed)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempts count from 1); honours Retry-After."""
        wait = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        wait *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(wait, retry_after or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
