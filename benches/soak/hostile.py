#!/usr/bin/env python3
"""The soak's hostile clients (benches/soak/run.sh), standard library only: in cycles until
SECONDS have passed, idle connections (connect, send nothing) and stalled readers (ask for a
2 MiB blob or a stream, never read, tiny receive buffer) on the HTTP and peer doors, from
addresses 127.0.0.2-127.0.0.9 (the load comes from 127.0.0.1), held HOLD seconds, then dropped;
and on the DHT port, junk datagrams and pings. Prints one summary line at the end.

    hostile.py --http H:P --peer H:P --dht H:P --blob HASH [--stream SD] --seconds S
               [--conns 40] [--hold 10]
"""
import argparse
import json
import os
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("--http", required=True)
ap.add_argument("--peer", required=True)
ap.add_argument("--dht", required=True)
ap.add_argument("--blob", required=True)
ap.add_argument("--stream")
ap.add_argument("--seconds", type=float, required=True)
ap.add_argument("--conns", type=int, default=40)
ap.add_argument("--hold", type=float, default=10)
args = ap.parse_args()


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def connect(src, dst):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((src, 0))
    s.settimeout(2)
    s.connect(dst)
    return s


http, peer = addr(args.http), addr(args.peer)
asks = [
    (http, f"GET /blob?hash={args.blob} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()),
    (peer, json.dumps({"requested_blobs": [args.blob], "requested_blob": args.blob}).encode()),
]
if args.stream:
    asks.append((http, f"GET /stream/{args.stream} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()))

def ping(i):
    """The SDK's ping datagram (bencoded), from a made-up node."""
    rpc, node = os.urandom(20), bytes([i]) * 48
    return (b"di0ei0ei1e20:" + rpc + b"i2e48:" + node
            + b"i3e4:pingi4eld15:protocolVersioni1eeee")


def datagrams(cycle):
    sent = 0
    for i in range(64):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((f"127.0.0.{2 + i % 8}", 0))
        u.sendto(ping(i) if i % 4 == 0 else os.urandom(1 + (i * cycle) % 1400), dht)
        u.close()
        sent += 1
    return sent


dht = addr(args.dht)
end = time.monotonic() + args.seconds
opened = refused = cycles = sent_datagrams = 0
while time.monotonic() + args.hold < end:
    cycles += 1
    sent_datagrams += datagrams(cycles)
    held = []
    for i in range(args.conns):
        src = f"127.0.0.{2 + i % 8}"
        dst, ask = asks[i % len(asks)]
        try:
            s = connect(src, dst)
            if i % 2:  # a stalled reader; the other half stay idle
                s.sendall(ask)
            held.append(s)
            opened += 1
        except OSError:
            refused += 1
    time.sleep(args.hold)
    for s in held:
        s.close()
    time.sleep(min(5, max(0, end - time.monotonic())))
print(f"HOSTILE cycles={cycles} opened={opened} refused={refused} datagrams={sent_datagrams}")
