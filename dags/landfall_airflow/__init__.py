"""Build Airflow DAGs that run the landfall extractor; see dags/README.md."""

__version__ = "0.1.0"
