"""Canary and shadow traffic inside the service, against the real app and real ONNX models.

The candidate is the staging slot: the trained model with another normalisation mean in its
card, so it is another version whose top-1 class differs from production's on some images.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.inference.variants import VARIANT_HEADER, VERSION_HEADER, sticky_share
from tests.helpers import eventually
from tests.services.inference_helpers import metric_value, ready_client, settings_for

KEY = "X-Slipway-Client-Key"
REQUESTS = "slipway_inference_requests_total"


@pytest.fixture(scope="module")
def candidate(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model preprocessing with another mean: another version, other answers."""
    target = tmp_path_factory.mktemp("candidate") / "model"
    shutil.copytree(trained_model, target, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
    card_path = target / "model_card.json"
    card = json.loads(card_path.read_text())
    card["preprocessing"]["mean"] = [0.6]
    card_path.write_text(json.dumps(card))
    return target


@pytest.fixture(scope="module")
def pngs(image_paths: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in image_paths]


@pytest.fixture(scope="module")
def canary(
    trained_model: Path, candidate: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    log = tmp_path_factory.mktemp("canary") / "predictions.jsonl"
    settings = settings_for(
        trained_model,
        staging_source=str(candidate),
        canary_mode="canary",
        canary_weight=0.2,
        prediction_log_path=str(log),
    )
    with ready_client(settings) as client:
        client.app.state.log_path = log
        yield client


def _raw(client: TestClient, png: bytes, **headers: str):
    response = client.post("/v1/predict", content=png, headers={"Content-Type": "image/png",
                                                                 **headers})  # fmt: skip
    assert response.status_code == 200, response.text
    return response


def _records(path: Path, count: int) -> list[dict]:
    eventually(lambda: path.exists() and len(path.read_text().splitlines()) >= count, 10)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_fifth_of_default_route_traffic_goes_to_the_candidate(
    canary: TestClient, pngs: list[bytes], trained_model: Path, candidate: Path
) -> None:
    service = canary.app.state.service
    name = service.main.name
    service.variants.rng.seed(16)
    answers = [_raw(canary, pngs[n % len(pngs)]) for n in range(500)]
    variants = [a.headers[VARIANT_HEADER] for a in answers]
    to_canary = variants.count("canary")
    assert 75 <= to_canary <= 125, to_canary  # 15-25 % of 500
    assert variants.count("production") == 500 - to_canary
    versions = {v: {a.headers[VERSION_HEADER] for a, w in zip(answers, variants, strict=True)
                    if w == v} for v in ("production", "canary")}  # fmt: skip
    assert versions["production"] == {service.main.current.version}
    assert versions["canary"] == {service.slots[f"{name}-staging"].current.version}
    assert versions["canary"] != versions["production"]
    for answer, variant in zip(answers, variants, strict=True):
        assert answer.json()["model"] == (name if variant == "production" else f"{name}-staging")

    text = canary.get("/metrics").text
    route = {"route": "/v1/predict", "code": "2xx"}
    assert metric_value(text, REQUESTS, model=f"{name}-staging", variant="canary", **route) == (
        to_canary
    )
    assert (
        metric_value(text, REQUESTS, model=name, variant="production", **route) == 500 - to_canary
    )
    assert metric_value(text, "slipway_inference_canary_weight", model=name) == 0.2
    traffic = canary.get("/v1/models").json()["traffic"]
    assert traffic == {"mode": "canary", "weight": 0.2, "share": 0.2, "candidate_ready": True,
                       "candidate": f"{name}-staging", "client_key_header": KEY}  # fmt: skip

    records = _records(canary.app.state.log_path, 500)[-500:]
    logged = [r["variant"] for r in records]
    assert logged.count("canary") == to_canary
    assert {(r["model"], r["version"]) for r in records if r["variant"] == "canary"} == {
        (f"{name}-staging", *versions["canary"])
    }


def test_a_client_key_always_gets_the_same_variant(canary: TestClient, pngs: list[bytes]) -> None:
    keys = [f"client-{n}" for n in range(40)]
    expected = {k: "canary" if sticky_share(k) < 0.2 else "production" for k in keys}
    assert set(expected.values()) == {"canary", "production"}
    for _ in range(3):
        for key in keys:
            assert _raw(canary, pngs[0], **{KEY: key}).headers[VARIANT_HEADER] == expected[key]
    # A request by name or for a pinned version is never split.
    name = canary.app.state.service.main.name
    canary_key = next(k for k, v in expected.items() if v == "canary")
    by_name = canary.post("/v1/predict", params={"model": name}, content=pngs[0],
                          headers={"Content-Type": "image/png", KEY: canary_key})  # fmt: skip
    assert by_name.headers[VARIANT_HEADER] == "canary"  # the main model's name is the default route
    version = canary.app.state.service.main.current.version
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [
        __import__("base64").b64encode(pngs[0]).decode()]}]}  # fmt: skip
    pinned = canary.post(f"/v2/models/{name}/versions/{version}/infer", json=body,
                         headers={KEY: canary_key})  # fmt: skip
    assert pinned.status_code == 200 and pinned.headers[VARIANT_HEADER] == "production"
    staged = canary.post(f"/v2/models/{name}-staging/infer", json=body)
    assert staged.headers[VARIANT_HEADER] == "canary" and staged.json()["model_name"].endswith(
        "-staging"
    )


