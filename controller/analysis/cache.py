"""Classifying an image by its SHA-256: the cache first, the model only on a miss.

The cache is the ``classifications`` table: the same image — from any device or
any business app — never reaches the model twice. Only a success is cached; a
failed call leaves nothing behind, so the next request tries the model again.
Two requests for the same new image at once make one call (a lock per digest).
"""

from __future__ import annotations

import asyncio
from typing import Any

from edgefleet.controller.analysis.classifier import Classifier
from edgefleet.controller.store import Store


class ClassificationCache:
    def __init__(self, store: Store, classifier: Classifier, counter: Any = None) -> None:
        """``counter``: ``edgefleet_classifications_total`` (labels: source)."""
        self._store = store
        self.classifier = classifier
        self._counter = counter
        self._calling: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def cached(self, sha256: str) -> dict[str, Any] | None:
        return await self._store.analysis.cached(sha256)

    async def classify(
        self, sha256: str, image: bytes, content_type: str
    ) -> tuple[dict[str, Any], bool]:
        """(the result, whether the model was spared: a cache hit, or a call for the
        same image already under way); raises ``ClassifierFailed``."""
        found = await self._store.analysis.cached(sha256)
        if found is not None:
            self._count("cache")
            return found, True
        calling = self._calling.get(sha256)
        if calling is not None:
            self._count("cache")
            return await asyncio.shield(calling), True
        result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calling[sha256] = result
        try:
            verdict = await self.classifier.classify(image, content_type)
            row = await self._store.analysis.remember(
                sha256, verdict.category, verdict.confidence, verdict.model
            )
        except asyncio.CancelledError:
            result.cancel()
            raise
        except Exception as exc:
            result.set_exception(exc)
            result.exception()  # those waiting get it; nobody waiting is no warning
            raise
        else:
            result.set_result(row)
            self._count("model")
            return row, False
        finally:
            del self._calling[sha256]

    def _count(self, source: str) -> None:
        if self._counter is not None:
            self._counter.labels(source).inc()
