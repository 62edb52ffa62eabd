#!/usr/bin/env bash
# Measures the real agent's resident memory with N running tasks (default 50) on the local Docker
# Engine: starts `flotilla server` and one `flotilla agent` on a free loopback port, runs N tasks
# of flotilla/workload (each logs a line a second), waits until they all run, settles, and prints
# the agent's VmRSS and VmHWM from /proc. Everything it starts is stopped at the end.
#
#   cargo build --release -p flotilla && scripts/agent-memory.sh [N] [path/to/flotilla]
#
# Needs the flotilla/workload image (built by `flotilla up` or any Docker test), aws CLI and jq.
set -euo pipefail
N=${1:-50}
BIN=${2:-target/release/flotilla}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
export FLOTILLA_ACCESS_KEY_ID=AKIDMEMORY FLOTILLA_SECRET_ACCESS_KEY=memory-secret
export AWS_ACCESS_KEY_ID=$FLOTILLA_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$FLOTILLA_SECRET_ACCESS_KEY
export AWS_ENDPOINT_URL_ECS=http://127.0.0.1:$PORT AWS_DEFAULT_REGION=us-east-1 FLOTILLA_LOG=warn

"$BIN" server --listen "127.0.0.1:$PORT" --data-dir "$DIR/server" >/dev/null 2>"$DIR/server.log" &
SERVER=$!
AGENT=
CLUSTER=memory-$PORT
export AWS_PAGER=""
cleanup() {
  kill $AGENT "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
  # Only this run's containers (its own cluster): other agents may share the Docker Engine.
  docker ps -aq --filter "label=com.flotilla.cluster-arn=arn:aws:ecs:us-east-1:000000000000:cluster/$CLUSTER" |
    xargs -r docker rm -f >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
until aws ecs create-cluster --cluster-name "$CLUSTER" >/dev/null 2>&1; do sleep 0.5; done
# The agent joins with a token, as an operator's does: it never holds the root key pair.
TOKEN=$("$BIN" token create --cluster "$CLUSTER" --server "http://127.0.0.1:$PORT")
env -u FLOTILLA_ACCESS_KEY_ID -u FLOTILLA_SECRET_ACCESS_KEY \
  "$BIN" agent --server "http://127.0.0.1:$PORT" --cluster "$CLUSTER" --data-dir "$DIR/agent" \
  --host-ip 127.0.0.1 --pull-behavior never --token "$TOKEN" 2>"$DIR/agent.log" &
AGENT=$!
until aws ecs list-container-instances --cluster "$CLUSTER" --query 'containerInstanceArns[0]' --output text 2>/dev/null | grep -q arn; do
  sleep 0.5
done
aws ecs register-task-definition --family memory --container-definitions \
  '[{"name":"w","image":"flotilla/workload:latest","memory":16,"command":["log","100000","--interval","1"]}]' >/dev/null
left=$N
while [ "$left" -gt 0 ]; do
  c=$((left < 10 ? left : 10))
  aws ecs run-task --cluster "$CLUSTER" --task-definition memory --count "$c" >/dev/null
  left=$((left - c))
done
for _ in $(seq 1 240); do
  up=$(docker ps -q --filter "label=com.flotilla.cluster-arn=arn:aws:ecs:us-east-1:000000000000:cluster/$CLUSTER" | wc -l)
  [ "$up" = "$N" ] && break
  sleep 1
done
echo "containers running: $up of $N"
sleep 20
grep -E 'VmRSS|VmHWM|Threads' "/proc/$AGENT/status"
