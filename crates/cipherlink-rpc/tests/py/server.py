"""The seed's DF server (grpc.aio, TLS 1.3 / mTLS), for interop tests.

Env as in the seed: DF_HOST DF_PORT DELAY_MS TLS_CA TLS_CERT TLS_KEY.
DF_PORT=0 picks a free port; the port is printed as "PORT <n>".
Stops when stdin closes, so it never outlives the test that started it.
"""

import asyncio
import os
import random
import sys

import grpc

import stubs

pb, pb_grpc = stubs.load(sys.argv[1])


class Score(pb_grpc.ScoreServiceServicer):
    def __init__(self, delay_s):
        self.delay_s = delay_s

    async def GetScore(self, request, context):
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        return pb.ScoreResponse(score=random.random())


async def main():
    host = os.environ.get("DF_HOST", "127.0.0.1")
    port = int(os.environ.get("DF_PORT", "0"))
    delay_s = float(os.environ.get("DELAY_MS", "5")) / 1000.0
    server = grpc.aio.server()
    pb_grpc.add_ScoreServiceServicer_to_server(Score(delay_s), server)
    ca = os.environ.get("TLS_CA")
    creds = grpc.ssl_server_credentials(
        [(stubs.read(os.environ["TLS_KEY"]), stubs.read(os.environ["TLS_CERT"]))],
        root_certificates=stubs.read(ca) if ca else None,
        require_client_auth=bool(ca),
    )
    bound = server.add_secure_port(f"{host}:{port}", creds)
    await server.start()
    print(f"PORT {bound}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop(grace=None)


asyncio.run(main())
