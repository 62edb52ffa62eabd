#!/usr/bin/env bash
# Installs, when missing, the client tools the tests use beside the Python packages in .venv:
# the AWS CLI v2 from Debian's `awscli` package (`aws logs tail --follow` exists only in v2; the
# v1 CLI in .venv serves every other client test), and a private registry for the private
# registry tests: Debian's `docker-registry` with `htpasswd` (apache2-utils) for its users; and
# for the console's browser tests, Debian's headless-capable `chromium` with its WebDriver
# (`chromium-driver`, /usr/bin/chromedriver) and a font so the screenshots show text.
# Nothing is started here: each test starts its own registry on a loopback port.
set -euo pipefail
missing=()
[ -x /usr/bin/aws ] || missing+=(awscli)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The package may start a registry of its own on :5000; the tests never use it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
/usr/bin/aws --version
/usr/bin/chromium --version 2>/dev/null
