"""Private registries end to end (issue 17): a task definition whose image lives in a registry that
wants credentials names a Secrets Manager secret `{"username", "password"}` in
`repositoryCredentials.credentialsParameter`; the control plane resolves it when the task starts
and a real `flotilla agent` on the local Docker Engine pulls with it. With a secret holding the
wrong password, or with no credentials at all, the task stops as ECS stops it: stopCode
`TaskFailedToStart`, stoppedReason `CannotPullContainerError: ...` carrying the registry's own words,
the same reason on the container. Each pull is noted in the task's own log (`flotilla logs`).

The registry is a local `docker-registry` with htpasswd auth on 127.0.0.1 (registry_support.py),
holding the workload image under a name of this module's own; the local copy is removed before each
run so the pull really happens. The agent is given an empty Docker config directory, so the host's
own credentials play no part. Clients: boto3 for ECS and Secrets Manager, the `flotilla` CLI for logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from agent_support import (
    TASK_TIMEOUT,
    WORKLOAD_IMAGE,
    AgentProcess,
    by_name,
    describe_task,
    docker_available,
    poll,
    remove_cluster_containers,
)
from registry_support import LocalRegistry, image_present, remove_local_image
from support import flotilla_bin, make_client

USER = "flotilla"
PASSWORD = "registry-test-password"


class Private:
    """The module's registry, agent and cluster, and clients for ECS and Secrets Manager."""

    def __init__(self, server_env: dict[str, str], base):
        self.server_env = server_env
        self.base = base
        self.ecs = make_client(server_env)
        self.sm = make_client(server_env, service="secretsmanager")
        self.cluster = f"registry-{uuid.uuid4().hex[:8]}"
        self.cluster_arn = ""
        self.registry = LocalRegistry(USER, PASSWORD)
        self.agent: AgentProcess | None = None
        self.image = ""
        self.secrets: list[str] = []
        self.tasks: list[str] = []

    def diagnostics(self) -> str:
        agent = self.agent.log_tail(40) if self.agent else "<no agent>"
        return f"agent log:\n{agent}\nregistry log:\n{self.registry.log()}"

    def start_agent(self) -> None:
        docker_config = self.base / "docker-config"
        docker_config.mkdir()
        # AgentProcess copies this process's environment: the agent reads DOCKER_CONFIG/config.json,
        # which does not exist, so it has no host credentials.
        saved = os.environ.get("DOCKER_CONFIG")
        os.environ["DOCKER_CONFIG"] = str(docker_config)
        try:
            self.agent = AgentProcess(self.server_env, self.cluster, self.base / "agent-data", self.base / "agent.log").start()
        finally:
            if saved is None:
                os.environ.pop("DOCKER_CONFIG", None)
            else:
                os.environ["DOCKER_CONFIG"] = saved

        def connected():
            arns = self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]
            return arns and self.ecs.describe_container_instances(cluster=self.cluster, containerInstances=arns)[
                "containerInstances"
            ][0]["agentConnected"]

        poll(connected, 60, "the agent connected", self.diagnostics)

    def secret(self, password: str) -> str:
        out = self.sm.create_secret(
            Name=f"registry-{uuid.uuid4().hex[:10]}",
            SecretString=json.dumps({"username": USER, "password": password}),
        )
        self.secrets.append(out["ARN"])
        return out["ARN"]

    def run(self, image: str, command: list[str], credentials: str | None = None) -> str:
        container = {"name": "app", "image": image, "memory": 32, "essential": True, "command": command}
        if credentials:
            container["repositoryCredentials"] = {"credentialsParameter": credentials}
        td = self.ecs.register_task_definition(
            family=f"private-{uuid.uuid4().hex[:8]}", containerDefinitions=[container], networkMode="bridge"
        )["taskDefinition"]["taskDefinitionArn"]
        out = self.ecs.run_task(cluster=self.cluster, taskDefinition=td)
        assert out["failures"] == [], out["failures"]
        arn = out["tasks"][0]["taskArn"]
        self.tasks.append(arn)
        return arn

    def wait(self, arn: str, status: str) -> dict:
        def check():
            t = describe_task(self.ecs, self.cluster, arn)
            return t if t["lastStatus"] == status else None

        return poll(
            check,
            TASK_TIMEOUT,
            f"task {arn} {status}",
            lambda: f"task: {describe_task(self.ecs, self.cluster, arn)}\n{self.diagnostics()}",
        )

    def logs(self, arn: str) -> list[str]:
        """The task's log lines from `flotilla logs`, stderr's (where the agent's own notes go) included."""
        env = {**os.environ, **self.server_env}
        p = subprocess.run(
            [flotilla_bin(), "logs", "--cluster", self.cluster, arn],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, f"flotilla logs failed: {p.stderr}"
        return p.stdout.splitlines() + p.stderr.splitlines()


@pytest.fixture(scope="module")
def private(server_env, tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a reachable Docker Engine (`docker info` failed)", pytrace=False)
    p = Private(server_env, tmp_path_factory.mktemp("private-registry"))
    try:
        p.registry.start()
        p.cluster_arn = p.ecs.create_cluster(clusterName=p.cluster)["cluster"]["clusterArn"]
        p.start_agent()
        # The agent builds the workload image when a task first needs it; that image is what the
        # registry then serves under a private name.
        warm = p.run(WORKLOAD_IMAGE, ["exit", "0"])
        p.wait(warm, "STOPPED")
        p.image = p.registry.push(WORKLOAD_IMAGE, f"flotilla-test/private-{uuid.uuid4().hex[:8]}", "v1")
        yield p
    finally:
        for arn in p.tasks:
            try:
                p.ecs.stop_task(cluster=p.cluster, task=arn, reason="test is done")
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        problems = []
        if p.agent and p.agent.proc:
            rc = p.agent.stop()
            if rc != 0:
                problems.append(f"flotilla agent exited with status {rc} after SIGTERM\n{p.agent.log_tail()}")
        remove_cluster_containers(p.cluster_arn or f"arn:aws:ecs:us-east-1:000000000000:cluster/{p.cluster}")
        if p.image:
            remove_local_image(p.image)
        for arn in p.secrets:
            try:
                p.sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        p.registry.stop()
        assert not problems, "\n".join(problems)


def assert_cannot_pull(task: dict, words: str) -> None:
    assert task["lastStatus"] == "STOPPED", task
    assert task.get("stopCode") == "TaskFailedToStart", task
    reason = task.get("stoppedReason", "")
    assert reason.startswith("CannotPullContainerError"), reason
    assert words in reason, reason
    assert by_name(task)["app"].get("reason") == reason, task


def test_the_task_pulls_with_its_secret_and_runs(private):
    remove_local_image(private.image)
    assert not image_present(private.image)
    arn = private.run(private.image, ["serve", "8080"], credentials=private.secret(PASSWORD))
    task = private.wait(arn, "RUNNING")
    assert task.get("pullStartedAt") is not None and task.get("pullStoppedAt") is not None, task
    assert by_name(task)["app"]["image"] == private.image
    assert image_present(private.image)
    lines = private.logs(arn)
    assert any("pulling image " + private.image in l for l in lines), lines
    assert any("pulled image " + private.image in l for l in lines), lines


def test_a_wrong_password_stops_the_task_with_the_registry_refusal(private):
    remove_local_image(private.image)
    arn = private.run(private.image, ["serve", "8080"], credentials=private.secret("wrong-password"))
    task = private.wait(arn, "STOPPED")
    assert_cannot_pull(task, "unauthorized: authentication required")
    assert "wrong-password" not in json.dumps(task, default=str)
    assert "wrong-password" not in private.agent.log_tail(400)


def test_without_credentials_the_registry_refuses_the_pull(private):
    remove_local_image(private.image)
    arn = private.run(private.image, ["serve", "8080"])
    task = private.wait(arn, "STOPPED")
    assert_cannot_pull(task, "no basic auth credentials")
