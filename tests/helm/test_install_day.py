"""Issue 20 (install day and day two): egress modes, identity rules, ESO v1, the `helm test`
pods run for real against the demo API, lineage and metrics env, ServiceMonitor and
PrometheusRule structure checked against the metric names the code declares."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import NAMESPACE, RELEASE, ROOT, load_values

AIRFLOW = load_values("airflow-values.yaml")
CRONJOB = load_values("cronjob-values.yaml")
MINIMAL_CONFIG = {
    "version": 1,
    "source": {"name": "demo", "base_url": "https://api.example.com", "auth": {"type": "none"}},
    "streams": [{"name": "items", "path": "/items"}],
    "landing": {"url": "s3://bucket/prefix"},
}
LANDFALL_BIN = Path(os.environ.get("LANDFALL_BIN", ROOT / "target" / "debug" / "landfall"))


def with_network(values: dict[str, Any] | None, **network: Any) -> dict[str, Any]:
    merged = copy.deepcopy(values or {})
    merged["networkPolicy"] = {**merged.get("networkPolicy", {}), **network}
    return merged


# --- egress -----------------------------------------------------------------------------


def test_default_egress_is_open_and_ingress_closed(render):
    """The first install must reach its API and storage: no empty allow-list by default."""
    rendered = render({"connectors": {"demo": {"config": MINIMAL_CONFIG}}})
    spec = rendered.one("NetworkPolicy")["spec"]
    assert spec["egress"] == [{}]  # one empty rule: every destination
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in spec
    assert "egress open" in rendered.notes
    assert "WARNING" not in rendered.notes


@pytest.mark.parametrize("empty,named", [
    ({"api": [], "storage": []}, "networkPolicy.api and networkPolicy.storage are empty"),
    ({"api": []}, "networkPolicy.api is empty"),
    ({"storage": []}, "networkPolicy.storage is empty"),
])
def test_restricted_with_empty_lists_warns_in_notes(render, empty, named):
    rendered = render(with_network(AIRFLOW, **empty))
    assert "WARNING: networkPolicy.egress is restricted but " + named in rendered.notes, rendered.notes
    assert "NETWORK_ERROR" in rendered.notes


def test_restricted_with_lists_does_not_warn(render):
    rendered = render(AIRFLOW)
    assert "WARNING" not in rendered.notes, rendered.notes
    assert "egress restricted to DNS, 1 API CIDR(s), 1 storage CIDR(s), awsSts." in rendered.notes


@pytest.mark.parametrize("identity,expected", [
    ({"aws": {"roleArn": "arn:aws:iam::123456789012:role/x"}}, "IRSA is configured but networkPolicy.identity.awsSts is off"),
    ({"gcp": {"serviceAccount": "landfall@my-project.iam.gserviceaccount.com"}}, "identity.gkeMetadata is off"),
    ({"azure": {"clientId": "11111111-2222-3333-4444-555555555555"}}, "identity.entraLogin is off"),
])
def test_restricted_without_identity_rule_warns(render, identity, expected):
    values = with_network({"workloadIdentity": identity, "connectors": {"demo": {"config": MINIMAL_CONFIG}}},
                          egress="restricted", api=[{"cidr": "203.0.113.0/24"}], storage=[{"cidr": "198.51.100.0/24"}])
    assert expected in render(values).notes


def test_identity_rules_render_their_endpoints(render):
    values = with_network({"connectors": {"demo": {"config": MINIMAL_CONFIG}}}, egress="restricted", identity={
        "awsSts": {"enabled": True, "cidrs": ["10.0.0.0/24"]},
        "awsPodIdentity": {"enabled": True},
        "gkeMetadata": {"enabled": True},
        "azureImds": {"enabled": True},
        "entraLogin": {"enabled": True, "cidrs": ["20.190.128.0/18", "40.126.0.0/18"]},
    })
    egress = render(values).one("NetworkPolicy")["spec"]["egress"]
    rules = [(sorted(b["ipBlock"]["cidr"] for b in r["to"]), sorted(p["port"] for p in r["ports"]))
             for r in egress if "ipBlock" in r["to"][0]]
    assert rules == [
        (["10.0.0.0/24"], [443]),  # STS
        (["169.254.170.23/32", "fd00:ec2::23/128"], [80]),  # EKS Pod Identity
        (["169.254.169.254/32"], [80]),  # GKE metadata.google.internal
        (["169.254.169.252/32"], [988]),
        (["169.254.169.254/32"], [80]),  # Azure IMDS
        (["20.190.128.0/18", "40.126.0.0/18"], [443]),  # Entra ID
    ]
    assert all(p["protocol"] == "TCP" for r in egress for p in r["ports"] if "ipBlock" in r["to"][0])


def test_open_egress_ignores_the_allow_lists(render):
    values = with_network(AIRFLOW, egress="open")
    assert render(values).one("NetworkPolicy")["spec"]["egress"] == [{}]


# --- External Secrets -------------------------------------------------------------------


def test_external_secrets_default_to_v1(render):
    values = {"externalSecrets": {"enabled": True, "secretStoreRef": {"name": "store"},
                                  "items": [{"name": "s", "dataFrom": [{"extract": {"key": "k"}}]}]}}
    rendered = render(values)
    assert rendered.one("ExternalSecret")["apiVersion"] == "external-secrets.io/v1"
    assert "v1beta1" not in rendered.notes


def test_external_secrets_v1beta1_warns(render):
    values = {"externalSecrets": {"enabled": True, "apiVersion": "external-secrets.io/v1beta1",
                                  "secretStoreRef": {"name": "store"},
                                  "items": [{"name": "s", "dataFrom": [{"extract": {"key": "k"}}]}]}}
    assert "not served by External\nSecrets Operator 0.17" in render(values).notes


def test_external_secret_structure(render):
    external = render(AIRFLOW).one("ExternalSecret")
    assert set(external) >= {"apiVersion", "kind", "metadata", "spec"}
    spec = external["spec"]
    assert set(spec) <= {"refreshInterval", "secretStoreRef", "target", "data", "dataFrom"}
    for item in spec["data"]:
        assert set(item) == {"secretKey", "remoteRef"} and "key" in item["remoteRef"]


# --- helm test pods ---------------------------------------------------------------------


def hook_test_pods(rendered):
    return {p["metadata"]["name"]: p for p in rendered.of_kind("Pod")
            if p["metadata"]["annotations"].get("helm.sh/hook") == "test"}


def test_helm_test_validates_every_connector_with_its_account_config_and_secrets(render):
    rendered = render(AIRFLOW)
    pods = hook_test_pods(rendered)
    assert set(pods) == {"landfall-demo-test", "landfall-shop-api-test"}
    selector = rendered.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    shop = pods["landfall-shop-api-test"]
    assert selector.items() <= shop["metadata"]["labels"].items()  # the NetworkPolicy applies
    spec = shop["spec"]
    assert spec["serviceAccountName"] == rendered.one("ServiceAccount")["metadata"]["name"]
    assert "initContainers" not in spec  # tests.check is off by default
    (container,) = spec["containers"]
    assert container["args"] == ["validate", "--config", "/etc/landfall/config.yaml"]
    assert container["envFrom"] == [{"secretRef": {"name": "landfall-common"}},
                                    {"secretRef": {"name": "landfall-shop-api"}}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "landfall-shop-api"
    rendered.one("ConfigMap", "landfall-shop-api")


def test_helm_test_checks_when_asked(render):
    pods = hook_test_pods(render(CRONJOB))
    spec = pods["landfall-shop-api-test"]["spec"]
    assert [c["args"][0] for c in spec["initContainers"]] == ["validate"]
    assert [c["args"][0] for c in spec["containers"]] == ["check"]
    # the connector's resources and env apply to its test too
    assert spec["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
    assert {"name": "RUST_LOG", "value": "info"} in spec["containers"][0]["env"]


def _run_container(container: dict[str, Any], config_map: dict[str, Any],
                   secrets: dict[str, dict[str, str]], root: Path) -> subprocess.CompletedProcess:
    """Runs a test pod container's command with the real binary: the ConfigMap and /tmp
    mounted under `root`, env from the container's env and its Secrets' data."""
    mounts = {}
    for mount in container["volumeMounts"]:
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = local
    for key, text in config_map["data"].items():
        (mounts["/etc/landfall"] / key).write_text(text)
    env = {"PATH": os.environ.get("PATH", "")}
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        env[item["name"]] = item["value"]
    env["HOME"] = env["TMPDIR"] = str(mounts["/tmp"])

    def local_path(arg: str) -> str:
        for mount_path, local in mounts.items():
            if arg.startswith(mount_path + "/"):
                return str(local / arg[len(mount_path) + 1:])
        return arg

    assert "command" not in container  # the image's entrypoint is the landfall binary
    args = [str(LANDFALL_BIN)] + [local_path(a) for a in container["args"]]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture()
def demo_api():
    if not LANDFALL_BIN.is_file():
        pytest.skip(f"{LANDFALL_BIN} not built (cargo build, or set LANDFALL_BIN)")
    server = subprocess.Popen([str(LANDFALL_BIN), "demo", "--serve", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        yield match.group(1)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _demo_values() -> dict[str, Any]:
    return {
        "mode": "airflow",
        "connectors": {"demo": {"configYaml": (ROOT / "config-examples" / "demo.yaml").read_text(),
                                "envFromSecrets": ["landfall-demo"]}},
        "tests": {"enabled": True, "check": True},
    }


def _run_test_pod(rendered, secrets, tmp_path) -> list[tuple[str, subprocess.CompletedProcess]]:
    pod = hook_test_pods(rendered)["landfall-demo-test"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_map = rendered.one("ConfigMap", volumes["config"]["configMap"]["name"])
    results = []
    # Kubernetes runs init containers in order, each to success, then the containers.
    for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        result = _run_container(container, config_map, secrets, tmp_path / container["name"])
        results.append((container["name"], result))
        if result.returncode != 0:
            break
    return results


def test_helm_test_pod_command_passes_against_the_demo(render, demo_api, tmp_path):
    rendered = render(_demo_values())
    landing = tmp_path / "landing"
    secrets = {"landfall-demo": {"DEMO_API_URL": demo_api, "DEMO_API_TOKEN": "demo-token",
                                 "LANDFALL_LANDING_URL": f"file://{landing}"}}
    results = _run_test_pod(rendered, secrets, tmp_path)
    assert [name for name, _ in results] == ["validate", "check"]
    for name, result in results:
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr}"
    # check really reached the API (one request per stream) and probed the landing store.
    log = results[1][1].stdout + results[1][1].stderr
    assert log.count('"step"') >= 4, log


def test_helm_test_pod_fails_on_a_wrong_secret(render, demo_api, tmp_path):
    rendered = render(_demo_values())
    secrets = {"landfall-demo": {"DEMO_API_URL": demo_api, "DEMO_API_TOKEN": "wrong",
                                 "LANDFALL_LANDING_URL": f"file://{tmp_path / 'landing'}"}}
    results = _run_test_pod(rendered, secrets, tmp_path)
    assert results[0][1].returncode == 0
    assert results[1][0] == "check" and results[1][1].returncode == 4, results[1][1].stderr


def test_helm_test_pod_fails_on_a_missing_secret_key(render, demo_api, tmp_path):
    values = _demo_values()
    values["connectors"]["demo"]["configYaml"] = values["connectors"]["demo"]["configYaml"].replace(
        "${env:DEMO_API_TOKEN:-demo-token}", "${env:DEMO_API_TOKEN}")
    results = _run_test_pod(render(values), {"landfall-demo": {}}, tmp_path)
    assert [name for name, _ in results] == ["validate"]
    assert results[0][1].returncode == 2, results[0][1].stderr


# --- lineage and metrics ----------------------------------------------------------------


def test_lineage_and_metrics_env_reach_every_pod(render):
    values = copy.deepcopy(CRONJOB)
    values["openLineage"] = {"url": "http://marquez:5000", "namespace": "extract",
                             "apiKeySecret": {"name": "lineage", "key": "api-key"}}
    rendered = render(values)
    for name, spec in rendered.pod_specs():
        for container in spec["containers"] + spec.get("initContainers", []):
            env = {e["name"]: e for e in container["env"]}
            assert env["OPENLINEAGE_URL"]["value"] == "http://marquez:5000", name
            assert env["OPENLINEAGE_NAMESPACE"]["value"] == "extract", name
            assert env["OPENLINEAGE_API_KEY"]["valueFrom"] == {
                "secretKeyRef": {"name": "lineage", "key": "api-key"}}, name
            assert env["LANDFALL_METRICS_PUSH_URL"]["value"] == "http://pushgateway.monitoring.svc:9091", name


def test_env_names_are_the_ones_landfall_reads():
    args = (ROOT / "src" / "cli" / "args.rs").read_text()
    lineage = (ROOT / "src" / "report" / "openlineage.rs").read_text()
    assert 'env = "LANDFALL_METRICS_PUSH_URL"' in args
    assert 'env = "OPENLINEAGE_URL"' in args
    assert '"OPENLINEAGE_NAMESPACE"' in lineage and '"OPENLINEAGE_API_KEY"' in lineage


def test_airflow_mode_notes_print_the_env_for_the_dags(render):
    notes = render(AIRFLOW).notes
    assert "OPENLINEAGE_URL: http://marquez.lineage.svc:5000" in notes
    assert "LANDFALL_METRICS_PUSH_URL: http://prometheus-pushgateway.monitoring.svc:9091" in notes


def test_no_monitoring_objects_by_default(render):
    kinds = render(None).kinds()
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds


def test_service_monitor_scrapes_the_pushgateway_with_honor_labels(render):
    monitor = render(AIRFLOW).one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus-pushgateway"}}
    assert spec["namespaceSelector"] == {"matchNames": ["monitoring"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": True}


def test_service_monitor_needs_a_selector(chart):
    values = {"metrics": {"serviceMonitor": {"enabled": True}}}
    with pytest.raises(helm.HelmError, match="selector.matchLabels"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def declared_metrics() -> set[str]:
    return set(re.findall(r'"(landfall_[a-z_]+)"', (ROOT / "src" / "report" / "metrics.rs").read_text()))


def test_prometheus_rule_uses_only_declared_metrics_and_labels(render):
    rule = render(AIRFLOW).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"LandfallRunFailed", "LandfallStreamStale", "LandfallDeadLetterRatioHigh",
                           "LandfallRetriesHigh"}
    declared = declared_metrics()
    statuses = re.search(r"const STATUSES: \[&str; \d\] = \[([^\]]*)\]",
                         (ROOT / "src" / "report" / "metrics.rs").read_text()).group(1)
    for name, alert in alerts.items():
        used = set(re.findall(r"\blandfall_[a-z_]+", alert["expr"]))
        assert used and used <= declared, (name, used - declared)
        for status in re.findall(r'status="([a-z]+)"', alert["expr"]):
            assert f'"{status}"' in statuses
        assert set(alert) == {"alert", "expr", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        page = alert["annotations"]["runbook_url"].rsplit("/", 1)[1]
        assert (ROOT / "runbooks" / page).is_file(), page
    assert "landfall_last_success_timestamp_seconds" in alerts["LandfallStreamStale"]["expr"]
    assert alerts["LandfallStreamStale"]["expr"].endswith("> 93600")  # 26h
    assert "landfall_dead_letter_rows_total" in alerts["LandfallDeadLetterRatioHigh"]["expr"]
    assert "landfall_retries_total" in alerts["LandfallRetriesHigh"]["expr"]


def test_prometheus_rule_thresholds_and_switches(render):
    values = copy.deepcopy(AIRFLOW)
    values["metrics"]["prometheusRule"].update({
        "staleSuccess": {"enabled": True, "after": "2d", "severity": "critical"},
        "retryRatio": {"enabled": False},
        "deadLetterRatio": {"enabled": True, "threshold": 0.05, "severity": "critical"},
    })
    alerts = {r["alert"]: r for r in render(values).one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "LandfallRetriesHigh" not in alerts
    assert alerts["LandfallStreamStale"]["expr"].endswith("> 172800")
    assert alerts["LandfallDeadLetterRatioHigh"]["expr"].endswith("> 0.05")
    assert alerts["LandfallDeadLetterRatioHigh"]["labels"]["severity"] == "critical"


def test_values_yaml_documents_every_new_key():
    text = (ROOT / "helm" / "landfall" / "values.yaml").read_text()
    values = yaml.safe_load(text)
    assert values["networkPolicy"]["egress"] == "open"
    assert values["externalSecrets"]["apiVersion"] == "external-secrets.io/v1"
    assert values["tests"] == {"enabled": True, "check": False}
    for key in ("awsSts", "awsPodIdentity", "gkeMetadata", "azureImds", "entraLogin"):
        assert values["networkPolicy"]["identity"][key]["enabled"] is False
