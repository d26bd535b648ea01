#!/usr/bin/env python3
"""A flaky blob origin for the soak (benches/soak/run.sh), standard library only.

GET/HEAD /<hash> answers the file DIR/<hash>, but not always well: some answers are slow, some
connections are reset mid-body, some bodies have one byte flipped (the cache must refuse them:
every blob is verified before it is cached or served), some are 503. Fractions are per request.
Every answer is counted in COUNTS (one line `kind count` per kind, rewritten each second, carried
over when the origin restarts).

    flaky_origin.py DIR PORT COUNTS [--slow 0.05] [--reset 0.03] [--wrong 0.02] [--fail 0.03]
"""
import argparse
import collections
import os
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("port", type=int)
ap.add_argument("counts")
ap.add_argument("--slow", type=float, default=0.05)
ap.add_argument("--reset", type=float, default=0.03)
ap.add_argument("--wrong", type=float, default=0.02)
ap.add_argument("--fail", type=float, default=0.03)
args = ap.parse_args()
counts = collections.Counter()
if os.path.exists(args.counts):  # a restarted origin carries on counting
    for line in open(args.counts):
        kind, n = line.split()
        counts[kind] = int(n)
lock = threading.Lock()


def count(kind):
    with lock:
        counts[kind] += 1


def flush():
    while True:
        time.sleep(1)
        with lock:
            text = "".join(f"{k} {v}\n" for k, v in sorted(counts.items()))
        with open(args.counts + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.counts + ".tmp", args.counts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def answer(self, with_body):
        name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        path = os.path.join(args.dir, name)
        if not name or not os.path.isfile(path):
            count("missing")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = open(path, "rb").read()
        roll = random.random()
        if roll < args.fail:
            count("fail")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        roll -= args.fail
        if roll < args.slow:
            count("slow")
            time.sleep(random.uniform(0.5, 3.0))
        elif roll < args.slow + args.reset and with_body:
            count("reset")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            # RST instead of FIN: linger 0.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        elif roll < args.slow + args.reset + args.wrong and with_body:
            count("wrong")
            i = random.randrange(len(body))
            body = body[:i] + bytes([body[i] ^ 0x5A]) + body[i + 1:]
        else:
            count("ok")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)


threading.Thread(target=flush, daemon=True).start()
server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
server.serve_forever()
