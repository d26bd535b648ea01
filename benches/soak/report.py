#!/usr/bin/env python3
"""Ends a soak (benches/soak/run.sh): joins the server samples (second, RSS KiB, fds) with the
load's per-second counts, decides pass/fail, draws soak.png with gnuplot, writes report.md and
prints the one `SOAK ...` line. Exits 0 only when the soak passed.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ap = argparse.ArgumentParser()
for name in ["work", "out", "stop-status"]:
    ap.add_argument(f"--{name}", required=True)
for name in ["minutes", "rss-start", "rss-end", "fds-start", "fds-end", "rss-limit-mib",
             "fd-slack"]:
    ap.add_argument(f"--{name}", type=int, required=True)
a = ap.parse_args()
W = a.work


def rows(path):
    if not os.path.exists(path):
        return []
    return [line.split() for line in open(path) if line.strip()]


samples = [(int(t), int(rss) / 1024, int(fds)) for t, rss, fds in rows(f"{W}/samples.tsv")]
load = {int(s): (int(r), int(e), int(w)) for s, r, e, w in rows(f"{W}/load.tsv")}
events = rows(f"{W}/events.tsv")
out_text = open(f"{W}/client.out").read() if os.path.exists(f"{W}/client.out") else ""
m = re.search(r"LOAD requests=(\d+) errors=(\d+) wrong_bytes=(\d+)", out_text)
requests, errors, wrong = (int(x) for x in m.groups()) if m else (0, 0, 0)
server_log = open(f"{W}/server.log", errors="replace").read()
panics = server_log.count("panicked at")
crashes = (a.stop_status != "0") + panics + (m is None)

rss_start, rss_end = a.rss_start / 1024, a.rss_end / 1024
rss_peak = max([rss_start, rss_end] + [r for _, r, _ in samples])
fds_peak = max([a.fds_start, a.fds_end] + [f for _, _, f in samples])
during = [r for t, r, _ in samples if t <= a.minutes * 60]
growth = ""
if len(during) >= 20:
    q = len(during) // 4
    second, last = statistics.median(during[q:2 * q]), statistics.median(during[3 * q:])
    if last > second * 1.2 + 32:
        growth = f"RSS grew from a median {second:.0f} MiB (2nd quarter) to {last:.0f} MiB (last)"
failures = []
if wrong:
    failures.append(f"{wrong} wrong bodies")
if crashes:
    failures.append(f"crashes: stop status {a.stop_status}, {panics} panics, "
                    f"load summary {'present' if m else 'missing'}")
if rss_peak > a.rss_limit_mib:
    failures.append(f"RSS peak {rss_peak:.0f} MiB over {a.rss_limit_mib} MiB")
if growth:
    failures.append(growth)
if a.fds_end > a.fds_start + a.fd_slack:
    failures.append(f"{a.fds_end} descriptors at the end, {a.fds_start} at the start")

# One table for gnuplot: second, RSS MiB, fds, req/s, errors/s.
with open(f"{a.out}/soak.tsv", "w") as f:
    for t, rss, fds in samples:
        r, e, _ = load.get(t, (0, 0, 0))
        f.write(f"{t}\t{rss:.1f}\t{fds}\t{r}\t{e}\n")
marks = "".join(
    f'set arrow from {t},graph 0 to {t},graph 1 nohead dt 2 lc rgb "{"#888888" if k == "reload" else "#cc0000"}"\n'
    for t, k in events)
plot = f"""set terminal pngcairo size 1200,800 font ",10"
set output "{a.out}/soak.png"
set multiplot layout 3,1 title "prism-lite soak, {a.minutes} min (dashed: grey SIGHUP, red origin down/up)"
set xlabel "seconds"
set grid
{marks}set ylabel "RSS MiB"
set y2label "open fds"
set y2tics
plot "{a.out}/soak.tsv" using 1:2 with lines lw 2 title "server RSS", "" using 1:3 with lines title "open fds" axes x1y2
unset y2tics
unset y2label
set ylabel "requests/s"
plot "{a.out}/soak.tsv" using 1:($4-$5) with lines lw 2 title "verified answers/s"
set ylabel "errors/s"
plot "{a.out}/soak.tsv" using 1:5 with impulses lw 2 title "errors/s (refusals, 502s, resets)"
unset multiplot
"""
try:
    subprocess.run(["gnuplot"], input=plot.encode(), check=True, capture_output=True)
    picture = "soak.png"
except (OSError, subprocess.CalledProcessError) as e:
    picture = f"(no picture: {e})"

line = (f"SOAK minutes={a.minutes} requests={requests} wrong_bytes={wrong} errors={errors} "
        f"crashes={crashes} rss_start_mib={rss_start:.0f} rss_peak_mib={rss_peak:.0f} "
        f"rss_end_mib={rss_end:.0f} fds_peak={fds_peak}")
origin = open(f"{W}/origin-counts.txt").read().split() if os.path.exists(f"{W}/origin-counts.txt") else []
# The hostile script's summary line, then each distinct upload error with its count.
hostile_lines = open(f"{W}/hostile.out").read().splitlines() if os.path.exists(f"{W}/hostile.out") else []
upload_errors = {}
for l in hostile_lines:
    if not l.startswith("HOSTILE"):
        upload_errors[l] = upload_errors.get(l, 0) + 1
hostile = "; ".join([l for l in hostile_lines if l.startswith("HOSTILE")]
                    + [f"{n} x `{l}`" for l, n in sorted(upload_errors.items())])
first_errors = open(f"{W}/client.err").read().strip() if os.path.exists(f"{W}/client.err") else ""
with open(f"{a.out}/report.md", "w") as f:
    f.write(f"""# Soak report

`{line}`

**{"PASS" if not failures else "FAIL: " + "; ".join(failures)}**

- Load: {requests} requests over HTTP/1.1 (blobs and whole streams), HTTP/3 and peer, every
  body verified; {errors} errors (refusals, 502s while the origin misbehaved or was down,
  resets), {wrong} wrong bodies.
- Server: RSS {rss_start:.0f} MiB at start, peak {rss_peak:.0f} MiB, {rss_end:.0f} MiB at the
  end; descriptors {a.fds_start} at start, peak {fds_peak}, {a.fds_end} at the end; stop on
  SIGTERM: {a.stop_status}; panics in the log: {panics}.
- Events (second, what): {", ".join(f"{t} {k}" for t, k in events) or "none"}.
- Flaky origin answers: {" ".join(origin) or "n/a"}.
- Hostile clients: {hostile or "n/a"}.

![soak]({picture})

First error per door:

```
{first_errors or "none"}
```
""")
print(line)
for failure in failures:
    print(f"soak failed: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
