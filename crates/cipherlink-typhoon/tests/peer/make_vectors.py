"""Prints TYPHOON test vectors made by SeasideVPN's own Python code (JSON).

Run in the peer's venv with its sources on PYTHONPATH (scripts/setup-peers
records both), with no TYPHOON_* variable set:

    PYTHONPATH=$CIPHERLINK_PEER_SEASIDE_SRC SEASIDE_LOG_LEVEL=ERROR \
        $CIPHERLINK_PEER_PYTHON_SEASIDE make_vectors.py > ../vectors/typhoon-vectors.json

Every random input SeasideVPN draws is replaced by a fixed value and
printed beside the message, so that cipherlink's encoder, given the same
inputs, must produce the same bytes; its decoder must read them back.
Each message is also parsed back by SeasideVPN's own parser, whose
reading is recorded ("seaside_reads").
"""

import hashlib
import json
import os
import sys

import monocypher

assert not [k for k in os.environ if k.startswith("TYPHOON_")], "unset TYPHOON_* first"

import sources.protocol.typhoon_core as typhoon_core
import sources.utils.crypto as crypto
from sources.protocol.typhoon_core import TyphoonCore
from sources.protocol.utils import ProtocolMessageType, ProtocolReturnCode, ProtocolTypes
from sources.utils.crypto import Asymmetric, Symmetric


