"""The Helm chart and the plain manifests, checked offline: helm lint, helm template
validated against the Kubernetes 1.31 schemas and asserted value by value, the
examples against the CRDs' own schemas. The dashboard has test_dashboard.py."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edgefleet.controller.kube.crds import definitions, render
from edgefleet.controller.store.selectors import parse_selector
from scripts.helm import CHART, MANIFESTS, helm, kubectl_binary, render_manifests

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


def set_json(key: str, value: Any) -> list[str]:
    return ["--set-json", f"{key}={json.dumps(value)}"]


ZONE_SPREAD = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
               "whenUnsatisfiable": "ScheduleAnyway"}  # fmt: skip
SYSTEM_POOL = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "pool", "operator": "In", "values": ["system"]}]}]}}}  # fmt: skip
RRSA = "pod-identity\\.alibabacloud\\.com/role-name"
# The placement values of both Deployments, all set.
PLACEMENT = [
    *set_json("controller.affinity", SYSTEM_POOL),
    *set_json("southbound.affinity", SYSTEM_POOL),
    *set_json("controller.topologySpreadConstraints", [ZONE_SPREAD]),
    *set_json("southbound.topologySpreadConstraints", [ZONE_SPREAD]),
    "--set", "controller.podAnnotations.team=iot",
    "--set", "southbound.podAnnotations.team=iot",
    "--set", f"controller.serviceAccount.annotations.{RRSA}=edgefleet-controller",
    "--set", f"southbound.serviceAccount.annotations.{RRSA}=edgefleet-southbound",
]  # fmt: skip
SOUTHBOUND_TLS = ["--set", DB, "--set", "southbound.tls.secretName=devices-tls",
                  "--set", "service.devices.type=LoadBalancer"]  # fmt: skip
SLB_TLS = ["--set", DB, "--set", "service.devices.type=LoadBalancer",
           "--set", "service.devices.slb.certificateId=1234567-cn-hangzhou"]  # fmt: skip


@pytest.mark.parametrize(
    "values", [FULL + PLACEMENT, SOUTHBOUND_TLS, SLB_TLS], ids=["ingress", "wss", "slb"]
)
def test_rendered_chart_is_valid_kubernetes_1_31(tmp_path: Path, values: list[str]) -> None:
    out = tmp_path / "rendered.yaml"
    out.write_text(
        helm("template", "edgefleet", str(CHART), "--namespace", "fleet", "--include-crds", *values)
    )
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.31.0", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if "metrics.serviceMonitor.enabled=true" in values:
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
    assert paths == {
        "/ws": "edgefleet-devices",
        "/files": "edgefleet-devices",
        "/records": "edgefleet-devices",
        "/api/v1/data/upload": "edgefleet-devices",  # Exact: it wins over /api
        "/api": "edgefleet-api",
        "/console": "edgefleet-api",  # the web console
        "/": "edgefleet-api",  # Exact: the redirect to /console/
    }
    kinds = {p["path"]: p["pathType"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert kinds["/api/v1/data/upload"] == "Exact" and kinds["/files"] == "Prefix"
    assert kinds["/"] == "Exact"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "10485760"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert ingress["spec"]["tls"][0]["secretName"] == "edgefleet-tls"
    [pdb] = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [found] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith(component)]
    return found


def pod_spec(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(docs, component)["spec"]["template"]["spec"]
    return spec


def service(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == name]
    return found


def ports(svc: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]]


def test_the_southbound_serves_wss_with_a_mounted_certificate_secret() -> None:
    pod = pod_spec(rendered(*SOUTHBOUND_TLS), "southbound")
    [container] = pod["containers"]
    assert {"name": "tls", "secret": {"secretName": "devices-tls", "defaultMode": 0o440}} in pod[
        "volumes"
    ]
    assert {"name": "tls", "mountPath": "/etc/edgefleet/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert "--tls-cert-file=/etc/edgefleet/tls/tls.crt" in container["args"]
    assert "--tls-key-file=/etc/edgefleet/tls/tls.key" in container["args"]
    # The probes stay plain HTTP on the metrics port, whatever the device port speaks.
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"

    plain = pod_spec(rendered("--set", DB), "southbound")["containers"][0]
    assert not [a for a in plain["args"] if a.startswith("--tls")]
    assert "tls" not in {m["name"] for m in plain["volumeMounts"]}


def test_tls_at_the_slb_sets_the_listener_annotations() -> None:
    devices = service(rendered(*SLB_TLS), "edgefleet-devices")
    annotations = devices["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
    assert annotations[prefix + "cert-id"] == "1234567-cn-hangzhou"
    assert annotations[prefix + "protocol-port"] == "https:443"
    assert ports(devices) == [("devices", 443, "devices")]
    with pytest.raises(RuntimeError, match=r"needs service\.devices\.type=LoadBalancer"):
        rendered("--set", DB, "--set", "service.devices.slb.certificateId=1234567-cn-hangzhou")


def test_a_device_load_balancer_can_keep_the_devices_addresses() -> None:
    local = ["--set", "service.devices.externalTrafficPolicy=Local"]
    devices = service(rendered(*SLB_TLS, *local), "edgefleet-devices")
    assert devices["spec"]["externalTrafficPolicy"] == "Local"
    assert "externalTrafficPolicy" not in service(rendered(*SLB_TLS), "edgefleet-devices")["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([*SOUTHBOUND_TLS, "--set", "service.devices.slb.certificateId=1234567"], "choose one"),
        ([*SOUTHBOUND_TLS, "--set", "ingress.enabled=true"], "terminate TLS at the Ingress"),
    ],
    ids=["slb", "ingress"],
)
def test_tls_ends_in_one_place(values: list[str], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        rendered(*values)


@pytest.mark.parametrize("values", [FULL, SOUTHBOUND_TLS, SLB_TLS], ids=["ingress", "wss", "slb"])
def test_the_device_service_exposes_only_the_device_port(values: list[str]) -> None:
    docs = rendered(*values)
    devices = service(docs, "edgefleet-devices")
    [(name, _, target)] = ports(devices)
    assert (name, target) == ("devices", "devices")
    [container] = pod_spec(docs, "southbound")["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "devices": 9090, "internal": 9091, "metrics": 9092,
    }  # fmt: skip
    assert "--metrics-port=9092" in container["args"]
    # Prometheus finds the southbound's /metrics through a Service of its own.
    assert "edgefleet.io/metrics" not in devices["metadata"]["labels"]
    scraped = service(docs, "edgefleet-southbound-metrics")
    assert scraped["metadata"]["labels"]["edgefleet.io/metrics"] == "true"
    assert ports(scraped) == [("metrics", 9092, "metrics")]
    assert ports(service(docs, "edgefleet-southbound-internal")) == [("internal", 9091, "internal")]


def test_the_service_monitor_scrapes_the_api_and_the_metrics_ports() -> None:
    [monitor] = by_kind(rendered(*FULL), "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["api", "metrics"]
    assert monitor["spec"]["selector"]["matchLabels"]["edgefleet.io/metrics"] == "true"


def network_rules(*values: str) -> dict[str, dict[str, Any]]:
    """The southbound NetworkPolicy's ingress rules, by the port they open."""
    [policy] = by_kind(rendered("--set", DB, *values), "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "southbound"
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {}
    for rule in policy["spec"]["ingress"]:
        [port] = rule["ports"]
        rules[port["port"]] = rule
    return rules


def test_the_network_policy_lets_only_the_controller_reach_the_internal_api() -> None:
    rules = network_rules()
    assert set(rules) == {"devices", "internal", "metrics"}
    assert "from" not in rules["devices"]  # devices come from anywhere
    [peer] = rules["internal"]["from"]
    assert peer == {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "edgefleet", "app.kubernetes.io/instance": "edgefleet",
        "app.kubernetes.io/component": "controller"}}}  # fmt: skip
    [peer] = rules["metrics"]["from"]
    assert peer == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }


