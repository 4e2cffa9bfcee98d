"""A stand-in for an OpenAI-compatible vision endpoint: a real aiohttp server on
127.0.0.1 that speaks ``POST /v1/chat/completions`` with the same request and
answer JSON, and lets the test choose each answer (a category, a failure, a
delay) and see each request. The classifier under test is the real client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class VisionServer:
    url: str = ""
    category: str = "pets"
    confidence: float = 0.91
    failures: int = 0
    """The next this many calls answer 500."""
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images(self) -> list[str]:
        """SHA-256 of each image the model was sent, in order."""
        digests = []
        for body in self.requests:
            for part in body["messages"][1]["content"]:
                if part.get("type") == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    digests.append(hashlib.sha256(base64.b64decode(data)).hexdigest())
        return digests

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures > 0:
            self.failures -= 1
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        content = json.dumps({"category": self.category, "confidence": self.confidence})
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"```json\n{content}\n```"},
                        "finish_reason": "stop",
                    }
                ],
            }
        )


@asynccontextmanager
async def vision_server() -> AsyncIterator[VisionServer]:
    server = VisionServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()
