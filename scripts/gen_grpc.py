"""Generate the Python gRPC stubs of the Open Inference Protocol from slipway's own .proto.

    python scripts/gen_grpc.py          # write slipway/oip/grpc_predict_v2_pb2{,_grpc}.py(i)
    python scripts/gen_grpc.py --check  # exit 1, naming the files, when they are out of date

`make grpc-stubs` runs the first. The stubs are checked in, so the service and its image need no
grpcio-tools at run time; the pinned grpcio-tools of the dev extra makes the output repeatable,
and tests/unit/test_grpc_stubs.py runs `--check`. The command it runs, from the repository root:

    python -m grpc_tools.protoc -I . --python_out=OUT --pyi_out=OUT --grpc_python_out=OUT \
        slipway/oip/grpc_predict_v2.proto
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("slipway/oip/grpc_predict_v2.proto")
STUBS = tuple(
    PROTO.with_name(PROTO.stem + suffix) for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
)


def protoc_command(out: Path) -> list[str]:
    """The generator's command line, writing under `out` (paths mirror the repository's)."""
    return [
        sys.executable, "-m", "grpc_tools.protoc", "-I", ".",
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", str(PROTO),
    ]  # fmt: skip


def generate(out: Path) -> list[Path]:
    """Run protoc into `out`; the generated files' paths under it."""
    subprocess.run(protoc_command(out), cwd=ROOT, check=True, capture_output=True, text=True)
    return [out / stub for stub in STUBS]


def stale() -> list[str]:
    """The checked-in stubs that differ from a fresh generation (missing ones included)."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            str(stub)
            for stub in STUBS
            if not (ROOT / stub).is_file()
            or not filecmp.cmp(Path(tmp) / stub, ROOT / stub, shallow=False)
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Compare instead of writing.")
    args = parser.parse_args()
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            sys.stderr.write(f"{name} is out of date; run `make grpc-stubs`\n")
        return 1 if out_of_date else 0
    with tempfile.TemporaryDirectory() as tmp:
        for stub, made in zip(STUBS, generate(Path(tmp)), strict=True):
            shutil.copyfile(made, ROOT / stub)
            sys.stdout.write(f"wrote {stub}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
