#!/usr/bin/env python3
"""The soak's hostile clients (benches/soak/run.sh), standard library only: in cycles until
SECONDS have passed, idle connections (connect, send nothing) and stalled readers (ask for a
2 MiB blob or a stream, never read, tiny receive buffer) on the HTTP and peer doors, from
addresses 127.0.0.2-127.0.0.9 (the load comes from 127.0.0.1), held HOLD seconds, then dropped;
and on the DHT port, junk datagrams and pings; and each cycle one publisher uploads the stream
in UPLOAD (its sd blob then its content blobs) over the reflector protocol. Prints one summary
line at the end.

    hostile.py --http H:P --peer H:P --dht H:P --blob HASH [--stream SD] --seconds S
               [--reflector H:P --upload DIR --upload-sd SD] [--conns 40] [--hold 10]
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
ap.add_argument("--reflector")
ap.add_argument("--upload")
ap.add_argument("--upload-sd")
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


def upload():
    """One SDK-style upload of the stream in --upload (sd blob, then the blobs asked for)."""
    with connect("127.0.0.2", addr(args.reflector)) as s:
        s.settimeout(10)
        buf = b""

        def send(data, message=None):
            nonlocal buf
            s.sendall(data if message is None else json.dumps(message).encode())
            while True:
                try:
                    answer, used = json.JSONDecoder().raw_decode(buf.decode())
                    buf = buf[len(buf.decode()[:used].encode()):]
                    return answer
                except ValueError:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise OSError("reflector closed")
                    buf += chunk

        def blob(name):
            return open(os.path.join(args.upload, name), "rb").read()

        send(None, {"version": 1})
        sd = blob(args.upload_sd)
        answer = send(None, {"sd_blob_hash": args.upload_sd, "sd_blob_size": len(sd)})
        if answer.get("send_sd_blob"):
            send(sd)
            needed = [b["blob_hash"] for b in json.loads(sd)["blobs"] if "blob_hash" in b]
        else:
            needed = answer.get("needed_blobs", [])
        for name in needed:
            data = blob(name)
            if send(None, {"blob_hash": name, "blob_size": len(data)}).get("send_blob"):
                send(data)


dht = addr(args.dht)
end = time.monotonic() + args.seconds
opened = refused = cycles = sent_datagrams = uploads = upload_errors = 0
while time.monotonic() + args.hold < end:
    cycles += 1
    sent_datagrams += datagrams(cycles)
    if args.reflector:
        try:
            upload()
            uploads += 1
        except (OSError, ValueError) as e:
            upload_errors += 1
            print(f"upload: {e}")
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
print(f"HOSTILE cycles={cycles} opened={opened} refused={refused} datagrams={sent_datagrams} uploads={uploads} upload_errors={upload_errors}")
