"""Generates the score.proto stubs with grpcio-tools into a temp dir and imports them."""

import os
import shutil
import sys
import tempfile


def load(proto_dir):
    from grpc_tools import protoc  # imported late: only the interop peer has it

    out = tempfile.mkdtemp(prefix="score-stubs-")
    rc = protoc.main([
        "protoc",
        f"-I{proto_dir}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(proto_dir, "score.proto"),
    ])
    if rc != 0:
        raise SystemExit(f"grpc_tools.protoc failed with {rc}")
    sys.path.insert(0, out)
    try:
        import score_pb2  # noqa: E402
        import score_pb2_grpc  # noqa: E402
    finally:
        # The modules are in memory now; leave nothing behind in /tmp.
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)

    return score_pb2, score_pb2_grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()
