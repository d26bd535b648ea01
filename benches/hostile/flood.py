#!/usr/bin/env python3
"""Hostile-client floods against a running prism-lite (issue #13), stdlib only (the HTTP/3
flood runs the project's `flood_h3` example, since the stdlib has no QUIC).

For each flood: open the attacker's connections from 127.0.0.2, sample the server's peak RSS
(/proc/PID/status) while they are held, time a bystander's GET from 127.0.0.3, then release.
Prints one line per flood: name, connections, peak RSS growth (MiB), bystander latency.
"""
import argparse
import hashlib
import socket
import subprocess
import threading
import time
import urllib.request

ATTACKER, BYSTANDER = "127.0.0.2", "127.0.0.3"


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def connect(addr, rcvbuf=4096):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((ATTACKER, 0))
    s.settimeout(10)
    s.connect(addr)
    return s


def bystander(http, blob_hash, tries=5):
    """Median and max seconds of a GET (or None when it failed / timed out)."""
    times = []
    for _ in range(tries):
        start = time.monotonic()
        try:
            s = socket.create_connection(http, timeout=30, source_address=(BYSTANDER, 0))
            s.sendall(f"GET /blob?hash={blob_hash} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
            s.close()
            ok = got.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        times.append(time.monotonic() - start if ok else None)
    good = sorted(t for t in times if t is not None)
    if not good:
        return "failed"
    return f"median {good[len(good) // 2] * 1000:.0f} ms, max {good[-1] * 1000:.0f} ms, {len(good)}/{tries} ok"


def flood(name, pid, open_conns, http, blob_hash, hold):
    base = rss(pid)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    conns = open_conns()
    time.sleep(hold)  # let the server take what the flood makes it take
    latency = bystander(http, blob_hash)
    stop.set()
    t.join()
    count = sum(getattr(c, "connections", 1) for c in conns)
    for c in conns:
        c.close()
    print(f"{name:<28} {count:>6} conns  peak RSS +{(peak[0] - base) / 2**20:7.1f} MiB  bystander {latency}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--blob", required=True, help="hash of a blob the server has")
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--hold", type=float, default=3.0)
    p.add_argument("--stream", help="sd hash of a stream the server has (adds /stream floods)")
    p.add_argument("--http3", help="the HTTP/3 door's address (adds QUIC floods)")
    p.add_argument("--flood-h3", help="path of the flood_h3 example binary")
    p.add_argument("--h3-conns", type=int, default=40)
    p.add_argument("--h3-streams", type=int, default=32)
    a = p.parse_args()
    host, port = a.http.rsplit(":", 1)
    http = (host, int(port))
    host, port = a.peer.rsplit(":", 1)
    peer = (host, int(port))

    def many(addr, payload):
        def go():
            out = []
            for _ in range(a.conns):
                try:
                    s = connect(addr)
                    if payload:
                        s.sendall(payload)
                    out.append(s)
                except OSError:
                    pass
            return out
        return go

    get3 = f"GET /blob?hash={a.blob} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 3
    ask3 = f'{{"requested_blob":"{a.blob}"}}'.encode() * 3
    flood("stalled readers (http)", a.pid, many(http, get3), http, a.blob, a.hold)
    flood("stalled readers (peer)", a.pid, many(peer, ask3), http, a.blob, a.hold)
    flood("idle connections (http)", a.pid, many(http, b""), http, a.blob, a.hold)
    flood("idle connections (peer)", a.pid, many(peer, b""), http, a.blob, a.hold)
    unknown = hashlib.sha384(str(time.time()).encode()).hexdigest()
    head = f"HEAD /blob?hash={unknown} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    flood("HEAD storm (unknown hash)", a.pid, many(http, head), http, a.blob, a.hold)
    if a.stream:
        stream3 = f"GET /stream/{a.stream} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 3
        flood("stalled viewers (/stream)", a.pid, many(http, stream3), http, a.blob, a.hold)
    if a.http3 and a.flood_h3:
        for name, path in [("stalled streams (http3)", f"/get/{a.blob}")] + (
            [("stalled viewers (http3 /stream)", f"/stream/{a.stream}")] if a.stream else []
        ):
            flood(name, a.pid, quic_flood(a, path), http, a.blob, a.hold)


class QuicFlood:
    """The flood_h3 process holding `connections` QUIC connections; closing it ends them."""

    def __init__(self, proc, connections):
        self.proc, self.connections = proc, connections

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def quic_flood(a, path):
    def go():
        proc = subprocess.Popen(
            [a.flood_h3, "--addr", a.http3, "--path", path,
             "--conns", str(a.h3_conns), "--streams", str(a.h3_streams)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline().strip()  # "opened N connections, M streams (K refused)"
        print(f"  flood_h3 {path[:12]}...: {line}")
        opened = int(line.split()[1]) if line.startswith("opened") else 0
        return [QuicFlood(proc, opened)]
    return go


if __name__ == "__main__":
    main()
