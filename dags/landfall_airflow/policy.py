"""Turn a landfall exit code into the Airflow exception that gives the task its outcome.

`AirflowFailException` fails a task without using its retries on Airflow 2.10 and 3 alike;
any other `AirflowException` fails the attempt and lets Airflow retry it with backoff.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from landfall_airflow.compat import AirflowException, AirflowFailException
from landfall_airflow.exit_codes import EXIT_PARTIAL, EXIT_SUCCEEDED, Outcome, decide, describe


def enforce(exit_code: int | None, partial_policy: str, error: BaseException, log: logging.Logger) -> None:
    """Raise what the task should raise after landfall failed with `exit_code`.

    Returns (instead of raising) only for a partial run under `partial_policy: succeed`.
    """
    if exit_code == EXIT_SUCCEEDED:
        raise error  # landfall succeeded but the task failed for another reason: leave it be
    outcome = decide(exit_code, partial_policy)
    text = describe(exit_code)
    if outcome is Outcome.FAIL_FAST:
        log.error("landfall %s: failing without retry, a retry cannot fix this", text)
        raise AirflowFailException(f"landfall {text}: not retried, a retry cannot fix this") from error
    if outcome is Outcome.SUCCEED and exit_code == EXIT_PARTIAL:
        log.warning("landfall %s: marking the task successful because partial_policy is succeed", text)
        return
    log.warning("landfall %s: the task is retried while it has retries left", text)
    raise AirflowException(f"landfall {text}: retryable") from error


def parse_xcom(output: Any) -> Any:
    """landfall's XCom document from the last output line, or the line itself if not JSON."""
    if not isinstance(output, str):
        return output
    try:
        return json.loads(output)
    except ValueError:
        return output
