"""landfall's exit codes decide each task's outcome: 2 and 4 fail at once, 1 and 75 retry."""

from __future__ import annotations

import pytest
from kubernetes.client import models as k8s

from landfall_airflow import exit_codes
from landfall_airflow.compat import AirflowException, AirflowFailException
from landfall_airflow.exit_codes import Outcome, decide
from landfall_airflow.kubernetes import LandfallPodOperator, container_exit_code, drop_empty_options
from landfall_airflow.local import LandfallBashOperator


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0, Outcome.SUCCEED),
        (1, Outcome.RETRY),
        (2, Outcome.FAIL_FAST),
        (3, Outcome.RETRY),
        (4, Outcome.FAIL_FAST),
        (75, Outcome.RETRY),
        (137, Outcome.RETRY),
        (143, Outcome.RETRY),
        (None, Outcome.RETRY),
    ],
)
def test_default_policy(code, outcome):
    assert decide(code) is outcome


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [("retry", Outcome.RETRY), ("succeed", Outcome.SUCCEED), ("fail", Outcome.FAIL_FAST)],
)
def test_partial_policy_applies_to_exit_code_3_only(policy, outcome):
    assert decide(3, policy) is outcome
    assert decide(2, policy) is Outcome.FAIL_FAST
    assert decide(75, policy) is Outcome.RETRY


def test_unknown_partial_policy_is_rejected():
    with pytest.raises(ValueError, match="partial_policy"):
        decide(3, "ignore")


def test_describe_names_the_meaning():
    assert exit_codes.describe(4) == "exit code 4 (auth or permission failure)"
    assert exit_codes.describe(None) == "exit code unknown"
    assert exit_codes.describe(9) == "exit code 9"


# --- the pod operator: the hook sits in cleanup(), where the provider reads the pod's end state


def _pod_operator(**kwargs) -> LandfallPodOperator:
    return LandfallPodOperator(
        task_id="extract_orders",
        name="landfall-demo-orders",
        image="ghcr.io/landfall-dev/landfall:0.1.0",
        namespace="landfall",
        base_container_name="landfall",
        log_events_on_failure=False,
        **kwargs,
    )


def _finished_pod(phase: str, exit_code: int | None) -> k8s.V1Pod:
    state = (
        k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code))
        if exit_code is not None
        else k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason="ImagePullBackOff"))
    )
    status = k8s.V1ContainerStatus(
        name="landfall", state=state, image="landfall", image_id="", ready=False, restart_count=0
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="landfall-demo-orders-x1", namespace="landfall", annotations={}),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="landfall")]),
        status=k8s.V1PodStatus(phase=phase, container_statuses=[status]),
    )


@pytest.fixture
def offline_cleanup(monkeypatch):
    """Stub the three Kubernetes API calls cleanup() makes; record pod deletions."""
    deleted = []

    def install(operator: LandfallPodOperator) -> list:
        monkeypatch.setattr(operator, "is_istio_enabled", lambda pod: False)
        monkeypatch.setattr(operator, "patch_already_checked", lambda pod, reraise=True: None)
        monkeypatch.setattr(operator, "process_pod_deletion", lambda pod, reraise=True: deleted.append(pod))
        return deleted

    return install


@pytest.mark.parametrize("code", [2, 4])
def test_pod_fails_fast_on_config_and_auth_errors(code, offline_cleanup):
    operator = _pod_operator()
    deleted = offline_cleanup(operator)
    pod = _finished_pod("Failed", code)
    with pytest.raises(AirflowFailException, match=f"exit code {code}"):
        operator.cleanup(pod, pod)
    assert deleted, "the pod is still deleted before the task fails"


@pytest.mark.parametrize("code", [1, 75, 137])
def test_pod_failure_is_retryable_on_transient_and_other_errors(code, offline_cleanup):
    operator = _pod_operator()
    offline_cleanup(operator)
    pod = _finished_pod("Failed", code)
    with pytest.raises(AirflowException, match=f"exit code {code}") as raised:
        operator.cleanup(pod, pod)
    assert not isinstance(raised.value, AirflowFailException)


def test_pod_that_never_ran_is_retryable(offline_cleanup):
    operator = _pod_operator()
    offline_cleanup(operator)
    pod = _finished_pod("Failed", None)
    with pytest.raises(AirflowException) as raised:
        operator.cleanup(pod, pod)
    assert not isinstance(raised.value, AirflowFailException)


def test_partial_run_is_retried_by_default_and_accepted_when_configured(offline_cleanup):
    pod = _finished_pod("Failed", 3)
    retrying = _pod_operator()
    offline_cleanup(retrying)
    with pytest.raises(AirflowException) as raised:
        retrying.cleanup(pod, pod)
    assert not isinstance(raised.value, AirflowFailException)

    accepting = _pod_operator(partial_policy="succeed")
    offline_cleanup(accepting)
    accepting.cleanup(pod, pod)  # no exception: the task succeeds with a warning

    failing = _pod_operator(partial_policy="fail")
    offline_cleanup(failing)
    with pytest.raises(AirflowFailException):
        failing.cleanup(pod, pod)


def test_succeeded_pod_passes(offline_cleanup):
    operator = _pod_operator()
    offline_cleanup(operator)
    pod = _finished_pod("Succeeded", 0)
    operator.cleanup(pod, pod)


def test_dbt_pod_does_not_apply_landfall_codes(offline_cleanup):
    operator = _pod_operator(apply_exit_code_policy=False)
    offline_cleanup(operator)
    pod = _finished_pod("Failed", 2)  # dbt's 2 is "unhandled error", not landfall's config error
    with pytest.raises(AirflowException) as raised:
        operator.cleanup(pod, pod)
    assert not isinstance(raised.value, AirflowFailException)


def test_container_exit_code_reads_the_named_container():
    assert container_exit_code(_finished_pod("Failed", 4), "landfall") == 4
    assert container_exit_code(_finished_pod("Failed", 4), "base") is None
    assert container_exit_code(None, "landfall") is None


def test_empty_window_options_are_dropped():
    arguments = ["run", "--stream", "a", "--start", "", "--end", "", "--xcom-output", "/x"]
    assert drop_empty_options(arguments) == ["run", "--stream", "a", "--xcom-output", "/x"]


# --- the local Bash operator: the hook sits in its SubprocessHook, which sees the exit code


def _bash(code: int, **kwargs) -> LandfallBashOperator:
    document = f'{{"status": "partial", "exit_code": {code}}}'
    return LandfallBashOperator(
        task_id=f"exit_{code}",
        bash_command=f"echo 'a log line' >&2; echo '{document}'; exit {code}",
        parse_json_output=True,
        **kwargs,
    )


@pytest.mark.parametrize("code", [2, 4])
def test_bash_fails_fast_on_config_and_auth_errors(code):
    with pytest.raises(AirflowFailException, match=f"exit code {code}"):
        _bash(code).execute({})


@pytest.mark.parametrize("code", [1, 3, 75])
def test_bash_failure_is_retryable(code):
    with pytest.raises(AirflowException, match=f"exit code {code}") as raised:
        _bash(code).execute({})
    assert not isinstance(raised.value, AirflowFailException)


def test_bash_returns_the_parsed_xcom_document():
    assert _bash(0).execute({}) == {"status": "partial", "exit_code": 0}
    assert _bash(3, partial_policy="succeed").execute({}) == {"status": "partial", "exit_code": 3}


def test_bash_without_policy_is_plain():
    with pytest.raises(AirflowException) as raised:
        _bash(2, apply_exit_code_policy=False).execute({})
    assert not isinstance(raised.value, AirflowFailException)
