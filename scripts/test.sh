#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, integration and end-to-end tests with aws-sdk-ecs),
# then the client tests (boto3 and the aws CLI against a real server). Installs the Python
# packages the client tests need into .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

# etcd for the etcd store's tests and the high-availability fault tests (installed when missing).
./scripts/setup-etcd.sh
# The AWS CLI v2 and a private registry (docker-registry, htpasswd) for the client tests.
./scripts/setup-clients.sh

if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

cargo build -p flotilla
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
FLOTILLA_BIN="$PWD/target/debug/flotilla" .venv/bin/python -m pytest -q tests/clients
