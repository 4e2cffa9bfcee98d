"""The built-in classifier: an OpenAI-compatible vision chat-completions endpoint
(Alibaba's qwen-vl models, vLLM, Ollama all speak it).

One call per image: ``POST <url>/chat/completions`` with the settings' prompt
(the category list filled in) as the system message and the image as a data
URL; the model answers ``{"category", "confidence"}`` as JSON, possibly inside
a Markdown code block or a sentence, which is tolerated. A category outside the
list is taken as ``other`` when ``other`` is one, else the call failed. Any
failure — network, HTTP status, an answer that is not the JSON asked for — is a
``ClassifierFailed``, which the callers never cache.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

_OBJECT = re.compile(r"\{.*?\}", re.S)


class ClassifierFailed(Exception):
    """The classifier gave no usable answer; ``str(exc)`` says why."""


@dataclass(frozen=True)
class Verdict:
    category: str
    confidence: float
    model: str


class Classifier:
    def __init__(
        self,
        url: str,
        model: str,
        categories: tuple[str, ...],
        prompt: str,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.categories = categories
        self.prompt = prompt.replace("{categories}", ", ".join(categories))
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def classify(self, image: bytes, content_type: str) -> Verdict:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data_url = f"data:{content_type};base64,{base64.b64encode(image).decode()}"
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": self.prompt},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": "Classify this image."},
                    ],
                },
            ],
        }
        try:
            async with self._session.post(self.url, json=body, headers=self._headers) as answer:
                if answer.status != 200:
                    raise ClassifierFailed(f"HTTP {answer.status} from the classifier")
                reply = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ClassifierFailed(f"classifier call failed: {type(exc).__name__}") from exc
        return self._read(reply)

    def _read(self, reply: Any) -> Verdict:
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ClassifierFailed("the answer has no choices[0].message.content") from exc
        if isinstance(text, list):  # some servers answer in content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        verdict = None
        for candidate in _OBJECT.findall(text if isinstance(text, str) else ""):
            try:
                verdict = json.loads(candidate)
                break
            except ValueError:
                continue
        if not isinstance(verdict, dict) or not isinstance(verdict.get("category"), str):
            raise ClassifierFailed("the answer is not the JSON asked for")
        category = verdict["category"].strip().lower()
        if category not in self.categories:
            if "other" not in self.categories:
                raise ClassifierFailed(f"the answer names no known category: {category[:40]!r}")
            category = "other"
        confidence = verdict.get("confidence")
        if not isinstance(confidence, int | float) or isinstance(confidence, bool):
            confidence = 0.0
        return Verdict(category, min(1.0, max(0.0, float(confidence))), self.model)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
