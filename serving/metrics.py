"""Prometheus metrics of the ingress, in a registry of its own (scraped at GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lift_requests", "Requests by route, transport and status.",
                                ["route", "transport", "status"], registry=r)
        self.latency = Histogram("lift_request_latency_seconds", "End-to-end latency at the ingress.",
                                 ["route", "transport"], buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("lift_inflight_requests", "Requests being handled by the ingress (queue depth).",
                              registry=r)
        self.batch_size = Histogram("lift_batch_size", "Size of the model batch each scored video was in.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.decode = Histogram("lift_decode_seconds", "Decode + frame sampling time per video.",
                                buckets=LATENCY_BUCKETS, registry=r)
        self.model = Histogram("lift_model_seconds", "Model time per video (its share of the batch).",
                               buckets=LATENCY_BUCKETS, registry=r)
        self.idempotent_hits = Counter("lift_idempotent_replays", "Requests answered from the request-id cache.",
                                       registry=r)

    def observe_result(self, timings: dict) -> None:
        if "batch_size" in timings:
            self.batch_size.observe(timings["batch_size"])
        self.decode.observe(timings.get("decode_s", 0.0))
        self.model.observe(timings.get("model_s", 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
