#!/usr/bin/env bash
# Soak: one release prism-lite with every door (HTTP, HTTP/3, peer, reflector) and a DHT node,
# in front of a flaky origin (slow, resetting, wrong bytes, 503s, and down for a while mid-run),
# under a mixed Zipf load over HTTP/1.1 (blobs and whole streams), HTTP/3 and peer with every
# body verified, while stalled readers and idle connections come and go from 127.0.0.2-9 and
# junk datagrams reach the DHT. SIGHUP reloads every RELOAD_EVERY seconds; the origin restarts
# at half time; the disk tier is a fraction of the blob set, so eviction runs throughout.
#
#   benches/soak/run.sh MINUTES
#
# Samples the server's RSS and open descriptors and the load's requests, errors and wrong bytes
# every second (target/soak/samples.tsv), draws target/soak/soak.png, writes
# target/soak/report.md and ends with one line:
#   SOAK minutes=M requests=N wrong_bytes=W errors=E crashes=C rss_start_mib=.. rss_peak_mib=..
#        rss_end_mib=.. fds_peak=..
# Exit status 0 only with W = 0, C = 0 (no exit, no panic, clean stop on SIGTERM), RSS within
# RSS_LIMIT_MIB, no RSS growth over the second half, and descriptors back within FD_SLACK of
# the start once the load is gone.
#
# Environment (defaults in brackets): NO_BUILD [0] (use the binaries as built), PROFILE
# [release] (debug: for trying the script out), WORKERS [4]
# (per door), BLOBS [160] x BLOB_KIB [256] generated blobs, DISK_MIB [24], MEM_MIB [8],
# ZIPF [1.0], RELOAD_EVERY [60], HOSTILE_CONNS [40], RSS_LIMIT_MIB [512], FD_SLACK [32],
# PORT [19300] (first of 7 ports), OUT [target/soak].
set -euo pipefail
MINUTES=${1:?usage: benches/soak/run.sh MINUTES}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/benches/soak
OUT=${OUT:-$REPO/target/soak}
W=$OUT/work
WORKERS=${WORKERS:-4} BLOBS=${BLOBS:-160} BLOB_KIB=${BLOB_KIB:-256}
DISK_MIB=${DISK_MIB:-24} MEM_MIB=${MEM_MIB:-8} ZIPF=${ZIPF:-1.0}
RELOAD_EVERY=${RELOAD_EVERY:-60} HOSTILE_CONNS=${HOSTILE_CONNS:-40}
RSS_LIMIT_MIB=${RSS_LIMIT_MIB:-512} FD_SLACK=${FD_SLACK:-32}
PORT=${PORT:-19300}
P_HTTP=$PORT P_PEER=$((PORT + 1)) P_H3=$((PORT + 2)) P_REFL=$((PORT + 3))
P_DHT=$((PORT + 4)) P_METRICS=$((PORT + 5)) P_ORIGIN=$((PORT + 6))
FIXTURES=$REPO/../shared/fixtures/streams
SECS=$((MINUTES * 60))
PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v gnuplot >/dev/null || {
  log "installing gnuplot-nox (Debian package, for soak.png)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends gnuplot-nox >/dev/null
}
ulimit -n 65536 2>/dev/null || true

PROFILE=${PROFILE:-release}
if [[ ${NO_BUILD:-0} != 1 ]]; then
  log "building $PROFILE"
  flag=--release; [[ $PROFILE == release ]] || flag=
  (cd "$REPO" && cargo build $flag --quiet --bin prism-lite --example soak_client)
fi
BIN=$REPO/target/$PROFILE/prism-lite
CLIENT=$REPO/target/$PROFILE/examples/soak_client

rm -rf "$W" && mkdir -p "$W/origin" "$W/disk" "$W/dht"
log "generating $BLOBS blobs of $BLOB_KIB KiB"
python3 - "$W" "$BLOBS" "$BLOB_KIB" "$FIXTURES" <<'PY'
import hashlib, json, os, random, shutil, sys
w, n, kib, fixtures = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(30)
with open(f"{w}/hashes.txt", "w") as hashes:
    for i in range(n):
        blob = rng.randbytes(kib * 1024 - rng.randrange(4096))
        h = hashlib.sha384(blob).hexdigest()
        open(f"{w}/origin/{h}", "wb").write(blob)
        hashes.write(h + "\n")
with open(f"{w}/streams.txt", "w") as streams:
    for name in ["small", "medium"]:
        d = os.path.join(fixtures, name)
        if not os.path.isdir(d):
            continue
        for b in os.listdir(f"{d}/blobs"):
            shutil.copy(f"{d}/blobs/{b}", f"{w}/origin/{b}")
        sd = json.load(open(f"{d}/stream.json"))["sd_hash"]
        plain = hashlib.sha256(open(f"{d}/source.bin", "rb").read()).hexdigest()
        streams.write(f"{sd} {plain}\n")
PY
# sed reads the whole listing: head would leave ls to die of SIGPIPE under pipefail.
big=$(ls -S "$W/origin" | sed -n 1p)
stream=$(awk 'END {print $1}' "$W/streams.txt")
small_sd=$(awk 'NR == 1 {print $1}' "$W/streams.txt")

