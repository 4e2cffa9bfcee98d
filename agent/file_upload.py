"""Files to and from the cloud over HTTP on the device port: check first with
``HEAD /files/{sha256}``, send with ``PUT`` only what is missing (section 7);
download an update with ``GET``, resuming with ``Range`` (section 9).

The standard library's ``http.client`` (the agent adds no HTTP dependency to a
device), one connection per call, in a worker thread; the body streams from the
queued file, never read whole. The URL is the WebSocket's, ``ws`` → ``http``
and ``wss`` → ``https`` with the same TLS settings.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from edgefleet.agent.record_queue import QueuedFile

TIMEOUT = 60.0
DOWNLOAD_CHUNK = 64 * 1024


class FileUploadFailed(Exception):
    """The cloud did not take the file now (network, credentials, server busy)."""


class FileUploader:
    def __init__(
        self,
        server: str,
        authorization: Callable[[bool], str],
        tls: Callable[[], ssl.SSLContext | None],
    ) -> None:
        """``authorization(password)`` gives the header value at each call: the
        session token, or with ``password`` (or without a token) HTTP Basic. A token
        refused (it expired while the session lasted) is followed by Basic once."""
        parts = urlsplit(server)
        self._secure = parts.scheme == "wss"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._secure else 80)
        self._authorization = authorization
        self._tls = tls

    def _connection(self) -> http.client.HTTPConnection:
        if self._secure:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=TIMEOUT, context=self._tls()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT)

    def has(self, sha256: str) -> bool:
        """Whether the cloud has the file (blocking)."""
        status = self._request("HEAD", sha256)
        if status in (200, 404):
            return status == 200
        raise FileUploadFailed(f"HEAD /files/{sha256[:12]}…: HTTP {status}")

    def send(self, file: QueuedFile) -> None:
        """PUT the file (blocking); the cloud checks its digest."""
        status = self._request("PUT", file.sha256, file)
        if status not in (200, 201):
            raise FileUploadFailed(f"PUT /files/{file.sha256[:12]}…: HTTP {status}")

    def download(self, url: str, target: Path) -> None:
        """Fetch ``url`` into ``target`` (blocking): the rest of it, with ``Range``,
        when ``target`` already holds a beginning. Raises ``FileUploadFailed`` when
        the cloud refuses or the connection breaks (what arrived stays in ``target``)."""
        status = self._authorised(lambda header: self._fetch(url, target, header))
        if status not in (200, 206):
            raise FileUploadFailed(f"GET {url}: HTTP {status}")

    def _fetch(self, url: str, target: Path, authorization: str) -> int:
        have = target.stat().st_size if target.exists() else 0
        headers = {"Authorization": authorization, "User-Agent": "edgefleet-agent"}
        if have:
            headers["Range"] = f"bytes={have}-"
        connection = self._connection()
        try:
            connection.request("GET", url, headers=headers)
            response = connection.getresponse()
            if response.status not in (200, 206):
                response.read()
                if response.status == 416:  # what we hold is no beginning of it: start over
                    target.unlink(missing_ok=True)
                return response.status
            # 200: the server sent the whole file (it ignored the range): start over.
            with target.open("ab" if response.status == 206 else "wb") as out:
                while chunk := response.read(DOWNLOAD_CHUNK):
                    out.write(chunk)
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            raise FileUploadFailed(f"GET {url}: {exc}") from exc
        finally:
            connection.close()

    def _request(self, method: str, sha256: str, file: QueuedFile | None = None) -> int:
        return self._authorised(lambda header: self._exchange(method, sha256, file, header))

    def _authorised(self, exchange: Callable[[str], int]) -> int:
        """Run ``exchange`` with the token, and once more with Basic if it was refused."""
        header = self._authorization(False)
        status = exchange(header)
        if status == 401 and header.startswith("Bearer "):
            status = exchange(self._authorization(True))
        return status

    def _exchange(
        self, method: str, sha256: str, file: QueuedFile | None, authorization: str
    ) -> int:
        headers = {"Authorization": authorization, "User-Agent": "edgefleet-agent"}
        connection = self._connection()
        try:
            if file is None:
                connection.request(method, f"/files/{sha256}", headers=headers)
            else:
                headers |= {"Content-Type": file.content_type, "Content-Length": str(file.size)}
                with file.path.open("rb") as body:
                    connection.request(method, f"/files/{sha256}", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            raise FileUploadFailed(f"{method} /files/{sha256[:12]}…: {exc}") from exc
        finally:
            connection.close()


def basic(device_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{device_id}:{password}".encode()).decode()
