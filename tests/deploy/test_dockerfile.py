"""The Dockerfile, read (no Docker engine runs here): what each image promises its
user — a non-root user, and a writable place for what the default command writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"


def stage(name: str) -> dict[str, list[str]]:
    """The instructions of one build stage: keyword -> their arguments, in order,
    continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    instructions: dict[str, list[str]] = {}
    inside = False
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            inside = line.split()[-1] == name
        elif inside:
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    assert instructions, f"no stage {name}"
    return instructions


def environment(instructions: dict[str, list[str]]) -> dict[str, str]:
    return dict(word.split("=", 1) for env in instructions["ENV"] for word in shlex.split(env))


def test_the_server_image_runs_serve_as_a_non_root_user_in_a_writable_volume() -> None:
    server = stage("server")
    [user] = server["USER"]
    assert user not in {"0", "root"}
    [workdir] = server["WORKDIR"]
    [volume] = server["VOLUME"]
    assert volume == f'["{workdir}"]'
    database = environment(server)["EDGEFLEET_DB_URL"]
    assert database == f"sqlite+aiosqlite:///{workdir}/edgefleet.db"
    assert environment(server)["EDGEFLEET_FILES_DIR"] == f"{workdir}/files"
    # The directory belongs to the user that runs the image.
    [made] = [run for run in server["RUN"] if f" {workdir}" in run]
    assert f"-o {user} -g {user}" in made
    assert server["CMD"] == ['["serve", "--api-host", "0.0.0.0", "--ws-host", "0.0.0.0"]']


def test_the_server_image_exposes_every_port_the_chart_uses() -> None:
    [ports] = stage("server")["EXPOSE"]
    assert set(ports.split()) == {"8080", "9090", "9091", "9092"}


def test_the_agent_image_keeps_its_state_in_a_volume() -> None:
    agent = stage("agent")
    assert agent["USER"] != ["0"]
    [volume] = agent["VOLUME"]
    for kept in ("STATE_DIR", "SPOOL_DIR"):  # the queue of records is in the state dir
        state = environment(agent)[f"EDGEFLEET_AGENT_{kept}"]
        assert state.startswith(volume.strip('[]"') + "/")
