"""What a landfall exit code means for the Airflow task that ran it.

This module is the only place the policy is written down; both operators (the pod one and
the local Bash one) call `decide`. It imports nothing from Airflow so that it can be tested
and read on its own.

| exit code | meaning (CONTRACT section 6)   | task outcome                                   |
|-----------|--------------------------------|------------------------------------------------|
| 0         | succeeded                      | success                                        |
| 2         | invalid usage or config        | fail at once, no retry (a retry cannot fix it) |
| 4         | auth or permission failure     | fail at once, no retry (a retry cannot fix it) |
| 3         | partial                        | per `partial_policy` (default: retry)          |
| 75        | transient failure              | retry with exponential backoff                 |
| 1         | any other failure              | retry with exponential backoff                 |
| other     | killed (137 OOM, 143 SIGTERM)  | retry with exponential backoff                 |
| unknown   | pod never ran, evicted, ...    | retry with exponential backoff                 |

A partial run (3) stored some records and moved the checkpoint only past what it stored
(CONTRACT section 5), so a retry resumes where it stopped and loses nothing; retrying is the
default, and a partial that persists past the last retry fails the task and pages someone.
`partial_policy: succeed` marks the task successful with a warning (downstream dbt then runs
on what landed; the XCom still says `"status": "partial"`), `partial_policy: fail` fails at
once without retry.
"""

from __future__ import annotations

import enum

EXIT_SUCCEEDED = 0
EXIT_OTHER = 1
EXIT_CONFIG = 2
EXIT_PARTIAL = 3
EXIT_AUTH = 4
EXIT_TRANSIENT = 75

MEANINGS = {
    EXIT_SUCCEEDED: "succeeded",
    EXIT_OTHER: "failure",
    EXIT_CONFIG: "invalid usage or config",
    EXIT_PARTIAL: "partial run",
    EXIT_AUTH: "auth or permission failure",
    EXIT_TRANSIENT: "transient failure",
    137: "killed (SIGKILL, e.g. out of memory)",
    143: "terminated (SIGTERM)",
}

PARTIAL_POLICIES = ("retry", "succeed", "fail")


class Outcome(enum.Enum):
    """What the task does with an exit code."""

    SUCCEED = "succeed"
    RETRY = "retry"
    FAIL_FAST = "fail_fast"


def decide(exit_code: int | None, partial_policy: str = "retry") -> Outcome:
    """Map a landfall exit code to the task outcome; `None` means the code is unknown."""
    if partial_policy not in PARTIAL_POLICIES:
        raise ValueError(f"partial_policy must be one of {', '.join(PARTIAL_POLICIES)}, got {partial_policy!r}")
    if exit_code == EXIT_SUCCEEDED:
        return Outcome.SUCCEED
    if exit_code in (EXIT_CONFIG, EXIT_AUTH):
        return Outcome.FAIL_FAST
    if exit_code == EXIT_PARTIAL:
        return {
            "retry": Outcome.RETRY,
            "succeed": Outcome.SUCCEED,
            "fail": Outcome.FAIL_FAST,
        }[partial_policy]
    return Outcome.RETRY


def describe(exit_code: int | None) -> str:
    """Human-readable text for an exit code, for task logs and alerts."""
    if exit_code is None:
        return "exit code unknown"
    meaning = MEANINGS.get(exit_code)
    return f"exit code {exit_code} ({meaning})" if meaning else f"exit code {exit_code}"