def test_kserve_v1_and_oip_rest_honour_the_canary(canary: TestClient, pngs: list[bytes]) -> None:
    import base64

    name = canary.app.state.service.main.name
    keys = [f"k{n}" for n in range(60)]
    to_canary = next(k for k in keys if sticky_share(k) < 0.2)
    to_production = next(k for k in keys if sticky_share(k) >= 0.2)
    image = base64.b64encode(pngs[1]).decode()
    before = canary.get("/metrics").text
    oip = {"id": "x", "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                  "data": [image]}]}  # fmt: skip
    kserve = {"instances": [{"b64": image}]}
    for key, variant, model in ((to_canary, "canary", f"{name}-staging"),
                                (to_production, "production", name)):  # fmt: skip
        v2 = canary.post(f"/v2/models/{name}/infer", json=oip, headers={KEY: key})
        assert v2.status_code == 200 and v2.headers[VARIANT_HEADER] == variant
        assert v2.json()["model_name"] == model
        assert v2.json()["model_version"] == v2.headers[VERSION_HEADER]
        v1 = canary.post(f"/v1/models/{name}:predict", json=kserve, headers={KEY: key})
        assert v1.status_code == 200, v1.text
        assert v1.headers[VARIANT_HEADER] == variant
    after = canary.get("/metrics").text
    for route in ("/v2/models/{name}/infer", "/v1/models/{name}:predict"):
        for model, variant in ((f"{name}-staging", "canary"), (name, "production")):
            labels = {"model": model, "variant": variant, "route": route, "code": "2xx"}
            grew = metric_value(after, REQUESTS, **labels) - metric_value(
                before, REQUESTS, **labels
            )
            assert grew == 1, (route, model)


def test_shadow_answers_as_production_and_counts_agreement(
    trained_model: Path, candidate: Path, pngs: list[bytes]
) -> None:
    images = pngs[:24]
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [None]}]}

    def infer(client: TestClient, name: str, png: bytes) -> bytes:
        import base64

        body["id"] = "same-id"
        body["inputs"][0]["data"] = [base64.b64encode(png).decode()]
        response = client.post(f"/v2/models/{name}/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.headers[VARIANT_HEADER] == "production"
        return response.content

    # One backend for both: `auto` measures at load and may pick another one each time.
    with ready_client(settings_for(trained_model, backend="onnxruntime")) as plain:
        name = plain.app.state.service.main.name
        want = [infer(plain, name, png) for png in images]
    shadow = settings_for(
        trained_model, staging_source=str(candidate), canary_mode="shadow", backend="onnxruntime"
    )
    with ready_client(shadow) as client:
        got = [infer(client, name, png) for png in images]
        assert got == want  # byte for byte what production alone answers

        def top(response: bytes) -> tuple[str, float]:
            outputs = {o["name"]: o["data"] for o in json.loads(response)["outputs"]}
            probs = np.asarray(outputs["probabilities"])
            return outputs["label"][0], float(probs.max())

        staged = [top(infer_staging(client, name, png)) for png in images]
        prod = [top(r) for r in want]
        agree = sum(s[0] == p[0] for s, p in zip(staged, prod, strict=True))
        assert 0 < agree < len(images), "the candidate should disagree on some images"

        def counted() -> bool:
            text = client.get("/metrics").text
            results = ("agree", "disagree")
            return sum(metric_value(text, SHADOW, result=r) for r in results) == len(images)

        eventually(counted, 20)
        text = client.get("/metrics").text
        assert metric_value(text, SHADOW, model=name, result="agree") == agree
        assert metric_value(text, SHADOW, model=name, result="disagree") == len(images) - agree
        assert metric_value(text, SHADOW, result="error") == 0
        assert metric_value(text, SHADOW, result="shed") == 0
        delta = "slipway_inference_shadow_confidence_delta"
        assert metric_value(text, delta + "_count", model=name) == len(images)
        # Negative observations: the histogram has buckets but no _sum (OpenMetrics).
        deltas = [s[1] - p[1] for s, p in zip(staged, prod, strict=True)]
        below = metric_value(text, delta + "_bucket", model=name, le="0.0")
        assert sum(d <= -1e-4 for d in deltas) <= below <= sum(d <= 1e-4 for d in deltas)
        assert 0 < below < len(images) or len({d > 0 for d in deltas}) == 1
        assert metric_value(text, "slipway_inference_canary_weight", model=name) == 0
        # The copies are no requests: the candidate's only requests are those sent by name.
        by_name = {"variant": "canary", "route": "/v2/models/{name}/infer"}
        assert metric_value(text, REQUESTS, **by_name) == len(images)


SHADOW = "slipway_inference_shadow_requests_total"


def infer_staging(client: TestClient, name: str, png: bytes) -> bytes:
    import base64

    body = {"id": "s", "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(png).decode()]}]}  # fmt: skip
    response = client.post(f"/v2/models/{name}-staging/infer", json=body)
    assert response.status_code == 200 and response.headers[VARIANT_HEADER] == "canary"
    return response.content


def test_shadow_copies_beyond_the_budget_are_shed(
    trained_model: Path, candidate: Path, pngs: list[bytes]
) -> None:
    """A queue of one image leaves shadow copies no room (half the queue): each is shed."""
    settings = settings_for(
        trained_model, staging_source=str(candidate), canary_mode="shadow", max_queue=1
    )
    with ready_client(settings) as client:
        name = client.app.state.service.main.name
        for png in pngs[:5]:
            assert _raw(client, png).headers[VARIANT_HEADER] == "production"
        text = client.get("/metrics").text
        assert metric_value(text, SHADOW, model=name, result="shed") == 5
        assert metric_value(text, SHADOW, model=name, result="agree") == 0
        assert metric_value(text, SHADOW, model=name, result="disagree") == 0


@pytest.mark.parametrize("mode", ["canary", "shadow"])
def test_without_a_ready_candidate_everything_goes_to_production(
    trained_model: Path, tmp_path: Path, pngs: list[bytes], mode: str
) -> None:
    settings = settings_for(
        trained_model,
        staging_source=str(tmp_path / "nowhere"),
        canary_mode=mode,
        canary_weight=1.0,
    )
    with ready_client(settings, all_models=False) as client:
        name = client.app.state.service.main.name
        for n in range(20):
            answer = _raw(client, pngs[n % len(pngs)], **{KEY: f"c{n}"})
            assert answer.headers[VARIANT_HEADER] == "production"
            assert answer.json()["model"] == name
        text = client.get("/metrics").text
        assert metric_value(text, REQUESTS, model=name, variant="production", code="2xx") == 20
        assert metric_value(text, REQUESTS, variant="canary") == 0
        assert metric_value(text, REQUESTS, code="5xx") == 0
        assert metric_value(text, "slipway_inference_canary_weight", model=name) == 0
        assert metric_value(text, SHADOW) == 0
        traffic = client.get("/v1/models").json()["traffic"]
        assert (traffic["candidate_ready"], traffic["share"]) == (False, 0.0)


def test_canary_needs_a_candidate() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="canary_mode=canary needs staging_source"):
        settings_for(".", canary_mode="canary")
    with pytest.raises(ValidationError):
        settings_for(".", canary_mode="canary", staging_source=".", canary_weight=1.5)
