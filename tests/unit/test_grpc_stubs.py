"""The checked-in gRPC stubs are what `make grpc-stubs` generates from the project's .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_grpc.py"


def test_checked_in_stubs_match_a_fresh_generation() -> None:
    pytest.importorskip("grpc_tools")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_check_notices_a_stale_stub(tmp_path: Path) -> None:
    """Run the checker on a copy of the repository's relevant files with one stub changed."""
    pytest.importorskip("grpc_tools")
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    (copy / "slipway" / "oip").mkdir(parents=True)
    (copy / "scripts" / "gen_grpc.py").write_text(SCRIPT.read_text())
    for source in (ROOT / "slipway" / "oip").glob("grpc_predict_v2*"):
        (copy / "slipway" / "oip" / source.name).write_bytes(source.read_bytes())
    stub = copy / "slipway" / "oip" / "grpc_predict_v2_pb2_grpc.py"
    stub.write_text(stub.read_text().replace("ModelInfer", "ModelInference", 1))
    result = subprocess.run(
        [sys.executable, str(copy / "scripts" / "gen_grpc.py"), "--check"],
        cwd=copy, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert "grpc_predict_v2_pb2_grpc.py is out of date" in result.stderr
    assert "grpc_predict_v2_pb2.py " not in result.stderr


def test_the_service_matches_the_protocol_names() -> None:
    """The method paths clients call (package, service, methods) are the protocol's."""
    proto = (ROOT / "slipway" / "oip" / "grpc_predict_v2.proto").read_text()
    assert "package inference;" in proto and "service GRPCInferenceService" in proto
    for rpc in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                "ModelInfer"):  # fmt: skip
        assert f"rpc {rpc}({rpc}Request) returns ({rpc}Response)" in proto
