"""Running the services until SIGTERM or SIGINT, then shutting down cleanly.

``serve`` is the all-in-one entry point and the one place in ``controller`` that
imports ``southbound``: it runs both in one process and links the API to the
sessions directly (``InProcessLink``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from edgefleet.agent.protocol import CommandResult
from edgefleet.controller import gc_policy
from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.analysis.classifier import Classifier
from edgefleet.controller.analysis.worker import AnalysisWorker
from edgefleet.controller.api.app import create_app
from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.device_link import DeviceLink, LiveView, NoDeviceLink, StatusSample
from edgefleet.controller.http_link import HttpDeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.retention import Retention
from edgefleet.controller.settings import DataSettings, Settings
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import FileStore, open_file_store
from edgefleet.southbound.server import KubeStatus, Southbound

log = logging.getLogger("edgefleet.serve")


class InProcessLink:
    """The northbound's view of a southbound running in the same process."""

    def __init__(self, southbound: Southbound) -> None:
        self._southbound = southbound

    async def status(self, device_id: int) -> LiveView:
        return LiveView(device_id=device_id, **self._southbound.status(device_id))

    async def status_history(self, device_id: int, since: float) -> list[StatusSample]:
        samples = self._southbound.status_history(device_id, since)
        return [StatusSample(**sample) for sample in samples]

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        return await self._southbound.command(device_id, order, params, timeout)

    async def disconnect(self, device_id: int, reason: str) -> None:
        await self._southbound.disconnect(device_id, reason)

    async def push_config(self, device_ids: list[int]) -> None:
        self._southbound.push_config(device_ids)

    async def deliver_queued(self, device_id: int) -> None:
        self._southbound.deliver_queued(device_id)


def api_token(settings: Settings) -> str:
    """The configured token, or in standalone mode a new one, printed once for the user."""
    if settings.api.token:
        return settings.api.token
    token = secrets.token_urlsafe(32)
    sys.stderr.write(
        "\nNo API token configured (EDGEFLEET_API_TOKEN); generated one for this run:\n"
        f"\n    Authorization: Bearer {token}\n\n"
    )
    sys.stderr.flush()
    return token


async def serve(settings: Settings) -> None:
    """Migrate the store, run the southbound and the northbound API, stop on a signal."""
    if settings.kube.namespace:
        log.warning(
            "serve is the one-process mode and ignores --kube-namespace; Kubernetes mode "
            "runs `edgefleet controller` and `edgefleet southbound`"
        )
    async with _store(settings, migrate=True) as store:
        files = open_file_store(settings.data)
        southbound = Southbound(
            settings.southbound,
            store,
            settings.api.bcrypt_rounds,
            files=files,
            max_file_bytes=settings.data.max_file_bytes,
        )
        metrics = ApiMetrics(store.stats.by_state)
        async with (
            _southbound(southbound),
            _data_plane(settings, store, files, metrics) as classifications,
            _api(
                settings,
                store,
                InProcessLink(southbound),
                metrics=metrics,
                file_store=files,
                classifications=classifications,
            ),
        ):
            await _until_signalled(settings.process.shutdown_grace)


async def serve_controller(settings: Settings) -> None:
    """The northbound API alone (Kubernetes mode): it reaches the device sessions
    through the internal API of the southbound pod that holds each one. With a
    namespace set, the kopf operator runs beside it and REST writes go to the
    Device and DeviceGroup resources first."""
    token = settings.southbound.internal_token
    if not token:
        log.warning("no internal token: live status and commands will find devices offline")
    async with _store(settings, migrate=True) as store:
        link = HttpDeviceLink(store, token) if token else None
        # One id generator for the API and the operator: two with the same worker
        # id could mint the same id in the same millisecond.
        ids = SnowflakeGenerator(settings.api.worker_id)
        metrics = ApiMetrics(store.stats.by_state)
        files = open_file_store(settings.data)
        try:
            async with (
                _kubernetes(settings, store, link or NoDeviceLink(), ids, metrics) as mirror,
                _data_plane(settings, store, files, metrics) as classifications,
                _api(settings, store, link, mirror, ids, metrics, files, classifications),
            ):
                await _until_signalled(settings.process.shutdown_grace)
        finally:
            await files.close()
            if link:
                await link.close()


