#!/usr/bin/env python3
"""A slow blob origin for the cold-miss storm: GET /<hash> answers the file DIR/<hash> after
sleeping DELAY seconds (404 if absent). Every request is appended to LOG, one line each, so the
benchmark can count how many reached the origin. Standard library only.

    slow_origin.py DIR PORT DELAY LOG
"""
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, PORT, DELAY, LOG = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
log = open(LOG, "a", buffering=1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body):
        name = self.path.split("?", 1)[0].lstrip("/")
        with lock:
            log.write(f"{time.time():.3f} {self.command} {self.path}\n")
        time.sleep(DELAY)
        path = os.path.join(ROOT, name)
        if not name or "/" in name or not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    Server(("127.0.0.1", PORT), Handler).serve_forever()
