"""The server's Prometheus metrics (`GET /metrics`), in one registry per server.

Counters and histograms are recorded where things happen: HTTP requests by the request
log middleware, tokens and latencies by each model's generation stream (from the engine's
Done event and the arrival of each piece of text), load times by the model manager. Slot,
queue and loaded-model gauges are read from the loaded models at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0)
_TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64,
                      1.28, 2.56)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class ModelLoad:
    """What a loaded instance is doing at scrape time."""

    model: str
    slots: int
    busy_slots: int
    queued: int


class _LoadedModels(Collector):
    def __init__(self, snapshot: Callable[[], Iterable[ModelLoad]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        loads = list(self._snapshot())
        loaded = GaugeMetricFamily("lmserve_models_loaded", "Model instances loaded.")
        loaded.add_metric([], len(loads))
        slots = GaugeMetricFamily("lmserve_slots", "Request slots of each loaded model.",
                                  labels=["model"])
        busy = GaugeMetricFamily("lmserve_slots_busy", "Slots generating or reading a "
                                 "prompt.", labels=["model"])
        queued = GaugeMetricFamily("lmserve_queue_depth", "Requests waiting for a slot.",
                                   labels=["model"])
        for load in loads:
            slots.add_metric([load.model], load.slots)
            busy.add_metric([load.model], load.busy_slots)
            queued.add_metric([load.model], load.queued)
        yield from (loaded, slots, busy, queued)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lmserve_requests", "HTTP requests by route, method and "
                                "status.", ["route", "method", "status"], registry=r)
        self.request_duration = Histogram(
            "lmserve_request_duration_seconds", "Time from request to the end of the "
            "response (the whole stream for streams).", ["route"], registry=r,
            buckets=_LATENCY_BUCKETS)
        self.time_to_first_token = Histogram(
            "lmserve_time_to_first_token_seconds", "From submission to the engine to the "
            "first generated token.", ["model"], registry=r, buckets=_LATENCY_BUCKETS)
        self.inter_token_latency = Histogram(
            "lmserve_inter_token_latency_seconds", "Time between two pieces of streamed "
            "text of one request.", ["model"], registry=r, buckets=_TOKEN_GAP_BUCKETS)
        self.prompt_tokens = Counter("lmserve_prompt_tokens", "Prompt tokens of finished "
                                     "requests (embeddings included).", ["model"],
                                     registry=r)
        self.generated_tokens = Counter("lmserve_generation_tokens", "Generated tokens.",
                                        ["model"], registry=r)
        self.prefix_cache_hit_tokens = Counter(
            "lmserve_prefix_cache_hit_tokens", "Prompt tokens reused from the prefix cache "
            "instead of being read again.", ["model"], registry=r)
        self.load_time = Histogram("lmserve_model_load_seconds", "Time to load a model "
                                   "instance.", ["model"], registry=r, buckets=_LOAD_BUCKETS)
        self.load_failures = Counter("lmserve_model_load_failures", "Loads refused or "
                                     "failed (bad file, too large, llama.cpp error).",
                                     ["model"], registry=r)

    def track_models(self, snapshot: Callable[[], Iterable[ModelLoad]]) -> None:
        """Reports the slots and queues `snapshot` gives at each scrape."""
        self.registry.register(_LoadedModels(snapshot))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_duration.labels(route).observe(seconds)

    def observe_finished(self, model: str, prompt: int, generated: int, cached: int,
                         ttft_s: float | None) -> None:
        self.prompt_tokens.labels(model).inc(prompt)
        self.generated_tokens.labels(model).inc(generated)
        self.prefix_cache_hit_tokens.labels(model).inc(cached)
        if ttft_s is not None:
            self.time_to_first_token.labels(model).observe(ttft_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
