"""A party for `cipherlink bench pool`, on tno.mpc.communication 5.x.

Bob (the default role) receives 2*count messages from Alice (one-way and
pipelined phases), then echoes count messages (round-trip phase). Alice
(`--role alice`, the Python-Python baseline) runs those three phases against
Bob exactly as the Rust Alice does and prints one JSON line with what she
measured. Default ids throughout, so only the counts need to agree.
"""
import argparse
import asyncio
import json
import logging
import sys
import time

from tno.mpc.communication import Pool
from tno.mpc.communication.communicators.http_communicator import HttpCommunicator, HttpConnection

from tls5 import package_contexts

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--peer-port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--role", choices=("bob", "alice"), default="bob")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--tls", nargs=4, metavar=("CERT", "KEY", "CA", "PEER_CERT"))
    args = ap.parse_args()
    client_ctx = server_ctx = None
    peer_cert = None
    if args.tls:
        cert, key, ca, peer_cert = args.tls
        client_ctx, server_ctx = package_contexts(cert, key, ca)
    comm = HttpCommunicator(addr="127.0.0.1", port=args.port,
                            ssl_client_context=client_ctx, ssl_server_context=server_ctx)
    if args.role == "alice":
        pool = Pool("Alice", comm, timeout=120)
        pool.add_client("Bob", HttpConnection("127.0.0.1", args.peer_port, cert=peer_cert))
        await pool.initialize()
        print(json.dumps(await alice(pool, args)), flush=True)
        await pool.shutdown()
        return
    pool = Pool("Bob", comm, timeout=120)
    pool.add_client("Alice", HttpConnection("127.0.0.1", args.peer_port, cert=peer_cert))
    await pool.initialize()
    print("READY", flush=True)
    for _ in range(2 * args.count):
        await pool.recv("Alice")
    for _ in range(args.count):
        await pool.send("Alice", await pool.recv("Alice"))
    await pool.shutdown()


async def alice(pool, args):
    payload = b"\x5a" * args.size
    n = args.count
    start = time.perf_counter()
    for _ in range(n):
        await pool.send("Bob", payload)
    oneway = n / (time.perf_counter() - start)

    # The package numbers ids when send() is called, so tasks started in
    # order carry ids 0..n-1 whatever order they finish in.
    start = time.perf_counter()
    in_flight = set()
    for _ in range(n):
        if len(in_flight) >= args.depth:
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        in_flight.add(asyncio.ensure_future(pool.send("Bob", payload)))
    if in_flight:
        for task in (await asyncio.wait(in_flight))[0]:
            task.result()
    pipelined = n / (time.perf_counter() - start)

    rtts = []
    for _ in range(n):
        start = time.perf_counter()
        await pool.send("Bob", payload)
        await pool.recv("Bob")
        rtts.append(time.perf_counter() - start)
    rtts.sort()
    return {
        "oneway": oneway,
        "pipelined": pipelined,
        "rtt_p50_ms": rtts[len(rtts) // 2] * 1000,
        "rtt_p99_ms": rtts[min(len(rtts) - 1, len(rtts) * 99 // 100)] * 1000,
    }


if __name__ == "__main__":
    asyncio.run(main())
