"""Airflow DAGs for landfall: one DAG per connector config (see README.md in this folder).

Airflow imports this file; the DAGs are built by the `landfall_airflow` package beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Airflow's DAG processor imports the airflow.* modules that a DAG file imports at its top
# level once, before it parses ([dag_processor] / [scheduler] parsing_pre_import_modules):
# naming the provider here spares every parse the second it takes to import it.
import airflow.providers.cncf.kubernetes.operators.pod  # noqa: F401

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # Airflow puts the dags folder on sys.path; a bare DagBag may not
    sys.path.insert(0, _HERE)

from landfall_airflow.factory import build_all_dags  # noqa: E402

for _dag in build_all_dags():
    globals()[_dag.dag_id] = _dag
