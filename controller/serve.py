"""Running the services until SIGTERM or SIGINT, then shutting down cleanly.

``serve`` is the all-in-one entry point and the one place in ``controller`` that
imports ``southbound``: it runs both in one process and links the API to the
sessions directly (``InProcessLink``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from edgefleet.agent.protocol import CommandResult
from edgefleet.controller.api.app import create_app
from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.device_link import DeviceLink, LiveView, NoDeviceLink
from edgefleet.controller.http_link import HttpDeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.settings import Settings
from edgefleet.controller.store import Store
from edgefleet.southbound.server import KubeStatus, Southbound

log = logging.getLogger("edgefleet.serve")


class InProcessLink:
    """The northbound's view of a southbound running in the same process."""

    def __init__(self, southbound: Southbound) -> None:
        self._southbound = southbound

    async def status(self, device_id: int) -> LiveView:
        return LiveView(device_id=device_id, **self._southbound.status(device_id))

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        return await self._southbound.command(device_id, order, params, timeout)

    async def disconnect(self, device_id: int, reason: str) -> None:
        await self._southbound.disconnect(device_id, reason)


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
        southbound = Southbound(settings.southbound, store, settings.api.bcrypt_rounds)
        async with _southbound(southbound), _api(settings, store, InProcessLink(southbound)):
            await _until_signalled()


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
        try:
            async with _kubernetes(settings, store, link or NoDeviceLink(), ids, metrics) as mirror:
                async with _api(settings, store, link, mirror, ids, metrics):
                    await _until_signalled()
        finally:
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
                KubeStatusApi(kube), settings.kube.status_rate, settings.kube.metrics_interval
            )
        southbound = Southbound(settings.southbound, store, settings.api.bcrypt_rounds, status)
        try:
            async with _southbound(southbound):
                await _until_signalled()
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
    resync = StatusResync(kube, store, settings.kube.resync_interval, settings.kube.status_rate)
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(resync.run(), name="status-resync"),
                tasks.create_task(counts.run(), name="group-counts"),
            ]
            try:
                async with running_operator(reconciler, namespace):
                    log.info("operator running", extra={"namespace": namespace})
                    yield KubeMirror(kube, store)
            finally:
                for task in background:
                    task.cancel()
    finally:
        await kube.close()


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
        settings.auth,
        settings.stream,
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


async def _until_signalled() -> None:
    # Everything allocated so far lives as long as the process: keep it out of the
    # garbage collector's full passes, which otherwise scan it all.
    gc.freeze()
    # Status uploads live 15 s, long enough to reach the oldest generation, so
    # with the default thresholds a southbound holding 10,000 devices ran a full
    # collection every ~5 s, each pausing the loop for 0.7-1 s (measured with a
    # gc.callbacks probe). The data here is acyclic and freed by reference
    # counting; the cycle collector only needs to run far less often.
    gc.set_threshold(50_000, 20, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