async def serve_southbound(settings: Settings) -> None:
    """The southbound alone (Kubernetes mode): device sessions and /metrics; with a
    namespace set, live state mirrored into the Device resources."""
    async with _store(settings, migrate=False) as store:
        await store.wait_for_schema()
        kube = None
        status = None
        if settings.kube.namespace:
            from edgefleet.controller.kube.client import KubeClient, KubeStatusApi  # only here

            kube = await KubeClient.connect(settings.kube.kubeconfig, settings.kube.namespace)
            status = KubeStatus(
                KubeStatusApi(kube), settings.kube.status_budget, settings.kube.metrics_interval
            )
        southbound = Southbound(
            settings.southbound,
            store,
            settings.api.bcrypt_rounds,
            status,
            files=open_file_store(settings.data),
            max_file_bytes=settings.data.max_file_bytes,
        )
        try:
            async with _southbound(southbound):
                await _until_signalled(settings.process.shutdown_grace)
        finally:
            if kube is not None:
                await kube.close()


@asynccontextmanager
async def _kubernetes(
    settings: Settings,
    store: Store,
    link: DeviceLink,
    ids: SnowflakeGenerator,
    metrics: ApiMetrics,
) -> AsyncIterator[ResourceMirror | None]:
    """Kubernetes mode's controller half: the operator running, the REST mirror."""
    namespace = settings.kube.namespace
    if not namespace:
        yield None
        return
    # kopf and kubernetes_asyncio take ~0.5 s to import: only Kubernetes mode pays.
    from edgefleet.controller.kube.client import KubeClient
    from edgefleet.controller.kube.group_counts import GroupCounts
    from edgefleet.controller.kube.mirror import KubeMirror
    from edgefleet.controller.kube.operator import Reconciler, running_operator
    from edgefleet.controller.kube.resync import StatusResync

    kube = await KubeClient.connect(settings.kube.kubeconfig, namespace)
    counts = GroupCounts(store, kube)
    reconciler = Reconciler(
        store, kube, link, ids, settings.api.bcrypt_rounds, metrics=metrics, counts=counts
    )
    resync = StatusResync(
        kube,
        store,
        settings.kube.resync_interval,
        settings.kube.status_budget,
        settings.southbound.instance_beat_interval,
        settings.southbound.instance_timeout,
        metrics=metrics,
    )
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(resync.run(), name="status-resync"),
                tasks.create_task(counts.run(), name="group-counts"),
            ]
            try:
                async with running_operator(reconciler, namespace):
                    log.info("operator running", extra={"namespace": namespace})
                    yield KubeMirror(kube, store, counts)
            finally:
                for task in background:
                    task.cancel()
    finally:
        await kube.close()


def _classifier(data: DataSettings) -> Classifier | None:
    if not data.classifier_url:
        return None
    key = Path(data.classifier_key_file).read_text().strip() if data.classifier_key_file else None
    return Classifier(
        data.classifier_url,
        data.classifier_model,
        data.categories,
        data.classifier_prompt,
        key,
        data.classifier_timeout,
    )


