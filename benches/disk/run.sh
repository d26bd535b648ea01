#!/usr/bin/env bash
# The disk tier at scale: start-up (first served hit, index complete, peak RSS) of
# `prism-lite blobcache` over a lone disk store of COUNTS tiny blobs, warm and cold page cache,
# and the eviction policy's hit ratios on a Zipf trace against the policy it replaced.
#
#   benches/disk/run.sh                      # 1,000,000 and 5,000,000 blobs
#   COUNTS=1000000 RUNS=3 benches/disk/run.sh
#
# The trees are generated once (1-4 KiB files named by their SHA-384, reflector.go's layout with
# sharding_size 2; each file takes one 4 KiB block, so 5,000,000 blobs need ~20 GB) and kept
# for the next run; delete $DIR to reclaim the space. Cold runs drop the page cache
# (`sync; echo 3 > /proc/sys/vm/drop_caches`), which needs root; they are skipped otherwise.
#
# Environment (defaults in brackets):
#   COUNTS ["1000000 5000000"]  tree sizes
#   RUNS [3]                    runs per figure (medians are printed)
#   COLD [1]                    also measure with a cold page cache (root only; 0 = skip)
#   ZIPF [1]                    also replay the Zipf trace (0 = skip)
#   DIR [/var/tmp/prism-disk-bench]  where the trees live (a real filesystem, not tmpfs)
#   BIN [target/release/prism-lite]  the binary measured (e.g. an older build, to compare)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
COUNTS=${COUNTS:-"1000000 5000000"}
RUNS=${RUNS:-3}
COLD=${COLD:-1}
ZIPF=${ZIPF:-1}
DIR=${DIR:-/var/tmp/prism-disk-bench}
BIN=${BIN:-$REPO/target/release/prism-lite}
EX=$REPO/target/release/examples

log() { echo "== $*" >&2; }

cd "$REPO"
log "building (release)"
cargo build --release --quiet --bin prism-lite --example gen_blobs --example disk_startup --example disk_zipf

for n in $COUNTS; do
  tree=$DIR/$n
  if [[ ! -f $tree/probe ]]; then
    log "generating $n blobs in $tree (once)"
    mkdir -p "$tree"
    "$EX/gen_blobs" small "$n" 20 "$tree/blobs" 2 | tail -n 1 >"$tree/probe.tmp"
    mv "$tree/probe.tmp" "$tree/probe"
  fi
  log "$n blobs, warm page cache ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
  find "$tree/blobs" -type f -printf '%s\n' >/dev/null # stat every file: dentries and inodes cached
  echo "### $n blobs, warm"
  "$EX/disk_startup" --bin "$BIN" --store "$tree/blobs" --probe "$(cat "$tree/probe")" --runs "$RUNS"
  if [[ $COLD == 1 ]]; then
    if [[ $(id -u) == 0 ]]; then
      echo "### $n blobs, cold"
      "$EX/disk_startup" --bin "$BIN" --store "$tree/blobs" --probe "$(cat "$tree/probe")" --runs "$RUNS" --cold
    else
      log "cold runs need root (dropping the page cache); skipped"
    fi
  fi
done

if [[ $ZIPF == 1 ]]; then
  echo "### eviction: hit ratios on a Zipf trace"
  "$EX/disk_zipf"
fi
