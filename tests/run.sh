#!/usr/bin/env bash
# The whole test suite. Installs what the tests need that cargo cannot (promtool, from the
# Debian package `prometheus`), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
  echo "tests/run.sh: installing promtool (Debian package prometheus)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
exec cargo test "$@"
