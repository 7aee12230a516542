"""Version-neutral access to what the tests inspect: the DagBag and the metadata database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import airflow

AIRFLOW_3 = int(airflow.__version__.split(".")[0]) >= 3


def load_dagbag(dag_folder: Path) -> Any:
    """Parse `dag_folder` without the database: Airflow 3.1+ and 2.10 keep DagBag in different modules."""
    if AIRFLOW_3:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(dag_folder))
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(dag_folder), include_examples=False)


def file_parse_seconds(bag: Any, name: str) -> float:
    [stat] = [stat for stat in bag.dagbag_stats if Path(stat.file).name == name]
    return stat.duration.total_seconds()


def task_instances(dag_id: str) -> dict[str, dict[str, Any]]:
    """State and try number of every task instance of `dag_id`'s latest run."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        assert runs, f"no run of {dag_id}"
        latest = max(runs, key=lambda run: run.id)
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == latest.run_id)
        return {
            row.task_id: {
                "state": str(row.state.value if hasattr(row.state, "value") else row.state),
                "try_number": row.try_number,
            }
            for row in rows
        }


def return_values(dag_id: str) -> dict[str, Any]:
    """XCom `return_value` of every task of `dag_id`'s latest run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        latest = max(session.query(DagRun).filter(DagRun.dag_id == dag_id).all(), key=lambda run: run.id)
        if AIRFLOW_3:
            from airflow.models.xcom import XComModel

            rows = session.query(XComModel).filter(
                XComModel.dag_id == dag_id, XComModel.run_id == latest.run_id, XComModel.key == "return_value"
            )
            return {row.task_id: XComModel.deserialize_value(row) for row in rows}
        from airflow.models.xcom import XCom

        rows = session.query(XCom).filter(
            XCom.dag_id == dag_id, XCom.run_id == latest.run_id, XCom.key == "return_value"
        )
        return {row.task_id: row.value for row in rows}  # Airflow 2 deserializes on load
