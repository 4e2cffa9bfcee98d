"""Software artifacts: upload (raw body or multipart), list, get, delete
(``controller.artifacts`` does the writing). Sending one to a device is the
``update`` command (``commands.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from edgefleet.controller.api.context import caller, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import ApiError, ErrorType, bad_request
from edgefleet.controller.api.schemas import (
    Artifact,
    ArtifactListQuery,
    ArtifactPath,
    ArtifactUploadQuery,
    Deleted,
    Page,
)
from edgefleet.controller.store.blobs import FileTooLarge

TAG = "updates"
READ = "devices:read"
"""Whoever may read devices may see what could be installed on them."""
WRITE = "artifacts:write"
RAW_MEDIA = "application/octet-stream"
CHUNK = 256 * 1024


@endpoints.post(
    "/artifacts",
    summary="Upload a software artifact: raw body (or multipart field `file`), ?name&version",
    tag=TAG,
    status=201,
    errors=(409, 413),
    body_media=(RAW_MEDIA, "multipart/form-data"),
    file_field="file",
    permission=WRITE,
)
async def upload_artifact(request: web.Request, query: ArtifactUploadQuery) -> Artifact:
    if request.content_type == "multipart/form-data":
        try:
            part = await _file_part(await request.multipart())
        except (HttpProcessingError, ValueError) as exc:
            raise bad_request(f"body: malformed multipart: {exc}") from None
        content_type = part.headers.get("Content-Type", RAW_MEDIA)
        chunks = _chunks(part.read_chunk)
    elif request.content_type == RAW_MEDIA:
        content_type = RAW_MEDIA
        chunks = request.content.iter_chunked(CHUNK)
    else:
        raise bad_request(
            f"body: Content-Type must be {RAW_MEDIA} or multipart/form-data, "
            f"not {request.content_type!r}"
        )
    writes = context(request).artifacts
    try:
        row = await writes.upload(
            caller(request), query.name, query.version, query.type_list(), content_type, chunks
        )
    except (HttpProcessingError, ValueError) as exc:  # a multipart body that breaks off
        raise bad_request(f"body: malformed multipart: {exc}") from None
    except FileTooLarge:
        raise ApiError(
            413, ErrorType.GENERAL_ERROR, f"body: the artifact is over {writes.max_bytes} bytes"
        ) from None
    return Artifact(**row)


async def _file_part(reader: MultipartReader) -> BodyPartReader:
    """The ``file`` part (or the first part with a file name), unread: it streams
    straight to the store."""
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise bad_request("body: nested multipart is not taken")
        if part.name == "file" or part.filename:
            return part
    raise bad_request("body: multipart field 'file' required")


async def _chunks(read: object) -> AsyncIterator[bytes]:
    while chunk := await read(CHUNK):  # type: ignore[operator]
        yield chunk


@endpoints.get("/artifacts", summary="Software artifacts, newest first", tag=TAG, permission=READ)
async def list_artifacts(request: web.Request, query: ArtifactListQuery) -> Page[Artifact]:
    rows, total = await context(request).store.artifacts.list(
        query.name, query.page, query.per_page
    )
    return Page[Artifact].of(rows, total, query)


@endpoints.get(
    "/artifacts/{artifact_id}",
    summary="One software artifact",
    tag=TAG,
    errors=(404,),
    permission=READ,
)
async def get_artifact(request: web.Request, path: ArtifactPath) -> Artifact:
    return Artifact(**await context(request).store.artifacts.get(path.artifact_id))


@endpoints.delete(
    "/artifacts/{artifact_id}",
    summary="Delete an artifact (its file too, unless a record or another artifact names it)",
    tag=TAG,
    errors=(404,),
    permission=WRITE,
)
async def delete_artifact(request: web.Request, path: ArtifactPath) -> Deleted:
    await context(request).artifacts.delete(caller(request), path.artifact_id)
    return Deleted()
