"""Image classification for business apps (the image-classifier seed's client flow):
check the cache by SHA-256 first and upload the image only on a miss; results
come from the cache or from one model call, which is then cached; statistics by
day. Failures are never cached.

With no ``--classifier-url`` the routes answer 409 ``ANALYSIS_OFF``: the request is
fine, the server is not set up for it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from aiohttp import BodyPartReader, web

from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.analysis.classifier import ClassifierFailed
from edgefleet.controller.api.context import context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType, bad_request
from edgefleet.controller.api.schemas import (
    CacheCheck,
    CacheCheckBody,
    ClassifyResult,
    ClassifyStats,
    ClassifyStatsQuery,
)

TAG = "classify"
PERMISSION = "records:read"
"""Classifying images is reading data; a role that may read devices' records may
classify its own images too."""
IMAGE_MEDIA = ("image/jpeg", "image/png", "image/webp", "application/octet-stream")


def _classifier(request: web.Request) -> ClassificationCache:
    cache = context(request).classify
    if cache is None:
        raise ApiError(
            409, ErrorType.ANALYSIS_OFF, "analysis is off: no --classifier-url is configured"
        )
    return cache


def _caller(request: web.Request) -> str:
    given = request.headers.get("X-Client-Id", "")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return request.remote or "?"


@endpoints.post(
    "/classify/check-cache",
    summary="The cached result for an image's SHA-256, or a miss (then upload it)",
    tag=TAG,
    errors=(409,),
    permission=PERMISSION,
)
async def check_cache(request: web.Request, body: CacheCheckBody) -> CacheCheck:
    cache = _classifier(request)
    row = await cache.cached(body.hash)
    if row is None:
        return CacheCheck(hash=body.hash, hit=False, result=None)
    await context(request).store.analysis.log_request(
        _caller(request), body.hash, True, row["category"]
    )
    return CacheCheck(hash=body.hash, hit=True, result=ClassifyResult.of(row, cached=True))


@endpoints.post(
    "/classify",
    summary="Classify an image (raw body or multipart field `image`): cached or fresh",
    tag=TAG,
    errors=(409, 413, 502),
    body_media=(*IMAGE_MEDIA, "multipart/form-data"),
    permission=PERMISSION,
)
async def classify(request: web.Request) -> ClassifyResult:
    cache = _classifier(request)
    image, content_type = await _image(request, context(request).max_file_bytes)
    digest = hashlib.sha256(image).hexdigest()
    try:
        row, cached = await cache.classify(digest, image, content_type)
    except ClassifierFailed as exc:
        raise ApiError(502, ErrorType.CLASSIFIER_ERROR, str(exc)) from exc
    await context(request).store.analysis.log_request(
        _caller(request), digest, cached, row["category"]
    )
    return ClassifyResult.of(row, cached=cached)


async def _image(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The uploaded image and its media type, at most ``limit`` bytes."""
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and (part.name == "image" or part.filename):
                media = part.headers.get("Content-Type", "image/jpeg")
                return await _bounded(part.read_chunk, limit), media
        raise bad_request("body: multipart field 'image' required")
    if request.content_type not in IMAGE_MEDIA:
        raise bad_request(f"body: an image is required, not {request.content_type!r}")
    media = request.content_type if request.content_type.startswith("image/") else "image/jpeg"
    return await _bounded(request.content.read, limit), media


async def _bounded(read: object, limit: int) -> bytes:
    data = bytearray()
    while chunk := await read(64 * 1024):  # type: ignore[operator]
        data += chunk
        if len(data) > limit:
            raise ApiError(413, ErrorType.GENERAL_ERROR, f"body: the image is over {limit} bytes")
    if not data:
        raise bad_request("body: the image is empty")
    return bytes(data)


@endpoints.get(
    "/classify/stats",
    summary="Requests, cache hits and hit rate, callers, categories, model calls saved",
    tag=TAG,
    permission=PERMISSION,
)
async def classify_stats(request: web.Request, query: ClassifyStatsQuery) -> ClassifyStats:
    day = query.day or datetime.now(UTC).date()
    return ClassifyStats(**await context(request).store.analysis.request_stats(day))
