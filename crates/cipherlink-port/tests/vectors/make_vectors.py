"""Prints PORT test vectors made by SeasideVPN's own Python code (JSON).

Run in the peer's venv with its sources on PYTHONPATH (scripts/setup-peers
records both):

    PYTHONPATH=$CIPHERLINK_PEER_SEASIDE_SRC SEASIDE_LOG_LEVEL=ERROR \
        $CIPHERLINK_PEER_PYTHON_SEASIDE make_vectors.py > port-vectors.json

Every random input SeasideVPN draws is replaced by a fixed value and
printed beside the message, so that cipherlink's encoder, given the same
inputs, must produce the same bytes; its decoder must read them back.
"""

import hashlib
import json
import sys

import monocypher

import sources.protocol.port_core as port_core
import sources.utils.crypto as crypto
from sources.protocol.port_core import PortCore
from sources.protocol.utils import ProtocolReturnCode
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


draws = Draws()
ephemerals = []


def fixed_key_pair():
    secret = ephemerals.pop(0)
    return secret, monocypher.compute_key_exchange_public_key(secret)


crypto.token_bytes = draws.bytes
crypto.generate_key = lambda n=32: draws.bytes(n)
crypto.generate_key_exchange_key_pair = fixed_key_pair
port_core.token_bytes = draws.bytes
port_core.random_number = draws.number

vectors = {"source": "SeasideVPN viridian/algae sources (PortCore, Asymmetric, Symmetric)"}

# Server keys: the private key is X25519 secret || seed, the public key X25519 public || seed.
private = fixed("server key", 40)
server = Asymmetric(private, True)
vectors["server_key"] = {"private": private.hex(), "public": server.public_key.hex()}
client_side = Asymmetric(server.public_key, False)

# Client INIT.
token = fixed("token", 48)
eph, n, hnonce, tnonce = fixed("ephemeral", 32), fixed("n", 2), fixed("header nonce", 24), fixed("token nonce", 24)
tail = fixed("client tail", 37)
ephemerals.append(eph)
draws.numbers.append(len(tail))
draws.queue += [n, hnonce, tnonce, tail]
key, packet = PortCore.build_client_init(client_side, token)
assert not draws.queue and not draws.numbers
# Parsed back by SeasideVPN's own server side.
_, key_back, token_len, tail_len = PortCore.parse_client_init_header(server, packet[: PortCore.client_init_header_length])
assert key_back == key and tail_len == len(tail)
vectors["client_init"] = {
    "token": token.hex(), "ephemeral": eph.hex(), "n": n.hex(), "header_nonce": hnonce.hex(),
    "token_nonce": tnonce.hex(), "tail": tail.hex(), "client_type": port_core.ProtocolTypes.ALGAE.value,
    "client_version": PortCore._VERSION.major, "session_key": key.hex(), "message": packet.hex(),
}
session = Symmetric(key)

# Server INIT.
nonce, tail = fixed("server init nonce", 24), fixed("server tail", 5)
draws.numbers.append(len(tail))
draws.queue += [nonce, tail]
packet = PortCore.build_server_init(session, 40123, ProtocolReturnCode.SUCCESS)
vectors["server_init"] = {"user_id": 40123, "status": 0, "nonce": nonce.hex(), "tail": tail.hex(), "message": packet.hex()}

# Data messages: empty, one byte, larger ones (the largest, 65495 bytes, is
# checked by round trips: its vector would be 256 KB of hex).
vectors["data"] = []
for size in (0, 1, 1000, 4096):
    payload = fixed(f"payload {size}", size)
    hnonce, dnonce, tail = fixed(f"data header nonce {size}", 24), fixed(f"data nonce {size}", 24), fixed(f"data tail {size}", size % 513)
    draws.numbers.append(len(tail))
    draws.queue += [hnonce, dnonce, tail]
    packet = PortCore.build_any_data(session, payload)
    vectors["data"].append({
        "payload": payload.hex(), "header_nonce": hnonce.hex(), "data_nonce": dnonce.hex(),
        "tail": tail.hex(), "message": packet.hex(),
    })

# Termination.
nonce, tail = fixed("term nonce", 24), fixed("term tail", 512)
draws.numbers.append(len(tail))
draws.queue += [nonce, tail]
packet = PortCore.build_any_term(session)
vectors["term"] = {"nonce": nonce.hex(), "tail": tail.hex(), "message": packet.hex()}

# The fixed header lengths SeasideVPN reads.
vectors["lengths"] = {
    "client_init_header": PortCore.client_init_header_length,
    "server_init_header": PortCore.server_init_header_length,
    "message_header": PortCore.any_other_header_length,
}
json.dump(vectors, sys.stdout, indent=1)
print()
