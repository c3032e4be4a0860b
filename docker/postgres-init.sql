-- Runs once when the PostgreSQL volume is created: Optuna uses database `optuna` (POSTGRES_DB), MLflow its own
-- database (both keep an `alembic_version` table, so they cannot share one).
CREATE DATABASE mlflow OWNER paraling;
