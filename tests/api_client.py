"""A real northbound API on 127.0.0.1 and a small client for it."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.api.app import create_app
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.mirror import ResourceMirror
from edgefleet.controller.settings import (
    ApiSettings,
    AuthSettings,
    DataSettings,
    JobSettings,
    StreamSettings,
)
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import FileStore, LocalFileStore

TEST_SETTINGS = ApiSettings(bcrypt_rounds=4)
USER_PASSWORD = "correct horse battery"
TEST_AUTH = AuthSettings(jwt_key="test-jwt-key-0123456789-0123456789")
TEXT_MEDIA = ("text/csv", "application/x-ndjson")
"""Answers kept as text (exports); every other answer is JSON."""
TEST_STREAM = StreamSettings(poll_interval=0.05, keepalive=0.5)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def data(self) -> Any:
        assert self.body["status"] == "success", self.body
        return self.body["data"]

    def failure(self, status: int, type: str) -> str:
        """Assert a failure envelope and return its message."""
        assert self.status == status, (self.status, self.body)
        assert self.body["status"] == "fail", self.body
        assert self.body["type"] == type, self.body
        return self.body["message"]


class ApiClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, token: str) -> None:
        self.base_url = base_url
        self.session = session
        self.token = token

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = "default",
        **kwargs: Any,
    ) -> Answer:
        headers = dict(kwargs.pop("headers", {}))
        if token == "default":
            token = self.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        async with self.session.request(method, url, json=json, headers=headers, **kwargs) as r:
            text = await r.text()
            body: Any = text or None
            if text and r.content_type not in TEXT_MEDIA:
                body = await r.json(content_type=None)
            return Answer(r.status, body, r.headers)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Answer:
        return await self.request("POST", path, json, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> Answer:
        return await self.request("PUT", path, json, **kwargs)

    async def patch(self, path: str, json: Any = None, **kwargs: Any) -> Answer:
        return await self.request("PATCH", path, json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("DELETE", path, **kwargs)

    async def register(self, **fields: Any) -> dict[str, Any]:
        """Register a device with made-up hardware keys unless given."""
        body = {
            "name": "cam",
            "hardware_sn": f"SN-{uuid.uuid4().hex[:10]}",
            "hardware_model": "M1",
            **fields,
        }
        answer = await self.post("/api/v1/devices", body)
        assert answer.status == 201, answer.body
        return answer.data

    async def create_group(self, name: str, **fields: Any) -> dict[str, Any]:
        answer = await self.post("/api/v1/groups", {"name": name, **fields})
        assert answer.status == 201, answer.body
        return answer.data

    async def upload_artifact(
        self, name: str, version: str, body: bytes, **params: str
    ) -> dict[str, Any]:
        """Upload a software artifact as a raw body."""
        answer = await self.post(
            "/api/v1/artifacts",
            params={"name": name, "version": version, **params},
            data=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert answer.status == 201, answer.body
        return answer.data

    def as_(self, token: str) -> ApiClient:
        """The same server, another caller."""
        return ApiClient(self.base_url, self.session, token)

    async def user(
        self, username: str, roles: list[dict[str, Any]], password: str = USER_PASSWORD
    ) -> ApiClient:
        """Create a user with these bindings (as this caller) and sign it in."""
        answer = await self.post(
            "/api/v1/users", {"username": username, "password": password, "roles": roles}
        )
        assert answer.status == 201, answer.body
        return await self.login(username, password)

    async def login(self, username: str, password: str = USER_PASSWORD) -> ApiClient:
        answer = await self.post(
            "/api/v1/auth/login", {"username": username, "password": password}, token=None
        )
        assert answer.status == 200, answer.body
        return self.as_(answer.data["access_token"])


@asynccontextmanager
async def running_api(
    store: Store,
    token: str,
    settings: ApiSettings = TEST_SETTINGS,
    customise: Callable[[web.Application], None] | None = None,
    link: DeviceLink | None = None,
    command_timeout: float = 10.0,
    mirror: ResourceMirror | None = None,
    file_store: FileStore | None = None,
    classifications: ClassificationCache | None = None,
    auth: AuthSettings | None = None,
    stream: StreamSettings | None = None,
    max_artifact_bytes: int = DataSettings.max_artifact_bytes,
    jobs: JobSettings | None = None,
) -> AsyncIterator[ApiClient]:
    files_dir = tempfile.TemporaryDirectory(prefix="edgefleet-api-files-")
    app = create_app(
        store,
        settings,
        token,
        link,
        command_timeout,
        mirror,
        file_store=file_store or LocalFileStore(files_dir.name),
        classifications=classifications,
        auth_settings=auth or TEST_AUTH,
        stream_settings=stream or TEST_STREAM,
        job_settings=jobs,
        max_artifact_bytes=max_artifact_bytes,
    )
    if customise:
        customise(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            yield ApiClient(f"http://127.0.0.1:{port}", session, token)
    finally:
        await runner.cleanup()
        files_dir.cleanup()
