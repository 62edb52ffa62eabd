"""Fixtures for the client tests: one real `flotilla server` for the session (started from
$FLOTILLA_BIN on port 0 in a temporary data directory, stopped with SIGTERM at the end and required
to exit 0), a boto3 ECS client built from its export line, and the aws CLI runner.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from support import AwsCli, ServerProcess, make_client


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="flotilla-clients-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def server(workdir):
    """The shared server for the whole run. Stopped with SIGTERM at the end: it must exit 0."""
    srv = ServerProcess(workdir / "data", workdir / "server.stderr.log").start()
    yield srv
    rc = srv.stop()
    assert rc == 0, f"flotilla server exited with status {rc} after SIGTERM\nstderr:\n{srv.stderr_tail()}"


@pytest.fixture(scope="session")
def server_env(server) -> dict[str, str]:
    return dict(server.env)


@pytest.fixture(scope="session")
def ecs(server_env):
    return make_client(server_env)


@pytest.fixture(scope="session")
def aws(server_env, workdir) -> AwsCli:
    return AwsCli(server_env, workdir / "cli")


@pytest.fixture
def uid() -> str:
    """A short unique suffix so tests sharing the server never collide on names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def cluster(ecs, uid):
    """A fresh, empty cluster of this test's own."""
    name = f"c-{uid}"
    ecs.create_cluster(clusterName=name)
    return name


