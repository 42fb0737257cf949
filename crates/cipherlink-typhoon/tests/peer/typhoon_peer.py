"""Drives SeasideVPN's own TyphoonListener and TyphoonClient for the interop tests.

    typhoon_peer.py keygen
        prints a fresh SeasideVPN key pair: "private HEX" and "public HEX".
    typhoon_peer.py listen PRIVATE_HEX
        runs a TyphoonListener on 127.0.0.1 that echoes every message;
        prints "listening PORT", then one "token HEX type NAME" line per
        client; stops when stdin closes.
    typhoon_peer.py client PUBLIC_HEX TOKEN_HEX PORT SIZE...
        runs a TyphoonClient: sends one message of each SIZE (bytes derived
        from the index), waits for each echo, checks it, prints "echoed N"
        and exits 0; on any failure prints "FAILED reason" and exits 1.
Run with SeasideVPN's sources on PYTHONPATH and SEASIDE_LOG_LEVEL=ERROR;
TYPHOON_* variables in the environment set its timers, as they set ours.
"""

import asyncio
import hashlib
import sys
from ipaddress import IPv4Address

from sources.protocol import TyphoonClient, TyphoonListener
from sources.protocol.utils import ProtocolReturnCode
from sources.utils.crypto import Asymmetric


def payload(i: int, size: int) -> bytes:
    out = b""
    while len(out) < size:
        out += hashlib.sha256(f"{i}/{len(out)}".encode()).digest()
    return out[:size]


async def listen(private: bytes) -> None:
    async def on_connect(name, token):
        print(f"token {token.hex()} type {name}", flush=True)
        return ProtocolReturnCode.SUCCESS

    async def on_data(user_id, data):
        return data

    listener = TyphoonListener(private, IPv4Address("127.0.0.1"), 0)
    async with listener.ctx(on_connect, on_data):
        print(f"listening {listener.port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def client(public: bytes, token: bytes, port: int, sizes) -> int:
    replies = asyncio.Queue()

    async def on_reply(data):
        await replies.put(data)
        return None

    try:
        conn = TyphoonClient(public, token, IPv4Address("127.0.0.1"), port)
        async with conn.ctx(on_reply):
            for i, size in enumerate(sizes):
                sent = payload(i, size)
                await conn.write(sent)
                got = await asyncio.wait_for(replies.get(), 20)
                if got != sent:
                    print(f"FAILED message {i}: sent {len(sent)} bytes, got back {len(got)} different ones", flush=True)
                    return 1
            print(f"echoed {len(sizes)}", flush=True)
        return 0
    except BaseException as e:
        print(f"FAILED {type(e).__name__}: {e}", flush=True)
        return 1


def main() -> int:
    cmd = sys.argv[1]
    if cmd == "keygen":
        key = Asymmetric()
        print(f"private {key.private_key.hex()}\npublic {key.public_key.hex()}", flush=True)
        return 0
    if cmd == "listen":
        asyncio.run(listen(bytes.fromhex(sys.argv[2])))
        return 0
    if cmd == "client":
        sizes = [int(s) for s in sys.argv[5:]]
        return asyncio.run(client(bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4]), sizes))
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
