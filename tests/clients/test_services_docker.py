"""Services end to end (issue 5): a real `flotilla server` (started with a short
`--lost-instance-grace-seconds`) and two real `flotilla agent` processes, each with its own data
directory, on the local Docker Engine, driven with boto3 and the aws CLI. After every step the
module waits until the service is stable (boto3's `services_stable` waiter polling every second)
and then runs `aws ecs wait services-stable`, which must succeed too.

The steps build on one another and run in file order on one cluster: a 3-task REPLICA web service
reaches its steady state; survives `docker kill` of a container and StopTask of a task; rolls out
revision 2 within minimumHealthyPercent 50 / maximumPercent 200; trips the deployment circuit
breaker on a broken revision 3 and rolls back to 2; a DAEMON service runs one task per agent; a
SIGKILLed agent has its tasks replaced on the other agent and, when it comes back with the same
data directory, its surplus tasks are stopped; a drained instance hands its tasks to the other.

The tasks run `flotilla/workload:latest`, which the agent builds locally (no registry is
reachable, nothing is pulled).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid

import pytest

from agent_support import (
    CLUSTER_LABEL,
    CONTAINER_LABEL,
    TASK_LABEL,
    TASK_TIMEOUT,
    WORKLOAD_IMAGE,
    AgentProcess,
    by_name,
    docker,
    docker_available,
    poll,
    remove_cluster_containers,
)
from support import START_TIMEOUT, AwsCli, ServerProcess, flotilla_bin, make_client, parse_export_line

LOST_GRACE_SECONDS = 5
STEP_TIMEOUT = 120.0  # seconds for a service to settle after one step
WAIT_TIMEOUT = 120.0  # seconds for one `aws ecs wait services-stable` run (it is already stable)
DESIRED = 3
MIN_HEALTHY = 2  # ceil(3 x 50%)
MAX_TOTAL = 6  # 3 x 200%


class GraceServer(ServerProcess):
    """A `flotilla server` on port 0 with a short lost-instance grace period."""

    def __init__(self, data_dir: Path, log_path: Path):
        super().__init__(data_dir, log_path, ("--lost-instance-grace-seconds", str(LOST_GRACE_SECONDS)))


class Fleet:
    """The module's server, its two agents ("a" and "b"), their cluster, clients, and the names of
    the services the steps share."""

    def __init__(self, base):
        self.base = base
        uid = uuid.uuid4().hex[:8]
        self.cluster = f"svc-e2e-{uid}"
        self.web = f"web-{uid}"
        self.daemon = f"daemon-{uid}"
        self.family = f"web-{uid}"
        self.server: GraceServer | None = None
        self.agents: dict[str, AgentProcess] = {}
        self.agent_runs: dict[str, int] = {}
        self.instance_of: dict[str, str] = {}  # agent name -> container instance ARN
        self.cluster_arn = ""
        self.revisions: dict[int, str] = {}  # web revision -> task definition ARN

    # -- processes

    def start_agent(self, name: str) -> AgentProcess:
        self.agent_runs[name] = self.agent_runs.get(name, 0) + 1
        agent = AgentProcess(
            self.server.env,
            self.cluster,
            self.base / f"agent-{name}-data",
            self.base / f"agent-{name}-{self.agent_runs[name]}.log",
        ).start()
        self.agents[name] = agent
        return agent

    def agent_named(self, instance_arn: str) -> str:
        return next(n for n, a in self.instance_of.items() if a == instance_arn)

    def diagnostics(self) -> str:
        parts = [f"agent {n} log:\n{a.log_tail(25)}" for n, a in self.agents.items()]
        if self.server:
            parts.append(f"server log:\n{self.server.stderr_tail(25)}")
        try:
            for name in (self.web, self.daemon):
                s = self.service(name)
                if s:
                    parts.append(
                        f"service {name}: running={s['runningCount']} desired={s['desiredCount']} "
                        f"pending={s['pendingCount']} deployments={s['deployments']}\n"
                        f"events: {[e['message'] for e in s['events'][:8]]}"
                    )
        except Exception as e:  # noqa: BLE001 - diagnostics must not hide the real failure
            parts.append(f"<could not describe services: {e}>")
        return "\n".join(parts)

    # -- ECS views

    def instances(self) -> list[dict]:
        arns = self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]
        if not arns:
            return []
        return self.ecs.describe_container_instances(cluster=self.cluster, containerInstances=arns)[
            "containerInstances"
        ]

    def instance(self, arn: str) -> dict:
        out = self.ecs.describe_container_instances(cluster=self.cluster, containerInstances=[arn])
        assert out["failures"] == [], out
        return out["containerInstances"][0]

    def wait_connected(self, arn: str, connected: bool) -> dict:
        return poll(
            lambda: (lambda ci: ci if ci["agentConnected"] is connected else None)(self.instance(arn)),
            60,
            f"instance {arn} agentConnected={connected}",
            self.diagnostics,
        )

    def service(self, name: str) -> dict | None:
        out = self.ecs.describe_services(cluster=self.cluster, services=[name])
        return out["services"][0] if out["services"] else None

    def describe(self, arns: list[str]) -> list[dict]:
        tasks = []
        for i in range(0, len(arns), 100):
            out = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[i : i + 100])
            assert out["failures"] == [], out["failures"]
            tasks.extend(out["tasks"])
        return tasks

    def tasks(self, service: str, desired: str = "RUNNING") -> list[dict]:
        """The service's tasks with this desiredStatus (RUNNING: the live ones)."""
        arns = []
        for page in self.ecs.get_paginator("list_tasks").paginate(
            cluster=self.cluster, serviceName=service, desiredStatus=desired
        ):
            arns.extend(page["taskArns"])
        return self.describe(arns) if arns else []

    def task(self, arn: str) -> dict:
        return self.describe([arn])[0]

    def wait_task(self, arn: str, pred, what: str, timeout: float = TASK_TIMEOUT) -> dict:
        return poll(
            lambda: (lambda t: t if pred(t) else None)(self.task(arn)),
            timeout,
            what,
            lambda: f"task: {self.task(arn)}\n{self.diagnostics()}",
        )

    def event_ids(self, name: str) -> set[str]:
        return {e["id"] for e in self.service(name)["events"]}

    def new_events(self, name: str, before: set[str]) -> list[str]:
        return [e["message"] for e in self.service(name)["events"] if e["id"] not in before]

    # -- waits

    def wait_stable(self, *names: str, observe=None) -> list[dict]:
        """Waits until every named service is stable (one deployment, running == desired), calling
        `observe()` on every poll; then `aws ecs wait services-stable` must succeed at once. Returns
        the services as DescribeServices gives them, each checked for ECS's stable shape."""
        names = names or (self.web,)
        waiter = self.ecs.get_waiter("services_stable")

        def stable():
            if observe:
                observe()
            out = self.ecs.describe_services(cluster=self.cluster, services=list(names))
            # The waiter's condition, and the rollout COMPLETED: that takes the new tasks running
            # for ten seconds, so a container that dies at once never completes a rollout.
            return all(
                len(s["deployments"]) == 1
                and s["runningCount"] == s["desiredCount"]
                and s["deployments"][0].get("rolloutState") == "COMPLETED"
                for s in out["services"]
            ) and len(out["services"]) == len(names)

        poll(stable, STEP_TIMEOUT, f"services {names} stable", self.diagnostics)
        # The SDK's own waiter and the CLI's agree.
        waiter.wait(cluster=self.cluster, services=list(names), WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        res = self.aws(
            "ecs", "wait", "services-stable", "--cluster", self.cluster, "--services", *names, timeout=WAIT_TIMEOUT
        )
        assert res.ok, f"`aws ecs wait services-stable` failed: {res.error}\n{self.diagnostics()}"
        services = self.ecs.describe_services(cluster=self.cluster, services=list(names))["services"]
        for s in services:
            assert s["status"] == "ACTIVE", s
            assert s["runningCount"] == s["desiredCount"], s
            assert s["pendingCount"] == 0, s
            [d] = s["deployments"]
            assert d["status"] == "PRIMARY", d
            assert d["rolloutState"] == "COMPLETED", d
            assert d["taskDefinition"] == s["taskDefinition"], (d, s["taskDefinition"])
            counts = (d["desiredCount"], d["runningCount"], d["pendingCount"])
            assert counts == (s["desiredCount"], s["desiredCount"], 0), d
            stamps = [e["createdAt"] for e in s["events"]]
            assert stamps == sorted(stamps, reverse=True), f"events are not newest first: {s['events']}"
            assert len(s["events"]) <= 100
            live = self.tasks(s["serviceName"])
            running = [t for t in live if t["lastStatus"] == "RUNNING"]
            assert len(running) == len(live) == s["desiredCount"], (
                f"{s['serviceName']}: desiredCount {s['desiredCount']} but live tasks "
                f"{[(t['taskArn'], t['lastStatus']) for t in live]}"
            )
        return services


def http_body(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def host_port(task: dict) -> int:
    [binding] = by_name(task)["web"]["networkBindings"]
    assert binding["containerPort"] == 8080 and binding["hostPort"] > 0, binding
    return binding["hostPort"]


def workload(name: str, command: list[str], **extra) -> dict:
    c = {"name": name, "image": WORKLOAD_IMAGE, "memory": 32, "essential": True, "command": command}
    c.update(extra)
    return c


def web_container(command: list[str]) -> dict:
    return workload("web", command, portMappings=[{"containerPort": 8080, "hostPort": 0}])


class RolloutBounds:
    """Samples a REPLICA service's live tasks while it moves and remembers the extremes: the most
    tasks at once that were not asked to stop, and the fewest of them RUNNING."""

    def __init__(self, fleet: Fleet, name: str):
        self.fleet, self.name = fleet, name
        self.most_live = 0
        self.fewest_running = 10**9
        self.samples = 0

    def __call__(self):
        live = self.fleet.tasks(self.name)
        running = [t for t in live if t["lastStatus"] == "RUNNING"]
        self.most_live = max(self.most_live, len(live))
        self.fewest_running = min(self.fewest_running, len(running))
        self.samples += 1


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a reachable Docker Engine (`docker info` failed)", pytrace=False)
    f = Fleet(tmp_path_factory.mktemp("services-e2e"))
    f.server = GraceServer(f.base / "server-data", f.base / "server.log").start()
    f.ecs = make_client(f.server.env)
    f.aws = AwsCli(f.server.env, f.base / "cli")
    try:
        f.cluster_arn = f.ecs.create_cluster(clusterName=f.cluster)["cluster"]["clusterArn"]
        for name in ("a", "b"):
            f.start_agent(name)
        # Two instances, each registered by its own agent, both connected.
        def both():
            cis = f.instances()
            return cis if len(cis) == 2 and all(c["agentConnected"] for c in cis) else None

        cis = poll(both, 60, "two connected container instances", f.diagnostics)
        assert len({c["containerInstanceArn"] for c in cis}) == 2
        # Which agent holds which instance: each saves its instance ARN in its data directory.
        for name, agent in f.agents.items():
            f.instance_of[name] = poll(
                lambda: _instance_arn_in(agent.data_dir), 30, f"agent {name}'s instance ARN on disk", f.diagnostics
            )
        assert set(f.instance_of.values()) == {c["containerInstanceArn"] for c in cis}, (f.instance_of, cis)
        yield f
    finally:
        problems = []
        for name, agent in f.agents.items():
            if agent.proc:
                rc = agent.stop()
                if rc != 0:
                    problems.append(f"agent {name} exited with status {rc} after SIGTERM\n{agent.log_tail()}")
        if f.server and f.server.proc:
            rc = f.server.stop()
            if rc != 0:
                problems.append(f"server exited with status {rc} after SIGTERM\n{f.server.stderr_tail()}")
        remove_cluster_containers(f.cluster_arn or f"arn:aws:ecs:us-east-1:000000000000:cluster/{f.cluster}")
        assert not problems, "\n".join(problems)


def _instance_arn_in(data_dir) -> str | None:
    """The container instance ARN an agent saved in its data directory (`agent.json`)."""
    try:
        return json.loads((data_dir / "agent.json").read_text()).get("containerInstanceArn")
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# helpers for the steps


def container_of(task_arn: str, name: str = "web") -> str:
    out = docker(
        "ps", "--no-trunc", "--quiet", "--filter", f"label={TASK_LABEL}={task_arn}", "--filter",
        f"label={CONTAINER_LABEL}={name}",
    )
    ids = out.split()
    assert len(ids) == 1, f"expected one running `{name}` container of {task_arn}, found {ids}"
    return ids[0]


def running_container_tasks(cluster_arn: str) -> dict[str, int]:
    """Task ARN -> number of running Docker containers of this cluster carrying it."""
    out = docker("ps", "--no-trunc", "--filter", f"label={CLUSTER_LABEL}={cluster_arn}", "--format",
                 f'{{{{.Label "{TASK_LABEL}"}}}}')
    counts: dict[str, int] = {}
    for arn in out.split():
        counts[arn] = counts.get(arn, 0) + 1
    return counts


def short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def wait_replaced(fleet: Fleet, gone: str) -> list[dict]:
    """Waits until the web service again has DESIRED live RUNNING tasks, none of them `gone`."""

    def check():
        live = fleet.tasks(fleet.web)
        ok = len(live) == DESIRED and all(t["lastStatus"] == "RUNNING" for t in live)
        return live if ok and gone not in {t["taskArn"] for t in live} else None

    return poll(check, STEP_TIMEOUT, f"a replacement for {short(gone)}", fleet.diagnostics)


# ----------------------------------------------------------------------------------------------
# 1. a 3-task REPLICA web service in bridge mode reaches its steady state


def test_replica_web_service_reaches_steady_state(fleet):
    td = fleet.ecs.register_task_definition(
        family=fleet.family,
        networkMode="bridge",
        containerDefinitions=[web_container(["serve", "8080", "--body", "v1"])],
    )["taskDefinition"]
    assert td["revision"] == 1
    fleet.revisions[1] = td["taskDefinitionArn"]

    # The aws CLI creates it, as a new user would.
    res = fleet.aws(
        "ecs", "create-service", "--cluster", fleet.cluster, "--service-name", fleet.web,
        "--task-definition", f"{fleet.family}:1", "--desired-count", str(DESIRED),
    )
    assert res.ok, res.error
    created = res.data["service"]
    assert (created["serviceName"], created["desiredCount"], created["schedulingStrategy"]) == (fleet.web, 3, "REPLICA")
    assert created["launchType"] == "EC2" and created["status"] == "ACTIVE"
    [d] = created["deployments"]
    assert d["status"] == "PRIMARY" and d["rolloutState"] == "IN_PROGRESS", d
    assert d["taskDefinition"] == fleet.revisions[1]

    [svc] = fleet.wait_stable(fleet.web)
    assert (svc["desiredCount"], svc["runningCount"], svc["pendingCount"]) == (3, 3, 0)
    events = [e["message"] for e in svc["events"]]
    assert f"(service {fleet.web}) has reached a steady state." in events, events
    assert any(m.startswith(f"(service {fleet.web}) has started 3 tasks:") for m in events), events

    tasks = fleet.tasks(fleet.web)
    assert len(tasks) == 3
    for t in tasks:
        assert t["group"] == f"service:{fleet.web}", t["group"]
        assert t["startedBy"] == svc["deployments"][0]["id"], (t["startedBy"], svc["deployments"])
        assert t["taskDefinitionArn"] == fleet.revisions[1]
        assert http_body(host_port(t)) == "v1"
    # ECS's default placement for services spreads over instances (both agents are in one zone).
    assert {t["containerInstanceArn"] for t in tasks} == set(fleet.instance_of.values()), tasks


# ----------------------------------------------------------------------------------------------
# 2. `docker kill` of a container: the task stops (EssentialContainerExited) and is replaced


def test_docker_kill_of_a_container_is_replaced(fleet):
    victim = fleet.tasks(fleet.web)[0]["taskArn"]
    before = fleet.event_ids(fleet.web)
    docker("kill", container_of(victim))

    stopped = fleet.wait_task(victim, lambda t: t["lastStatus"] == "STOPPED", "the killed task STOPPED")
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited", stopped
    assert stopped["stoppedReason"].startswith("Essential container in task exited"), stopped["stoppedReason"]
    assert by_name(stopped)["web"]["exitCode"] == 137, by_name(stopped)["web"]

    live = wait_replaced(fleet, victim)
    [svc] = fleet.wait_stable(fleet.web)
    assert (svc["desiredCount"], svc["runningCount"]) == (3, 3)
    new = [t for t in live if t["taskArn"] not in {victim}]
    replacement = max(new, key=lambda t: t["createdAt"])
    events = fleet.new_events(fleet.web, before)
    assert f"(service {fleet.web}) has started 1 tasks: (task {short(replacement['taskArn'])})." in events, events
    # Back at its desired count, once the replacement has run a while (ten seconds), the service
    # says so again, as ECS does after a replacement.
    steady = f"(service {fleet.web}) has reached a steady state."

    def said_steady():
        events = fleet.new_events(fleet.web, before)
        return events if events and events[0] == steady else None

    poll(said_steady, STEP_TIMEOUT, "the steady-state event after the replacement", fleet.diagnostics)
    assert http_body(host_port(replacement)) == "v1"


# ----------------------------------------------------------------------------------------------
# 3. StopTask of one task: replaced


def test_stop_task_is_replaced(fleet):
    victim = fleet.tasks(fleet.web)[0]["taskArn"]
    fleet.ecs.stop_task(cluster=fleet.cluster, task=victim, reason="operator stop")
    stopped = fleet.wait_task(victim, lambda t: t["lastStatus"] == "STOPPED", "the stopped task STOPPED")
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "operator stop"), stopped

    wait_replaced(fleet, victim)
    [svc] = fleet.wait_stable(fleet.web)
    assert (svc["desiredCount"], svc["runningCount"]) == (3, 3)


# ----------------------------------------------------------------------------------------------
# 4. a rolling update from revision 1 to 2 within minimumHealthyPercent 50 / maximumPercent 200


def test_rolling_update_to_revision_2(fleet):
    td = fleet.ecs.register_task_definition(
        family=fleet.family,
        networkMode="bridge",
        containerDefinitions=[web_container(["serve", "8080", "--body", "v2"])],
    )["taskDefinition"]
    assert td["revision"] == 2
    fleet.revisions[2] = td["taskDefinitionArn"]
    old = {t["taskArn"] for t in fleet.tasks(fleet.web)}

    bounds = RolloutBounds(fleet, fleet.web)
    out = fleet.ecs.update_service(
        cluster=fleet.cluster,
        service=fleet.web,
        taskDefinition=f"{fleet.family}:2",
        deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 200},
    )["service"]
    assert out["taskDefinition"] == fleet.revisions[2]
    assert [d["status"] for d in out["deployments"]] == ["PRIMARY", "ACTIVE"], out["deployments"]
    primary, previous = out["deployments"]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (fleet.revisions[2], "IN_PROGRESS"), primary
    assert previous["taskDefinition"] == fleet.revisions[1], previous
    assert out["deploymentConfiguration"]["minimumHealthyPercent"] == 50
    assert out["deploymentConfiguration"]["maximumPercent"] == 200

    [svc] = fleet.wait_stable(fleet.web, observe=bounds)
    assert bounds.samples > 0
    assert bounds.most_live <= MAX_TOTAL, f"{bounds.most_live} live tasks at once, above maximumPercent 200"
    assert bounds.fewest_running >= MIN_HEALTHY, (
        f"only {bounds.fewest_running} RUNNING tasks at one point, below minimumHealthyPercent 50"
    )
    [d] = svc["deployments"]
    assert d["id"] == primary["id"] and d["taskDefinition"] == fleet.revisions[2], d
    assert svc["taskDefinition"] == fleet.revisions[2]
    tasks = fleet.tasks(fleet.web)
    assert {t["taskDefinitionArn"] for t in tasks} == {fleet.revisions[2]}
    assert not old & {t["taskArn"] for t in tasks}, "a revision 1 task is still live"
    assert all(http_body(host_port(t)) == "v2" for t in tasks)
    for arn in old:
        t = fleet.task(arn)
        assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "ServiceSchedulerInitiated", t


