"""Support for the client tests that run real containers: a real `flotilla agent` process on the
local Docker Engine, a `flotilla server` on a fixed port (so that it can be restarted under an agent
that keeps its URL), the docker CLI, and waits on ECS task state.

The agent builds Flotilla's own images (`flotilla/workload`, `flotilla/pause`) itself when a task
first needs them (crates/agent/src/runtime/docker.rs, `with_flotilla_images`), so nothing has to be
prepared beforehand. Every container the agent creates carries the label
`com.flotilla.cluster-arn`, which lets a fixture remove exactly what its own cluster left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from support import START_TIMEOUT, STOP_TIMEOUT, ServerProcess, flotilla_bin, parse_export_line

CLUSTER_LABEL = "com.flotilla.cluster-arn"
TASK_LABEL = "com.flotilla.task-arn"
CONTAINER_LABEL = "com.flotilla.container-name"
WORKLOAD_IMAGE = "flotilla/workload:latest"
TASK_TIMEOUT = 180.0  # seconds for a task to reach a status (the first task also builds the image)


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"`docker {' '.join(args)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def docker_inspect(container_id: str) -> dict:
    return json.loads(docker("inspect", "--type", "container", container_id))[0]


def containers_labelled(label: str, value: str) -> list[str]:
    """IDs of every container (running or not) whose `label` is `value`."""
    out = docker("ps", "-a", "--no-trunc", "--quiet", "--filter", f"label={label}={value}")
    return [line for line in out.split() if line]


def remove_cluster_containers(cluster_arn: str) -> list[str]:
    ids = containers_labelled(CLUSTER_LABEL, cluster_arn)
    if ids:
        docker("rm", "--force", "--volumes", *ids, check=False, timeout=120)
    return ids


def remove_task_containers(cluster: str) -> list[str]:
    """Removes the containers of every task of `cluster`, wherever they run: a Fargate task's
    containers carry the pool's cluster label, not their task's, so they are found by task ARN."""
    out = docker("ps", "-a", "--no-trunc", "--filter", "label=com.flotilla.managed",
                 "--format", '{{.ID}} {{.Label "com.flotilla.task-arn"}}')
    marker = f":task/{cluster}/"
    ids = [line.split(" ", 1)[0] for line in out.splitlines() if marker in line]
    if ids:
        docker("rm", "--force", "--volumes", *ids, check=False, timeout=120)
    return ids


def docker_time_ns(text: str) -> int:
    """Docker's RFC 3339 timestamps with up to nine fractional digits, as nanoseconds since the epoch."""
    assert text and not text.startswith("0001-"), f"no timestamp: {text!r}"
    head, _, rest = text.partition(".")
    frac = rest.rstrip("Z").split("+")[0].split("-")[0] if rest else ""
    base = datetime.strptime(head.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FixedPortServer(ServerProcess):
    """A `flotilla server` on one fixed address across restarts, so that an agent configured with
    its URL finds it again. Otherwise exactly ServerProcess (same export-line and /health waits)."""

    def __init__(self, data_dir: Path, log_path: Path, port: int):
        super().__init__(data_dir, log_path, listen=f"127.0.0.1:{port}")
        self.port = port


class AgentProcess:
    """One real `flotilla agent` child process joined to one cluster (or, with `fargate`, to the
    Fargate pool, its metadata endpoint on a port of its own), with its own data directory."""

    def __init__(
        self,
        server_env: dict[str, str],
        cluster: str,
        data_dir: Path,
        log_path: Path,
        fargate: bool = False,
        dns_server: str | None = None,
    ):
        self.server_env = dict(server_env)
        # The control plane's DNS (`flotilla server --dns-listen`), passed as `--dns-server`.
        self.dns_server = dns_server
        self.cluster = cluster
        self.fargate = fargate
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no agent log>"

    def start(self) -> "AgentProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_") and not k.startswith("AWS_")}
        env.setdefault("FLOTILLA_LOG", os.environ.get("FLOTILLA_LOG", "info"))
        # The agent joins with a token, as an operator's would; a restart reuses the pair it got.
        target = ["--fargate"] if self.fargate else ["--cluster", self.cluster]
        role = ["--fargate", "--metadata-listen", "gateway:0"] if self.fargate else ["--cluster", self.cluster]
        token = subprocess.run(
            [flotilla_bin(), "token", "create", *target],
            env={**env, **self.server_env},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [
                    flotilla_bin(),
                    "agent",
                    "--server",
                    self.server_env["AWS_ENDPOINT_URL"],
                    "--region",
                    self.server_env["AWS_DEFAULT_REGION"],
                    *role,
                    "--data-dir",
                    str(self.data_dir),
                    "--host-ip",
                    "127.0.0.1",
                    "--token",
                    token,
                    *(["--dns-server", self.dns_server] if self.dns_server else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait (bounded). Returns the exit status; SIGKILLs and fails on a hang."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(
                    f"flotilla agent did not exit within {timeout:.0f}s of SIGTERM\nlog:\n{self.log_tail()}",
                    pytrace=False,
                )
        return self.proc.returncode

    def kill(self) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        return self.proc.returncode


# ----------------------------------------------------------------------------------------------
# waits on ECS state


def poll(pred: Callable[[], Any], timeout: float, what: str, diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Calls `pred` until it returns something truthy; fails with the last value and diagnostics."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s (last value {last!r})\n{diagnostics()}")


def describe_task(ecs, cluster: str, arn: str) -> dict:
    out = ecs.describe_tasks(cluster=cluster, tasks=[arn])
    assert out["failures"] == [], out["failures"]
    assert len(out["tasks"]) == 1, out
    return out["tasks"][0]


def by_name(task: dict) -> dict[str, dict]:
    return {c["name"]: c for c in task["containers"]}
