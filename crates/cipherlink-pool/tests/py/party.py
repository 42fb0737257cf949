"""A tno.mpc.communication party driven by the Rust interop tests.

Works with 4.x and 5.x (detected from the installed package). Prints
`READY` when it is listening and every receive is registered, then one
`RESULT passed=N failed=M` line, and `N passed, M failed` last; exits 0 only
when nothing failed.

Modes:
  alice   send every case (default ids, then custom ids in reverse order),
          then receive the echoes (default ids in order, custom ids forward)
  echo    receive every case the same way, check it, and send it back
  one     receive one default-id message from the first peer, check it is
          "late hello", and send it back
  bcast   receive "b1" from Alice, broadcast {"from": "Bob", "got": ...} as
          "b2" to all peers, then receive Alice's default-id broadcast
  biglist send a list of 8 Mi ones (an 8 MiB body) as "list"
  bigint  send "huge id" with a 1 MiB int as its id (expects a refusal,
          printed as `ID_ANSWER <error>`), then a 1 MiB int as the value of
          message "big-value"; prints how long each send took on stderr
"""
import argparse
import asyncio
import logging
import sys
import time
import warnings
from importlib.metadata import version

from cases import CASES, expected, same
from tls5 import package_contexts

warnings.simplefilter("ignore")
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")

MAJOR = int(version("tno.mpc.communication").split(".")[0])


def parse_peer(text):
    # Name=host:port[@certpath]
    name, rest = text.split("=", 1)
    cert = None
    if "@" in rest:
        rest, cert = rest.split("@", 1)
    host, port = rest.rsplit(":", 1)
    return name, host, int(port), cert


def custom_id(name):
    return "c-" + name


async def make_pool(args):
    if MAJOR >= 5:
        from tno.mpc.communication import Pool
        from tno.mpc.communication.communicators.http_communicator import (
            HttpCommunicator, HttpConnection)
        client_ctx = server_ctx = None
        if args.tls:
            client_ctx, server_ctx = package_contexts(*args.tls)
        comm = HttpCommunicator(addr="127.0.0.1", port=args.port,
                                ssl_client_context=client_ctx, ssl_server_context=server_ctx,
                                conn_retry_max=args.retries, conn_retry_delay=1)
        pool = Pool(args.name, comm, timeout=args.timeout)
        for name, host, port, cert in map(parse_peer, args.peer):
            pool.add_client(name, HttpConnection(host, port, cert=cert))
        await pool.initialize()
        return pool
    from tno.mpc.communication import Pool
    if args.tls:
        cert, key, ca = args.tls
        pool = Pool(key=key, cert=cert, ca_cert=ca, max_retries=args.retries - 1)
    else:
        pool = Pool(max_retries=args.retries - 1)
    pool.add_http_server(addr="127.0.0.1", port=args.port)
    for name, host, port, cert in map(parse_peer, args.peer):
        pool.add_http_client(name, host, port=port, cert=cert)
    return pool


def start_recv(pool, peer, msg_id=None):
    """Registers a receive now; returns an awaitable for the value.

    4.x loses a None that arrives before its receive is registered, so every
    receive is registered before anything is sent."""
    if MAJOR >= 5:
        return asyncio.ensure_future(pool.recv(peer, msg_id))
    return pool.arecv(peer, msg_id)


async def registered(futures):
    # Let 5.x tasks run up to their first await, which registers them.
    await asyncio.sleep(0.05)
    return futures


def check(results, label, got, want):
    ok = same(got, want)
    results.append(ok)
    if not ok:
        print(f"MISMATCH {label}: got {got!r} want {want!r}", flush=True)


async def mode_alice(pool, peer, results):
    defaults = [start_recv(pool, peer) for _ in CASES]
    customs = {n: start_recv(pool, peer, custom_id(n)) for n, _ in CASES}
    await registered(defaults)
    print("READY", flush=True)
    for _, value in CASES:
        await pool.send(peer, value)
    for name, value in reversed(CASES):
        await pool.send(peer, value, custom_id(name))
    for (name, value), fut in zip(CASES, defaults):
        check(results, name, await fut, expected(value))
    for name, value in CASES:
        check(results, "custom " + name, await customs[name], expected(value))


async def mode_echo(pool, peer, results):
    defaults = [start_recv(pool, peer) for _ in CASES]
    customs = {n: start_recv(pool, peer, custom_id(n)) for n, _ in CASES}
    await registered(defaults)
    print("READY", flush=True)
    got_defaults = []
    for (name, value), fut in zip(CASES, defaults):
        got = await fut
        check(results, name, got, expected(value))
        got_defaults.append(got)
    got_customs = {}
    for name, value in CASES:
        got = await customs[name]
        check(results, "custom " + name, got, expected(value))
        got_customs[name] = got
    for got in got_defaults:
        await pool.send(peer, got)
    for name, _ in reversed(CASES):
        await pool.send(peer, got_customs[name], custom_id(name))


async def mode_bcast(pool, peer, results):
    first = start_recv(pool, "Alice", "b1")
    second = start_recv(pool, "Alice")
    await registered([first, second])
    print("READY", flush=True)
    got = await first
    check(results, "b1", got, "hello all")
    await pool.broadcast({"from": pool.name if MAJOR >= 5 else "Bob", "got": got}, "b2")
    check(results, "default-id broadcast", await second, 42)


async def mode_one(pool, peer, results):
    fut = start_recv(pool, peer)
    await registered([fut])
    print("READY", flush=True)
    got = await fut
    check(results, "late hello", got, "late hello")
    await pool.send(peer, got)


# A 1 MiB int: (bit_length + 8) // 8 == 2**20 bytes on the wire.
BIG = (1 << (8 * 2**20 - 9)) + 12345


async def mode_bigint(pool, peer, results):
    print("READY", flush=True)
    started = time.monotonic()
    try:
        await pool.send(peer, "huge id", BIG)
        print("ID_ANSWER accepted", flush=True)
        results.append(False)
    except Exception as e:  # the refusal is what we expect
        text = str(e)
        print(f"ID_ANSWER {text[:400]}", flush=True)
        results.append("400" in text)
    print(f"timing: 1 MiB int id answered in {time.monotonic() - started:.3f} s",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    await pool.send(peer, BIG, "big-value")
    print(f"timing: 1 MiB int value answered in {time.monotonic() - started:.3f} s",
          file=sys.stderr, flush=True)
    results.append(True)


async def mode_biglist(pool, peer, results):
    print("READY", flush=True)
    await pool.send(peer, [1] * (8 << 20), "list")
    results.append(True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--tls", nargs=3, metavar=("CERT", "KEY", "CA"))
    ap.add_argument("--mode", required=True, choices=["alice", "echo", "bcast", "one", "bigint", "biglist"])
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--retries", type=int, default=3)
    args = ap.parse_args()
    pool = await make_pool(args)
    peer = parse_peer(args.peer[0])[0]
    results = []
    try:
        await asyncio.wait_for(
            {"alice": mode_alice, "echo": mode_echo, "bcast": mode_bcast, "one": mode_one,
             "bigint": mode_bigint, "biglist": mode_biglist}[args.mode](pool, peer, results),
            timeout=args.timeout)
    except Exception as e:  # report, then fail
        print(f"ERROR {type(e).__name__}: {e}", flush=True)
        results.append(False)
    finally:
        await pool.shutdown()
    passed, failed = results.count(True), results.count(False)
    print(f"RESULT passed={passed} failed={failed}", flush=True)
    sys.exit(0 if failed == 0 and passed > 0 else 1)


if __name__ == "__main__":
    asyncio.run(main())