# ----------------------------------------------------------------------------------------------
# 5. a broken revision trips the deployment circuit breaker, which rolls back to revision 2


def test_broken_revision_trips_the_circuit_breaker_and_rolls_back(fleet):
    td = fleet.ecs.register_task_definition(
        family=fleet.family, networkMode="bridge", containerDefinitions=[web_container(["exit", "1"])]
    )["taskDefinition"]
    assert td["revision"] == 3
    fleet.revisions[3] = td["taskDefinitionArn"]
    before = fleet.event_ids(fleet.web)

    out = fleet.ecs.update_service(
        cluster=fleet.cluster,
        service=fleet.web,
        taskDefinition=f"{fleet.family}:3",
        deploymentConfiguration={
            "minimumHealthyPercent": 50,
            "maximumPercent": 200,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
    )["service"]
    broken = out["deployments"][0]
    assert (broken["status"], broken["taskDefinition"]) == ("PRIMARY", fleet.revisions[3]), broken
    breaker = out["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": True, "rollback": True}, breaker

    seen: dict[str, dict] = {}

    def observe():
        for d in fleet.service(fleet.web)["deployments"]:
            if d["id"] == broken["id"]:
                seen[d.get("rolloutState", "")] = d

    # First the breaker trips (the failed deployment is seen FAILED), then the service settles.
    poll(lambda: observe() or "FAILED" in seen, STEP_TIMEOUT, "the broken deployment FAILED", fleet.diagnostics)
    failed = seen["FAILED"]
    assert failed["status"] == "ACTIVE", failed
    assert failed["failedTasks"] >= 3, failed
    assert "circuit breaker" in failed.get("rolloutStateReason", ""), failed

    [svc] = fleet.wait_stable(fleet.web)
    assert svc["taskDefinition"] == fleet.revisions[2], "the service did not return to the last good revision"
    [d] = svc["deployments"]
    assert d["taskDefinition"] == fleet.revisions[2], d
    assert d["id"] != broken["id"]
    events = fleet.new_events(fleet.web, before)
    assert any("deployment failed" in m and broken["id"] in m for m in events), events
    assert any("rolling back" in m for m in events), events
    tasks = fleet.tasks(fleet.web)
    assert {t["taskDefinitionArn"] for t in tasks} == {fleet.revisions[2]}
    assert all(http_body(host_port(t)) == "v2" for t in tasks)

    # The broken revision's tasks: at least the breaker's threshold (3 for 3 tasks) exited 1 on
    # their own; any launched before the breaker tripped and still starting were retired by the
    # scheduler.
    broken_tasks = [t for t in fleet.tasks(fleet.web, "STOPPED") if t["taskDefinitionArn"] == fleet.revisions[3]]
    assert all(t["startedBy"] == broken["id"] for t in broken_tasks)
    exited = [t for t in broken_tasks if t["stopCode"] == "EssentialContainerExited"]
    assert len(exited) >= 3, [(t["taskArn"], t["stopCode"], t.get("stoppedReason")) for t in broken_tasks]
    assert all(by_name(t)["web"]["exitCode"] == 1 for t in exited), [by_name(t)["web"] for t in exited]
    retired = [t for t in broken_tasks if t not in exited]
    assert all(t["stopCode"] == "ServiceSchedulerInitiated" for t in retired), retired
    assert all(t["lastStatus"] == "STOPPED" for t in broken_tasks)


# ----------------------------------------------------------------------------------------------
# 6. a DAEMON service runs one task on each of the two agents


def test_daemon_service_runs_one_task_per_instance(fleet):
    td = fleet.ecs.register_task_definition(
        family=f"{fleet.daemon}-td", networkMode="bridge", containerDefinitions=[workload("agentd", ["sleep", "inf"])]
    )["taskDefinition"]
    out = fleet.ecs.create_service(
        cluster=fleet.cluster,
        serviceName=fleet.daemon,
        taskDefinition=td["taskDefinitionArn"],
        schedulingStrategy="DAEMON",
    )["service"]
    assert out["schedulingStrategy"] == "DAEMON"
    assert out["deploymentConfiguration"]["minimumHealthyPercent"] == 0
    assert out["deploymentConfiguration"]["maximumPercent"] == 100

    svcs = fleet.wait_stable(fleet.daemon, fleet.web)
    daemon = next(s for s in svcs if s["serviceName"] == fleet.daemon)
    assert (daemon["desiredCount"], daemon["runningCount"]) == (2, 2), daemon
    tasks = fleet.tasks(fleet.daemon)
    on = sorted(t["containerInstanceArn"] for t in tasks)
    assert on == sorted(fleet.instance_of.values()), f"DAEMON tasks are on {on}"


# ----------------------------------------------------------------------------------------------
# 7. a SIGKILLed agent: its tasks are replaced on the other; back with the same data directory,
#    its surplus is stopped


def test_killed_agent_tasks_are_replaced_and_the_surplus_stopped_when_it_returns(fleet):
    web = fleet.tasks(fleet.web)
    per_instance = {arn: [t for t in web if t["containerInstanceArn"] == arn] for arn in fleet.instance_of.values()}
    lost_arn = max(per_instance, key=lambda a: len(per_instance[a]))
    assert per_instance[lost_arn], per_instance
    lost, other = fleet.agent_named(lost_arn), fleet.agent_named(next(a for a in per_instance if a != lost_arn))
    other_arn = fleet.instance_of[other]
    stranded = [t["taskArn"] for t in per_instance[lost_arn]]
    stranded += [t["taskArn"] for t in fleet.tasks(fleet.daemon) if t["containerInstanceArn"] == lost_arn]
    assert len(stranded) >= 2, stranded

    assert fleet.agents[lost].kill() == -9
    fleet.wait_connected(lost_arn, False)
    # Past the grace period the controller gives the stranded tasks up ...
    for arn in stranded:
        t = fleet.wait_task(arn, lambda t: t["desiredStatus"] == "STOPPED", "a stranded task asked to stop", 60)
        assert t["stopCode"] == "ServiceSchedulerInitiated", t
        assert "disconnected" in t["stoppedReason"], t["stoppedReason"]
    # ... and replaces the web tasks on the other instance; the DAEMON wants one task fewer.
    svcs = fleet.wait_stable(fleet.web, fleet.daemon)
    web_svc = next(s for s in svcs if s["serviceName"] == fleet.web)
    daemon = next(s for s in svcs if s["serviceName"] == fleet.daemon)
    assert web_svc["runningCount"] == 3
    assert {t["containerInstanceArn"] for t in fleet.tasks(fleet.web)} == {other_arn}
    assert (daemon["desiredCount"], daemon["runningCount"]) == (1, 1), daemon
    assert [t["containerInstanceArn"] for t in fleet.tasks(fleet.daemon)] == [other_arn]
    # The dead agent's containers are still running in Docker: nobody stopped them yet.
    assert all(running_container_tasks(fleet.cluster_arn).get(a) for a in stranded)

    # The agent comes back with the same data directory and the same instance.
    fleet.start_agent(lost)
    ci = fleet.wait_connected(lost_arn, True)
    assert ci["status"] == "ACTIVE"
    for arn in stranded:
        t = fleet.wait_task(arn, lambda t: t["lastStatus"] == "STOPPED", "a surplus task STOPPED", 90)
        assert t["stopCode"] == "ServiceSchedulerInitiated", t
    # The DAEMON returns to the instance.
    poll(
        lambda: len(fleet.tasks(fleet.daemon)) == 2 and fleet.service(fleet.daemon)["desiredCount"] == 2,
        STEP_TIMEOUT,
        "a DAEMON task on the returned instance",
        fleet.diagnostics,
    )
    svcs = fleet.wait_stable(fleet.web, fleet.daemon)
    # No service runs more than it wants: in ECS's view and in Docker's.
    live = {t["taskArn"] for s in svcs for t in fleet.tasks(s["serviceName"])}
    for s in svcs:
        all_tasks = fleet.tasks(s["serviceName"]) + fleet.tasks(s["serviceName"], "STOPPED")
        running = [t for t in all_tasks if t["lastStatus"] == "RUNNING"]
        assert len(running) == s["desiredCount"], (s["serviceName"], [t["taskArn"] for t in running])
    in_docker = poll(
        lambda: (lambda c: c if set(c) == live else None)(running_container_tasks(fleet.cluster_arn)),
        60,
        "Docker running exactly the live tasks' containers",
        lambda: f"live {live}\ndocker {running_container_tasks(fleet.cluster_arn)}",
    )
    assert all(n == 1 for n in in_docker.values()), in_docker


# ----------------------------------------------------------------------------------------------
# 8. draining an instance moves its service tasks to the other


def test_draining_an_instance_moves_its_tasks(fleet):
    web = fleet.tasks(fleet.web)
    counts = {arn: sum(t["containerInstanceArn"] == arn for t in web) for arn in fleet.instance_of.values()}
    drained = max(counts, key=counts.get)
    other = next(a for a in counts if a != drained)
    moving = [t["taskArn"] for t in web if t["containerInstanceArn"] == drained]
    assert moving, counts
    daemon_there = [t["taskArn"] for t in fleet.tasks(fleet.daemon) if t["containerInstanceArn"] == drained]
    assert len(daemon_there) == 1

    bounds = RolloutBounds(fleet, fleet.web)
    out = fleet.ecs.update_container_instances_state(
        cluster=fleet.cluster, containerInstances=[drained], status="DRAINING"
    )
    assert out["failures"] == [] and out["containerInstances"][0]["status"] == "DRAINING", out
    poll(
        lambda: all(fleet.task(a)["desiredStatus"] == "STOPPED" for a in moving + daemon_there),
        STEP_TIMEOUT,
        "the drained instance's tasks asked to stop",
        fleet.diagnostics,
    )
    svcs = fleet.wait_stable(fleet.web, fleet.daemon, observe=bounds)
    assert bounds.fewest_running >= MIN_HEALTHY, f"only {bounds.fewest_running} web tasks RUNNING during the drain"
    assert bounds.most_live <= MAX_TOTAL
    web_svc = next(s for s in svcs if s["serviceName"] == fleet.web)
    daemon = next(s for s in svcs if s["serviceName"] == fleet.daemon)
    assert web_svc["runningCount"] == 3
    assert {t["containerInstanceArn"] for t in fleet.tasks(fleet.web)} == {other}
    assert (daemon["desiredCount"], daemon["runningCount"]) == (1, 1)
    for arn in moving + daemon_there:
        t = fleet.wait_task(arn, lambda t: t["lastStatus"] == "STOPPED", "a drained task STOPPED")
        assert t["stopCode"] == "ServiceSchedulerInitiated", t
        assert "drain" in t["stoppedReason"].lower(), t["stoppedReason"]
    ci = poll(
        lambda: (lambda c: c if c["runningTasksCount"] == 0 and c["pendingTasksCount"] == 0 else None)(
            fleet.instance(drained)
        ),
        60,
        "the drained instance empty",
        fleet.diagnostics,
    )
    assert ci["status"] == "DRAINING"

    # Back to ACTIVE: the DAEMON returns to it.
    fleet.ecs.update_container_instances_state(cluster=fleet.cluster, containerInstances=[drained], status="ACTIVE")
    poll(
        lambda: fleet.service(fleet.daemon)["desiredCount"] == 2,
        STEP_TIMEOUT,
        "the DAEMON wanting the reactivated instance again",
        fleet.diagnostics,
    )
    fleet.wait_stable(fleet.web, fleet.daemon)
    assert sorted(t["containerInstanceArn"] for t in fleet.tasks(fleet.daemon)) == sorted(fleet.instance_of.values())


# ----------------------------------------------------------------------------------------------
# 8b. a rollback to a deployment whose containers once died after running fine


def test_rollback_to_a_deployment_that_lost_containers_completes(fleet):
    svc = fleet.service(fleet.web)
    [good] = svc["deployments"]
    assert good["taskDefinition"] == fleet.revisions[2], good
    # Three containers of the good deployment die after running: ECS counts none of them as a
    # failed task ("a task that doesn't transition to RUNNING" or fails its health checks).
    victims = [t["taskArn"] for t in fleet.tasks(fleet.web)]
    for arn in victims:
        docker("kill", container_of(arn))
    for arn in victims:
        fleet.wait_task(arn, lambda t: t["lastStatus"] == "STOPPED", "a killed task STOPPED")
    poll(lambda: len(fleet.tasks(fleet.web)) == DESIRED, STEP_TIMEOUT, "three replacements", fleet.diagnostics)
    fleet.wait_stable(fleet.web, fleet.daemon)
    failed_after_kills = fleet.service(fleet.web)["deployments"][0]["failedTasks"]

    before = fleet.event_ids(fleet.web)
    out = fleet.ecs.update_service(cluster=fleet.cluster, service=fleet.web, taskDefinition=f"{fleet.family}:3")
    broken = out["service"]["deployments"][0]
    assert broken["taskDefinition"] == fleet.revisions[3]
    good_states: set[str] = set()

    def observe():
        for d in fleet.service(fleet.web)["deployments"]:
            if d["id"] == good["id"]:
                good_states.add(d.get("rolloutState", ""))

    try:
        fleet.wait_stable(fleet.web, observe=observe)
    finally:
        s = fleet.service(fleet.web)
        if s["taskDefinition"] != fleet.revisions[2] or len(s["deployments"]) != 1:
            # Leave the module's service usable: a fresh deployment of revision 2.
            fleet.ecs.update_service(cluster=fleet.cluster, service=fleet.web, taskDefinition=f"{fleet.family}:2")
            fleet.wait_stable(fleet.web)
    assert s["taskDefinition"] == fleet.revisions[2], s["taskDefinition"]
    events = fleet.new_events(fleet.web, before)
    assert any(broken["id"] in m and "deployment failed" in m for m in events), events
    wrongly_failed = [m for m in events if good["id"] in m and "deployment failed" in m]
    assert "FAILED" not in good_states and not wrongly_failed, (
        f"the rollback deployment {good['id']} (revision 2, whose {failed_after_kills} killed containers had run "
        f"fine) was failed by the circuit breaker too: rolloutStates seen {good_states}, events {wrongly_failed}"
    )
    assert failed_after_kills == 0, f"failedTasks is {failed_after_kills} for tasks that ran fine"


# ----------------------------------------------------------------------------------------------
# 9. a task that keeps failing is retried with back-off, and the events say so; DeleteService
#    drains every service and ends INACTIVE


def test_crash_looping_service_is_throttled(fleet):
    name = f"crash-{fleet.web}"
    td = fleet.ecs.register_task_definition(
        family=name, networkMode="bridge", containerDefinitions=[workload("crash", ["exit", "3"])]
    )["taskDefinition"]
    fleet.ecs.create_service(
        cluster=fleet.cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=1
    )
    throttled = f"(service {name}) is unable to consistently start tasks successfully."

    svc = poll(
        lambda: (lambda s: s if any(e["message"].startswith(throttled) for e in s["events"]) else None)(
            fleet.service(name)
        ),
        STEP_TIMEOUT,
        "the service saying it cannot start tasks consistently",
        fleet.diagnostics,
    )
    assert svc["runningCount"] == 0 and svc["desiredCount"] == 1, svc
    [d] = svc["deployments"]
    assert d["failedTasks"] >= 2, d
    stopped = fleet.tasks(name, "STOPPED")
    assert len(stopped) >= 2
    for t in stopped:
        assert t["stopCode"] == "EssentialContainerExited", t
        assert by_name(t)["crash"]["exitCode"] == 3, by_name(t)["crash"]
    # Held back: a failing service does not start a new task on every pass.
    assert len(stopped) + len(fleet.tasks(name)) < 10, len(stopped)

    out = fleet.ecs.delete_service(cluster=fleet.cluster, service=name, force=True)["service"]
    assert out["status"] in ("DRAINING", "INACTIVE"), out["status"]
    poll(
        lambda: fleet.service(name)["status"] == "INACTIVE", STEP_TIMEOUT, "the crash loop INACTIVE", fleet.diagnostics
    )
    assert fleet.tasks(name) == []


def test_delete_services_stops_their_tasks_and_ends_inactive(fleet):
    live = [t["taskArn"] for name in (fleet.web, fleet.daemon) for t in fleet.tasks(name)]
    assert len(live) == 5, live
    with pytest.raises(fleet.ecs.exceptions.InvalidParameterException):
        fleet.ecs.delete_service(cluster=fleet.cluster, service=fleet.web)  # desiredCount is 3: needs force
    for name in (fleet.web, fleet.daemon):
        out = fleet.ecs.delete_service(cluster=fleet.cluster, service=name, force=True)["service"]
        assert out["status"] == "DRAINING", out["status"]
        assert out["desiredCount"] == 0
    res = fleet.aws(
        "ecs", "wait", "services-inactive", "--cluster", fleet.cluster, "--services", fleet.web, fleet.daemon,
        timeout=WAIT_TIMEOUT,
    )
    assert res.ok, f"`aws ecs wait services-inactive` failed: {res.error}\n{fleet.diagnostics()}"
    for arn in live:
        t = fleet.wait_task(arn, lambda t: t["lastStatus"] == "STOPPED", "a deleted service's task STOPPED")
        assert t["stopCode"] == "ServiceSchedulerInitiated", t
    poll(
        lambda: running_container_tasks(fleet.cluster_arn) == {},
        60,
        "no running containers left in the cluster",
        lambda: str(running_container_tasks(fleet.cluster_arn)),
    )
