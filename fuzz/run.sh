#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS; stops at the first crash, hang or OOM,
# printing the reproducer, and exits 1 then (0 when every target ran clean).
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# The targets are built the way cargo-fuzz builds them (libFuzzer, SanitizerCoverage), straight
# with cargo, so neither cargo-fuzz nor nightly is needed: Rust code is memory-safe without
# AddressSanitizer, and the build stays one dependency tree in fuzz/target. FUZZ_ASAN=1 adds
# AddressSanitizer (needs nightly: FUZZ_TOOLCHAIN=nightly). Seeds: fuzz/corpus/TARGET (kept in
# git); what libFuzzer learns goes to fuzz/target/corpus/TARGET; reproducers to
# fuzz/artifacts/TARGET/. Replay one with: fuzz/target/<triple>/release/TARGET FILE
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
toolchain=${FUZZ_TOOLCHAIN:-stable}
triple=$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')

flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
if [[ ${FUZZ_ASAN:-0} == 1 ]]; then
    flags+=" -Zsanitizer=address"
fi

targets=("$@")
if [[ ${#targets[@]} == 0 ]]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^prism-lite-fuzz$')
fi

echo "== building ${#targets[@]} fuzz targets ($toolchain, $triple)"
# Only the coverage flags for the target: build scripts and proc macros stay uninstrumented.
RUSTFLAGS="$flags" CARGO_INCREMENTAL=0 cargo +"$toolchain" build --release \
    --target "$triple" --target-dir target --bins

for t in "${targets[@]}"; do
    bin=target/$triple/release/$t
    mkdir -p "target/corpus/$t" "artifacts/$t"
    echo "== $t: ${seconds}s"
    log=target/$t.log
    status=0
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        "target/corpus/$t" "corpus/$t" >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    if [[ $status != 0 ]]; then
        tail -n 40 "$log"
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "FUZZ FAILED $t: reproducer fuzz/${repro:-?} (exit $status; log fuzz/$log)"
        exit 1
    fi
done
echo "FUZZ OK ${#targets[@]} targets, ${seconds}s each"