cat >"$W/blobcache.yaml" <<YAML
servers:
  http: {port: $P_HTTP, address: 127.0.0.1}
  peer: {port: $P_PEER, address: 127.0.0.1}
  http3: {port: $P_H3, address: 127.0.0.1}
  reflector: {port: $P_REFL, address: 127.0.0.1}
dht:
  enabled: true
  port: $P_DHT
  address: 127.0.0.1
  bootstrap: []
  allow_private: true
  data_dir: $W/dht
store:
  caching:
    cache: {mem: {max_size: ${MEM_MIB}MiB}}
    origin:
      caching:
        cache: {disk: {mount_point: $W/disk, max_size: ${DISK_MIB}MiB}}
        origin: {http: {endpoint: "http://127.0.0.1:$P_ORIGIN/", timeout: 5s}}
YAML

start_origin() {
  python3 "$HERE/flaky_origin.py" "$W/origin" "$P_ORIGIN" "$W/origin-counts.txt" &
  ORIGIN_PID=$!
  PIDS+=("$ORIGIN_PID")
}
start_origin
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$P_ORIGIN/" && break
  sleep 0.1
done
"$BIN" --conf-dir "$W" blobcache --metrics-port "$P_METRICS" --metrics-address 127.0.0.1 \
  2>"$W/server.log" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$P_METRICS/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { log "server did not start"; tail "$W/server.log"; exit 1; }
  sleep 0.1
done

sample() { # t rss_kib fds
  local rss fds
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
  fds=$(ls "/proc/$SERVER/fd" 2>/dev/null | wc -l)
  echo "$1 ${rss:-0} $fds"
}
read -r _ RSS_START FDS_START < <(sample 0)
log "server pid $SERVER: RSS $((RSS_START / 1024)) MiB, $FDS_START fds; soaking $MINUTES min"

: >"$W/events.tsv"
"$CLIENT" --http "127.0.0.1:$P_HTTP" --h3 "127.0.0.1:$P_H3" --peer "127.0.0.1:$P_PEER" \
  --hashes "$W/hashes.txt" --streams "$W/streams.txt" --seconds "$SECS" --stats "$W/load.tsv" \
  --workers "$WORKERS" --zipf "$ZIPF" >"$W/client.out" 2>"$W/client.err" &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
python3 "$HERE/hostile.py" --http "127.0.0.1:$P_HTTP" --peer "127.0.0.1:$P_PEER" \
  --dht "127.0.0.1:$P_DHT" --blob "$big" ${stream:+--stream "$stream"} --seconds "$SECS" \
  ${small_sd:+--reflector "127.0.0.1:$P_REFL" --upload "$W/origin" --upload-sd "$small_sd"} \
  --conns "$HOSTILE_CONNS" >"$W/hostile.out" 2>&1 &
PIDS+=("$!")

: >"$W/samples.tsv"
t0=$SECONDS
next_reload=$RELOAD_EVERY
origin_down_at=$((SECS / 2))
origin_up_at=-1
while kill -0 "$CLIENT_PID" 2>/dev/null; do
  t=$((SECONDS - t0))
  kill -0 "$SERVER" 2>/dev/null || { log "server exited during the soak"; break; }
  sample "$t" >>"$W/samples.tsv"
  if ((t >= next_reload)); then
    next_reload=$((next_reload + RELOAD_EVERY))
    kill -HUP "$SERVER" && echo "$t reload" >>"$W/events.tsv"
  fi
  if ((origin_down_at >= 0 && t >= origin_down_at)); then
    # The origin goes away for 10 s (connections refused), then comes back.
    origin_down_at=-1
    origin_up_at=$((t + 10))
    kill -TERM "$ORIGIN_PID"
    wait "$ORIGIN_PID" 2>/dev/null || true
    echo "$t origin_down" >>"$W/events.tsv"
  fi
  if ((origin_up_at >= 0 && t >= origin_up_at)); then
    origin_up_at=-1
    start_origin
    echo "$t origin_up" >>"$W/events.tsv"
  fi
  sleep 1
done
wait "$CLIENT_PID" 2>/dev/null || true
log "load done; letting connections drain"
for i in $(seq 1 15); do
  kill -0 "$SERVER" 2>/dev/null || break
  sample "$((SECONDS - t0))" >>"$W/samples.tsv"
  sleep 1
done
read -r _ RSS_END FDS_END < <(sample end)
stop_status=crashed
if kill -0 "$SERVER" 2>/dev/null; then
  kill -TERM "$SERVER"
  stop_status=0
  wait "$SERVER" || stop_status=$?
fi
python3 "$HERE/report.py" --work "$W" --out "$OUT" --minutes "$MINUTES" \
  --rss-start "$RSS_START" --rss-end "$RSS_END" --fds-start "$FDS_START" --fds-end "$FDS_END" \
  --stop-status "$stop_status" --rss-limit-mib "$RSS_LIMIT_MIB" --fd-slack "$FD_SLACK"
