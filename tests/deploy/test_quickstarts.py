"""The README's two quick starts, English and Chinese, give the same commands: the
Chinese section mirrors the English "Quick start" and "Deploy on Kubernetes (ACK)".
Comments may differ (they are translated); the commands may not."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

README = Path(__file__).parents[2] / "README.md"
ENGLISH = ("Quick start", "Deploy on Kubernetes (ACK)")
CHINESE = "中文快速上手"


def section(title: str) -> str:
    """The text under a second-level heading, to the next one."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match[1]


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```sh blocks, one per line once continuations are joined,
    comments dropped, each normalised to its shell words."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def test_both_quick_starts_name_the_same_commands() -> None:
    english = [command for title in ENGLISH for command in shell_commands(section(title))]
    chinese = shell_commands(section(CHINESE))
    assert english, "no commands found in the English sections"
    assert chinese == english


def test_the_command_parser_sees_through_continuations_and_comments() -> None:
    markdown = (
        "```sh\n"
        "helm install x \\\n"
        "  --set a=b   # 注释\n"
        "# a comment line\n"
        'sed "s#R#$R#" f.yaml | kubectl apply -f -\n'
        "```\n"
        "```python\n"
        "print('not shell')\n"
        "```\n"
    )
    assert shell_commands(markdown) == [
        "helm install x --set a=b",
        "sed 's#R#$R#' f.yaml '|' kubectl apply -f -",
    ]


def test_the_example_agent_runs_the_image_the_quick_start_pushes() -> None:
    """manifests/examples/agent.yaml names no registry of ours: a placeholder the
    README's command replaces with the registry its docker push used."""
    agent = yaml.safe_load((README.parent / "manifests/examples/agent.yaml").read_text())
    [container] = agent["spec"]["template"]["spec"]["containers"]
    image = container["image"]
    placeholder, _, name = image.partition("/")
    assert placeholder == "REGISTRY"
    commands = shell_commands(section("Deploy on Kubernetes (ACK)"))
    assert f"docker push '$REGISTRY/{name}'" in commands
    assert any(
        c.startswith("sed 's#REGISTRY#$REGISTRY#' manifests/examples/agent.yaml") for c in commands
    )