def test_the_metrics_port_can_be_opened_to_other_scrapers_or_to_all() -> None:
    arms = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "arms-prom"}}}
    assert network_rules(*set_json("networkPolicy.metricsFrom", [arms]))["metrics"]["from"] == [
        arms
    ]
    assert "from" not in network_rules(*set_json("networkPolicy.metricsFrom", []))["metrics"]
    assert (
        by_kind(rendered("--set", DB, "--set", "networkPolicy.enabled=false"), "NetworkPolicy")
        == []
    )


def test_southbound_liveness_readiness_and_startup_are_distinct_probes() -> None:
    docs = rendered("--set", DB, "--set", "southbound.startupSeconds=600")
    [container] = pod_spec(docs, "southbound")["containers"]
    live, ready, startup = (container[f"{k}Probe"] for k in ("liveness", "readiness", "startup"))
    assert live["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert ready["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert startup["httpGet"] == live["httpGet"]
    # The startup budget covers a wait for the controller's migrations.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    [controller] = pod_spec(docs, "controller")["containers"]
    assert controller["startupProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert controller["readinessProbe"]["httpGet"]["path"] == "/api/v1/ready"


def test_a_southbound_rollout_never_holds_fewer_sessions() -> None:
    strategy = deployment(rendered("--set", DB), "southbound")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}  # fmt: skip


@pytest.mark.parametrize("component", ["controller", "southbound"])
def test_placement_values_reach_both_deployments(component: str) -> None:
    docs = rendered(*FULL, *PLACEMENT)
    template = deployment(docs, component)["spec"]["template"]
    pod = template["spec"]
    assert pod["affinity"] == SYSTEM_POOL
    [spread] = pod["topologySpreadConstraints"]
    # Without a labelSelector of its own, a constraint spreads this component's pods.
    assert spread == {**ZONE_SPREAD, "labelSelector": {"matchLabels": {
        "app.kubernetes.io/name": "edgefleet", "app.kubernetes.io/instance": "edgefleet",
        "app.kubernetes.io/component": component}}}  # fmt: skip
    annotations = template["metadata"]["annotations"]
    assert annotations["team"] == "iot"
    assert "checksum/secret" in annotations
    assert pod["serviceAccountName"] == f"edgefleet-{component}"
    [account] = [a for a in by_kind(docs, "ServiceAccount")
                 if a["metadata"]["name"] == f"edgefleet-{component}"]  # fmt: skip
    assert account["metadata"]["annotations"] == {
        "pod-identity.alibabacloud.com/role-name": f"edgefleet-{component}"
    }


def test_the_southbound_prefers_one_pod_per_node_unless_told_otherwise() -> None:
    affinity = pod_spec(rendered("--set", DB), "southbound")["affinity"]
    [term] = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert "affinity" not in pod_spec(rendered("--set", DB), "controller")


def test_an_existing_service_account_is_bound_not_created() -> None:
    docs = rendered("--set", DB, "--set", "southbound.serviceAccount.create=false",
                    "--set", "southbound.serviceAccount.name=fleet-devices")  # fmt: skip
    assert pod_spec(docs, "southbound")["serviceAccountName"] == "fleet-devices"
    assert [a["metadata"]["name"] for a in by_kind(docs, "ServiceAccount")] == [
        "edgefleet-controller"
    ]
    [binding] = [b for b in by_kind(docs, "RoleBinding")
                 if b["metadata"]["name"] == "edgefleet-southbound"]  # fmt: skip
    assert binding["subjects"][0]["name"] == "fleet-devices"
    with pytest.raises(RuntimeError, match=r"southbound\.serviceAccount\.name is required"):
        rendered("--set", DB, "--set", "southbound.serviceAccount.create=false")


def secret_refs(pod: dict[str, Any]) -> set[str]:
    return {
        env["valueFrom"]["secretKeyRef"]["name"]
        for container in pod["containers"]
        for env in container["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }


def test_an_existing_secret_is_read_by_both_deployments() -> None:
    docs = rendered("--set", "existingSecret=fleet-credentials")
    assert by_kind(docs, "Secret") == []
    for component in ("controller", "southbound"):
        assert secret_refs(pod_spec(docs, component)) == {"fleet-credentials"}


def test_secrets_given_as_values_render_the_same_every_time() -> None:
    """``helm template`` (Argo CD) has no cluster to look the generated values up in;
    given values make the Secret and the pods' checksum stable."""
    given = ["--set", DB, "--set", "secrets.apiToken=a", "--set", "secrets.tokenKey=k",
             "--set", "secrets.internalToken=i", "--set", "secrets.passwordPepper=p",
             "--set", "secrets.jwtKey=" + "j" * 32,
             "--set", "secrets.adminPassword=first-admin-pw"]  # fmt: skip
    first, second = rendered(*given), rendered(*given)
    assert by_kind(first, "Secret") == by_kind(second, "Secret")
    for component in ("controller", "southbound"):
        assert deployment(first, component) == deployment(second, component)
    # Left empty, they are read back from the Secret in the cluster before any is made.
    template = (CHART / "templates" / "secret.yaml").read_text()
    assert '(lookup "v1" "Secret" .Release.Namespace $name)' in template


def test_the_dashboard_can_be_left_out() -> None:
    assert by_kind(rendered("--set", DB, "--set", "dashboard.enabled=false"), "ConfigMap") == []


def test_the_ingress_serves_wss_and_https_with_its_certificate() -> None:
    docs = rendered(*FULL, "--set", "ingress.host=fleet.example.cn",
                    "--set", "ingress.tls.secretName=fleet-cert")  # fmt: skip
    [ingress] = by_kind(docs, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["fleet.example.cn"], "secretName": "fleet-cert"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "fleet.example.cn"
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert paths["/ws"]["pathType"] == "Exact"
    assert paths["/ws"]["backend"]["service"] == {"name": "edgefleet-devices",
                                                  "port": {"name": "devices"}}  # fmt: skip
    assert paths["/api"]["backend"]["service"]["name"] == "edgefleet-api"
    # Sessions last days: the proxy must not cut them after its default minute.
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"


def test_ingress_annotations_win_over_the_chart_timeouts() -> None:
    mine = "nginx\\.ingress\\.kubernetes\\.io/proxy-read-timeout"
    [ingress] = by_kind(
        rendered(*FULL, "--set-string", f"ingress.annotations.{mine}=86400"), "Ingress"
    )
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == (
        "86400"
    )
    [ingress] = by_kind(rendered(*FULL, "--set", "ingress.timeoutSeconds=0"), "Ingress")
    assert not any("timeout" in name for name in ingress["metadata"]["annotations"])


def schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every value the schema names (into objects it closes)."""
    definitions = json.loads((CHART / "values.schema.json").read_text())["definitions"]
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        keys |= schema_keys(sub, f"{prefix}{name}.")
    return keys


def value_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in values.items():
        keys.add(prefix + name)
        if isinstance(value, dict) and value:
            keys |= value_keys(value, f"{prefix}{name}.")
    return keys


def test_values_yaml_and_its_schema_name_the_same_values() -> None:
    """helm checks values.yaml against the schema (nothing unknown); this checks the
    other way: every value the schema allows has a default, and so a comment, in
    values.yaml."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    free = {"controller.resources.requests", "controller.resources.limits",
            "southbound.resources.requests", "southbound.resources.limits"}  # fmt: skip
    assert schema_keys(schema) - value_keys(values) - free == set()


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
    ("example", "plural"),
    [
        ("device", "devices"),
        ("devicegroup", "devicegroups"),
        ("devicegroup-dynamic", "devicegroups"),
    ],
)
def test_examples_match_the_crd_schemas(example: str, plural: str) -> None:
    body = yaml.safe_load((MANIFESTS / "examples" / f"{example}.yaml").read_text())
    jsonschema.validate(body, crd_schema(plural))


def test_the_example_device_is_a_member_of_the_example_dynamic_group() -> None:
    group = yaml.safe_load((MANIFESTS / "examples" / "devicegroup-dynamic.yaml").read_text())
    device = yaml.safe_load((MANIFESTS / "examples" / "device.yaml").read_text())
    selector = parse_selector(group["spec"]["selector"])
    assert selector.matches(device["metadata"]["labels"])
    assert not selector.matches({**device["metadata"]["labels"], "retired": "yes"})


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
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "State", "Type", "Device ID", "CPU%", "Memory%", "Last Seen", "Synced", "Age",
    ]  # fmt: skip
    assert columns["Type"] == ".spec.type"
    assert columns["Synced"] == '.status.conditions[?(@.type=="Synced")].status'
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["categories"] == ["edgefleet"]


def test_kubectl_get_devicegroups_shows_how_many_devices_each_has() -> None:
    version = definitions()["devicegroups.yaml"]["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Display Name", "Group ID", "Devices", "Synced", "Age"]
    assert columns["Devices"]["jsonPath"] == ".status.deviceCount"
    # A field the schema does not name is pruned by the API server: the column would
    # stay empty whatever the operator writes.
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["deviceCount"]["type"] == "integer"


def test_short_names_are_our_own_and_the_full_name_is_documented() -> None:
    """``devices`` is also KubeEdge's plural: our short names must not be generic, and
    the README must show the name that is never ambiguous."""
    names = {crd["spec"]["names"]["kind"]: crd["spec"]["names"] for crd in definitions().values()}
    assert names["Device"]["plural"] == "devices"
    assert names["Device"]["shortNames"] == ["efdev"]
    assert names["DeviceGroup"]["shortNames"] == ["efgroup"]
    readme = (CHART.parents[1] / "README.md").read_text()
    assert "kubectl -n edgefleet get devices.edgefleet.io" in readme


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


def test_kubectl_kustomize_builds_the_crds_alone_for_upgrades() -> None:
    result = subprocess.run(
        [str(kubectl_binary()), "kustomize", str(MANIFESTS / "crds")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["metadata"]["name"] for doc in docs) == [
        "devicegroups.edgefleet.io", "devices.edgefleet.io",
    ]  # fmt: skip
    kustomization = yaml.safe_load((MANIFESTS / "crds" / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == set(definitions())  # every generated CRD


def test_the_southbound_gets_the_pepper_and_stops_before_the_kubelet_kills_it() -> None:
    docs = rendered("--set", DB, "--set", "southbound.terminationGracePeriodSeconds=40")
    [secret] = by_kind(docs, "Secret")
    assert "password-pepper" in secret["data"]
    env = {e["name"]: e for e in pod_spec(docs, "southbound")["containers"][0]["env"]}
    assert env["EDGEFLEET_PASSWORD_PEPPER"]["valueFrom"]["secretKeyRef"]["key"] == "password-pepper"
    assert env["EDGEFLEET_SHUTDOWN_GRACE"]["value"] == "35"


def env_of(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [deployment] = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith(component)
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def mounts_of(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    [deployment] = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith(component)
    ]
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in spec["containers"][0]["volumeMounts"]}


def test_by_default_files_are_on_a_shared_claim_mounted_by_every_pod() -> None:
    docs = rendered("--set", DB)
    [claim] = by_kind(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "edgefleet-files"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for component in ("controller", "southbound"):
        volume = mounts_of(docs, component)["/var/lib/edgefleet/files"]
        assert volume["persistentVolumeClaim"]["claimName"] == "edgefleet-files"
        env = env_of(docs, component)
        assert env["EDGEFLEET_FILES_DIR"] == "/var/lib/edgefleet/files"
        assert env["EDGEFLEET_MAX_FILE_BYTES"] == "10485760"
    claimed = rendered("--set", DB, "--set", "files.persistence.existingClaim=nas-data")
    assert by_kind(claimed, "PersistentVolumeClaim") == []
    claim_name = mounts_of(claimed, "southbound")["/var/lib/edgefleet/files"]
    assert claim_name["persistentVolumeClaim"]["claimName"] == "nas-data"


OSS = ["--set", DB, "--set", "files.url=s3://fleet-data/edgefleet",
       "--set", "files.endpoint=https://oss-cn-hangzhou-internal.aliyuncs.com",
       "--set", "files.region=cn-hangzhou",
       "--set", "files.credentialsSecret=edgefleet-oss"]  # fmt: skip


def test_files_in_oss_take_the_endpoint_and_the_credentials_secret() -> None:
    docs = rendered(*OSS)
    assert by_kind(docs, "PersistentVolumeClaim") == []
    for component in ("controller", "southbound"):
        env = env_of(docs, component)
        assert env["EDGEFLEET_FILES_URL"] == "s3://fleet-data/edgefleet"
        assert env["EDGEFLEET_FILES_ENDPOINT"] == "https://oss-cn-hangzhou-internal.aliyuncs.com"
        assert env["EDGEFLEET_FILES_REGION"] == "cn-hangzhou"
        assert env["EDGEFLEET_FILES_ADDRESSING_STYLE"] == "virtual"
        assert env["EDGEFLEET_FILES_ACCESS_KEY"] == {
            "secretKeyRef": {"name": "edgefleet-oss", "key": "access-key-id"}
        }
        assert env["EDGEFLEET_FILES_SECRET_KEY"]["secretKeyRef"]["key"] == "access-key-secret"
        assert "/var/lib/edgefleet/files" not in mounts_of(docs, component)


def test_the_classifier_runs_in_the_controller_with_its_key_from_a_secret(
    tmp_path: Path,
) -> None:
    values = [*OSS, "--set", "analysis.classifierUrl=https://dashscope.aliyuncs.com/compatible-mode/v1",
              "--set", "analysis.kinds=photo\\,alert", "--set", "analysis.keySecret=qwen-key",
              "--set", "records.retentionDays=30"]  # fmt: skip
    docs = rendered(*values)
    env = env_of(docs, "controller")
    assert env["EDGEFLEET_CLASSIFIER_URL"] == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert env["EDGEFLEET_CLASSIFIER_MODEL"] == "qwen-vl-plus"
    assert env["EDGEFLEET_ANALYSE_KINDS"] == "photo,alert"
    assert env["EDGEFLEET_CLASSIFIER_KEY_FILE"] == "/etc/edgefleet/classifier/api-key"
    assert env["EDGEFLEET_RECORD_RETENTION_DAYS"] == "30"
    key = mounts_of(docs, "controller")["/etc/edgefleet/classifier"]
    assert key["secret"]["secretName"] == "qwen-key"
    assert "EDGEFLEET_CLASSIFIER_URL" not in env_of(docs, "southbound")
    assert "EDGEFLEET_CLASSIFIER_URL" not in env_of(rendered("--set", DB), "controller")
    out = tmp_path / "rendered.yaml"
    out.write_text(helm("template", "edgefleet", str(CHART), "--namespace", "fleet", *values))
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.31.0", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "value", ["files.url=https://not-s3", "analysis.kinds=Not A Kind", "files.addressingStyle=odd"]
)
def test_data_values_are_checked_by_the_schema(value: str) -> None:
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        rendered("--set", DB, "--set", value)


def controller_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    [container] = pod_spec(docs, "controller")["containers"]
    return {env["name"]: env for env in container["env"]}


def test_the_jwt_key_and_the_admin_password_come_from_the_secret() -> None:
    docs = rendered("--set", DB)
    [secret] = by_kind(docs, "Secret")
    assert {"jwt-key", "admin-password"} <= secret["data"].keys()
    env = controller_env(docs)
    for name, key in (
        ("EDGEFLEET_JWT_KEY", "jwt-key"),
        ("EDGEFLEET_ADMIN_PASSWORD", "admin-password"),
    ):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"], ref["optional"]) == ("edgefleet-secrets", key, True)
    assert env["EDGEFLEET_ADMIN_USERNAME"]["value"] == "admin"
    # The southbound signs no access tokens and makes no users.
    [southbound] = pod_spec(docs, "southbound")["containers"]
    assert not {"EDGEFLEET_JWT_KEY", "EDGEFLEET_ADMIN_PASSWORD"} & {
        e["name"] for e in southbound["env"]
    }


def test_the_jwt_key_and_admin_password_given_as_values_are_kept_as_given() -> None:
    docs = rendered(
        *("--set", DB, "--set", "secrets.jwtKey=" + "k" * 32),
        *("--set", "secrets.adminPassword=first-admin-pw", "--set", "adminUsername=root"),
        *("--set", "secrets.jwtPreviousKeys=" + "o" * 32),
    )
    [secret] = by_kind(docs, "Secret")
    assert base64.b64decode(secret["data"]["jwt-key"]).decode() == "k" * 32
    assert base64.b64decode(secret["data"]["admin-password"]).decode() == "first-admin-pw"
    assert base64.b64decode(secret["data"]["jwt-previous-keys"]).decode() == "o" * 32
    env = controller_env(docs)
    assert env["EDGEFLEET_ADMIN_USERNAME"]["value"] == "root"
    assert env["EDGEFLEET_JWT_PREVIOUS_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == (
        "jwt-previous-keys"
    )
    with pytest.raises(RuntimeError, match="jwtKey"):
        rendered("--set", DB, "--set", "secrets.jwtKey=short")


def test_an_existing_secret_gives_the_jwt_key_and_admin_password_too() -> None:
    env = controller_env(rendered("--set", "existingSecret=fleet-credentials"))
    assert env["EDGEFLEET_JWT_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "fleet-credentials"
    assert (
        env["EDGEFLEET_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "fleet-credentials"
    )


def test_behind_the_ingress_the_client_address_comes_from_x_forwarded_for() -> None:
    assert "EDGEFLEET_TRUST_FORWARDED_FOR" not in controller_env(rendered("--set", DB))
    env = controller_env(rendered(*FULL))
    assert env["EDGEFLEET_TRUST_FORWARDED_FOR"]["value"] == "true"


def test_one_status_write_budget_reaches_both_deployments() -> None:
    """The budget is the installation's: the southbounds and the controller's resync
    must share the same number."""
    docs = rendered("--set", DB, "--set", "kube.statusWritesPerSecond=35")
    for component in ("controller", "southbound"):
        env = env_of(docs, component)
        assert env["EDGEFLEET_KUBE_STATUS_BUDGET"] == "35"
        assert "EDGEFLEET_KUBE_STATUS_RATE" not in env  # per pod: gone
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        rendered("--set", DB, "--set", "kube.statusWritesPerSecond=0")


def test_the_job_schedulers_clock_reaches_the_controller() -> None:
    """The scheduler's tick and minute are the controller's settings: a value given
    to the chart is what the controller runs with; nonsense is refused."""
    env = env_of(rendered("--set", DB, "--set", "controller.jobs.tick=2"), "controller")
    assert (env["EDGEFLEET_JOB_TICK"], env["EDGEFLEET_JOB_MINUTE"]) == ("2", "60")
    assert "EDGEFLEET_JOB_TICK" not in env_of(rendered("--set", DB), "southbound")
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        rendered("--set", DB, "--set", "controller.jobs.minute=0")


def test_the_device_service_takes_its_type_and_annotations() -> None:
    """An SLB on ACK is a LoadBalancer Service with Alibaba Cloud's annotations; by
    default the devices' Service stays inside the cluster."""
    spec = "service\\.beta\\.kubernetes\\.io/alibaba-cloud-loadbalancer-spec"
    docs = rendered("--set", DB, "--set", "service.devices.type=LoadBalancer",
                    "--set", f"service.devices.annotations.{spec}=slb.s1.small")  # fmt: skip
    devices = service(docs, "edgefleet-devices")
    assert devices["spec"]["type"] == "LoadBalancer"
    assert devices["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-spec": "slb.s1.small"
    }
    plain = service(rendered("--set", DB), "edgefleet-devices")
    assert plain["spec"]["type"] == "ClusterIP"
    assert not plain["metadata"].get("annotations")
