"""The tiny pipeline, run once per test session: what the quickstart runs, in a temporary copy of this checkout."""

import pytest
from helpers.repos import DDPM, checkout_copy, dvc_env, sh
from helpers.s3 import s3_endpoint


@pytest.fixture(scope="session")
def s3():
    """The team's object store for the session: a loopback S3 endpoint with the bucket ``team-dvc`` (DVC's
    remote)."""
    with s3_endpoint() as endpoint:
        endpoint.bucket("team-dvc")
        yield endpoint


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, s3) -> dict:
    """A git repository holding this checkout's files (committed or not) after the quickstart: the tiny profile
    made the workspace's profile (so later -S changes vary it) and run with `dvc exp run` as experiment
    ``tiny-linear``, logging to the repository's SQLite MLflow store; the team's DVC remote is a bucket on the
    session's S3 endpoint, configured as the manual says (`dvc remote add -d`, `dvc remote modify … endpointurl`;
    the credentials only in the environment). ``repo``: that repository, which no test changes (they work in
    `helpers.repos.copy_of` it); ``output``: what `dvc exp run` printed. The e2e checks, never-lose-work and the
    shared-server test start from copies: DVC finds the stages up to date or in its run cache instead of running
    them again."""
    env = dvc_env(s3)
    tmp = tmp_path_factory.mktemp("tiny-run")
    repo = checkout_copy(tmp / "repo", env)
    sh(["dvc", "remote", "add", "-d", "store", f"s3://{s3.buckets['team-dvc']}/ddpm"], repo, env)
    sh(["dvc", "remote", "modify", "store", "endpointurl", s3.url], repo, env)
    sh(["git", "commit", "-qam", "the team's DVC remote"], repo, env)
    sh([DDPM, "profile", "tiny"], repo, env)
    output = sh(["dvc", "exp", "run", "-S", "profile=tiny", "--name", "tiny-linear"], repo, env)
    return {"repo": repo, "output": output}
