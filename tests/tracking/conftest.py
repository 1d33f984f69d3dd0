import pytest
from helpers.mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live tracking server (scripts/mlflow-server.sh) for the module's tests."""
    live = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield live
    live.stop()
