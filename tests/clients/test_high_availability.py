"""Several `flotilla server`s over one etcd (`--store etcd://...`), as the README's "High
availability" recipe runs them, driven by boto3 and the aws CLI: any server answers for the state
every server shares (ECS, ELBv2, Cloud Map), exactly one leads, another takes over when the leader
is killed, and `flotilla store copy` moves the state into a data directory that a plain server
then serves. Needs Debian's etcd-server (scripts/setup-etcd.sh installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support import AwsCli, ServerProcess, flotilla_bin, make_client, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd(workdir):
    """One etcd member on free loopback ports (the Rust fault tests run three)."""
    etcd_bin = shutil.which("etcd")
    if etcd_bin is None:
        pytest.fail("etcd is not installed: run scripts/setup-etcd.sh", pytrace=False)
    client, peer = free_port(), free_port()
    data = workdir / "ha-etcd"
    log = open(workdir / "ha-etcd.log", "ab")
    proc = subprocess.Popen(
        [etcd_bin, "--name", "e0", "--data-dir", str(data),
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"e0=http://127.0.0.1:{peer}", "--max-txn-ops", "10000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1) as r:
                if b"true" in r.read():
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "etcd did not become healthy"
        time.sleep(0.1)
    yield f"127.0.0.1:{client}"
    proc.kill()
    proc.wait(timeout=10)


def health(server: ServerProcess) -> dict:
    with urllib.request.urlopen(server.endpoint + "/health", timeout=2) as r:
        return json.loads(r.read())


def start_servers(workdir: Path, store: str, n: int, tag: str) -> list[ServerProcess]:
    """`n` servers over `store`, all with the first one's root key pair (as the README asks)."""
    servers = []
    for i in range(n):
        data = workdir / f"ha-{tag}-{i}"
        if servers:
            data.mkdir(parents=True, exist_ok=True)
            shutil.copy(servers[0].data_dir / "credentials.json", data / "credentials.json")
            os.chmod(data / "credentials.json", 0o600)
        args = ("--store", store, "--server-id", f"{tag}{i}")
        servers.append(ServerProcess(data, workdir / f"ha-{tag}-{i}.log", args).start())
    return servers


def test_servers_share_one_state_and_hand_over_the_lead(workdir, etcd, uid):
    store = f"etcd://{etcd}/ha-{uid}"
    a, b = start_servers(workdir, store, 2, f"s{uid}-")
    try:
        assert a.env["AWS_ACCESS_KEY_ID"] == b.env["AWS_ACCESS_KEY_ID"]
        ecs_a, ecs_b = make_client(a.env), make_client(b.env)
        ecs_a.create_cluster(clusterName=f"ha-{uid}")
        ecs_a.register_task_definition(
            family=f"web-{uid}", containerDefinitions=[{"name": "web", "image": "flotilla/workload:latest", "memory": 64}]
        )
        # Read on the other server: the same state.
        clusters = ecs_b.describe_clusters(clusters=[f"ha-{uid}"])["clusters"]
        assert [c["status"] for c in clusters] == ["ACTIVE"]
        assert ecs_b.describe_task_definition(taskDefinition=f"web-{uid}")["taskDefinition"]["revision"] == 1
        # A revision registered through b follows a's: one sequence for both.
        td = ecs_b.register_task_definition(
            family=f"web-{uid}", containerDefinitions=[{"name": "web", "image": "flotilla/workload:latest", "memory": 64}]
        )
        assert td["taskDefinition"]["revision"] == 2
        # The other APIs too.
        elb_a, elb_b = make_client(a.env, service="elbv2"), make_client(b.env, service="elbv2")
        tg = elb_a.create_target_group(Name=f"tg-{uid}", Protocol="HTTP", Port=80, TargetType="ip")["TargetGroups"][0]
        assert elb_b.describe_target_groups(Names=[f"tg-{uid}"])["TargetGroups"][0]["TargetGroupArn"] == tg["TargetGroupArn"]
        sd_a, sd_b = make_client(a.env, service="servicediscovery"), make_client(b.env, service="servicediscovery")
        op = sd_a.create_http_namespace(Name=f"ns-{uid}")["OperationId"]
        wait_until(lambda: sd_b.get_operation(OperationId=op)["Operation"]["Status"] == "SUCCESS", what="namespace")
        aws_b = AwsCli(b.env, workdir / f"cli-{uid}")
        listed = aws_b("ecs", "list-clusters")
        assert listed.ok, listed.error
        assert any(arn.endswith(f"/ha-{uid}") for arn in listed.data["clusterArns"])

        # Exactly one leads, and both name it.
        wait_until(lambda: [health(s)["leader"] for s in (a, b)].count(True) == 1, what="one leader")
        leader, other = (a, b) if health(a)["leader"] else (b, a)
        assert health(other)["leader_id"] == health(leader)["server"]
        assert health(other)["loops"]["controller"] == "standby"

        # Kill the leader: the other takes over and keeps serving writes.
        leader.kill()
        wait_until(lambda: health(other)["leader"], timeout=20, what="the other server to lead")
        assert health(other)["loops"]["controller"] == "running"
        make_client(other.env).create_cluster(clusterName=f"after-{uid}")
    finally:
        for s in (a, b):
            if s.proc and s.proc.poll() is None:
                assert s.stop() == 0, s.stderr_tail()


def test_store_copy_moves_the_state_into_a_data_directory(workdir, etcd, uid):
    store = f"etcd://{etcd}/copy-{uid}"
    (src,) = start_servers(workdir, store, 1, f"c{uid}-")
    make_client(src.env).create_cluster(clusterName=f"moved-{uid}")
    assert src.stop() == 0
    target = workdir / f"copied-{uid}"
    out = subprocess.run(
        [flotilla_bin(), "store", "copy", "--from", store, "--to", str(target)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Copied" in out.stderr
    # Copying again into what now holds data is refused, naming why.
    again = subprocess.run(
        [flotilla_bin(), "store", "copy", "--from", store, "--to", str(target)],
        capture_output=True, text=True, timeout=60,
    )
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr
    shutil.copy(src.data_dir / "credentials.json", target / "credentials.json")
    os.chmod(target / "credentials.json", 0o600)
    plain = ServerProcess(target, workdir / f"copied-{uid}.log").start()
    try:
        clusters = make_client(plain.env).describe_clusters(clusters=[f"moved-{uid}"])["clusters"]
        assert [c["status"] for c in clusters] == ["ACTIVE"]
    finally:
        assert plain.stop() == 0
