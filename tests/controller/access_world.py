"""A small fleet with two groups, people with different roles, and a request for
every operation of the OpenAPI document: what the access tests walk."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from edgefleet.controller.api.app import openapi_document
from tests.api_client import USER_PASSWORD, ApiClient


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    permission: str | None
    """None: public."""

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


def operations() -> list[Operation]:
    document = openapi_document()
    return [
        Operation(method.upper(), path, op["operationId"], op.get("x-permission"))
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


@dataclass
class World:
    """Group A holds device a, group B device b; a user, a role and a key exist."""

    api: ApiClient
    group_a: str = ""
    group_b: str = ""
    device_a: str = ""
    device_b: str = ""
    user_id: str = ""
    role_id: str = ""
    key_id: str = ""
    command_a: str = ""
    command_b: str = ""
    refresh_token: str = ""
    artifact_id: str = ""
    job_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def build(cls, api: ApiClient) -> World:
        world = cls(api)
        tag = uuid.uuid4().hex[:6]
        world.group_a = (await api.create_group(f"A-{tag}"))["group_id"]
        world.group_b = (await api.create_group(f"B-{tag}"))["group_id"]
        world.device_a = (await api.register(name="a"))["device_id"]
        world.device_b = (await api.register(name="b"))["device_id"]
        await api.put(f"/api/v1/groups/{world.group_a}/devices/{world.device_a}")
        await api.put(f"/api/v1/groups/{world.group_b}/devices/{world.device_b}")
        world.command_a, world.command_b = [
            (
                await api.post(
                    f"/api/v1/devices/{device}/commands",
                    {"order": "reboot_camera", "queue": {"ttl": 3600}},
                )
            ).data["command_id"]
            for device in (world.device_a, world.device_b)
        ]
        made = await api.post(
            "/api/v1/users",
            {"username": f"someone-{tag}", "password": USER_PASSWORD, "roles": []},
        )
        world.user_id = made.data["user_id"]
        role = await api.post(
            "/api/v1/roles", {"code": f"r-{tag}", "name": "R", "permissions": ["devices:read"]}
        )
        world.role_id = role.data["role_id"]
        key = await api.post("/api/v1/api-keys", {"name": "k", "user_id": world.user_id})
        world.key_id = key.data["key_id"]
        login = await api.post(
            "/api/v1/auth/login",
            {"username": f"someone-{tag}", "password": USER_PASSWORD},
            token=None,
        )
        world.refresh_token = login.data["refresh_token"]
        artifact = await api.post(
            f"/api/v1/artifacts?name=fw-{tag}&version=1.0",
            data=b"firmware",
            headers={"Content-Type": "application/octet-stream"},
        )
        world.artifact_id = artifact.data["artifact_id"]
        world.job_id = (await api.post("/api/v1/jobs", world.job_body())).data["job_id"]
        return world

    def job_body(self) -> dict[str, Any]:
        """A job to device a whose deadline is past: it ends without sending anything
        (the stream tests' events stay theirs)."""
        return {
            "name": "j",
            "target": {"device_ids": [self.device_a]},
            "action": {"command": {"order": "restart"}},
            "rollout": {"max_per_minute": 1},
            "deadline": "2020-01-01T00:00:00Z",
        }

    def path(self, operation: Operation, **ids: str) -> str:
        """The operation's path with the world's ids (or those given)."""
        values = {
            "device_id": self.device_a,
            "group_id": self.group_a,
            "user_id": self.user_id,
            "role_id": self.role_id,
            "key_id": self.key_id,
            "command_id": self.command_a,
            "artifact_id": self.artifact_id,
            "job_id": self.job_id,
            "id": "1",  # a record's id
            "sha256": "0" * 64,  # a file's digest
            **ids,
        }
        path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], operation.path)
        if operation.operation_id == "upload_artifact":
            path += f"?name=fw-{uuid.uuid4().hex[:8]}&version=2.0"
        return path

    def body(self, operation: Operation) -> Any:
        """A valid body for the operation (None: it takes none)."""
        tag = uuid.uuid4().hex[:8]
        bodies: dict[str, Any] = {
            "register_device": {"name": "x", "hardware_sn": f"SN-{tag}", "hardware_model": "M"},
            "update_device": {"name": "renamed"},
            "replace_device_groups": {"group_ids": [self.group_a]},
            "send_device_command": {"order": "restart", "timeout": 0.2},
            "send_group_command": {"order": "restart", "timeout": 0.2},
            "create_group": {"name": f"g-{tag}"},
            "update_group": {"description": "changed"},
            "login": {"username": "nobody", "password": "wrong"},
            "refresh": {"refresh_token": self.refresh_token},
            "logout": {},
            "register": {"username": f"new-{tag}", "password": "long enough password"},
            "update_me": {"email": "me@example.com"},
            "create_user": {"username": f"u-{tag}", "password": USER_PASSWORD},
            "update_user": {"email": "user@example.com"},
            "set_user_roles": [{"role": "viewer", "group_id": None}],
            "create_role": {"code": f"c-{tag}", "name": "C", "permissions": ["groups:read"]},
            "update_role": {"description": "changed"},
            "create_api_key": {"name": f"k-{tag}"},
            "put_device_config": {"config": {"exposure": 30}},
            "patch_device_config": {"config": {"exposure": 31}},
            "put_group_config": {"config": {"upload": {"images": True}}},
            "patch_group_config": {"config": {"upload": {"images": False}}},
            "create_job": self.job_body(),
        }
        return bodies.get(operation.operation_id)

    async def call(
        self,
        operation: Operation,
        caller: ApiClient | None = None,
        headers: dict[str, str] | None = None,
        **ids: str,
    ) -> Any:
        caller = caller or self.api
        body = self.body(operation)
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if operation.operation_id == "import_devices":  # a file, not JSON
            kwargs["headers"] = {**kwargs["headers"], "Content-Type": "text/csv"}
            row = f"x,SN-{uuid.uuid4().hex[:8]},M"
            kwargs["data"] = f"name,hardware_sn,hardware_model\n{row}\n".encode()
        elif operation.operation_id == "upload_artifact":  # a raw body
            kwargs["headers"] = {**kwargs["headers"], "Content-Type": "application/octet-stream"}
            kwargs["data"] = b"firmware 2"
        elif body is not None or operation.method in ("POST", "PUT", "PATCH"):
            kwargs["json"] = body if body is not None else {}
        return await caller.request(operation.method, self.path(operation, **ids), **kwargs)
