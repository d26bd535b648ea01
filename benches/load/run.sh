#!/usr/bin/env bash
# Load benchmark: prism-lite beside nginx on 127.0.0.1, in one run.
#
#   benches/load/run.sh            # full run, ~15 minutes with the defaults
#   DURATION=3 benches/load/run.sh # quicker
#   SECTIONS="headline h3" benches/load/run.sh  # only some sections
#
# Builds release, prepares blobs, installs nginx and wrk from the OS packages if missing, runs
# every workload against prism-lite and nginx, prints a markdown table and writes it to
# target/load-results.md (benches/load/RESULTS.md is the kept history: merge a run into it by
# hand). Everything it starts it stops (trap on EXIT); every wait is bounded.
#
# Sections, in order: headline (unpinned, plain wrk and the project's client, memory tier and
# disk tier only vs nginx static, ROUNDS interleaved rounds), hits, zipf, storm, doors,
# h3 (HTTP/3 vs HTTP/1.1 through the project's clients, and quinn alone with the same transport
# settings as the ceiling, interleaved, ROUNDS rounds, pinned and unpinned), mtu1500 (the same, pinned and unpinned, over a veth pair with MTU 1500 between two network namespaces
# the script creates and deletes; needs root), startup.
#
# Environment (defaults in brackets):
#   SECTIONS [all]      space-separated subset of the sections above
#   NO_BUILD [0]        1 = use the release binaries already in target/ (no cargo build)
#   ROUNDS [3]          interleaved rounds for headline, h3 and mtu1500 (medians reported)
#   DURATION [8]        seconds per measured load run ("10s" also accepted)
#   CONNS ["1 16 64 256"] HTTP/1.1 hit concurrencies
#   HIT_BLOBS [64]      blobs in the hit set (2 MiB each; fixtures first, then generated)
#   ZIPF_BLOBS [400]    blobs in the Zipf set (more than the 256 MiB memory tier holds)
#   ZIPF_S [1.0]        Zipf exponent
#   STORM [1000]        concurrent requests in the cold-miss storm
#   ORIGIN_DELAY [0.2]  seconds the storm origin sleeps before answering
#   STARTUP_BLOBS [100000] small blobs on disk for the start-up measurement
#   SERVER_CPU [0] CLIENT_CPU [1]  pinning for the "pinned" configuration
#   UNPINNED [1]        also run the HTTP/1.1 hits unpinned, default threads/workers (0 = skip)
#   WORKDIR [/dev/shm/prism-loadbench]  blob files, caches, logs (tmpfs: same for everyone)
#   STARTUP_DIR [/tmp/prism-loadbench-startup]  the 100k-blob disk store (a real filesystem)
#   OUT [target/load-results.md]
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/benches/load
DURATION=${DURATION:-8}
DURATION=${DURATION%s}
CONNS=${CONNS:-"1 16 64 256"}
HIT_BLOBS=${HIT_BLOBS:-64}
ZIPF_BLOBS=${ZIPF_BLOBS:-400}
ZIPF_S=${ZIPF_S:-1.0}
STORM=${STORM:-1000}
ORIGIN_DELAY=${ORIGIN_DELAY:-0.2}
STARTUP_BLOBS=${STARTUP_BLOBS:-100000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
UNPINNED=${UNPINNED:-1}
W=${WORKDIR:-/dev/shm/prism-loadbench}
STARTUP_DIR=${STARTUP_DIR:-/tmp/prism-loadbench-startup}
OUT=${OUT:-$REPO/target/load-results.md}
SECTIONS=${SECTIONS:-"headline hits zipf storm doors h3 mtu1500 startup"}
ROUNDS=${ROUNDS:-3}
# The 1,500-MTU path: two namespaces joined by a veth pair, private test addresses that exist
# only inside them.
NS_SRV=prism-bench-srv NS_CLI=prism-bench-cli NS_SRV_IP=10.99.0.1 NS_CLI_IP=10.99.0.2
FIXTURES=${FIXTURES:-$REPO/../shared/fixtures/streams}

P_HTTP=18100 P_PEER=18101 P_H3=18102 P_METRICS=18103 P_QUIC=18104
N_STATIC=18200 N_PROXY=18201 N_STORM=18203 P_ORIGIN=18300

BIN=$REPO/target/release/prism-lite
EX=$REPO/target/release/examples
TSV=$W/results.tsv
PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

want() { [[ " $SECTIONS " == *" $1 "* ]]; }

netns_down() {
  ip netns del "$NS_CLI" 2>/dev/null || true
  ip netns del "$NS_SRV" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  netns_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() { # drop a stopped pid from PIDS
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

# wait_url URL SECONDS: until it answers 200 (bounded).
# CLI: the prefix that runs a client where the servers are reachable (a netns for mtu1500).
CLI=()
wait_url() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    [[ $("${CLI[@]}" curl -s -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]] && return 0
    sleep 0.05
  done
  log "timed out waiting for $1"
  return 1
}

# ---------------------------------------------------------------------------------------------
log "tools"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building release"
((${NO_BUILD:-0})) || (cd "$REPO" && cargo build --release --bin prism-lite --example loadgen_peer \
  --example loadgen_h3 --example quic_ceiling --example gen_blobs)

mkdir -p "$W"
: >"$TSV"
FLAT=$W/blobs
mkdir -p "$FLAT"

log "preparing blobs in $FLAT"
: >"$W/all.txt"
if [[ -d $FIXTURES ]]; then
  for f in "$FIXTURES"/*/blobs/*; do
    [[ $(stat -c %s "$f") == 2097152 ]] || continue
    h=$(basename "$f")
    cp -n "$f" "$FLAT/$h"
    chmod 644 "$FLAT/$h"
    echo "$h" >>"$W/all.txt"
  done
fi
nfix=$(wc -l <"$W/all.txt")
"$EX/gen_blobs" big $((ZIPF_BLOBS - nfix)) 1 "$FLAT" >>"$W/all.txt"
head -n "$HIT_BLOBS" "$W/all.txt" >"$W/hits.txt"
head -n "$ZIPF_BLOBS" "$W/all.txt" >"$W/zipf.txt"
# The storm blob: one more, known only to the slow origin.
"$EX/gen_blobs" big 1 999 "$W/storm-origin" >"$W/storm.txt"
log "$nfix fixture blobs + $((ZIPF_BLOBS - nfix)) generated; hit set $HIT_BLOBS"

# prism-lite's disk tier: the same files, hard-linked into the sharded layout.
DISK=$W/prism-disk
rm -rf "$DISK"
mkdir -p "$DISK"
while read -r h; do
  mkdir -p "$DISK/${h:0:2}"
  ln "$FLAT/$h" "$DISK/${h:0:2}/$h"
done <"$W/zipf.txt"

# ---------------------------------------------------------------------------------------------
# prism-lite

HOST=127.0.0.1 # where the servers listen (NS_SRV_IP for mtu1500)
prism_conf() { # NAME MEM_SIZE STORE_YAML -> conf dir
  local dir=$W/conf-$1
  mkdir -p "$dir"
  cat >"$dir/blobcache.yaml" <<EOF
servers:
  http: {address: $HOST, port: $P_HTTP, max_concurrent_requests: 2000}
  peer: {address: $HOST, port: $P_PEER, max_connections: 2000}
  http3: {address: $HOST, port: $P_H3, max_concurrent_requests: 2000}
# The load generator is one address standing in for 64 clients: with the default 64 MiB
# per-address share of the in-flight budget it would queue behind 32 blobs in flight.
limits: {max_inflight_bytes: 2GiB, max_inflight_bytes_per_ip: 2GiB}
store:
$3
EOF
  echo "$dir"
}

TIERED="  caching:
    name: edge
    cache: {mem: {name: ram, max_size: 256MiB}}
    origin:
      caching:
        name: local
        cache: {disk: {name: disk, mount_point: $DISK, sharding_size: 2, max_size: 4GB}}
        origin: {noop: {}}"
CONF_TIERED=$(prism_conf tiered 256MiB "$TIERED")
# Disk tier only ("caching: disk over disk"): every hit is read from the disk tier.
ORIGIN_DISK=$W/prism-origin-disk
rm -rf "$ORIGIN_DISK"
cp -al "$DISK" "$ORIGIN_DISK"
CONF_DISK=$(prism_conf disk 0 "  caching:
    name: local
    cache: {disk: {name: disk, mount_point: $DISK, sharding_size: 2, max_size: 4GB}}
    origin: {disk: {name: origin_disk, mount_point: $ORIGIN_DISK, sharding_size: 2, max_size: 4GB}}")
CONF_STORM=$(prism_conf storm 256MiB "  caching:
    name: edge
    cache: {mem: {name: ram, max_size: 256MiB}}
    origin: {http: {name: slow_origin, endpoint: 'http://127.0.0.1:$P_ORIGIN/', sharding_size: 0, timeout: 60s}}")

PRISM_PID=
SRV=() # the prefix that runs a server (the server netns for mtu1500)
start_prism() { # CONF_DIR pinned|unpinned
  local pre=("${SRV[@]}")
  [[ $2 == pinned ]] && pre+=(taskset -c "$SERVER_CPU" env TOKIO_WORKER_THREADS=1)
  RUST_LOG=${RUST_LOG:-warn} "${pre[@]}" "$BIN" --conf-dir "$1" blobcache \
    --metrics-port $P_METRICS --metrics-address "$HOST" >>"$W/prism.log" 2>&1 &
  PRISM_PID=$!
  PIDS+=("$PRISM_PID")
  SERVER_PIDS=("$PRISM_PID")
  wait_url "http://$HOST:$P_METRICS/readyz" 60
}
stop_prism() { stop_pid "$PRISM_PID"; PRISM_PID=; }
prism_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PRISM_PID/status"; }
warm() { # URL_PREFIX HASHFILE: every blob once (fills the memory tier / proxy cache)
  while read -r h; do "${CLI[@]}" curl -s -o /dev/null "$1$h"; done <"$2"
}
metric() { # NAME_REGEX: sum of matching metric samples
  "${CLI[@]}" curl -s "http://$HOST:$P_METRICS/metrics" | awk -v re="$1" '$1 ~ re {s += $2} END {printf "%d", s}'
}

# ---------------------------------------------------------------------------------------------
# nginx: one instance per configuration; static files, proxy_cache in front of the static
# server, and the storm proxy in front of the slow origin.

NGINX_PID=
start_nginx() { # pinned|unpinned
  local workers=1 pre=()
  [[ $1 == pinned ]] && pre=(taskset -c "$SERVER_CPU") || workers=auto
  rm -rf "$W/nginx-cache" "$W/nginx-storm-cache" "$W/nginx-tmp"
  mkdir -p "$W/nginx-cache" "$W/nginx-storm-cache" "$W/nginx-tmp"
  cat >"$W/nginx.conf" <<EOF
worker_processes $workers;
worker_rlimit_nofile $(ulimit -Hn);
user root;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
  types {}
  client_body_temp_path $W/nginx-tmp/body;
  proxy_temp_path $W/nginx-tmp/proxy;
  fastcgi_temp_path $W/nginx-tmp/fastcgi;
  uwsgi_temp_path $W/nginx-tmp/uwsgi;
  scgi_temp_path $W/nginx-tmp/scgi;
  proxy_cache_path $W/nginx-cache levels=1:2 keys_zone=blobs:16m max_size=8g inactive=1d use_temp_path=off;
  proxy_cache_path $W/nginx-storm-cache levels=1:2 keys_zone=storm:1m max_size=1g inactive=1d use_temp_path=off;
  upstream static_origin { server 127.0.0.1:$N_STATIC; keepalive 32; }

  # Static files: /blob?hash=H -> FLAT/H
  server {
    listen 127.0.0.1:$N_STATIC backlog=4096;
    location = /blob { root $FLAT; try_files /\$arg_hash =404; }
  }
  # proxy_cache in front of the static server (warmed before measuring).
  server {
    listen 127.0.0.1:$N_PROXY backlog=4096;
    location = /blob {
      proxy_pass http://static_origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache blobs;
      proxy_cache_key \$arg_hash;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_cache_lock_age 60s;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
  # Cold-miss storm: proxy_cache with proxy_cache_lock in front of the slow origin.
  server {
    listen 127.0.0.1:$N_STORM backlog=4096;
    location = /blob {
      proxy_pass http://127.0.0.1:$P_ORIGIN/\$arg_hash;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
      proxy_cache storm;
      proxy_cache_key \$arg_hash;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_cache_lock_age 60s;
    }
  }
}
EOF
  "${pre[@]}" nginx -c "$W/nginx.conf" -g 'daemon off;' >>"$W/nginx.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_url "http://127.0.0.1:$N_STATIC/blob?hash=$(head -1 "$W/hits.txt")" 20
  mapfile -t SERVER_PIDS < <(echo "$NGINX_PID"; pgrep -P "$NGINX_PID")
}
stop_nginx() { stop_pid "$NGINX_PID"; NGINX_PID=; }

# ---------------------------------------------------------------------------------------------
# Load generators. Each prints "RESULT req_s=.. mb_s=.. p50_ms=.. p99_ms=.. max_ms=.. ok=.. errors=..".

# CPU used by the server (SERVER_PIDS, all threads) and by the load generator during one timed
# run, in % of one core: utime+stime from /proc and /usr/bin/time.
SERVER_PIDS=()
HZ=$(getconf CLK_TCK)
cpu_ticks() {
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
with_cpu() { # CMD... (a timed load run) -> its RESULT line + srv_cpu=.. cli_cpu=..
  # Both in % of one core over the client's whole wall time (connection set-up and exit
  # included, which DURATION alone leaves out), so a process pinned to one core stays <= 100%.
  local t0 t1 out cli srv wall
  t0=$(cpu_ticks "${SERVER_PIDS[@]}")
  out=$(/usr/bin/time -f 'CLI %U %S %e' -o "$W/time.out" "$@" 2>>"$W/loadgen.log" | grep '^RESULT' ||
    echo "RESULT req_s=0 mb_s=0 p50_ms=0 p99_ms=0 max_ms=0 ok=0 errors=-1")
  t1=$(cpu_ticks "${SERVER_PIDS[@]}")
  wall=$(awk '/^CLI/ {print ($4 > 0 ? $4 : 1)}' "$W/time.out")
  cli=$(awk -v s="$wall" '/^CLI/ {printf "%.0f", ($2 + $3) / s * 100}' "$W/time.out")
  srv=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v s="$wall" 'BEGIN {printf "%.0f", d / hz / s * 100}')
  echo "$out srv_cpu=$srv cli_cpu=$cli"
}

run_wrk() { # pinned|unpinned CONNS URL_BASE HASHFILE PICK
  local pre=() threads=1
  if [[ $1 == pinned ]]; then pre=(taskset -c "$CLIENT_CPU"); else threads=$(nproc); fi
  ((threads > $2)) && threads=$2
  HASHES=$4 PICK=$5 ZIPF_S=$ZIPF_S with_cpu "${pre[@]}" wrk -t"$threads" -c"$2" -d"${DURATION}s" \
    --timeout 30s -s "$HERE/blobs.lua" "$3"
}

# Plain wrk, as a reader would run it: no script, one URL, --latency.
run_plain_wrk() { # CONNS URL
  local threads
  threads=$(nproc)
  ((threads > $1)) && threads=$1
  with_cpu sh -c "wrk -t$threads -c$1 -d${DURATION}s --latency '$2' | awk -f '$HERE/wrk_result.awk'"
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

record() { # SECTION CONFIG SERVER CONNS RESULT_LINE RSS NOTE
  local srv note=$7
  srv=$(field "$5" srv_cpu)
  [[ -n $srv ]] && note="$note${note:+; }CPU: server ${srv}%, client $(field "$5" cli_cpu)%"
  set -- "$1" "$2" "$3" "$4" "$5" "$6" "$note"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" \
    "$(field "$5" req_s)" "$(field "$5" mb_s)" "$(field "$5" p50_ms)" "$(field "$5" p99_ms)" \
    "$(field "$5" errors)" "$6" "$7" >>"$TSV"
  log "$1 | $2 | $3 | c=$4 | $5 | rss=$6 $7"
}

# ---------------------------------------------------------------------------------------------
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# 0. Headline: what a reader would run. Unpinned, default worker threads, nginx
#    `worker_processes auto` + sendfile; plain `wrk -t2 -c64 --latency` on one 2 MiB blob, and
#    the project's own client (loadgen_peer --http1) round-robin over the hit set. prism-lite's
#    memory tier (over a disk tier) and its disk tier alone (caching: disk over disk) beside
#    nginx static serving the same files; ROUNDS interleaved rounds.
if want headline; then
ONE=$(head -1 "$W/hits.txt")
for round in $(seq "$ROUNDS"); do
  for srv in prism-memory prism-disk nginx-static; do
    case $srv in
    prism-memory) start_prism "$CONF_TIERED" unpinned; port=$P_HTTP ;;
    prism-disk) start_prism "$CONF_DISK" unpinned; port=$P_HTTP ;;
    nginx-static) start_nginx unpinned; port=$N_STATIC ;;
    esac
    [[ $srv == prism-memory ]] && warm "http://127.0.0.1:$P_HTTP/blob?hash=" "$W/hits.txt"
    r=$(run_plain_wrk 64 "http://127.0.0.1:$port/blob?hash=$ONE")
    note="round $round"
    [[ $srv == prism-* ]] && note="$note; hits: memory $(metric '^reflector_cache_hit_total.*component="edge"'), disk $(metric '^reflector_cache_hit_total.*component="local"')"
    record headline "wrk" "$srv" 64 "$r" "$([[ $srv == prism-* ]] && prism_rss_mib)" "$note"
    r=$(with_cpu "$EX/loadgen_peer" --http1 --addr 127.0.0.1:$port --hashes "$W/hits.txt" --connections 64 --duration "$DURATION")
    record headline "loadgen_peer --http1" "$srv" 64 "$r" "$([[ $srv == prism-* ]] && prism_rss_mib)" "round $round"
    if [[ $srv == nginx-static ]]; then stop_nginx; else stop_prism; fi
  done
done
fi

# 1. HTTP/1.1 hits
if want hits; then
modes=(pinned)
((UNPINNED)) && modes+=(unpinned)
for mode in "${modes[@]}"; do
  for c in $CONNS; do
    start_prism "$CONF_TIERED" "$mode"
    warm "http://127.0.0.1:$P_HTTP/blob?hash=" "$W/hits.txt"
    r=$(run_wrk "$mode" "$c" "http://127.0.0.1:$P_HTTP" "$W/hits.txt" rr)
    record hits "$mode" prism-lite "$c" "$r" "$(prism_rss_mib)" "memory tier: $(metric '^reflector_cache_hit_total.*component="edge"') hits, $(metric '^reflector_cache_miss_total.*component="edge"') misses (warm-up)"
    stop_prism
  done
  start_nginx "$mode"
  for c in $CONNS; do
    r=$(run_wrk "$mode" "$c" "http://127.0.0.1:$N_STATIC" "$W/hits.txt" rr)
    record hits "$mode" nginx-static "$c" "$r" "" ""
  done
  warm "http://127.0.0.1:$N_PROXY/blob?hash=" "$W/hits.txt"
  status=$(curl -s -o /dev/null -D - "http://127.0.0.1:$N_PROXY/blob?hash=$(head -1 "$W/hits.txt")" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status" {print $2}')
  for c in $CONNS; do
    r=$(run_wrk "$mode" "$c" "http://127.0.0.1:$N_PROXY" "$W/hits.txt" rr)
    record hits "$mode" nginx-proxy_cache "$c" "$r" "" "warm: $status"
  done
  stop_nginx
done
fi

# 2. Mixed hit/miss, Zipf over ZIPF_BLOBS (prism: 256 MiB memory tier over a disk tier holding
if want zipf; then
#    all); pinned, 64 connections; a warm-up run of the same length first, not reported.
start_prism "$CONF_TIERED" pinned
run_wrk pinned 64 "http://127.0.0.1:$P_HTTP" "$W/zipf.txt" zipf >/dev/null
h0=$(metric '^reflector_cache_hit_total.*component="edge"'); m0=$(metric '^reflector_cache_miss_total.*component="edge"')
r=$(run_wrk pinned 64 "http://127.0.0.1:$P_HTTP" "$W/zipf.txt" zipf)
h1=$(metric '^reflector_cache_hit_total.*component="edge"'); m1=$(metric '^reflector_cache_miss_total.*component="edge"')
hit_pct=$(awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) 'BEGIN {if (h + m) printf "%.0f", 100 * h / (h + m); else print "?"}')
record zipf pinned prism-lite 64 "$r" "$(prism_rss_mib)" "memory-tier hits ${hit_pct}%"
stop_prism
start_nginx pinned
r=$(run_wrk pinned 64 "http://127.0.0.1:$N_STATIC" "$W/zipf.txt" zipf)
record zipf pinned nginx-static 64 "$r" "" ""
warm "http://127.0.0.1:$N_PROXY/blob?hash=" "$W/zipf.txt"
r=$(run_wrk pinned 64 "http://127.0.0.1:$N_PROXY" "$W/zipf.txt" zipf)
record zipf pinned nginx-proxy_cache 64 "$r" "" "warmed with all $ZIPF_BLOBS"
stop_nginx
fi

# 3. Cold-miss storm: STORM concurrent requests for one uncached blob behind a slow origin.
if want storm; then
: >"$W/origin.log"
python3 "$HERE/slow_origin.py" "$W/storm-origin" $P_ORIGIN "$ORIGIN_DELAY" "$W/origin.log" &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
sleep 0.5
STORM_HASH=$(cat "$W/storm.txt")
storm() { # PORT -> RESULT
  taskset -c "$CLIENT_CPU" "$EX/loadgen_peer" --http1 --once --timeout 60 --connections "$STORM" \
    --addr "127.0.0.1:$1" --hashes "$W/storm.txt" 2>>"$W/loadgen.log" | grep '^RESULT' ||
    echo "RESULT req_s=0 mb_s=0 p50_ms=0 p99_ms=0 max_ms=0 ok=0 errors=-1"
}
[[ -n $NGINX_PID ]] || start_nginx pinned
before=$(wc -l <"$W/origin.log")
r=$(storm $N_STORM)
record storm pinned nginx-proxy_cache "$STORM" "$r" "" "origin requests: $(($(wc -l <"$W/origin.log") - before)); answered $(field "$r" ok)/$STORM"
stop_nginx
start_prism "$CONF_STORM" pinned
before=$(wc -l <"$W/origin.log")
r=$(storm $P_HTTP)
record storm pinned prism-lite "$STORM" "$r" "$(prism_rss_mib)" "origin requests: $(($(wc -l <"$W/origin.log") - before)); answered $(field "$r" ok)/$STORM"
stop_prism
stop_pid "$ORIGIN_PID"
fi

# 4. Peer protocol and (same client) HTTP/1.1 hits; pinned, 64 connections (HTTP/3: section h3).
if want doors; then
for door in peer http1; do
  start_prism "$CONF_TIERED" pinned
  warm "http://127.0.0.1:$P_HTTP/blob?hash=" "$W/hits.txt"
  case $door in
  peer) r=$(with_cpu taskset -c "$CLIENT_CPU" "$EX/loadgen_peer" --addr 127.0.0.1:$P_PEER --hashes "$W/hits.txt" --connections 64 --duration "$DURATION") ;;
  http1) r=$(with_cpu taskset -c "$CLIENT_CPU" "$EX/loadgen_peer" --http1 --addr 127.0.0.1:$P_HTTP --hashes "$W/hits.txt" --connections 64 --duration "$DURATION") ;;
  esac
  record doors pinned "prism-lite $door" 64 "$r" "$(prism_rss_mib)" "loadgen_peer$([[ $door == http1 ]] && echo ' --http1')"
  stop_prism
done
start_nginx pinned
r=$(with_cpu taskset -c "$CLIENT_CPU" "$EX/loadgen_peer" --http1 --addr 127.0.0.1:$N_STATIC --hashes "$W/hits.txt" --connections 64 --duration "$DURATION")
record doors pinned "nginx-static http1" 64 "$r" "" "loadgen_peer --http1 (same client, for scale)"
stop_nginx
fi

# 6. HTTP/3 against HTTP/1.1 through the project's clients (loadgen_h3, loadgen_peer --http1),
#    64 connections, memory-tier hits over the hit set; interleaved, ROUNDS rounds, pinned and
#    unpinned. prism-lite restarts per row, so each row's peak RSS is its own. A third row per
#    round is the ceiling: quinn alone (quic_ceiling: the same endpoints and transport settings,
#    2 MiB bodies from memory, no HTTP/3, no store), with the same pinning.
quic_ceiling_row() { # SECTION MODE ROUND
  local pre=("${SRV[@]}") cpre=() r pid
  [[ $2 == pinned ]] && pre+=(taskset -c "$SERVER_CPU" env TOKIO_WORKER_THREADS=1) && cpre=(taskset -c "$CLIENT_CPU")
  : >"$W/quic_ceiling.log"
  "${pre[@]}" "$EX/quic_ceiling" serve --addr "$HOST:$P_QUIC" >>"$W/quic_ceiling.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  SERVER_PIDS=("$pid")
  for _ in $(seq 100); do grep -q '^serving' "$W/quic_ceiling.log" && break; sleep 0.05; done
  if ! grep -q '^serving' "$W/quic_ceiling.log"; then
    log "quic_ceiling serve did not start (see $W/quic_ceiling.log)"
    stop_pid "$pid"
    return 1
  fi
  r=$(with_cpu "${CLI[@]}" "${cpre[@]}" "$EX/quic_ceiling" fetch --addr "$HOST:$P_QUIC" --connections 64 --duration "$DURATION")
  record "$1" "$2" "quinn alone" 64 "$r" "$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status")" "round $3; no HTTP/3, no store"
  stop_pid "$pid"
}
h3_vs_h1() { # SECTION MODE: ROUNDS x (http1, h3, quinn alone) rows
  local pre=() door r
  [[ $2 == pinned ]] && pre=(taskset -c "$CLIENT_CPU")
  for round in $(seq "$ROUNDS"); do
    quic_ceiling_row "$1" "$2" "$round"
    for door in http1 h3; do
      start_prism "$CONF_TIERED" "$2"
      warm "http://$HOST:$P_HTTP/blob?hash=" "$W/hits.txt"
      if [[ $door == h3 ]]; then
        r=$(with_cpu "${CLI[@]}" "${pre[@]}" "$EX/loadgen_h3" --addr "$HOST:$P_H3" --hashes "$W/hits.txt" --connections 64 --duration "$DURATION")
      else
        r=$(with_cpu "${CLI[@]}" "${pre[@]}" "$EX/loadgen_peer" --http1 --addr "$HOST:$P_HTTP" --hashes "$W/hits.txt" --connections 64 --duration "$DURATION")
      fi
      record "$1" "$2" "prism-lite $door" 64 "$r" "$(prism_rss_mib)" "round $round; memory-tier hits $(metric '^reflector_cache_hit_total.*component="edge"')"
      stop_prism
    done
  done
}
if want h3; then
  h3_vs_h1 h3 pinned
  h3_vs_h1 h3 unpinned
fi

# 7. The same over a 1,500-byte-MTU path: server and client in two network namespaces joined
#    by a veth pair (MTU 1500), so nothing rides loopback's 64 KiB MTU. Pinned and unpinned.
if want mtu1500; then
  netns_down
  if ip netns add "$NS_SRV" && ip netns add "$NS_CLI" &&
    ip link add pbv-srv netns "$NS_SRV" type veth peer name pbv-cli netns "$NS_CLI"; then
    ip -n "$NS_SRV" addr add "$NS_SRV_IP/24" dev pbv-srv
    ip -n "$NS_CLI" addr add "$NS_CLI_IP/24" dev pbv-cli
    for ns in "$NS_SRV" "$NS_CLI"; do
      ip -n "$ns" link set lo up
    done
    ip -n "$NS_SRV" link set pbv-srv mtu 1500 up
    ip -n "$NS_CLI" link set pbv-cli mtu 1500 up
    MTU_NOTE="veth mtu $(ip -n "$NS_SRV" -o link show pbv-srv | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
    log "mtu1500: $MTU_NOTE"
    SAVED_HOST=$HOST
    HOST=$NS_SRV_IP SRV=(ip netns exec "$NS_SRV") CLI=(ip netns exec "$NS_CLI")
    CONF_TIERED=$(prism_conf tiered-netns 256MiB "$TIERED")
    h3_vs_h1 mtu1500 pinned
    h3_vs_h1 mtu1500 unpinned
    HOST=$SAVED_HOST SRV=() CLI=()
    CONF_TIERED=$(prism_conf tiered 256MiB "$TIERED")
  else
    log "mtu1500: could not create network namespaces (needs root and netns support); skipped"
    printf 'mtu1500\tskipped\t-\t-\t\t\t\t\t\t\tcould not create network namespaces\n' >>"$TSV"
  fi
  netns_down
fi

# 5. Start-up with STARTUP_BLOBS small blobs on disk: process start -> /readyz 200.
if want startup; then
log "preparing $STARTUP_BLOBS small blobs in $STARTUP_DIR"
"$EX/gen_blobs" small "$STARTUP_BLOBS" 7 "$STARTUP_DIR/blobs" 2 >/dev/null
CONF_START=$W/conf-startup
mkdir -p "$CONF_START"
cat >"$CONF_START/blobcache.yaml" <<EOF
servers:
  http: {address: 127.0.0.1, port: $P_HTTP}
store:
  disk: {name: disk, mount_point: $STARTUP_DIR/blobs, sharding_size: 2, max_size: 10GB}
EOF
STARTUP_MS=()
for i in 1 2 3; do
  t0=$(date +%s%N)
  start_prism "$CONF_START" unpinned
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  STARTUP_MS+=("$ms")
  # Ready comes first (hits are served from the first second); the index completes in the
  # background: wait for prism_disk_index_complete (bounded) and report both.
  deadline=$((SECONDS + 300))
  while [[ $(metric '^prism_disk_index_complete') != 1 ]] && ((SECONDS < deadline)); do sleep 0.05; done
  t2=$(date +%s%N)
  index_ms=$(((t2 - t0) / 1000000))
  blobs=$(metric '^prism_store_blobs.*disk')
  if [[ $(metric '^prism_disk_index_complete') == 1 ]]; then
    index_note="index complete in $index_ms ms with $blobs blobs indexed"
  else
    index_note="index NOT complete after $index_ms ms ($blobs blobs indexed)"
  fi
  record startup unpinned prism-lite - "RESULT" "$(prism_rss_mib)" "run $i: ready in $ms ms, $index_note"
  stop_prism
done
fi

# ---------------------------------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
export DURATION HIT_BLOBS ZIPF_BLOBS ZIPF_S STORM ORIGIN_DELAY STARTUP_BLOBS STARTUP_DIR \
  SERVER_CPU CLIENT_CPU LOAD_BEFORE LOAD_AFTER ROUNDS
STARTUP_FS=$(df -T "$STARTUP_DIR" 2>/dev/null | awk 'NR==2 {print $2}' || true)
export STARTUP_FS
python3 "$HERE/report.py" "$TSV" >"$OUT"
cat "$OUT"
log "wrote $OUT"
