#!/usr/bin/env bash
# Hostile-client benchmark (issue #13): starts prism-lite on the shipped layout (memory tier
# over a disk tier, behind an HTTP origin that has nothing), then runs flood.py: stalled
# readers and idle connections on the HTTP and peer doors, a HEAD storm, stalled viewers of a
# /stream (the medium fixture stream, when ../shared/fixtures is there), and stalled QUIC
# streams on the HTTP/3 door (flood_h3: 40 connections x 32 streams, as issue #13 measured),
# each from 127.0.0.2, reporting the server's peak RSS growth and a bystander's (127.0.0.3)
# latency.
#
#   benches/hostile/run.sh [CONNS]      (default 1000 connections per TCP flood)
#   PROFILE=debug benches/hostile/run.sh  to use the debug binaries
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-1000}
profile=${PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin prism-lite --example flood_h3
else
  cargo build --quiet --bin prism-lite --example flood_h3
fi
bin=target/$profile/prism-lite
flood_h3=target/$profile/examples/flood_h3
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || true

mkdir -p "$work/data"
hash=$(python3 - "$work/data" <<'PY'
import hashlib, os, sys
blob = os.urandom(2 * 1024 * 1024)
h = hashlib.sha384(blob).hexdigest()
open(os.path.join(sys.argv[1], h), "wb").write(blob)
print(h)
PY
)
stream=()
fixture=../shared/fixtures/streams/medium
if [ -d "$fixture/blobs" ]; then
  cp "$fixture"/blobs/* "$work/data/"
  sd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sd_hash"])' "$fixture/stream.json")
  stream=(--stream "$sd")
fi
cat > "$work/blobcache.yaml" <<YAML
servers:
  http: {port: 15569, address: 127.0.0.1}
  peer: {port: 15567, address: 127.0.0.1}
  http3: {port: 15568, address: 127.0.0.1}
store:
  caching:
    cache: {mem: {max_size: 64MiB}}
    origin:
      caching:
        cache: {disk: {mount_point: $work/data, max_size: 1GiB}}
        origin: {http: {endpoint: "http://127.0.0.1:9/", timeout: 2s}}
YAML
"$bin" --conf-dir "$work" blobcache --metrics-port 15570 2>"$work/log" &
pid=$!
for _ in $(seq 1 200); do
  curl -sf http://127.0.0.1:15570/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
echo "prism-lite $profile, pid $pid, baseline RSS $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$pid/status), $conns connections per flood"
python3 benches/hostile/flood.py --pid "$pid" --http 127.0.0.1:15569 --peer 127.0.0.1:15567 \
  --blob "$hash" --conns "$conns" "${stream[@]}" --http3 127.0.0.1:15568 --flood-h3 "$flood_h3"
echo "limits: $(curl -s http://127.0.0.1:15570/metrics | grep -E '^prism_(inflight_bytes|requests_rejected_total)')"
