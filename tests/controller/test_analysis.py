"""Image classification: the real client against a local OpenAI-compatible server
(``tests/vision_server.py``), the cache by SHA-256, the classify API, and the
background worker analysing devices' records; on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgefleet.agent import protocol
from edgefleet.controller.analysis.cache import ClassificationCache
from edgefleet.controller.analysis.classifier import Classifier
from edgefleet.controller.analysis.worker import AnalysisWorker
from edgefleet.controller.settings import DEFAULT_PROMPT, DataSettings
from edgefleet.controller.store import Store
from tests.api_client import ApiClient, running_api
from tests.conftest import API_TOKEN, eventually
from tests.southbound.conftest import FAST, Fleet, recv_json, running_fleet
from tests.vision_server import VisionServer, vision_server

CATEGORIES = DataSettings().categories
PHOTO = b"\x89PNG\r\n\x1a\n" + os.urandom(1500)
OTHER_PHOTO = b"\x89PNG\r\n\x1a\n" + os.urandom(1500)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def vision() -> AsyncIterator[VisionServer]:
    async with vision_server() as server:
        yield server


@pytest.fixture
async def classifier(vision: VisionServer) -> AsyncIterator[Classifier]:
    client = Classifier(vision.url, "qwen-vl-plus", CATEGORIES, DEFAULT_PROMPT, "sk-test", 5.0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def classify_api(store: Store, classifier: Classifier) -> AsyncIterator[ApiClient]:
    cache = ClassificationCache(store, classifier)
    async with running_api(store, API_TOKEN, classifications=cache) as client:
        yield client


async def post_image(api: ApiClient, image: bytes, **headers: str) -> Any:
    return await api.post(
        "/api/v1/classify", data=image, headers={"Content-Type": "image/png", **headers}
    )


async def test_check_first_then_classify_once_then_from_the_cache(
    classify_api: ApiClient, vision: VisionServer
) -> None:
    miss = await classify_api.post("/api/v1/classify/check-cache", {"hash": sha(PHOTO)})
    assert miss.data == {"hash": sha(PHOTO), "hit": False, "result": None}
    fresh = (await post_image(classify_api, PHOTO, **{"X-Client-Id": "album-app"})).data
    assert (fresh["hash"], fresh["category"], fresh["cached"]) == (sha(PHOTO), "pets", False)
    assert (fresh["confidence"], fresh["model"]) == (0.91, "qwen-vl-plus")
    request = vision.requests[0]
    assert request["model"] == "qwen-vl-plus"
    assert "social_activities, pets, single_person" in request["messages"][0]["content"]
    assert request["messages"][1]["content"][0]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
    hit = (await classify_api.post("/api/v1/classify/check-cache", {"hash": sha(PHOTO)})).data
    assert hit["hit"] is True and hit["result"]["cached"] is True
    again = (await post_image(classify_api, PHOTO)).data
    assert again["cached"] is True and again["category"] == "pets"
    assert vision.images == [sha(PHOTO)]  # the model saw it once
    form = aiohttp.FormData()
    form.add_field("image", OTHER_PHOTO, filename="b.png", content_type="image/png")
    vision.category = "foods"
    multipart = await classify_api.post("/api/v1/classify", data=form)
    assert multipart.data["category"] == "foods" and multipart.data["cached"] is False
    stats = (await classify_api.get("/api/v1/classify/stats")).data
    assert (stats["requests"], stats["cache_hits"], stats["model_calls_saved"]) == (4, 2, 2)
    assert stats["hit_rate"] == 0.5 and stats["callers"] == 2
    assert stats["categories"] == {"pets": 3, "foods": 1}
    bad_day = await classify_api.get("/api/v1/classify/stats", params={"day": "0"})
    bad_day.failure(400, "GENERAL_ERROR")


async def test_a_failed_call_is_never_cached(classify_api: ApiClient, vision: VisionServer) -> None:
    vision.failures = 1
    failed = await post_image(classify_api, PHOTO)
    failed.failure(502, "CLASSIFIER_ERROR")
    miss = await classify_api.post("/api/v1/classify/check-cache", {"hash": sha(PHOTO)})
    assert miss.data["hit"] is False
    retried = (await post_image(classify_api, PHOTO)).data
    assert retried["cached"] is False
    assert vision.images == [sha(PHOTO), sha(PHOTO)]  # tried again, for real


async def test_two_requests_for_one_new_image_make_one_model_call(
    classify_api: ApiClient, vision: VisionServer
) -> None:
    vision.delay = 0.2
    first, second = await asyncio.gather(
        post_image(classify_api, PHOTO), post_image(classify_api, PHOTO)
    )
    assert sorted([first.data["cached"], second.data["cached"]]) == [False, True]
    assert len(vision.requests) == 1


async def test_without_a_classifier_analysis_is_off_and_says_so(store: Store) -> None:
    async with running_api(store, API_TOKEN) as api:
        answer = await api.post("/api/v1/classify/check-cache", {"hash": sha(PHOTO)})
        message = answer.failure(409, "ANALYSIS_OFF")
        assert "classifier" in message
        (await post_image(api, PHOTO)).failure(409, "ANALYSIS_OFF")


async def analysed(fleet: Fleet, record_id: str, status: str = "analysed") -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        items = (await fleet.api.get("/api/v1/records", params={"status": status})).data["items"]
        found = [item for item in items if item["record_id"] == record_id]
        return found[0] if found else None

    row = await eventually(done)
    return (await fleet.api.get(f"/api/v1/records/{row['id']}")).data


async def test_the_worker_classifies_records_images_once_and_retries_failures(
    store: Store, classifier: Classifier, vision: VisionServer, tmp_path: Path
) -> None:
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register()
        ws, answer = await fleet.login(
            device,
            device_id=device["device_id"],
            password=device["password"],
            extensions=["data"],
        )
        token = answer["data"]["token"]

        async def put(image: bytes) -> None:
            async with fleet.api.session.put(
                f"{fleet.http_url}/files/{sha(image)}",
                data=image,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
            ) as r:
                assert r.status == 201

        def photo(record_id: str, image: bytes) -> dict[str, Any]:
            return {"record_id": record_id, "kind": "photo", "at": "2025-12-01T09:47:24Z",
                    "payload": {}, "files": [sha(image)]}  # fmt: skip

        await put(PHOTO)
        vision.failures = 1  # the first attempt fails, and is retried
        records = [photo("p-1", PHOTO), photo("p-2", PHOTO), photo("p-3", OTHER_PHOTO)]
        records.append({**photo("n-1", PHOTO), "kind": "note"})  # not an analysed kind
        await ws.send(protocol.upload_data(records))
        assert (await recv_json(ws))["data"]["missing_files"] == [sha(OTHER_PHOTO)]
        results: list[str] = []
        worker = AnalysisWorker(
            store,
            fleet.southbound.files,
            ClassificationCache(store, classifier),
            ("photo",),
            concurrency=1,
            max_attempts=5,
            retry_delay=0.05,
            count=results.append,
        )
        running = asyncio.create_task(worker.run())
        try:
            first = await analysed(fleet, "p-1")
            assert first["files"][0]["classification"]["category"] == "pets"
            assert first["analysis"] is None  # the failure was retried away
            await analysed(fleet, "p-2")
            assert vision.images == [sha(PHOTO), sha(PHOTO)]  # the failure, then one success
            vision.category = "travel_scenery"
            await put(OTHER_PHOTO)  # p-3 waited for its file
            third = await analysed(fleet, "p-3")
            assert third["files"][0]["classification"]["category"] == "travel_scenery"
            assert vision.images == [sha(PHOTO), sha(PHOTO), sha(OTHER_PHOTO)]
            await ws.send(protocol.upload_data([photo("p-4", PHOTO)]))
            await recv_json(ws)
            await analysed(fleet, "p-4")
            assert len(vision.requests) == 3  # an identical image never reaches the model
            assert await store.analysis.backlog(("photo",)) == 0
            assert "retried" in results and results.count("analysed") == 4
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await ws.close()
        notes = (await fleet.api.get("/api/v1/records", params={"kind": "note"})).data
        assert notes["items"][0]["status"] == "received"


async def test_a_record_whose_analysis_keeps_failing_ends_failed(
    store: Store, classifier: Classifier, vision: VisionServer
) -> None:
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register()
        ws, _ = await fleet.login(
            device, device_id=device["device_id"], password=device["password"], extensions=["data"]
        )
        record = {"record_id": "p-9", "kind": "photo", "at": "2025-12-01T09:47:24Z",
                  "payload": {}, "files": [sha(PHOTO)]}  # fmt: skip
        await ws.send(protocol.upload_data([record]))
        await recv_json(ws)  # its file never comes
        worker = AnalysisWorker(
            store,
            fleet.southbound.files,
            ClassificationCache(store, classifier),
            ("photo",),
            max_attempts=3,
            retry_delay=0.02,
        )
        running = asyncio.create_task(worker.run())
        try:
            failed = await analysed(fleet, "p-9", status="failed")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await ws.close()
        assert failed["analysis"]["attempts"] == 3
        assert "not been uploaded" in failed["analysis"]["last_error"]
        assert vision.requests == []
