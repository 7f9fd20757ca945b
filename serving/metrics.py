"""Metrics of the ingress, recorded in two places:

- through Ray Serve's metrics API (``ray.serve.metrics``), exported by every node's metrics
  agent on Ray's metrics export port: one scrape covers every replica, each series labelled
  with its ``deployment``, ``replica`` and ``application`` (what a cluster's Prometheus reads);
- in a registry of this replica's own, rendered at ``GET /metrics`` (single-node use: behind
  several ingress replicas that endpoint is load-balanced and shows one replica at a time).

Ray exports a counter ``lift_requests`` as ``ray_lift_requests_total``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class _Metric:
    """One instrument, written to the local registry and (inside a Serve replica) to Ray's."""

    def __init__(self, kind: str, name: str, doc: str, registry, labels: tuple[str, ...] = (),
                 buckets: tuple[float, ...] | None = None, cluster: bool = False):
        local = {"counter": PromCounter, "gauge": PromGauge, "histogram": PromHistogram}[kind]
        self._local = local(name, doc, list(labels), registry=registry, **({"buckets": buckets} if buckets else {}))
        self._ray, self._labels, self._kind, self._value = None, labels, kind, 0.0
        if cluster:
            from ray.serve import metrics as serve_metrics

            tags = {"tag_keys": labels} if labels else {}
            if kind == "histogram":
                self._ray = serve_metrics.Histogram(name, doc, boundaries=list(buckets), **tags)
            else:
                self._ray = {"counter": serve_metrics.Counter, "gauge": serve_metrics.Gauge}[kind](name, doc, **tags)

    def labels(self, *values: str) -> "_Bound":
        return _Bound(self, tuple(values))

    def inc(self, amount: float = 1.0) -> None:
        _Bound(self, ()).inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        _Bound(self, ()).inc(-amount)

    def observe(self, value: float) -> None:
        _Bound(self, ()).observe(value)


class _Bound:
    def __init__(self, metric: _Metric, values: tuple[str, ...]):
        self.m, self.values = metric, values

    def _local(self):
        return self.m._local.labels(*self.values) if self.values else self.m._local

    def _tags(self) -> dict[str, str] | None:
        return dict(zip(self.m._labels, self.values)) if self.values else None

    def inc(self, amount: float = 1.0) -> None:
        if self.m._kind == "gauge":
            self._local().inc(amount)
            self.m._value += amount
            if self.m._ray is not None:
                self.m._ray.set(self.m._value, tags=self._tags())
            return
        self._local().inc(amount)
        if self.m._ray is not None:
            self.m._ray.inc(amount, tags=self._tags())

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def observe(self, value: float) -> None:
        self._local().observe(value)
        if self.m._ray is not None:
            self.m._ray.observe(value, tags=self._tags())


class Metrics:
    """``cluster=True`` (inside a Serve replica) also records through Ray Serve's metrics API."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, cluster: bool = False):
        self.registry = r = CollectorRegistry()

        def metric(kind, name, doc, labels=(), buckets=None):
            return _Metric(kind, name, doc, r, labels, buckets, cluster)

        self.requests = metric("counter", "lift_requests", "Requests by route, transport and status "
                               "(499: the client went away before the answer).", ("route", "transport", "status"))
        self.latency = metric("histogram", "lift_request_latency_seconds", "End-to-end latency at the ingress.",
                              ("route", "transport"), LATENCY_BUCKETS)
        self.inflight = metric("gauge", "lift_inflight_requests", "Requests being handled by the ingress (queue depth).")
        self.batch_size = metric("histogram", "lift_batch_size", "Size of the model batch each scored video was in.",
                                 buckets=BATCH_BUCKETS)
        self.decode = metric("histogram", "lift_decode_seconds", "Decode + frame sampling time per video.",
                             buckets=LATENCY_BUCKETS)
        self.model = metric("histogram", "lift_model_seconds", "Model time per video (its share of the batch).",
                            buckets=LATENCY_BUCKETS)
        self.idempotent_hits = metric("counter", "lift_idempotent_replays", "Requests answered from the request-id cache.")

    def observe_result(self, timings: dict) -> None:
        if "batch_size" in timings:
            self.batch_size.observe(timings["batch_size"])
        self.decode.observe(timings.get("decode_s", 0.0))
        self.model.observe(timings.get("model_s", 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
