"""KubernetesPodOperator tasks that run landfall (and dbt) in hardened pods.

The pods follow the Helm chart in helm/landfall (airflow mode): the connector config comes
from the ConfigMap `landfall-<source>` (key `config.yaml`, mounted read-only at
/etc/landfall), secrets from Secrets as environment variables (`envFrom`), cloud identity
from the service account (IRSA / GKE or Azure workload identity), and the restricted Pod
Security Standard: non-root numeric UID, read-only root filesystem, no privilege escalation,
all capabilities dropped, RuntimeDefault seccomp; /tmp is the only writable path.
"""

from __future__ import annotations

import shlex
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from landfall_airflow.compat import AirflowException, AirflowFailException, AirflowSkipException
from landfall_airflow.policy import enforce
from landfall_airflow.templates import LINEAGE_PARENT_ID

BASE_CONTAINER = "landfall"
XCOM_PATH = "/airflow/xcom/return.json"


def container_exit_code(pod: k8s.V1Pod | None, container_name: str) -> int | None:
    """Exit code of a terminated container of `pod`, or None if it has not terminated."""
    status = getattr(pod, "status", None)
    for container in getattr(status, "container_statuses", None) or []:
        if container.name == container_name and container.state and container.state.terminated:
            return container.state.terminated.exit_code
    return None


def drop_empty_options(arguments: list[str]) -> list[str]:
    """Remove `--option ""` pairs, e.g. `--start` of a run that has no data interval."""
    kept: list[str] = []
    index = 0
    while index < len(arguments):
        item = arguments[index]
        if item.startswith("--") and index + 1 < len(arguments) and arguments[index + 1] == "":
            index += 2
            continue
        kept.append(item)
        index += 1
    return kept


class LandfallPodOperator(KubernetesPodOperator):
    """A KubernetesPodOperator that applies landfall's exit-code policy (see exit_codes.py).

    It also gives every container of the pod (the xcom sidecar too) the restricted security
    context unless a cluster policy already set one, so that the pod is admitted in a
    namespace that enforces the restricted Pod Security Standard.
    """

    def __init__(
        self,
        *,
        partial_policy: str = "retry",
        sidecar_security_context: k8s.V1SecurityContext | None = None,
        apply_exit_code_policy: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.partial_policy = partial_policy
        self.sidecar_security_context = sidecar_security_context
        self.apply_exit_code_policy = apply_exit_code_policy

    def build_pod_request_obj(self, *args: Any, **kwargs: Any) -> k8s.V1Pod:
        pod = super().build_pod_request_obj(*args, **kwargs)
        for container in pod.spec.containers:
            if container.name == self.base_container_name and container.args:
                container.args = drop_empty_options(list(container.args))
        if pod.spec.enable_service_links is None:
            pod.spec.enable_service_links = False
        if self.sidecar_security_context is not None:
            for container in pod.spec.containers:
                if container.security_context is None:
                    container.security_context = self.sidecar_security_context
        return pod

    def cleanup(self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod, *args: Any, **kwargs: Any) -> None:
        try:
            super().cleanup(pod, remote_pod, *args, **kwargs)
        except (AirflowSkipException, AirflowFailException):
            raise
        except AirflowException as error:
            if not self.apply_exit_code_policy:
                raise
            exit_code = container_exit_code(remote_pod, self.base_container_name)
            enforce(exit_code, self.partial_policy, error, self.log)


def pod_security_context(kube: dict[str, Any]) -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=kube["run_as_user"],
        run_as_group=kube["run_as_group"],
        fs_group=kube["fs_group"],
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context(kube: dict[str, Any]) -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=kube["run_as_user"],
        run_as_group=kube["run_as_group"],
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _resources(spec: dict[str, Any]) -> k8s.V1ResourceRequirements:
    return k8s.V1ResourceRequirements(requests=spec.get("requests") or None, limits=spec.get("limits") or None)


def _env(values: dict[str, Any]) -> list[k8s.V1EnvVar]:
    return [k8s.V1EnvVar(name=name, value=str(value)) for name, value in values.items()]


def _env_from(secret_names: list[str]) -> list[k8s.V1EnvFromSource]:
    return [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name)) for name in secret_names]


def _tmp_volume(kube: dict[str, Any]) -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    volume = k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=kube["tmp_size_limit"]))
    return volume, k8s.V1VolumeMount(name="tmp", mount_path="/tmp")


def _common_pod_kwargs(kube: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": kube["namespace"],
        "kubernetes_conn_id": kube["kubernetes_conn_id"],
        "in_cluster": kube["in_cluster"],
        "image_pull_policy": kube["image_pull_policy"],
        "image_pull_secrets": [k8s.V1LocalObjectReference(name=name) for name in kube["image_pull_secrets"]] or None,
        "annotations": dict(kube["annotations"]) or None,
        "node_selector": dict(kube["node_selector"]) or None,
        "tolerations": [k8s.V1Toleration(**item) for item in kube["tolerations"]] or None,
        "priority_class_name": kube["priority_class_name"],
        "security_context": pod_security_context(kube),
        "container_security_context": container_security_context(kube),
        "sidecar_security_context": container_security_context(kube),
        "automount_service_account_token": False,
        "termination_grace_period": kube["termination_grace_period"],
        "startup_timeout_seconds": kube["startup_timeout"],
        "on_finish_action": "delete_pod",
        "get_logs": True,
        "log_events_on_failure": True,
        "deferrable": False,  # the exit-code policy hooks the synchronous cleanup path
        "base_container_name": BASE_CONTAINER,
    }


