"""The Helm chart, the plain manifests and the dashboard, checked offline: helm lint,
helm template validated against the Kubernetes 1.31 schemas, the examples against
the CRDs' own schemas, and every dashboard query against what the exporters emit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.kube.crds import definitions, render
from scripts.helm import CHART, MANIFESTS, helm, kubectl_binary, render_manifests
from tests.southbound.exporter import exporter

DB = "database.url=mysql+aiomysql://edgefleet:secret@rm-test.mysql.rds.aliyuncs.com:3306/edgefleet"
FULL = ["--set", DB, "--set", "ingress.enabled=true", "--set", "ingress.tls.enabled=true",
        "--set", "metrics.serviceMonitor.enabled=true"]  # fmt: skip


def rendered(*values: str) -> list[dict[str, Any]]:
    text = helm("template", "edgefleet", str(CHART), "--namespace", "fleet", *values)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def test_helm_lint_passes() -> None:
    helm("lint", "--strict", str(CHART), "--set", DB)


def test_rendered_chart_is_valid_kubernetes_1_31(tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    out.write_text(
        helm("template", "edgefleet", str(CHART), "--namespace", "fleet", "--include-crds", *FULL)
    )
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.31.0", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ServiceMonitor" in result.stdout + result.stderr  # the one kind it cannot check


def test_a_missing_database_url_is_refused_with_a_reason() -> None:
    with pytest.raises(RuntimeError, match=r"database\.url"):
        rendered()
    assert by_kind(rendered("--set", "existingSecret=mine"), "Secret") == []


def test_values_are_checked_by_the_schema() -> None:
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        rendered("--set", DB, "--set", "southbound.replicas=0")


def test_pods_run_locked_down() -> None:
    deployments = by_kind(rendered(*FULL), "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "edgefleet-controller",
        "edgefleet-southbound",
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert container["livenessProbe"] and container["readinessProbe"]
            assert container["resources"]["limits"]
    controller = next(d for d in deployments if d["metadata"]["name"].endswith("controller"))
    assert controller["spec"]["replicas"] == 1


def test_rbac_names_every_resource_and_verb() -> None:
    roles = by_kind(rendered(*FULL), "Role")
    assert by_kind(rendered(*FULL), "ClusterRole") == []
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
    southbound = next(r for r in roles if r["metadata"]["name"].endswith("southbound"))
    assert southbound["rules"] == [
        {"apiGroups": ["edgefleet.io"], "resources": ["devices/status"], "verbs": ["patch"]}
    ]


def test_services_ingress_and_pod_dns_for_commands() -> None:
    docs = rendered(*FULL)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert services["edgefleet-southbound-internal"]["spec"]["clusterIP"] == "None"
    southbound = next(
        d for d in by_kind(docs, "Deployment") if "southbound" in d["metadata"]["name"]
    )
    pod = southbound["spec"]["template"]["spec"]
    assert pod["subdomain"] == "edgefleet-southbound-internal"
    assert any("--advertise-address=$(POD_NAME).edgefleet-southbound-internal" in a
               for a in pod["containers"][0]["args"])  # fmt: skip
    [ingress] = by_kind(docs, "Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"]
             for p in ingress["spec"]["rules"][0]["http"]["paths"]}  # fmt: skip
    assert paths == {"/ws": "edgefleet-devices", "/api": "edgefleet-api"}
    assert ingress["spec"]["tls"][0]["secretName"] == "edgefleet-tls"
    [pdb] = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_dashboard_configmap_carries_the_sidecar_label() -> None:
    [config_map] = by_kind(rendered(*FULL), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["edgefleet.json"])["uid"] == "edgefleet-overview"


def test_crd_files_and_manifests_are_generated_from_their_sources() -> None:
    for name, definition in definitions().items():
        assert (CHART / "crds" / name).read_text() == render(definition), name
    for path, text in render_manifests().items():
        assert path.read_text() == text, f"{path} is stale: run `make manifests`"
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / resource).exists()


def crd_schema(plural: str) -> dict[str, Any]:
    crd = definitions()[f"{plural}.yaml"]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize(
    ("example", "plural"), [("device", "devices"), ("devicegroup", "devicegroups")]
)
def test_examples_match_the_crd_schemas(example: str, plural: str) -> None:
    body = yaml.safe_load((MANIFESTS / "examples" / f"{example}.yaml").read_text())
    jsonschema.validate(body, crd_schema(plural))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hardware": {"sn": "SN1", "model": "M", "ethMac": "00:1A:2B:3C:4D"}}, "does not match"),
        ({"hardware": {"sn": "SN1", "model": "M", "imei": "12345"}}, "does not match"),
        ({"hardware": {"sn": "", "model": "M"}}, "should be non-empty"),
        ({"displayName": "x" * 129, "hardware": {"sn": "S", "model": "M"}}, "is too long"),
        ({"groups": ["Not_A_Name"], "hardware": {"sn": "S", "model": "M"}}, "does not match"),
        ({"type": "camera"}, "'hardware' is a required property"),
    ],
)
def test_the_device_schema_refuses_bad_fields(change: dict[str, Any], message: str) -> None:
    body = {"apiVersion": "edgefleet.io/v1alpha1", "kind": "Device",
            "metadata": {"name": "cam-1"}, "spec": change}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(body, crd_schema("devices"))


def test_device_names_are_dns_labels() -> None:
    body = {"metadata": {"name": "x" * 64}, "spec": {"hardware": {"sn": "S", "model": "M"}}}
    with pytest.raises(jsonschema.ValidationError, match="is too long"):
        jsonschema.validate(body, crd_schema("devices"))


def test_kubectl_get_devices_shows_the_promised_columns() -> None:
    crd = definitions()["devices.yaml"]
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "State", "Device ID", "CPU%", "Memory%", "Last Seen", "Age",
    ]  # fmt: skip
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["categories"] == ["edgefleet"]
    assert crd["spec"]["names"]["shortNames"]


def exported_sample_names(text: str) -> set[str]:
    """Every sample name a scrape can hold, from its HELP/TYPE lines (a labelled
    counter that has not counted yet has no samples, but has its family)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""], "summary": ["_sum", "_count", ""]}  # fmt: skip
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


async def test_every_dashboard_query_names_an_exported_metric() -> None:
    exported = exported_sample_names((await exporter(per_device=True).render()).decode())
    exported |= exported_sample_names(generate_latest(ApiMetrics().registry).decode())

    dashboard = json.loads((CHART / "dashboards" / "edgefleet.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries.append(dashboard["templating"]["list"][1]["query"]["query"])
    used = {name for q in queries for name in re.findall(r"\bedgefleet_[a-z_]+", q)}
    assert used, "the dashboard has no queries"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    for family in ("edgefleet_logins_total", "edgefleet_command_duration_seconds_bucket",
                   "edgefleet_status_write_queue", "edgefleet_device_cpu_percent"):  # fmt: skip
        assert family in used


def test_kubectl_kustomize_builds_the_manifests_into_one_namespace() -> None:
    result = subprocess.run(
        [str(kubectl_binary()), "kustomize", str(MANIFESTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = {doc["kind"] for doc in docs}
    assert {"CustomResourceDefinition", "Deployment", "Role", "Service"} <= kinds
    assert by_kind(docs, "Secret") == []  # the user's edgefleet-secrets, not ours
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            assert doc["metadata"]["namespace"] == "edgefleet", doc["metadata"]["name"]