@asynccontextmanager
async def _data_plane(
    settings: Settings, store: Store, files: FileStore, metrics: ApiMetrics
) -> AsyncIterator[ClassificationCache | None]:
    """The controller's work on devices' data, in the background: the retention job,
    and the analysis worker when a classifier is configured. Yields the classifier
    behind its cache (None: analysis is off), for the classify API."""
    data = settings.data
    classifier = _classifier(data)
    cache = ClassificationCache(store, classifier, metrics.classifications) if classifier else None
    retention = Retention(store, files, data.record_retention_days, data.retention_interval)
    if cache is None:
        log.info("analysis is off: no --classifier-url")
    elif not data.kinds:
        log.info("analysis of devices' records is off: no --analyse-kinds")
    try:
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(retention.run(), name="retention")]
            if cache is not None and data.kinds:
                worker = AnalysisWorker(
                    store,
                    files,
                    cache,
                    data.kinds,
                    concurrency=data.analysis_concurrency,
                    max_attempts=data.analysis_max_attempts,
                    retry_delay=data.analysis_retry_delay,
                    max_file_bytes=data.max_file_bytes,
                    count=lambda result: metrics.analysis_results.labels(result).inc(),
                )
                metrics.count_backlog = lambda: store.analysis.backlog(data.kinds)
                running.append(tasks.create_task(worker.run(), name="analysis"))
                log.info("analysis on", extra={"kinds": ",".join(data.kinds)})
            try:
                yield cache
            finally:
                for task in running:
                    task.cancel()
    finally:
        if classifier is not None:
            await classifier.close()


@asynccontextmanager
async def _store(settings: Settings, migrate: bool) -> AsyncIterator[Store]:
    store = Store.from_url(settings.db.url, settings.db.timeout, settings.db.pool_size)
    try:
        if migrate:
            await store.migrate()
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def _southbound(southbound: Southbound) -> AsyncIterator[None]:
    await southbound.start()
    try:
        yield
    finally:
        await southbound.stop()


@asynccontextmanager
async def _api(
    settings: Settings,
    store: Store,
    link: DeviceLink | None,
    mirror: ResourceMirror | None = None,
    ids: SnowflakeGenerator | None = None,
    metrics: ApiMetrics | None = None,
    file_store: FileStore | None = None,
    classifications: ClassificationCache | None = None,
) -> AsyncIterator[None]:
    app = create_app(
        store,
        settings.api,
        api_token(settings),
        link,
        settings.southbound.command_timeout,
        mirror,
        ids,
        metrics,
        file_store=file_store,
        classifications=classifications,
        max_file_bytes=settings.data.max_file_bytes,
        max_artifact_bytes=settings.data.max_artifact_bytes,
        auth_settings=settings.auth,
        stream_settings=settings.stream,
        job_settings=settings.jobs,
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api.host, settings.api.port).start()
        log.info(
            "northbound API listening", extra={"host": settings.api.host, "port": settings.api.port}
        )
        yield
    finally:
        await runner.cleanup()


async def _until_signalled(grace: float) -> None:
    """Return at SIGTERM or SIGINT; from then on the process has ``grace`` seconds
    to stop cleanly, after which a watchdog ends it whatever is still running."""
    gc_policy.settle()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down", extra={"grace_seconds": grace})
        watchdog = threading.Timer(grace, _stop_now, args=(grace, loop))
        watchdog.daemon = True
        watchdog.start()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _stop_now(grace: float, loop: asyncio.AbstractEventLoop) -> None:
    """The clean stop took longer than its grace: say what it was still waiting
    for, and end the process (from a thread, so a blocked event loop cannot hold
    it up)."""
    log.error(
        "clean shutdown took too long; exiting",
        extra={"grace_seconds": grace, "waiting": _where_tasks_wait(loop)},
    )
    logging.shutdown()
    os._exit(1)


def _where_tasks_wait(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Each unfinished task and the chain of awaits it is suspended in, innermost
    last (a best-effort look from another thread: enough to say what a shutdown
    hangs on)."""
    found = []
    for task in list(asyncio.all_tasks(loop)):
        chain = []
        coroutine: Any = task.get_coro()
        while coroutine is not None:
            frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            coroutine = getattr(coroutine, "cr_await", None) or getattr(
                coroutine, "gi_yieldfrom", None
            )
        found.append(f"{task.get_name()}: {' > '.join(chain)}")
    return sorted(found)
