"""What every request goes through: auth, the envelope, request ids, metrics."""

from __future__ import annotations

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from edgefleet.controller.store import Store
from tests.api_client import ApiClient, running_api


@pytest.mark.parametrize("token", [None, "wrong-token", "", "test-token-01234567890"])
async def test_requests_without_the_right_token_are_401(api: ApiClient, token: str | None) -> None:
    answer = await api.get("/api/v1/devices", token=token)
    answer.failure(401, "AUTH_ERROR")
    answer = await api.post("/api/v1/groups", {"name": "x"}, token=token)
    answer.failure(401, "AUTH_ERROR")
    assert (await api.get("/api/v1/groups")).data["total"] == 0


async def test_other_auth_schemes_are_401(api: ApiClient) -> None:
    answer = await api.get(
        "/api/v1/devices", token=None, headers={"Authorization": f"Basic {api.token}"}
    )
    answer.failure(401, "AUTH_ERROR")


@pytest.mark.parametrize(
    "path", ["/api/v1/health", "/api/v1/ready", "/metrics", "/api/v1/openapi.json", "/api/docs"]
)
async def test_public_routes_need_no_token(api: ApiClient, path: str) -> None:
    async with api.session.get(api.base_url + path) as response:
        assert response.status == 200


async def test_unknown_route_and_method_use_the_envelope(api: ApiClient) -> None:
    (await api.get("/api/v1/nothing-here")).failure(404, "GENERAL_ERROR")
    (await api.request("POST", "/api/v1/stats")).failure(405, "GENERAL_ERROR")


async def test_request_id_is_echoed_or_made(api: ApiClient) -> None:
    given = await api.get("/api/v1/health", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"
    made = await api.get("/api/v1/health", headers={"X-Request-ID": "bad id\twith tab"})
    assert made.headers["X-Request-ID"] != "bad id\twith tab"
    assert len(made.headers["X-Request-ID"]) == 16


async def test_internal_error_is_500_without_trace_and_logged_with_request_id(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    def add_broken_route(app: web.Application) -> None:
        app.router.add_get("/api/v1/broken", broken)

    async with running_api(store, "t", customise=add_broken_route) as api:
        answer = await api.get("/api/v1/broken", headers={"X-Request-ID": "req-500"})
    message = answer.failure(500, "INNER_ERROR")
    assert "secret internals" not in message and "Traceback" not in message
    assert "req-500" in message
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged and logged[0].request_id == "req-500"  # type: ignore[attr-defined]
    assert "secret internals" in caplog.text


async def test_metrics_count_requests_by_route_and_status(api: ApiClient) -> None:
    await api.register()
    await api.get("/api/v1/devices/1")
    async with api.session.get(api.base_url + "/metrics") as response:
        text = await response.text()
    samples = {
        (s.name, s.labels.get("route"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edgefleet_api_requests_total", "/api/v1/devices", "201")] == 1
    assert samples[("edgefleet_api_requests_total", "/api/v1/devices/{device_id}", "404")] == 1
    count = ("edgefleet_api_request_duration_seconds_count", "/api/v1/devices", None)
    assert samples[count] == 1


async def test_metrics_count_devices_by_state_from_the_database(api: ApiClient) -> None:
    """Offline devices are held by no southbound: only the database can count them."""
    await api.register()
    await api.register()
    async with api.session.get(api.base_url + "/metrics") as response:
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    by_state = {s.labels["state"]: s.value for s in families["edgefleet_devices"].samples}
    assert by_state == {"online": 0, "unknown": 0, "offline": 2}
    assert "process_cpu_seconds" in families