def landfall_task(
    *,
    task_id: str,
    arguments: list[str],
    source: str,
    settings: dict[str, Any],
    do_xcom_push: bool,
    stream: str | None = None,
    pod_suffix: str = "check",
    **task_kwargs: Any,
) -> LandfallPodOperator:
    """A pod running `landfall <arguments>`; the image's entrypoint is the landfall binary."""
    kube = settings["kubernetes"]
    tmp_volume, tmp_mount = _tmp_volume(kube)
    config_volume = k8s.V1Volume(
        name="config",
        config_map=k8s.V1ConfigMapVolumeSource(name=kube["config_map"], default_mode=0o444),
    )
    config_mount = k8s.V1VolumeMount(name="config", mount_path=kube["config_mount_path"], read_only=True)
    labels = {
        "app.kubernetes.io/name": "landfall",
        "app.kubernetes.io/component": "extractor",
        "app.kubernetes.io/part-of": "landfall",
        "landfall.dev/connector": source,
        **({"landfall.dev/stream": stream} if stream else {}),
        **kube["labels"],
    }
    name = "landfall-" + source.replace("_", "-") + "-" + (stream or pod_suffix).replace("_", "-")
    return LandfallPodOperator(
        task_id=task_id,
        name=name,
        image=f"{kube['image']}:{kube['image_tag']}",
        arguments=arguments,
        env_vars=_env({"HOME": "/tmp", "TMPDIR": "/tmp", "OPENLINEAGE_PARENT_ID": LINEAGE_PARENT_ID, **settings["env"]}),
        env_from=_env_from(kube["env_from_secrets"]),
        volumes=[config_volume, tmp_volume],
        volume_mounts=[config_mount, tmp_mount],
        service_account_name=kube["service_account"],
        container_resources=_resources(kube["resources"]),
        labels=labels,
        do_xcom_push=do_xcom_push,
        partial_policy=settings["partial_policy"],
        **_common_pod_kwargs(kube),
        **task_kwargs,
    )


def dbt_task(*, task_id: str, source: str, settings: dict[str, Any], **task_kwargs: Any) -> LandfallPodOperator:
    """A pod running `dbt build --select source:<source>+` in the dbt image, then (with
    `dbt.freshness`) `dbt source freshness --select source:<source>`."""
    kube, dbt = settings["kubernetes"], settings["dbt"]
    tmp_volume, tmp_mount = _tmp_volume(kube)
    arguments = ["build", "--select", dbt["select"]]
    for flag, key in (("--project-dir", "project_dir"), ("--profiles-dir", "profiles_dir"), ("--target", "target")):
        if dbt[key]:
            arguments += [flag, str(dbt[key])]
    location_flags = arguments[3:]  # --project-dir/--profiles-dir/--target, which run-operation takes too
    arguments += [str(item) for item in dbt["extra_args"]]
    # dbt writes target/ and logs/ beside the project; the root filesystem is read-only.
    env = {"HOME": "/tmp", "TMPDIR": "/tmp", "DBT_TARGET_PATH": "/tmp/dbt/target", "DBT_LOG_PATH": "/tmp/dbt/logs"}
    labels = {
        "app.kubernetes.io/name": "landfall-dbt",
        "app.kubernetes.io/component": "transformer",
        "app.kubernetes.io/part-of": "landfall",
        "landfall.dev/connector": source,
        **kube["labels"],
    }
    cmds = ["dbt"]
    steps = [["dbt", *arguments]]
    if dbt["stage_external_sources"]:
        # external tables first (dbt/macros/external_tables), then the build, in one pod
        steps.insert(0, ["dbt", "run-operation", "landfall.stage_external_sources", "--args", f"{{select: {source}}}", *location_flags])
    if dbt["freshness"]:
        # a stale source fails the pod, so the task (and on_failure_callback)
        steps.append(["dbt", "source", "freshness", "--select", f"source:{source}", *location_flags])
    if len(steps) > 1:
        cmds = ["/bin/sh", "-c", " && ".join(shlex.join(step) for step in steps[:-1]) + " && exec " + shlex.join(steps[-1])]
        arguments = []
    return LandfallPodOperator(
        task_id=task_id,
        name="landfall-" + source.replace("_", "-") + "-dbt",
        image=dbt["image"],
        cmds=cmds,
        arguments=arguments,
        env_vars=_env({**env, **dbt["env"]}),
        env_from=_env_from(dbt["env_from_secrets"]),
        volumes=[tmp_volume],
        volume_mounts=[tmp_mount],
        service_account_name=kube["service_account"],
        container_resources=_resources(dbt["resources"]),
        labels=labels,
        do_xcom_push=False,
        apply_exit_code_policy=False,  # dbt's exit codes are not landfall's
        **{**_common_pod_kwargs(kube), "base_container_name": "dbt"},
        **task_kwargs,
    )
