"""Bob for `cipherlink bench pool` against tno.mpc.communication 5.x.

Receives 2*count messages from Alice (one-way and pipelined phases), then
echoes count messages (round-trip phase). Default ids throughout, so only
the counts need to agree with the Rust side.
"""
import argparse
import asyncio
import logging
import ssl
import sys

from tno.mpc.communication import Pool
from tno.mpc.communication.communicators.http_communicator import HttpCommunicator, HttpConnection

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--alice-port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--tls", nargs=4, metavar=("CERT", "KEY", "CA", "ALICE_CERT"))
    args = ap.parse_args()
    client_ctx = server_ctx = None
    alice_cert = None
    if args.tls:
        cert, key, ca, alice_cert = args.tls
        client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        client_ctx.load_cert_chain(cert, key)
        client_ctx.check_hostname = False
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
        server_ctx.load_cert_chain(cert, key)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
    comm = HttpCommunicator(addr="127.0.0.1", port=args.port,
                            ssl_client_context=client_ctx, ssl_server_context=server_ctx)
    pool = Pool("Bob", comm, timeout=120)
    pool.add_client("Alice", HttpConnection("127.0.0.1", args.alice_port, cert=alice_cert))
    await pool.initialize()
    print("READY", flush=True)
    for _ in range(2 * args.count):
        await pool.recv("Alice")
    for _ in range(args.count):
        await pool.send("Alice", await pool.recv("Alice"))
    await pool.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
