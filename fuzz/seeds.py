#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (small, kept in the repo).

Seeds are real messages: the LBRY SDK's peer and reflector requests, the DHT datagrams the SDK
sends, the sd blob of ../shared/fixtures/streams/small, the LBRY API answers of
../shared/fixtures/lbry-api and the shipped config examples. Run from anywhere:
`python3 fuzz/seeds.py`. libFuzzer grows its working corpus under fuzz/target/corpus/ instead.
"""
import json
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
H = "942f65069add441c15915a2f13af1d497ee2a73b8a7c1e25933229c4b63ba850f47e4975cf6879ad6267869b54981d9f"
H2 = "b11dc90bcfbbc8c9894fe3e20bfe77d9012f5fa8e898dbba453eee9cafa6439ab3cbd1d22430f96879473ba7ca701b87"


def write(target, name, data):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    items = sorted(v.items(), key=lambda kv: (isinstance(kv[0], bytes), kv[0]))
    return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"


def peer():
    download = json.dumps({"requested_blobs": [H], "lbrycrd_address": True,
                           "blob_data_payment_rate": 0.0, "requested_blob": H})
    write("peer_door", "sdk_download", download)
    write("peer_door", "availability_then_download",
          json.dumps({"requested_blobs": [H, H2, "nope"], "lbrycrd_address": None}) + download)
    write("peer_door", "rate_only", '{"blob_data_payment_rate": -1.5}')
    header = {"lbrycrd_address": "addr", "available_blobs": [H],
              "blob_data_payment_rate": "RATE_ACCEPTED",
              "incoming_blob": {"blob_hash": H, "length": 16}}
    write("peer_client", "blob", json.dumps(header).encode() + bytes(range(16)))
    write("peer_client", "refused", json.dumps(
        {"available_blobs": [], "incoming_blob": {"error": "blob not found"}}))
    write("peer_client", "sdk_absent", json.dumps({"available_blobs": [H2]}))


def reflector():
    write("reflector_server", "sdk_upload",
          '{"version": 1}' + json.dumps({"sd_blob_hash": H, "sd_blob_size": 536})
          + json.dumps({"blob_hash": H2, "blob_size": 16}))
    write("reflector_server", "v1_blob", '{"version":0}{"blob_hash":"%s","blob_size":7}' % H)
    write("reflector_client", "sdk_upload", '{"version":1}{"send_sd_blob":true}'
          '{"received_sd_blob":true}{"send_blob":true}{"received_blob":true}')
    write("reflector_client", "needed", '{"send_sd_blob":false,"needed_blobs":["%s"]}' % H)
    write("reflector_server", "both", '{"sd_blob_hash":"%s","blob_hash":null,"sd_blob_size":-1}' % H)


def dht():
    rpc, node, key = b"r" * 20, b"n" * 48, bytes.fromhex(H)
    opts = {b"protocolVersion": 1}

    def request(method, args):
        return bencode({0: 0, 1: rpc, 2: node, 3: method, 4: args + [opts]})

    def response(result):
        return bencode({0: 1, 1: rpc, 2: node, 3: result})

    write("dht_datagram", "ping", request("ping", []))
    write("dht_datagram", "find_node", request("findNode", [key]))
    write("dht_datagram", "find_value", bencode({0: 0, 1: rpc, 2: node, 3: "findValue",
                                                 4: [key, {b"protocolVersion": 1, b"p": 2}]}))
    write("dht_datagram", "store", request("store", [key, b"t" * 48, 3333, node, 0]))
    write("dht_datagram", "pong", response(b"pong"))
    contacts = [[node, b"127.0.0.1", 4444], [b"m" * 48, b"10.0.0.2", 4445]]
    write("dht_datagram", "contacts", response(contacts))
    peer = bytes([127, 0, 0, 1, 0x0d, 0x05]) + node
    write("dht_datagram", "find_value_result", response(
        {b"token": b"t" * 48, b"protocolVersion": 1, b"p": 1, b"contacts": contacts,
         b"\x07" * 48: [peer]}))
    write("dht_datagram", "error", bencode({0: 2, 1: rpc, 2: node, 3: b"ValueError",
                                            4: b"Invalid method: x"}))


def sd_blob():
    blobs = FIXTURES / "streams" / "small" / "blobs"
    if (blobs / H).exists():
        write("sd_blob", "small_sd", (blobs / H).read_bytes())
        sd = json.loads((blobs / H).read_bytes())
        sd["blobs"].insert(0, dict(sd["blobs"][0], length=2097152))
        for i, b in enumerate(sd["blobs"]):
            b["blob_num"] = i
        write("sd_blob", "two_blobs_bad_stream_hash", json.dumps(sd))


def http_request():
    size = (5_000_000 << 24).to_bytes(8, "little")
    lines = ["bytes=0-", '"sd"', 'W/"0123abcd", "x"', f"hash={H}&trace=true&edge_token=a%20b",
             f"/get/{H}", json.dumps({"stacks": [{"timing": 1, "origin_name": "disk",
                                                   "host_name": "h"}]})]
    write("http_request", "first", size + "\n".join(lines).encode())
    lines[:2] = ["bytes=-500", '"0123abcd"']
    write("http_request", "suffix", size + "\n".join(lines).encode())
    write("http_request", "range", size + b"bytes=100-199,300-\n\n*\n\n/has/x")


def claim_path():
    claim = "ad25e05aa7dc5e9994869040c6103f9a8728db46"
    write("claim_path", "v1", f"/content/claims/astream/{claim}/video.mp4")
    write("claim_path", "v2", "/api/v2/streams/free/caf%C3%A9-clip/ad25e05a")
    write("claim_path", "v4", f"/api/v4/streams/free/astream/{claim}/942f6506")
    write("claim_path", "v5", f"/v5/streams/start/{claim}/942f65.mp4")
    write("claim_path", "v6", f"/v6/streams/{claim}/942f65.mp4")
    write("claim_path", "paid", f"/api/v3/streams/paid/astream/{claim}/942f65/token")


def lbry_api():
    for name in ["resolve", "claim_search"]:
        path = FIXTURES / "lbry-api" / f"{name}.json"
        if path.exists():
            answer = json.dumps(json.loads(path.read_text())["response"], separators=(",", ":"))
            write("lbry_api", name, b"\x00" + answer.encode())
    write("lbry_api", "rpc_error", b'\x00{"jsonrpc":"2.0","error":{"code":-32500,"message":"x"}}')
    write("lbry_api", "http_404", b"\x03not found")


def config_yaml():
    for example in ["cluster-edge", "s3-origin", "reflector-go-db-backed"]:
        text = (ROOT / "config" / "examples" / example / "blobcache.yaml").read_text()
        text = "\n".join(l for l in text.splitlines() if not re.match(r"\s*#", l) and l.strip())
        write("config_yaml", example, text + "\n")


def hash_list():
    write("hash_list", "plain", f"# protected\n{H}\n\n{H2}  # trailer\n")
    write("hash_list", "json", json.dumps([H, " " + H2]))


for make in [peer, reflector, dht, sd_blob, http_request, claim_path, lbry_api, config_yaml,
             hash_list]:
    make()
