"""The seed's SMFT clients (grpcio), for interop tests.

usage: client.py PROTO_DIR steady|coldconn OUT_FILE
Env as in the seed: DF_HOST DF_PORT N_RPS T_DURATION_SEC TLS_CA TLS_CERT TLS_KEY.
Writes the seed's results format; exits 1 if any call failed.
"""

import asyncio
import json
import os
import sys
import time

import grpc

import stubs

pb, pb_grpc = stubs.load(sys.argv[1])
MODE, OUT = sys.argv[2], sys.argv[3]
TARGET = f"{os.environ.get('DF_HOST', 'localhost')}:{os.environ['DF_PORT']}"


def creds():
    cert = os.environ.get("TLS_CERT")
    return grpc.ssl_channel_credentials(
        root_certificates=stubs.read(os.environ["TLS_CA"]),
        private_key=stubs.read(os.environ["TLS_KEY"]) if cert else None,
        certificate_chain=stubs.read(cert) if cert else None,
    )


def code_of(err):
    return err.code().name if isinstance(err, grpc.RpcError) else "UNKNOWN"


async def steady(lines):
    rps = float(os.environ.get("N_RPS", "50"))
    n = max(1, int(rps * float(os.environ.get("T_DURATION_SEC", "1"))))
    async with grpc.aio.secure_channel(TARGET, creds()) as ch:
        stub = pb_grpc.ScoreServiceStub(ch)

        async def one(intended):
            try:
                await stub.GetScore(pb.JsonVector(json='{"vector":[1]}'), timeout=5)
                ms = (time.perf_counter_ns() - intended) / 1e6
                return {"ok": True, "latency_ms": round(ms, 3)}
            except grpc.RpcError as e:
                return {"ok": False, "code": code_of(e)}

        start = time.perf_counter_ns()
        tasks = []
        for i in range(n):
            due = start + int(i * 1e9 / rps)
            delay = (due - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        lines.extend(await asyncio.wait_for(asyncio.gather(*tasks), 30))


async def coldconn(lines):
    n = max(1, int(float(os.environ.get("T_DURATION_SEC", "3"))))
    for _ in range(n):
        t0 = time.perf_counter_ns()
        try:
            async with grpc.aio.secure_channel(TARGET, creds()) as ch:
                await asyncio.wait_for(ch.channel_ready(), 10)
                t1 = time.perf_counter_ns()
                await pb_grpc.ScoreServiceStub(ch).GetScore(pb.JsonVector(json="{}"), timeout=5)
                t2 = time.perf_counter_ns()
            lines.append({
                "ok": True,
                "t_connect_ms": round((t1 - t0) / 1e6, 3),
                "t_first_rpc_ms": round((t2 - t1) / 1e6, 3),
                "t_total_ms": round((t2 - t0) / 1e6, 3),
            })
        except (grpc.RpcError, asyncio.TimeoutError) as e:
            lines.append({"ok": False, "code": code_of(e)})


def main():
    lines = []
    asyncio.run(steady(lines) if MODE == "steady" else coldconn(lines))
    test = "01_steady" if MODE == "steady" else "02_coldconn"
    with open(OUT, "w") as f:
        f.write(f"#TEST={test}\n")
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    failed = [line for line in lines if not line["ok"]]
    if failed:
        print(f"{len(failed)} of {len(lines)} calls failed: {failed[:3]}", file=sys.stderr)
        sys.exit(1)


main()
