"""The few Kubernetes API calls edgefleet makes, on kubernetes_asyncio.

Every write is a create, a JSON merge-patch or a delete — never a replace — so
edgefleet never overwrites fields another writer (kubectl, the other component)
set in between.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from edgefleet.controller.kube.resources import GROUP, VERSION, encode_secret
from edgefleet.controller.kube.status import ResourceGone

MERGE_PATCH = "application/merge-patch+json"
T = TypeVar("T")


class KubeError(Exception):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class KubeConflict(KubeError):
    pass


class KubeNotFound(KubeError):
    pass


REQUEST_TIMEOUT = 10.0


async def _call(request: Awaitable[T]) -> T:
    """One API request, its failures as ``KubeError``: an HTTP error keeps its
    status (409 and 404 have their own class), no answer at all is status 0."""
    try:
        return await request
    except ApiException as exc:
        kind = {409: KubeConflict, 404: KubeNotFound}.get(exc.status or 0, KubeError)
        raise kind(exc.status or 0, exc.reason or str(exc)) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KubeError(0, f"{type(exc).__name__}: {exc}") from exc


class KubeClient:
    """Custom resources and Secrets in one namespace."""

    def __init__(self, configuration: client.Configuration, namespace: str) -> None:
        self.configuration = configuration
        self.namespace = namespace
        self._api = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)

    @classmethod
    async def connect(cls, kubeconfig: str | None, namespace: str) -> KubeClient:
        """In a pod (no kubeconfig given): the service account. Else the kubeconfig
        file, or ``~/.kube/config``."""
        configuration = client.Configuration()
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        return cls(configuration, namespace)

    async def close(self) -> None:
        await self._api.close()

    def connection_info(self) -> kopf.ConnectionInfo:
        """The same credentials for kopf, so both clients talk to one API server."""
        c = self.configuration
        authorization = (c.api_key or {}).get("authorization") or (c.api_key or {}).get(
            "BearerToken"
        )
        scheme, _, token = (authorization or "").partition(" ")
        return kopf.ConnectionInfo(
            server=c.host,
            ca_path=c.ssl_ca_cert,
            insecure=not c.verify_ssl,
            scheme=scheme or None,
            token=token or None,
            certificate_path=c.cert_file,
            private_key_path=c.key_file,
            default_namespace=self.namespace,
        )

    # --- custom resources ------------------------------------------------------------

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return await _call(
            self._custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, body, _request_timeout=REQUEST_TIMEOUT
            )
        )

    async def list(self, plural: str) -> list[dict[str, Any]]:
        answer = await _call(
            self._custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, _request_timeout=REQUEST_TIMEOUT
            )
        )
        return list(answer.get("items") or [])

    async def get(self, plural: str, name: str) -> dict[str, Any]:
        return await _call(
            self._custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        )

    async def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await _call(
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
                patch,
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    async def patch_status(
        self, plural: str, name: str, status: dict[str, Any], namespace: str | None = None
    ) -> None:
        await _call(
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace or self.namespace,
                plural,
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    async def delete(self, plural: str, name: str) -> None:
        await _call(
            self._custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        )

    async def delete_secret(self, name: str) -> None:
        await _call(
            self._core.delete_namespaced_secret(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        )

    # --- secrets --------------------------------------------------------------------------

    async def read_secret(self, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; ``None`` when there is no such Secret."""
        try:
            secret = await _call(
                self._core.read_namespaced_secret(
                    name, self.namespace, _request_timeout=REQUEST_TIMEOUT
                )
            )
        except KubeNotFound:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    async def create_secret(
        self,
        name: str,
        data: dict[str, str],
        owner: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if labels:
            metadata["labels"] = labels
        if owner:
            metadata["ownerReferences"] = [owner]
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
                "data": encode_secret(data)}  # fmt: skip
        await _call(
            self._core.create_namespaced_secret(
                self.namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
        )

    async def patch_secret(
        self, name: str, data: dict[str, str] | None = None, owner: dict[str, Any] | None = None
    ) -> None:
        patch: dict[str, Any] = {}
        if data:
            patch["data"] = encode_secret(data)
        if owner:
            patch["metadata"] = {"ownerReferences": [owner]}
        await _call(
            self._core.patch_namespaced_secret(
                name,
                self.namespace,
                patch,
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )


class KubeStatusApi:
    """``KubeClient`` as a ``controller.kube.status.StatusApi``: a missing resource
    is ``ResourceGone``."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def patch_status(
        self, plural: str, name: str, status: dict[str, Any], namespace: str | None = None
    ) -> None:
        try:
            await self._kube.patch_status(plural, name, status, namespace)
        except KubeNotFound as exc:
            raise ResourceGone(name) from exc
