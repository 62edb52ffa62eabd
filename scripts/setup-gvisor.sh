#!/usr/bin/env bash
# Makes this Docker host able to run Fargate tasks (`flotilla agent --fargate`, and the Fargate
# pool of `flotilla up`): installs gVisor's runsc from the distribution's package when missing,
# registers it with the Docker Engine as the runtime "runsc" in /etc/docker/daemon.json (merged
# into the keys already there; an existing "runsc" entry is kept as the operator wrote it),
# reloads dockerd (SIGHUP: running containers keep running) and waits until `docker info` lists
# the runtime. Idempotent: a host already set up is left untouched.
#
# RUNSC_ARGS (default "--network=host") are the runtime's arguments: with --network=host gVisor
# runs the task's network namespace through the host kernel instead of its own network stack,
# which cannot start on some hosts (nested VMs such as this project's CI); each task still has
# its own namespace, address and interface.
set -euo pipefail

DAEMON_JSON=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
RUNSC_ARGS=${RUNSC_ARGS:---network=host}
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

if ! command -v runsc >/dev/null 2>&1; then
  echo "setup-gvisor: installing runsc"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc
fi
RUNSC_PATH=$(command -v runsc)

changed=$($SUDO python3 - "$DAEMON_JSON" "$RUNSC_PATH" "$RUNSC_ARGS" <<'PY'
import json, os, sys
path, runsc, args = sys.argv[1], sys.argv[2], sys.argv[3].split()
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        config = json.load(f)
runtimes = config.setdefault("runtimes", {})
if "runsc" in runtimes:
    print("no")
    sys.exit(0)
runtimes["runsc"] = {"path": runsc, "runtimeArgs": args} if args else {"path": runsc}
os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = path + ".flotilla-tmp"
with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print("yes")
PY
)

if [ "$changed" = yes ]; then
  echo "setup-gvisor: registered runsc in $DAEMON_JSON; reloading dockerd"
  if pid=$(pidof dockerd); then
    $SUDO kill -HUP $pid
  else
    $SUDO systemctl reload docker
  fi
fi

for _ in $(seq 1 60); do
  if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
    echo "setup-gvisor: the Docker Engine lists runsc ($(runsc --version 2>/dev/null | head -1))"
    exit 0
  fi
  sleep 0.5
done
echo "setup-gvisor: the Docker Engine does not list runsc after reloading; see $DAEMON_JSON and dockerd's log" >&2
exit 1
