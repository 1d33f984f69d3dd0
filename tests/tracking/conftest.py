import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers.mlflow_server import MlflowServer
from helpers.s3 import s3_endpoint

# A PostgreSQL server the slow variant may create a throwaway database on, e.g.
# postgresql://mlflow:mlflow@127.0.0.1/postgres (docs/mlflow.md); that variant is skipped without it.
POSTGRES = os.environ.get("DDPM_TEST_POSTGRES")


@pytest.fixture(scope="module", params=["sqlite", "sqlite-s3", pytest.param("postgresql", marks=pytest.mark.slow)])
def server(request, tmp_path_factory):
    """A live tracking server (scripts/mlflow-server.sh) for the module's tests: SQLite-backed with artifacts in
    its folder or in an S3 bucket (a loopback endpoint whose credentials only the server gets), and (slow) backed
    by a fresh database on the PostgreSQL server that DDPM_TEST_POSTGRES names."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    if request.param == "sqlite":
        live = MlflowServer(folder).start()
        yield live
        live.stop()
        return
    if request.param == "sqlite-s3":
        with s3_endpoint() as s3:
            bucket = s3.bucket("team-mlflow")
            live = MlflowServer(folder, artifacts=f"{bucket}/artifacts", env=s3.env).start()
            yield live
            live.stop()
        return
    if not POSTGRES:
        pytest.skip("set DDPM_TEST_POSTGRES to a PostgreSQL URL (e.g. postgresql://mlflow:mlflow@127.0.0.1/postgres)")
    psycopg = pytest.importorskip(
        "psycopg", reason="the PostgreSQL backend needs psycopg (pip install 'psycopg[binary]')"
    )
    name = f"ddpm_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(POSTGRES, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        live = MlflowServer(folder, backend=urlunsplit(urlsplit(POSTGRES)._replace(path=f"/{name}"))).start()
        yield live
        live.stop()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
