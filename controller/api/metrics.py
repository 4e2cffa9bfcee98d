"""Prometheus metrics of the controller: REST requests and latencies by route and
status, the operator's reconciles and the resync's share of the status-write
budget (Kubernetes mode), devices by state, job rollouts, and the process.

Each application gets its own registry, so several can live in one process (tests,
``edgefleet serve``) without clashing in the client library's global registry.
Devices by state come from the database at scrape time — one grouped count — so
the fleet's offline devices, which no southbound holds, are counted too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest

from edgefleet.controller.gc_policy import GcPauses
from edgefleet.controller.store import StoreError
from edgefleet.controller.store.jobs import EXECUTION_STATES

disable_created_metrics()


class ApiMetrics:
    def __init__(self, count_devices: Callable[[], Awaitable[dict[str, int]]] | None) -> None:
        """``count_devices``: devices by state, from the store (None: not exported)."""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(GcPauses())
        self.devices = Gauge(
            "edgefleet_devices",
            "Registered devices by state, from the database at scrape time.",
            ["state"],
            registry=self.registry,
        )
        self.count_devices = count_devices
        self.job_executions = Gauge(
            "edgefleet_job_executions",
            "Devices of the running and paused jobs, by execution state.",
            ["state"],
            registry=self.registry,
        )
        for state in EXECUTION_STATES:
            self.job_executions.labels(state).set(0)
        self.job_admissions = Counter(
            "edgefleet_job_admissions",
            "Devices admitted by job rollouts (their rate is the rollout rate).",
            registry=self.registry,
        )
        self.jobs_aborted = Counter(
            "edgefleet_jobs_aborted",
            "Jobs that aborted themselves at their failure threshold.",
            registry=self.registry,
        )
        self.requests = Counter(
            "edgefleet_api_requests_total",
            "REST requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgefleet_api_request_duration_seconds",
            "Time to answer a REST request, by route and method.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.analysis_backlog = Gauge(
            "edgefleet_analysis_backlog",
            "Records of the analysed kinds waiting for analysis, from the database at scrape time.",
            registry=self.registry,
        )
        self.count_backlog: Callable[[], Awaitable[int]] | None = None
        self.analysis_results = Counter(
            "edgefleet_analysis_results_total",
            "Records whose analysis ended (analysed, failed) or will be tried again (retried).",
            ["result"],
            registry=self.registry,
        )
        self.classifications = Counter(
            "edgefleet_classifications_total",
            "Images classified, by where the answer came from: cache (no model call) or model.",
            ["source"],
            registry=self.registry,
        )
        for result in ("analysed", "failed", "retried"):
            self.analysis_results.labels(result)
        for source in ("cache", "model"):
            self.classifications.labels(source)
        self.reconciles = Counter(
            "edgefleet_reconciles_total",
            "Operator handler runs (Kubernetes mode), by resource kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.status_write_share = Gauge(
            "edgefleet_status_write_share",
            "Device status writes a second the resync may make now: its share of the "
            "installation's budget while it puts statuses right, else 0 (Kubernetes mode).",
            registry=self.registry,
        )

    def job_progress(self, counts: dict[str, int], admitted: int, aborted: int) -> None:
        """One scheduler pass: executions of the open jobs by state, and what it did."""
        for state, count in counts.items():
            self.job_executions.labels(state).set(count)
        self.job_admissions.inc(admitted)
        self.jobs_aborted.inc(aborted)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    async def handle_scrape(self, _request: web.Request) -> web.Response:
        if self.count_devices is not None:
            try:
                for state, count in (await self.count_devices()).items():
                    self.devices.labels(state).set(count)
            except StoreError:
                self.devices.clear()  # unknown, not stale: the series disappear
        if self.count_backlog is not None:
            try:
                self.analysis_backlog.set(await self.count_backlog())
            except StoreError:
                pass  # the last value stays: the backlog does not vanish with the database
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


METRICS = web.AppKey("metrics", ApiMetrics)
