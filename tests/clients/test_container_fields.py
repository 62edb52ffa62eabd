"""Container definition fields the agent honours (issue 17): a restart policy restarts a crashing
container in place, leaves alone one that exits with an ignored code, and the task keeps its ARN
and stays RUNNING; invalid restart policies and system controls are refused at registration,
naming the field. boto3 against a real `flotilla server` and a real `flotilla agent` on the local
Docker Engine (the module's fleet of test_agent_docker.py), running the locally built workload.

ECS's shortest restartAttemptPeriod is 60 s, so the restart scenario takes a little over a minute.
"""

from __future__ import annotations

import time

import pytest

from agent_support import by_name, docker_inspect, docker_time_ns, poll
from test_agent_docker import Fleet, fleet, workload  # noqa: F401  (the module's fleet fixture)

PERIOD = 60  # ECS's minimum restartAttemptPeriod


def restart_policy(ignored: list[int] | None = None, period: int = PERIOD) -> dict:
    p = {"enabled": True, "restartAttemptPeriod": period}
    if ignored is not None:
        p["ignoredExitCodes"] = ignored
    return p


def test_a_restart_policy_restarts_a_crashing_container_in_place(fleet: Fleet, uid):
    # Each run lasts a little longer than the period, then fails; `done` exits with an ignored code.
    run_for = str(PERIOD + 5)
    td = fleet.register(
        f"restart-{uid}",
        [
            workload("crash", ["echo", "run", "then", "exit", "1", "--after", run_for],
                     restartPolicy=restart_policy([42])),
            workload("done", ["exit", "42", "--after", run_for], essential=False,
                     restartPolicy=restart_policy([42])),
        ],
        networkMode="bridge",
    )
    arn = fleet.run(td)
    fleet.cli_wait("tasks-running", arn)
    first = by_name(fleet.task(arn))
    crash_id = first["crash"]["runtimeId"]
    first_start = docker_time_ns(docker_inspect(crash_id)["State"]["StartedAt"])

    def restarted():
        state = docker_inspect(crash_id)["State"]
        return state if state["Running"] and docker_time_ns(state["StartedAt"]) > first_start else None

    state = poll(restarted, PERIOD + 60, "the crash container started again", fleet.diagnostics)
    assert state["Running"]

    task = fleet.wait_task(arn, lambda t: by_name(t)["done"]["lastStatus"] == "STOPPED", "done stopped")
    # Same task, still running; the same Docker container was started again, not a new one.
    assert task["taskArn"] == arn
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING", task
    containers = by_name(task)
    assert containers["crash"]["runtimeId"] == crash_id
    assert containers["crash"]["lastStatus"] == "RUNNING"
    # The ignored exit code ended its container as usual, and it was not started again.
    assert containers["done"]["exitCode"] == 42
    done = docker_inspect(containers["done"]["runtimeId"])["State"]
    assert not done["Running"] and done["ExitCode"] == 42
    time.sleep(2)
    assert fleet.task(arn)["lastStatus"] == "RUNNING"
    stopped = fleet.stop(arn)
    assert stopped["lastStatus"] == "STOPPED"


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"restartPolicy": restart_policy(period=30)}, "restartPolicy"),
        ({"restartPolicy": restart_policy(period=1801)}, "restartPolicy"),
        ({"restartPolicy": restart_policy(ignored=list(range(51)))}, "restartPolicy"),
        ({"systemControls": [{"namespace": "vm.swappiness", "value": "10"}]}, "systemControls"),
        ({"dockerSecurityOptions": ["credentialspec:file://gmsa.json"]}, "dockerSecurityOptions"),
    ],
)
def test_invalid_fields_are_refused_naming_the_field(fleet: Fleet, uid, extra, field):
    with pytest.raises(fleet.ecs.exceptions.ClientException) as e:
        fleet.register(f"bad-{uid}", [workload("web", ["sleep", "inf"], **extra)])
    message = e.value.response["Error"]["Message"]
    assert f"'{field}'" in message and "'web'" in message, message


def test_host_network_refuses_network_sysctls(fleet: Fleet, uid):
    with pytest.raises(fleet.ecs.exceptions.ClientException) as e:
        fleet.register(
            f"host-{uid}",
            [workload("web", ["sleep", "inf"], systemControls=[{"namespace": "net.core.somaxconn", "value": "1024"}])],
            networkMode="host",
        )
    assert "'systemControls'" in e.value.response["Error"]["Message"]
