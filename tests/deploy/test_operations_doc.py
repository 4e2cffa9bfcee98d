"""docs/operations.md stays true to the repository: the files and chart values it
names exist, and it links nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from scripts.helm import CHART

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "operations.md"


def test_every_repository_path_it_names_exists() -> None:
    text = DOC.read_text()
    paths = set(re.findall(r"`((?:charts|manifests|bench|docs)/[\w./-]*)", text))
    assert paths
    for path in paths:
        assert (ROOT / path.rstrip("/")).exists(), path


def test_every_chart_value_it_names_exists() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = DOC.read_text()
    top = r"(?:controller|southbound|service|ingress|networkPolicy|metrics|dashboard|secrets)"
    named = set(re.findall(rf"`({top}\.[\w.]+)`", text))
    named |= set(re.findall(rf"--set ({top}\.[\w.]+)=", text))
    assert "southbound.tls.secretName" in named
    for dotted in named:
        node = values
        for key in dotted.split("."):
            assert isinstance(node, dict) and key in node, dotted
            node = node[key]


def test_it_links_nothing_outside_the_repository() -> None:
    text = DOC.read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert not re.match(r"\w+:", target), target
        assert (DOC.parent / target.split("#")[0]).exists(), target
    hosts = set(re.findall(r"https?://([\w.-]+)", text))
    assert hosts <= {"fleet.example.com", "grafana.example.com"}, hosts
