"""Tests of the landfall Helm chart: lint, values schema, rendering, Kubernetes API schemas."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    kubernetes_validate,
    load_values,
)

AIRFLOW = load_values("airflow-values.yaml")
CRONJOB = load_values("cronjob-values.yaml")

REPO = Path(__file__).resolve().parents[2]
# A database source, unchanged from the shipped example: the chart is source-agnostic.
POSTGRES_EXAMPLE = (REPO / "config-examples" / "postgres.yaml").read_text()

AZURE_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
MINIMAL_CONFIG = {
    "version": 1,
    "source": {"name": "demo", "base_url": "https://api.example.com", "auth": {"type": "none"}},
    "streams": [{"name": "items", "path": "/items"}],
    "landing": {"url": "s3://bucket/prefix"},
}


def merged(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    values = copy.deepcopy(base)
    values.update(overrides)
    return values


# Every values set the chart must render, and validate, in.
SCENARIOS: dict[str, dict[str, Any] | None] = {
    "airflow-defaults": None,
    "airflow-full": AIRFLOW,
    "airflow-gke-azure": {
        "workloadIdentity": {
            "gcp": {"serviceAccount": "landfall@my-project.iam.gserviceaccount.com"},
            "azure": {"clientId": AZURE_CLIENT_ID, "tenantId": AZURE_CLIENT_ID},
        },
        "externalSecrets": {
            "enabled": True,
            "apiVersion": "external-secrets.io/v1",
            "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
            "items": [{"name": "all-keys", "dataFrom": [{"extract": {"key": "landfall"}}]}],
        },
        "connectors": {"demo": {"config": MINIMAL_CONFIG}},
    },
    "cronjob-full": CRONJOB,
    "cronjob-minimal": {
        "mode": "cronjob",
        "connectors": {"demo": {"schedule": "@daily", "config": MINIMAL_CONFIG}},
        "networkPolicy": {"enabled": True, "egress": "restricted",
                          "dns": {"enabled": False, "namespace": "kube-system"},
                          "api": [], "storage": []},
        "tests": {"enabled": False},
        "serviceAccount": {"create": False, "name": "existing-sa"},
        "cronjob": {"ttlSecondsAfterFinished": 0, "podFailurePolicy": {"enabled": False}},
    },
    "airflow-open-observability": {
        "connectors": {"demo": {"config": MINIMAL_CONFIG, "envFromSecrets": ["landfall-demo"]}},
        "tests": {"enabled": True, "check": True},
        "openLineage": {"url": "http://marquez:5000", "namespace": "extract",
                        "apiKeySecret": {"name": "lineage", "key": "api-key"}},
        "metrics": {"pushUrl": "http://pushgateway:9091",
                    "serviceMonitor": {"enabled": True, "namespace": "monitoring",
                                       "selector": {"matchLabels": {"app": "pushgateway"}}},
                    "prometheusRule": {"enabled": True, "staleSuccess": {"after": "2d"}}},
    },
    "cronjob-freshness": merged(
        CRONJOB,
        freshness={"enabled": True, "image": "registry.example.com/analytics-dbt:1.4.0",
                   "args": ["--project-dir", "/dbt", "--target", "prod"],
                   "envFromSecrets": ["warehouse"], "env": {"LANDFALL_LANDING_URL": "gs://lake-raw/landfall"}},
        metrics={"prometheusRule": {"enabled": True}},
    ),
    "cronjob-postgres": {
        "mode": "cronjob",
        "connectors": {"shop_postgres": {"schedule": "@hourly", "configYaml": POSTGRES_EXAMPLE,
                                         "envFromSecrets": ["landfall-shop-postgres"]}},
        "networkPolicy": {"enabled": True, "egress": "restricted",
                          "dns": {"enabled": True, "namespace": "kube-system"},
                          "api": [{"cidr": "10.30.0.5/32", "ports": [5432]}],
                          "storage": [{"cidr": "198.51.100.0/24"}]},
    },
    "cronjob-restricted-identity": {
        "mode": "cronjob",
        "connectors": {"demo": {"schedule": "@daily", "config": MINIMAL_CONFIG}},
        "networkPolicy": {"enabled": True, "egress": "restricted", "dns": {"enabled": True, "namespace": "kube-system"},
                          "api": [{"cidr": "203.0.113.0/24"}], "storage": [{"cidr": "198.51.100.0/24"}],
                          "identity": {"awsSts": {"enabled": True, "cidrs": ["10.0.0.0/24"]},
                                       "awsPodIdentity": {"enabled": True},
                                       "gkeMetadata": {"enabled": True},
                                       "azureImds": {"enabled": True},
                                       "entraLogin": {"enabled": True, "cidrs": ["20.190.128.0/18"]}}},
    },
}

# Kinds from CRDs: kubernetes-validate has no schema for them; their structure is asserted below.
CUSTOM_KINDS = {"ExternalSecret", "ServiceMonitor", "PrometheusRule"}


# --- lint -------------------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_name", ["defaults", "airflow-values.yaml", "cronjob-values.yaml"])
def test_lint_strict_is_clean(values_name, kube_version):
    values = None if values_name == "defaults" else load_values(values_name)
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{kube_version}")
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report
    # Severity 2 is a warning, 3 an error; strict mode fails on both. Infos (1) are advice,
    # such as "icon is recommended".
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_lint_reports_invalid_values():
    report = helm.lint(CHART_DIR, {"mode": "sidecar"}, strict=True)
    text = str(report)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"]), report
    assert "mode" in text


# --- values schema ----------------------------------------------------------------------


def test_default_and_example_values_pass_schema(chart):
    chart.validate_schema(None)
    chart.validate_schema(AIRFLOW)
    chart.validate_schema(CRONJOB)


BAD_VALUES = [
    pytest.param({"mode": "daemonset"}, ["/mode", "airflow", "cronjob"], id="mode-enum"),
    pytest.param({"image": {"tag": 0.1}}, ["/image/tag", "want string"], id="tag-not-string"),
    pytest.param({"image": {"repository": ""}}, ["/image/repository"], id="empty-repository"),
    pytest.param({"image": {"digest": "latest"}}, ["/image/digest", "sha256"], id="bad-digest"),
    pytest.param({"connectors": {"Shop-API": {"config": MINIMAL_CONFIG}}},
                 ["Shop-API", "^[a-z][a-z0-9_]*$"], id="connector-name-pattern"),
    pytest.param({"connectors": {"shop": {"config": MINIMAL_CONFIG, "scheduel": "@hourly"}}},
                 ["/connectors/shop", "scheduel", "not allowed"], id="connector-unknown-key"),
    pytest.param({"connectors": {"shop": {"schedule": "@hourly"}}},
                 ["/connectors/shop", "config", "configYaml"], id="connector-without-config"),
    pytest.param({"connectors": {"shop": {"config": {"version": 1}}}},
                 ["/connectors/shop/config", "missing properties", "source"],
                 id="connector-config-incomplete"),
    pytest.param({"mode": "cronjob", "connectors": {"shop": {"config": MINIMAL_CONFIG}}},
                 ["/connectors/shop", "schedule"], id="cronjob-needs-schedule"),
    pytest.param({"mode": "cronjob", "connectors": {"shop": {"config": MINIMAL_CONFIG,
                                                             "schedule": "hourly"}}},
                 ["/connectors/shop/schedule"], id="bad-schedule"),
    pytest.param({"replicaCount": 2}, ["replicaCount", "not allowed"], id="unknown-top-level-key"),
    pytest.param({"securityContext": {"readOnlyRootFilesystem": False}},
                 ["/securityContext/readOnlyRootFilesystem", "true"], id="writable-root"),
    pytest.param({"securityContext": {"allowPrivilegeEscalation": True}},
                 ["/securityContext/allowPrivilegeEscalation", "false"], id="privilege-escalation"),
    pytest.param({"podSecurityContext": {"runAsNonRoot": False}},
                 ["/podSecurityContext/runAsNonRoot"], id="root-pod"),
    pytest.param({"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
                 ["/securityContext/capabilities/drop", "ALL"], id="caps-not-dropped"),
    pytest.param({"cronjob": {"terminationGracePeriodSeconds": 10}},
                 ["/cronjob/terminationGracePeriodSeconds", "25"], id="grace-period-too-short"),
    pytest.param({"workloadIdentity": {"aws": {"roleArn": "landfall-role"}}},
                 ["/workloadIdentity/aws/roleArn"], id="bad-role-arn"),
    pytest.param({"workloadIdentity": {"azure": {"clientId": "not-a-uuid"}}},
                 ["/workloadIdentity/azure/clientId"], id="bad-azure-client-id"),
    pytest.param({"networkPolicy": {"api": [{"cidr": "api.example.com"}]}},
                 ["/networkPolicy/api/0/cidr"], id="cidr-not-cidr"),
    pytest.param({"networkPolicy": {"storage": [{"cidr": "10.0.0.0/8", "ports": [70000]}]}},
                 ["/networkPolicy/storage/0/ports/0", "maximum"], id="port-out-of-range"),
    pytest.param({"externalSecrets": {"enabled": True, "apiVersion": "external-secrets.io/v1alpha1"}},
                 ["/externalSecrets/apiVersion"], id="external-secrets-api-version"),
    pytest.param({"networkPolicy": {"egress": "closed"}}, ["/networkPolicy/egress", "open", "restricted"],
                 id="egress-mode-enum"),
    pytest.param({"networkPolicy": {"identity": {"awsSts": {"enabled": True}}}},
                 ["/networkPolicy/identity/awsSts", "cidrs"], id="sts-without-cidrs"),
    pytest.param({"networkPolicy": {"identity": {"entraLogin": {"enabled": True, "cidrs": []}}}},
                 ["/networkPolicy/identity/entraLogin/cidrs", "minItems"], id="entra-empty-cidrs"),
    pytest.param({"networkPolicy": {"identity": {"gkeMetadata": {"enabled": True, "cidrs": ["1.2.3.4/32"]}}}},
                 ["/networkPolicy/identity/gkeMetadata", "cidrs", "not allowed"], id="fixed-rule-takes-no-cidrs"),
    pytest.param({"tests": {"check": "yes"}}, ["/tests/check"], id="tests-check-boolean"),
    pytest.param({"openLineage": {"url": "marquez:5000"}}, ["/openLineage/url"], id="lineage-url"),
    pytest.param({"metrics": {"pushUrl": "pushgateway:9091"}}, ["/metrics/pushUrl"], id="push-url"),
    pytest.param({"metrics": {"prometheusRule": {"staleSuccess": {"after": "1 day"}}}},
                 ["/metrics/prometheusRule/staleSuccess/after"], id="stale-after-duration"),
    pytest.param({"metrics": {"prometheusRule": {"deadLetterRatio": {"threshold": 5}}}},
                 ["/metrics/prometheusRule/deadLetterRatio/threshold"], id="ratio-above-one"),
    pytest.param({"airflow": {"rbac": {"create": True, "workerServiceAccount": {"name": "airflow-worker",
                                                                                "namespace": "Airflow"}}}},
                 ["/airflow/rbac/workerServiceAccount/namespace"], id="bad-worker-namespace"),
    pytest.param({"envFromSecrets": ["Shop_Secret"]}, ["/envFromSecrets/0"], id="bad-secret-name"),
]


@pytest.mark.parametrize("values,expected", BAD_VALUES)
def test_schema_rejects_bad_values_with_clear_message(chart, values, expected):
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in message:\n{message}"


def test_render_refuses_values_the_schema_rejects(chart):
    with pytest.raises(helm.HelmValuesError, match="/mode"):
        chart.render({"mode": "daemonset"}, name=RELEASE, namespace=NAMESPACE)


def test_render_refuses_config_and_config_yaml_together(chart):
    values = {"connectors": {"shop": {"config": MINIMAL_CONFIG, "configYaml": "version: 1\n"}}}
    with pytest.raises(helm.HelmError, match="connectors.shop: set either config or configYaml"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_render_refuses_names_too_long_for_a_cronjob(chart):
    values = {"fullnameOverride": "a" * 40, "mode": "cronjob",
              "connectors": {"x" * 20: {"schedule": "@hourly", "config": MINIMAL_CONFIG}}}
    with pytest.raises(helm.HelmError, match="longer than 52 characters"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_external_secret_needs_a_store(chart):
    values = {"externalSecrets": {"enabled": True,
                                  "items": [{"name": "x", "dataFrom": [{"extract": {"key": "k"}}]}]}}
    with pytest.raises(helm.HelmError, match="no secret store"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# --- Kubernetes API schemas -------------------------------------------------------------


def test_last_three_kube_versions_are_checked():
    assert len(KUBE_VERSIONS) == 3
    minors = [int(v.split(".")[1]) for v in KUBE_VERSIONS]
    assert minors == sorted(minors) and minors[-1] - minors[0] == 2, KUBE_VERSIONS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_pass_kubernetes_validate_strict(render, scenario, tmp_path: Path):
    rendered = render(SCENARIOS[scenario])
    paths = []
    for template, text in sorted(rendered.manifest_texts().items()):
        path = tmp_path / template.replace("/", "_")
        path.write_text(text)
        paths.append(path)
    assert paths, "nothing rendered"
    result = kubernetes_validate(paths, KUBE_VERSIONS)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    builtin = [m for m in rendered.manifests() if m["kind"] not in CUSTOM_KINDS]
    passed = [line for line in out.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(builtin) * len(KUBE_VERSIONS), out
    for version in KUBE_VERSIONS:
        minor = version.rsplit(".", 1)[0]
        assert sum(f"against version {minor}" in line for line in passed) == len(builtin), out
    # kubernetes-validate has no schema for CRDs: it warns and skips them; nothing else may warn.
    for line in out.splitlines():
        if line.startswith("WARN"):
            assert any(kind in line for kind in CUSTOM_KINDS), line


# --- rendering: modes -------------------------------------------------------------------


def test_airflow_mode_renders_namespace_setup_and_no_workload(render):
    rendered = render(AIRFLOW)
    assert "CronJob" not in rendered.kinds()
    assert rendered.kinds().count("ConfigMap") == 2
    for kind in ("ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "ExternalSecret"):
        assert kind in rendered.kinds()
    assert "service_account_name:  landfall" in rendered.notes
    assert "ConfigMap landfall-shop-api (key config.yaml), env from Secrets landfall-common, landfall-shop-api" \
        in rendered.notes


def test_cronjob_mode_renders_one_cronjob_per_connector_and_no_rbac(render):
    rendered = render(CRONJOB)
    cronjobs = {c["metadata"]["name"]: c for c in rendered.of_kind("CronJob")}
    assert set(cronjobs) == {"landfall-demo", "landfall-shop-api"}
    assert "Role" not in rendered.kinds() and "RoleBinding" not in rendered.kinds()
    assert "landfall-shop-api  schedule \"@hourly\"" in rendered.notes


def test_defaults_render_without_connectors(render):
    rendered = render(None)
    assert rendered.kinds() == ["NetworkPolicy", "Pod", "Role", "RoleBinding", "ServiceAccount"]
    assert rendered.one("Pod")["spec"]["containers"][0]["args"] == ["--version"]


def test_release_name_without_chart_name_prefixes_objects(chart):
    files = chart.render(AIRFLOW, name="extract", namespace=NAMESPACE)
    text = "\n".join(files.values())
    assert "name: extract-landfall-demo" in text
    assert "name: extract-landfall-pod-launcher" in text


# --- connector configs ------------------------------------------------------------------


def test_connector_configmaps_hold_config_yaml(render):
    rendered = render(AIRFLOW)
    demo = rendered.one("ConfigMap", "landfall-demo")
    assert set(demo["data"]) == {"config.yaml"}
    assert yaml.safe_load(demo["data"]["config.yaml"]) == AIRFLOW["connectors"]["demo"]["config"]
    assert demo["metadata"]["labels"]["landfall.dev/connector"] == "demo"
    shop = rendered.one("ConfigMap", "landfall-shop-api")
    assert shop["data"]["config.yaml"].rstrip("\n") == \
        AIRFLOW["connectors"]["shop_api"]["configYaml"].rstrip("\n")
    # ${env:...} references reach landfall untouched.
    assert "${env:SHOP_TOKEN}" in shop["data"]["config.yaml"]


def test_a_database_source_deploys_unchanged(render):
    """config-examples/postgres.yaml as a CronJob: its config reaches the pod as written (the
    connection URL stays a reference to the Secret's environment), and the restricted egress
    opens the database's port, not 443."""
    rendered = render(SCENARIOS["cronjob-postgres"])
    config = rendered.one("ConfigMap", "landfall-shop-postgres")["data"]["config.yaml"]
    assert config.rstrip("\n") == POSTGRES_EXAMPLE.rstrip("\n")
    assert yaml.safe_load(config)["source"]["type"] == "postgres"
    assert "${env:DATABASE_URL}" in config
    cronjob = rendered.one("CronJob", "landfall-shop-postgres")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["run", "--config", "/etc/landfall/config.yaml"]
    assert container["envFrom"] == [{"secretRef": {"name": "landfall-shop-postgres"}}]
    assert not any(e["name"] == "DATABASE_URL" for e in container.get("env", []))
    dns, database, storage = rendered.one("NetworkPolicy")["spec"]["egress"]
    assert database == {"to": [{"ipBlock": {"cidr": "10.30.0.5/32"}}],
                        "ports": [{"protocol": "TCP", "port": 5432}]}


# --- security ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_runs_restricted(render, scenario):
    rendered = render(SCENARIOS[scenario])
    specs = rendered.pod_specs()
    if scenario.startswith("cronjob"):
        assert any(name.startswith("CronJob/") for name, _ in specs)
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == 65532, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["runAsUser"] == 65532, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert sc.get("privileged", False) is False, name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "/tmp" in mounts, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"], name


# --- cronjob ----------------------------------------------------------------------------


def test_cronjob_spec(render):
    rendered = render(CRONJOB)
    cronjob = rendered.one("CronJob", "landfall-shop-api")
    spec = cronjob["spec"]
    assert spec["schedule"] == "@hourly"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 2
    assert spec["failedJobsHistoryLimit"] == 5
    assert spec["startingDeadlineSeconds"] == 300
    assert spec["suspend"] is False
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 3
    assert job["activeDeadlineSeconds"] == 1800  # the connector's override
    assert job["ttlSecondsAfterFinished"] == 86400
    assert job["podFailurePolicy"]["rules"][0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "landfall", "operator": "In", "values": [2, 4]},
    }
    assert job["podFailurePolicy"]["rules"][1]["action"] == "Ignore"
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["serviceAccountName"] == "landfall"
    (container,) = pod["containers"]
    assert container["name"] == "landfall"
    assert container["image"] == "ghcr.io/landfall-dev/landfall:0.1.0"
    assert container["args"] == ["run", "--config", "/etc/landfall/config.yaml", "--stream", "orders"]
    assert "command" not in container  # the image's ENTRYPOINT is /landfall
    assert container["envFrom"] == [{"secretRef": {"name": "landfall-shop-api"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["RUST_LOG"]["value"] == "info"
    assert env["HOME"]["value"] == "/tmp"
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"},
                                      "limits": {"memory": "1Gi"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/etc/landfall", "/tmp"}
    assert mounts["/etc/landfall"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/landfall"]["name"]]["configMap"]["name"] == "landfall-shop-api"
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"sizeLimit": "1Gi"}
    labels = job["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "landfall"
    assert labels["app.kubernetes.io/component"] == "extractor"
    assert labels["landfall.dev/connector"] == "shop_api"


def test_cronjob_defaults(render):
    rendered = render(SCENARIOS["cronjob-minimal"])
    cronjob = rendered.one("CronJob", "landfall-demo")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == 3
    assert cronjob["spec"]["failedJobsHistoryLimit"] == 3
    assert job["backoffLimit"] == 2
    assert job["activeDeadlineSeconds"] == 3600
    assert job["ttlSecondsAfterFinished"] == 0
    assert "podFailurePolicy" not in job
    pod = job["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["serviceAccountName"] == "existing-sa"
    assert "envFrom" not in pod["containers"][0]
    assert pod["containers"][0]["args"] == ["run", "--config", "/etc/landfall/config.yaml"]
    assert "ServiceAccount" not in rendered.kinds()


def test_cronjob_config_checksum_follows_its_own_config(render):
    values = copy.deepcopy(CRONJOB)
    before = {c["metadata"]["name"]: c for c in render(values).of_kind("CronJob")}
    values["connectors"]["demo"]["config"]["source"]["base_url"] = "http://other:8080"
    after = {c["metadata"]["name"]: c for c in render(values).of_kind("CronJob")}

    def checksum(cronjob):
        return cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]

    assert checksum(before["landfall-demo"]) != checksum(after["landfall-demo"])
    assert checksum(before["landfall-shop-api"]) == checksum(after["landfall-shop-api"])


def test_image_digest_pins_the_image(render):
    digest = "sha256:" + "ab" * 32
    rendered = render(merged(CRONJOB, image={"repository": "registry.example.com:5000/landfall",
                                             "tag": "0.1.0", "digest": digest}))
    for _, spec in rendered.pod_specs():
        assert spec["containers"][0]["image"] == f"registry.example.com:5000/landfall@{digest}"


def test_empty_tag_uses_app_version(render, chart):
    rendered = render(merged(CRONJOB, image={"repository": "r/landfall", "tag": ""}))
    for _, spec in rendered.pod_specs():
        assert spec["containers"][0]["image"] == f"r/landfall:{chart.metadata['appVersion']}"


# --- identity ---------------------------------------------------------------------------


def test_service_account_irsa(render):
    sa = render(AIRFLOW).one("ServiceAccount", "landfall")
    annotations = sa["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/landfall-extract"
    assert annotations["eks.amazonaws.com/sts-regional-endpoints"] == "true"
    assert "iam.gke.io/gcp-service-account" not in annotations
    assert sa["automountServiceAccountToken"] is False


def test_service_account_gke_and_azure(render):
    rendered = render(SCENARIOS["airflow-gke-azure"])
    sa = rendered.one("ServiceAccount")
    annotations = sa["metadata"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"] == "landfall@my-project.iam.gserviceaccount.com"
    assert annotations["azure.workload.identity/client-id"] == AZURE_CLIENT_ID
    assert annotations["azure.workload.identity/tenant-id"] == AZURE_CLIENT_ID
    assert "eks.amazonaws.com/role-arn" not in annotations
    assert "azure.workload.identity/use=true" in rendered.notes
    test_pod = rendered.one("Pod")
    assert test_pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_azure_pod_label_on_cronjob_pods(render):
    values = merged(CRONJOB, workloadIdentity={"azure": {"clientId": AZURE_CLIENT_ID}})
    for cronjob in render(values).of_kind("CronJob"):
        labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["azure.workload.identity/use"] == "true"


def test_no_identity_annotations_by_default(render):
    sa = render(None).one("ServiceAccount")
    assert "annotations" not in sa["metadata"]


# --- secrets ----------------------------------------------------------------------------


def test_external_secrets_only_when_enabled(render):
    assert "ExternalSecret" not in render(merged(AIRFLOW, externalSecrets={"enabled": False})).kinds()
    external = render(AIRFLOW).one("ExternalSecret", "landfall-shop-api")
    # ESO 0.17 and later serve only v1: the default (issue 20).
    assert external["apiVersion"] == "external-secrets.io/v1"
    spec = external["spec"]
    assert spec["secretStoreRef"] == {"name": "aws-secrets-manager", "kind": "ClusterSecretStore"}
    assert spec["target"] == {"name": "landfall-shop-api", "creationPolicy": "Owner"}
    assert spec["refreshInterval"] == "1h"
    assert spec["data"] == [{"secretKey": "SHOP_TOKEN",
                             "remoteRef": {"key": "prod/landfall/shop", "property": "token"}}]


def test_external_secret_v1_and_store_override(render):
    external = render(SCENARIOS["airflow-gke-azure"]).one("ExternalSecret", "all-keys")
    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["spec"]["secretStoreRef"] == {"name": "vault", "kind": "SecretStore"}
    assert external["spec"]["dataFrom"] == [{"extract": {"key": "landfall"}}]


def test_env_from_secrets_merge_chart_wide_then_connector(render):
    values = merged(CRONJOB, envFromSecrets=["landfall-common", "landfall-shop-api"])
    cronjob = render(values).one("CronJob", "landfall-shop-api")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    # A Secret named in both lists is referenced once.
    assert container["envFrom"] == [{"secretRef": {"name": "landfall-common"}},
                                    {"secretRef": {"name": "landfall-shop-api"}}]


# --- RBAC -------------------------------------------------------------------------------


def test_rbac_lets_the_airflow_worker_launch_pods(render):
    values = merged(AIRFLOW, airflow={"rbac": {"create": True, "workerServiceAccount": {
        "name": "airflow-celery-worker", "namespace": "orchestration"}}})
    rendered = render(values)
    role = rendered.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""]
        for resource in rule["resources"]:
            rules.setdefault(resource, set()).update(rule["verbs"])
    assert {"create", "get", "list", "watch", "delete"} <= rules["pods"]
    assert rules["pods"] <= {"create", "get", "list", "watch", "delete", "patch"}
    assert rules["pods/log"] == {"get"}
    assert "create" in rules["pods/exec"]
    assert set(rules) == {"pods", "pods/log", "pods/exec", "events"}
    assert rules["events"] == {"list"}
    # Nothing cluster-wide, nothing on secrets.
    assert "ClusterRole" not in rendered.kinds() and "secrets" not in rules
    binding = rendered.one("RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "airflow-celery-worker",
                                    "namespace": "orchestration"}]


def test_rbac_can_be_left_out(render):
    values = merged(AIRFLOW, airflow={"rbac": {"create": False, "workerServiceAccount": {
        "name": "w", "namespace": "airflow"}}})
    kinds = render(values).kinds()
    assert "Role" not in kinds and "RoleBinding" not in kinds


# --- NetworkPolicy ----------------------------------------------------------------------


def test_network_policy_allows_only_dns_api_and_storage(render):
    policy = render(AIRFLOW).one("NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "landfall",
                                                   "app.kubernetes.io/component": "extractor"}}
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in spec  # nothing may connect in
    dns, api, storage, sts = spec["egress"]
    assert sts == {"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}, {"ipBlock": {"cidr": "10.20.1.0/24"}}],
                   "ports": [{"protocol": "TCP", "port": 443}]}
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert api == {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                   "ports": [{"protocol": "TCP", "port": 443}]}
    assert storage == {"to": [{"ipBlock": {"cidr": "198.51.100.0/24",
                                           "except": ["198.51.100.128/25"]}}],
                       "ports": [{"protocol": "TCP", "port": 443}]}


def test_network_policy_selects_the_cronjob_pods(render):
    rendered = render(CRONJOB)
    selector = rendered.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    for cronjob in rendered.of_kind("CronJob"):
        labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_network_policy_dns_pod_selector_default_port_and_extra_rules(render):
    spec = render(CRONJOB).one("NetworkPolicy")["spec"]
    dns, api, storage, gke_metadata, gke_metadata_988, extra = spec["egress"]
    assert gke_metadata == {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}],
                            "ports": [{"protocol": "TCP", "port": 80}]}
    assert gke_metadata_988 == {"to": [{"ipBlock": {"cidr": "169.254.169.252/32"}}],
                                "ports": [{"protocol": "TCP", "port": 988}]}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert api["ports"] == [{"protocol": "TCP", "port": 443}]  # default port
    assert storage["to"] == [{"ipBlock": {"cidr": "199.36.153.8/30"}}]
    assert extra == CRONJOB["networkPolicy"]["extraEgress"][0]


def test_network_policy_with_no_destination_denies_all_egress(render):
    spec = render(SCENARIOS["cronjob-minimal"]).one("NetworkPolicy")["spec"]
    assert spec["egress"] == []


def test_network_policy_can_be_disabled(render):
    assert "NetworkPolicy" not in render(merged(AIRFLOW, networkPolicy={"enabled": False})).kinds()


def test_extra_labels_and_annotations(render):
    values = merged(CRONJOB, commonLabels={"team": "data"}, podLabels={"cost-center": "42"},
                    podAnnotations={"example.com/owner": "data"})
    rendered = render(values)
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["team"] == "data", obj["metadata"]["name"]
    template = rendered.one("CronJob", "landfall-demo")["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"]["cost-center"] == "42"
    assert template["metadata"]["annotations"]["example.com/owner"] == "data"


def test_cronjob_mode_checks_freshness_with_a_job_and_alerts(render):
    rendered = render(SCENARIOS["cronjob-freshness"])
    cronjobs = {c["metadata"]["name"]: c for c in rendered.of_kind("CronJob")}
    assert set(cronjobs) == {"landfall-demo", "landfall-shop-api", "landfall-demo-fresh", "landfall-shop-api-fresh"}
    fresh = cronjobs["landfall-shop-api-fresh"]
    assert fresh["spec"]["schedule"] == "15 * * * *"
    assert fresh["spec"]["timeZone"] == "Europe/Berlin"
    job = fresh["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0  # a stale source is not cured by a retry
    (container,) = job["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/analytics-dbt:1.4.0"
    assert container["command"] == ["dbt"]
    assert container["args"] == ["source", "freshness", "--select", "source:shop_api",
                                 "--project-dir", "/dbt", "--target", "prod"]
    assert container["envFrom"] == [{"secretRef": {"name": "warehouse"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DBT_TARGET_PATH"].startswith("/tmp/") and env["LANDFALL_LANDING_URL"] == "gs://lake-raw/landfall"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    rules = {r["alert"]: r for r in rendered.one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "LandfallStreamStale" in rules  # the stale-success alert was already there
    assert rules["LandfallFreshnessCheckFailed"]["expr"] == (
        'max by (namespace, job_name) (kube_job_status_failed{namespace="%s", job_name=~"landfall-.*-fresh-.*"}) > 0'
        % rendered.one("CronJob", "landfall-demo-fresh")["metadata"]["namespace"]
    )
    assert rules["LandfallFreshnessCheckFailed"]["annotations"]["runbook_url"].endswith("freshness-alert.md")
    # off by default; and without an image it refuses to render
    assert "landfall-demo-fresh" not in {c["metadata"]["name"] for c in render(CRONJOB).of_kind("CronJob")}


def test_freshness_needs_an_image(chart):
    values = merged(CRONJOB, freshness={"enabled": True})
    with pytest.raises(Exception, match="freshness.image is required"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
