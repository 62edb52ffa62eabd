#!/usr/bin/env bash
# Installs what the etcd-backed control plane's tests and benchmarks need when missing: Debian's
# etcd 3.4 server and etcdctl (the store's contract tests and the fault tests start their own
# members on loopback ports; nothing is started here) and protoc (etcd-client's build compiles
# etcd's protobuf definitions).
set -euo pipefail
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto), which etcd's protos import: a
# recommendation of protobuf-compiler, so not installed with --no-install-recommends.
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The package may start a system etcd on 2379; the tests never use it, and a stray member
# would only take memory.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
etcd --version | head -1
