# Turns plain wrk --latency output into run.sh's RESULT line (latencies in ms, MB = 10^6 bytes).
function ms(v) {
  if (v ~ /us$/) return v / 1000
  if (v ~ /ms$/) return v + 0
  if (v ~ /m$/) return v * 60000
  if (v ~ /s$/) return v * 1000
  return v + 0
}
function mb(v) {
  if (v ~ /GB$/) return v * 1073741824 / 1e6
  if (v ~ /MB$/) return v * 1048576 / 1e6
  if (v ~ /KB$/) return v * 1024 / 1e6
  return v / 1e6
}
/^ +50% / { p50 = ms($2) }
/^ +99% / { p99 = ms($2) }
/^ +Latency / && !max { max = ms($4) }
/ requests in / { ok = $1 }
/^Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
/^ +Non-2xx or 3xx responses:/ { errors += $NF }
/^Requests\/sec:/ { rps = $2 }
/^Transfer\/sec:/ { mbs = mb($2) }
END {
  printf "RESULT req_s=%.1f mb_s=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f ok=%d errors=%d\n",
    rps, mbs, p50, p99, max, ok, errors
}
