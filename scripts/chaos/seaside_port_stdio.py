"""SeasideVPN's own PORT (its PortListener and PortClient, unchanged) as a
foreign subject of `cipherlink chaos run`: standard input and output carry
the session, as docs/chaos.md ("Foreign programs") asks.

    seaside_port_stdio.py server KEY_FILE HOST PORT
        a PortListener on HOST:PORT with the key of KEY_FILE; every byte its
        one client sends goes to standard output, every byte of standard
        input goes to the client (each read one PORT message); ends when the
        client's session ends or standard input closes.
    seaside_port_stdio.py client KEY_FILE HOST PORT
        a PortClient to HOST:PORT with KEY_FILE's public key and a random
        token; standard input goes to the server (a PORT message per read),
        what comes back to standard output; when standard input ends it
        terminates the session (PORT's termination message) and exits, and
        when the session fails it exits.

KEY_FILE is a PORT server key as `cipherlink link keygen --wire port`
writes it (lines `private HEX` and `public HEX`, SeasideVPN's 40-byte
keys). The listener admits any token, as seed 003's experiment does.
Run with SeasideVPN's sources on PYTHONPATH (scripts/setup-peers installs
them with their dependencies in .venv/seaside) and SEASIDE_LOG_LEVEL=ERROR.
"""

import asyncio
import os
import sys
from ipaddress import IPv4Address

# SeasideVPN logs to standard output, which carries the session here: the
# session gets its own copy of the descriptor, and descriptor 1 (where
# every log line goes) becomes standard error, before anything logs.
SESSION_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)

from sources.protocol import PortClient, PortListener, port_socket  # noqa: E402
from sources.protocol.utils import ProtocolReturnCode  # noqa: E402

# Each read of standard input is one PORT message: at most what the lab
# sends at once, well under PORT's 65,519-byte limit.
READ = 16 * 1024


def read_key(path: str) -> dict:
    keys = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("private", "public"):
                keys[parts[0]] = bytes.fromhex(parts[1])
    if len(keys.get("private", b"")) != 40 or len(keys.get("public", b"")) != 40:
        raise SystemExit(f"{path}: not a PORT server key file (lines 'private HEX', 'public HEX')")
    return keys


def emit(data: bytes) -> None:
    SESSION_OUT.write(data)


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    return reader


async def pump(reader: asyncio.StreamReader, write) -> None:
    while True:
        chunk = await reader.read(READ)
        if not chunk:
            return
        await write(chunk)


async def server(keys: dict, host: str, port: int) -> int:
    # The listener makes a PortServer per client and keeps only its task;
    # recording each one gives the bridge the client's session to write to.
    made = []

    class Recorded(port_socket.PortServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    port_socket.PortServer = Recorded

    async def on_connect(name, token):
        return ProtocolReturnCode.SUCCESS

    async def on_data(user_id, data):
        emit(data)
        return None

    listener = PortListener(keys["private"], IPv4Address(host), port)
    async with listener.ctx(on_connect, on_data):
        reader = await stdin_reader()
        while not made or not made[0]._background:
            await asyncio.sleep(0.01)
        session = made[0]
        to_client = asyncio.create_task(pump(reader, session.write))
        # The client's session ends with its read cycle.
        await asyncio.wait({to_client, session._background[0]}, return_when=asyncio.FIRST_COMPLETED)
        to_client.cancel()
    return 0


async def client(keys: dict, host: str, port: int) -> int:
    async def on_reply(data):
        emit(data)
        return None

    conn = PortClient(keys["public"], os.urandom(48), IPv4Address(host), port)
    async with conn.ctx(on_reply, graceful=True):
        reader = await stdin_reader()
        to_server = asyncio.create_task(pump(reader, conn.write))
        await asyncio.wait({to_server, conn._background[0]}, return_when=asyncio.FIRST_COMPLETED)
        to_server.cancel()
    return 0


def main() -> int:
    if len(sys.argv) != 5 or sys.argv[1] not in ("server", "client"):
        print(__doc__, file=sys.stderr)
        return 2
    keys = read_key(sys.argv[2])
    run = server if sys.argv[1] == "server" else client
    return asyncio.run(run(keys, sys.argv[3], int(sys.argv[4])))


if __name__ == "__main__":
    sys.exit(main())
