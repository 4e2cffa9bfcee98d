"""The OpenAPI document: complete, and an API that honours it under fuzzing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from edgefleet.controller.api.app import create_app, openapi_document
from edgefleet.controller.settings import ApiSettings
from edgefleet.controller.store import Store
from tests.server_process import edgefleet_serve

# Pages for people (the docs, the web console and its redirect), not the API.
UNDOCUMENTED = {"/api/v1/openapi.json", "/api/docs", "/metrics", "/", "/console", "/console/"}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = create_app(Store.from_url("sqlite+aiosqlite:///:memory:"), ApiSettings(), "t")
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and isinstance(route.resource, web.Resource)
        and route.resource.canonical not in UNDOCUMENTED
        and not route.resource.canonical.startswith(("/api/docs/static", "/console/"))
    }
    spec = openapi_document()
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert routes == documented
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_the_document_says_a_group_command_can_be_queued() -> None:
    """A client reading the document learns that ``queue`` exists on a group command
    and that it answers 202 with one result per member."""
    operation = openapi_document()["paths"]["/api/v1/groups/{group_id}/commands"]["post"]
    schemas = openapi_document()["components"]["schemas"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    queue = schemas[body.rsplit("/", 1)[1]]["properties"]["queue"]
    assert "one queued command" in queue["description"]
    accepted = operation["responses"]["202"]
    assert "one `command_id` per member" in accepted["description"]
    data = accepted["content"]["application/json"]["schema"]["properties"]["data"]
    assert data["$ref"].endswith("/GroupCommandResults")


def test_fuzzing_the_api_from_its_document_finds_no_server_error(tmp_path: Path) -> None:
    """schemathesis generates requests from the document, valid and invalid, and
    checks every answer: no 5xx, answers match the documented schemas, invalid
    input is refused, valid input accepted."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is part of the dev extra"
    config = tmp_path / "schemathesis.toml"
    # Binding a user to a role that does not exist answers 404 ROLEOP_ERROR: the
    # role is missing, not the user just created, which is what ST302 assumes.
    # A generated If-Match cannot know a document's current version: it is almost
    # always stale, and 412 is the documented answer to a valid request then.
    config.write_text(
        '[[operations]]\ninclude-name = "PUT /api/v1/users/{user_id}/roles"\n'
        "checks.ensure_resource_availability.enabled = false\n"
        '[[operations]]\ninclude-tag = "configuration"\n'
        "checks.positive_data_acceptance.expected-statuses = "
        '["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]\n'
    )
    with edgefleet_serve(tmp_path, "--api-token", "fuzz", "--log-level", "WARNING") as server:
        result = subprocess.run(
            [
                st,
                "--config-file",
                str(config),
                "run",
                f"{server.base_url}/api/v1/openapi.json",
                "--header",
                "Authorization: Bearer fuzz",
                "--max-examples",
                "25",
                "--seed",
                "20261122",
                "--generation-database",
                "none",
                # Emptying a group (DELETE /groups/{id}/devices) leaves the group's
                # device list readable, and empty: that is the contract, not a leak.
                "--exclude-checks",
                "use_after_free",
                # The event stream never ends by itself: every valid call would wait
                # out the request timeout. tests/controller/test_api_stream.py has it.
                "--exclude-path",
                "/api/v1/stream",
                "--request-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
