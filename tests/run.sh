#!/usr/bin/env bash
# The whole test suite. Installs what the tests need that cargo cannot, then runs every test:
# promtool (Debian package prometheus) for the metrics lint, and chromium, chromium-driver and
# ffmpeg for the browser playback test, haproxy as the PROXY protocol sender, opentracker (a
# BEP-15 UDP tracker) for the tracker tests.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v opentracker >/dev/null 2>&1 || missing+=(opentracker)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
exec cargo test "$@"
