"""Container secrets end to end (issue 17): a task definition whose containers name `secrets` from
SSM Parameter Store and Secrets Manager (a whole secret, and one JSON key of it) runs on a real
`flotilla agent` on the local Docker Engine, and the values reach the container's environment
and nowhere else: not the API's answers, not the server's store or log, not the agent's files or
log. A secret that does not exist stops the task as ECS stops it (`TaskFailedToStart`,
`ResourceInitializationError: unable to pull secrets or registry auth: ...`).

One server and one agent, on a cluster of their own, serve the module.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from agent_support import (
    TASK_TIMEOUT,
    WORKLOAD_IMAGE,
    AgentProcess,
    by_name,
    describe_task,
    docker_available,
    docker_inspect,
    poll,
    remove_task_containers,
)
from support import ServerProcess, make_client


class Stack:
    def diagnostics(self) -> str:
        return f"agent log:\n{self.agent.log_tail(30)}\nserver log:\n{self.server.stderr_tail(30)}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a running Docker Engine (`docker info` failed)", pytrace=False)
    base = tmp_path_factory.mktemp("secrets")
    s = Stack()
    s.base = base
    s.cluster = f"secrets-{uuid.uuid4().hex[:8]}"
    s.server = ServerProcess(base / "server-data", base / "server.log").start()
    env = s.server.env
    s.ecs = make_client(env)
    s.ssm = make_client(env, service="ssm")
    s.sm = make_client(env, service="secretsmanager")
    s.agent = None
    try:
        s.ecs.create_cluster(clusterName=s.cluster)
        s.agent = AgentProcess(env, s.cluster, base / "agent", base / "agent.log").start()
        poll(
            lambda: len(s.ecs.list_container_instances(cluster=s.cluster)["containerInstanceArns"]) == 1,
            60,
            "the agent registered",
            s.diagnostics,
        )
        yield s
    finally:
        if s.agent:
            s.agent.stop()
        remove_task_containers(s.cluster)
        s.server.stop()


def register(s, family: str, secrets: list[dict], command: list[str] | None = None) -> str:
    td = s.ecs.register_task_definition(
        family=family,
        containerDefinitions=[
            {
                "name": "app",
                "image": WORKLOAD_IMAGE,
                "memory": 64,
                "essential": True,
                # The container never prints its environment: its output is stored too.
                "command": command or ["sleep", "inf"],
                "environment": [{"name": "PLAIN", "value": "visible"}],
                "secrets": secrets,
            }
        ],
    )
    return td["taskDefinition"]["taskDefinitionArn"]


def run(s, definition: str) -> str:
    out = s.ecs.run_task(cluster=s.cluster, taskDefinition=definition)
    assert not out["failures"], out["failures"]
    return out["tasks"][0]["taskArn"]


def status(s, arn: str, want: str) -> dict:
    return poll(
        lambda: (lambda t: t if t["lastStatus"] == want else None)(describe_task(s.ecs, s.cluster, arn)),
        TASK_TIMEOUT,
        f"task {arn} {want}",
        s.diagnostics,
    )


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under `root` whose bytes contain one of `needles`."""
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            try:
                data = p.read_bytes()
            except OSError:
                continue
            found += [f"{p} holds {n!r}" for n in needles if n in data]
    return found


def test_secrets_from_both_stores_reach_the_container_and_nowhere_else(stack):
    s, uid = stack, uuid.uuid4().hex[:8]
    param_value = f"param-{uuid.uuid4().hex}"
    password = f"pw-{uuid.uuid4().hex}"
    whole = json.dumps({"username": "app", "password": password})
    s.ssm.put_parameter(Name=f"/flotilla-test/{uid}/db-url", Value=param_value, Type="SecureString")
    secret_arn = s.sm.create_secret(Name=f"flotilla-test/{uid}/db", SecretString=whole)["ARN"]

    definition = register(
        s,
        f"secrets-{uid}",
        [
            {"name": "DB_URL", "valueFrom": f"/flotilla-test/{uid}/db-url"},
            {"name": "DB_PASSWORD", "valueFrom": f"{secret_arn}:password::"},
            {"name": "DB_SECRET", "valueFrom": secret_arn},
        ],
    )
    arn = run(s, definition)
    task = status(s, arn, "RUNNING")

    # What the container's process was started with, as Docker holds it.
    runtime_id = by_name(task)["app"]["runtimeId"]
    env = dict(e.split("=", 1) for e in docker_inspect(runtime_id)["Config"]["Env"])
    assert env["DB_URL"] == param_value
    assert env["DB_PASSWORD"] == password
    assert json.loads(env["DB_SECRET"]) == {"username": "app", "password": password}
    assert env["PLAIN"] == "visible"

    # Nowhere else: the API's answers...
    needles = [param_value.encode(), password.encode()]
    answers = json.dumps(
        [
            s.ecs.describe_tasks(cluster=s.cluster, tasks=[arn], include=["TAGS"]),
            s.ecs.describe_task_definition(taskDefinition=definition, include=["TAGS"]),
            s.ecs.list_tasks(cluster=s.cluster),
            s.ecs.describe_container_instances(
                cluster=s.cluster,
                containerInstances=s.ecs.list_container_instances(cluster=s.cluster)["containerInstanceArns"],
            ),
        ],
        default=str,
    ).encode()
    assert not [n for n in needles if n in answers]
    # ...the server's store and log, the agent's data directory and log.
    leaks = files_containing(s.base, needles)
    assert not leaks, leaks

    s.ecs.stop_task(cluster=s.cluster, task=arn, reason="done")
    status(s, arn, "STOPPED")


@pytest.mark.parametrize(
    "kind",
    ["ssm-parameter", "secretsmanager-secret", "json-key"],
)
def test_a_missing_secret_stops_the_task_as_ecs_does(stack, kind):
    s, uid = stack, uuid.uuid4().hex[:8]
    if kind == "ssm-parameter":
        value_from, detail = f"/flotilla-test/{uid}/missing", f"/flotilla-test/{uid}/missing"
    elif kind == "secretsmanager-secret":
        value_from = f"arn:aws:secretsmanager:{s.server.env['AWS_DEFAULT_REGION']}:000000000000:secret:missing-{uid}-AbCdEf"
        detail = "ResourceNotFoundException"
    else:
        arn = s.sm.create_secret(Name=f"flotilla-test/{uid}/keys", SecretString=json.dumps({"user": "u"}))["ARN"]
        value_from, detail = f"{arn}:password::", "password"
    definition = register(s, f"missing-{uid}", [{"name": "MISSING", "valueFrom": value_from}])
    arn = run(s, definition)
    task = status(s, arn, "STOPPED")
    assert task["stopCode"] == "TaskFailedToStart", task
    reason = task["stoppedReason"]
    assert reason.startswith("ResourceInitializationError: unable to pull secrets or registry auth: "), reason
    assert detail in reason, reason
    # The task never started a container.
    assert not by_name(task)["app"].get("runtimeId"), task