def fixed(label: str, n: int) -> bytes:
    """Deterministic 'random' bytes: SHA-512 chain of the label."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha512(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


class Draws:
    """Hands out the values SeasideVPN asks its randomness for, in order."""

    def __init__(self) -> None:
        self.queue = []
        self.numbers = []

    def bytes(self, n: int) -> bytes:
        value = self.queue.pop(0)
        assert len(value) == n, (len(value), n)
        return value

    def number(self, min: int = 0, max: int = 0) -> int:
        value = self.numbers.pop(0)
        assert min <= value <= max
        return value

    def done(self) -> None:
        assert not self.queue and not self.numbers


draws = Draws()
ephemerals = []


def fixed_key_pair():
    secret = ephemerals.pop(0)
    return secret, monocypher.compute_key_exchange_public_key(secret)


crypto.token_bytes = draws.bytes
crypto.generate_key = lambda n=32: draws.bytes(n)
crypto.generate_key_exchange_key_pair = fixed_key_pair
typhoon_core.random_number = draws.number

vectors = {
    "source": "SeasideVPN viridian/algae sources (TyphoonCore, Asymmetric, Symmetric)",
    "settings": {
        "min_next_in": TyphoonCore._TYPHOON_MIN_NEXT_IN, "max_next_in": TyphoonCore._TYPHOON_MAX_NEXT_IN,
        "initial_min_next_in": TyphoonCore._TYPHOON_INITIAL_MIN_NEXT_IN,
        "initial_max_next_in": TyphoonCore._TYPHOON_INITIAL_MAX_NEXT_IN,
        "max_tail_length": TyphoonCore._TYPHOON_MAX_TAIL_LENGTH, "max_retries": TyphoonCore._TYPHOON_MAX_RETRIES,
        "default_rtt": TyphoonCore._TYPHOON_DEFAULT_RTT, "default_timeout": TyphoonCore._TYPHOON_DEFAULT_TIMEOUT,
    },
}

private = fixed("typhoon server key", 40)
server = Asymmetric(private, True)
vectors["server_key"] = {"private": private.hex(), "public": server.public_key.hex()}
client_side = Asymmetric(server.public_key, False)

# Client INIT, read back by SeasideVPN's server side.
token, eph, n, nonce = fixed("token", 48), fixed("ephemeral", 32), fixed("n", 2), fixed("init nonce", 24)
tail, packet_number, next_in = 37, 0x01020304, 5000
ephemerals.append(eph)
draws.numbers.append(tail)
draws.queue += [n, nonce]
key, packet = TyphoonCore.build_client_init(client_side, packet_number, next_in, token)
draws.done()
name, pn_back, next_in_back, key_back, token_back = TyphoonCore.parse_client_init(server, packet)
assert (pn_back, next_in_back, key_back, token_back) == (packet_number, next_in, key, token)
vectors["client_init"] = {
    "token": token.hex(), "ephemeral": eph.hex(), "n": n.hex(), "nonce": nonce.hex(), "tail": tail,
    "packet_number": packet_number, "next_in": next_in, "client_type": ProtocolTypes.ALGAE.value,
    "client_version": TyphoonCore._VERSION.major, "session_key": key.hex(), "message": packet.hex(),
}
session = Symmetric(key)

# Server INIT, read back by SeasideVPN's client side.
nonce, tail = fixed("server init nonce", 24), 5
draws.numbers.append(tail)
draws.queue += [nonce]
packet = TyphoonCore.build_server_init(session, packet_number, 40123, 100000, ProtocolReturnCode.SUCCESS)
draws.done()
assert TyphoonCore.parse_server_init(session, packet, packet_number) == (40123, 100000)
vectors["server_init"] = {
    "packet_number": packet_number, "status": 0, "user_id": 40123, "next_in": 100000,
    "nonce": nonce.hex(), "tail": tail, "message": packet.hex(),
}


def reads(kind, data):
    if kind in (ProtocolMessageType.HANDSHAKE, ProtocolMessageType.HANDSHAKE_DATA):
        return {"type": int(kind), "packet_number": data[0], "next_in": data[1],
                "data": data[2].hex() if len(data) > 2 else None}
    if kind == ProtocolMessageType.DATA:
        return {"type": int(kind), "data": data.hex()}
    return {"type": int(kind)}


# Handshakes, alone and with data, both ways.
vectors["hdsk"] = []
for i, (sender, with_data) in enumerate([("client", False), ("client", True), ("server", False), ("server", True)]):
    nonce, tail = fixed(f"hdsk nonce {i}", 24), [1, 700, 1024, 3][i]
    payload = fixed(f"hdsk payload {i}", 300) if with_data else b""
    pn, ni = 0xA0B0C0D0 + i, 64000 + 1000 * i
    draws.numbers.append(tail)
    draws.queue += [nonce]
    if sender == "client":
        build = TyphoonCore.build_client_hdsk_data if with_data else TyphoonCore.build_client_hdsk
        packet = build(session, pn, ni, payload) if with_data else build(session, pn, ni)
        kind, data = TyphoonCore.parse_client_message(session, packet)
    else:
        build = TyphoonCore.build_server_hdsk_data if with_data else TyphoonCore.build_server_hdsk
        packet = build(session, pn, ni, payload) if with_data else build(session, pn, ni)
        kind, data = TyphoonCore.parse_server_message(session, packet, pn)
    draws.done()
    vectors["hdsk"].append({
        "sender": sender, "packet_number": pn, "next_in": ni, "data": payload.hex() if with_data else None,
        "nonce": nonce.hex(), "tail": tail, "message": packet.hex(), "seaside_reads": reads(kind, data),
    })

# Data: empty, one byte, larger; the last with no tail, which SeasideVPN
# reads as empty (`data[header:-0]`).
vectors["data"] = []
for size, tail in ((0, 11), (1, 1), (1000, 512), (4096, 1024), (77, 0)):
    payload = fixed(f"payload {size}", size)
    nonce = fixed(f"data nonce {size}", 24)
    draws.numbers.append(tail)
    draws.queue += [nonce]
    packet = TyphoonCore.build_any_data(session, payload)
    draws.done()
    kind, data = TyphoonCore.parse_client_message(session, packet)
    vectors["data"].append({
        "payload": payload.hex(), "nonce": nonce.hex(), "tail": tail, "message": packet.hex(),
        "seaside_reads": reads(kind, data),
    })

# Termination.
nonce, tail = fixed("term nonce", 24), 512
draws.numbers.append(tail)
draws.queue += [nonce]
packet = TyphoonCore.build_any_term(session)
draws.done()
kind, _ = TyphoonCore.parse_server_message(session, packet, 0)
vectors["term"] = {"nonce": nonce.hex(), "tail": tail, "message": packet.hex(), "seaside_reads": reads(kind, None)}

json.dump(vectors, sys.stdout, indent=1)
print()
