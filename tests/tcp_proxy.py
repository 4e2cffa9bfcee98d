"""A TCP relay the tests can cut and restore, to make a real database "go away",
or to break one HTTP download in the middle, as a 4G link does."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.requests: list[bytes] = []
        """The first bytes each connection sent (an HTTP request's head)."""
        self._cut: tuple[bytes, int] | None = None

    async def start(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a server that died."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    def freeze(self) -> None:
        """Keep every connection open but pass no more bytes: a silent network."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut_next(self, request_prefix: bytes, after_bytes: int) -> None:
        """The next connection whose request starts with ``request_prefix`` is cut
        once ``after_bytes`` of its answer (head and body) have gone through."""
        self._cut = (request_prefix, after_bytes)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}
        answer_limit: list[int] = []  # set from the request, read by the answer's pump
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer, request=answer_limit)),
            asyncio.create_task(self._pump(upstream_reader, writer, limit=answer_limit)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._tasks.difference_update(pumps)
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: list[int] | None = None,
        limit: list[int] | None = None,
    ) -> None:
        """Copy until either side closes. ``request``: this is the client's side; its
        first bytes are recorded and may set the answer's ``limit`` (``cut_next``)."""
        first = True
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if request is not None and first:
                    self.requests.append(data)
                    if self._cut is not None and data.startswith(self._cut[0]):
                        request.append(self._cut[1])
                        self._cut = None
                first = False
                if limit:
                    data = data[: limit[0]]
                    limit[0] -= len(data)
                writer.write(data)
                await writer.drain()
                if limit and limit[0] == 0:
                    break
        writer.transport.abort()
