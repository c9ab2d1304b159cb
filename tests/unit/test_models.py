from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slipway.config.training import ARCHITECTURES
from slipway.errors import ModelError
from slipway.training.models import build_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_architecture_builds_and_runs(arch: str, channels: int) -> None:
    model = build_model(arch, num_classes=7, in_channels=channels).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, channels, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(ModelError, match="resnet18"):
        build_model("vgg-ish", 3)


def test_local_weights_adapt_stem_and_skip_mismatched_head(tmp_path: Path) -> None:
    source = build_model("resnet18", num_classes=10, in_channels=3)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = build_model("resnet18", num_classes=4, in_channels=1, weights_path=path)
    expected = source.conv1.weight.mean(dim=1, keepdim=True)
    assert torch.allclose(target.conv1.weight, expected)
    assert torch.equal(target.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert target.fc.out_features == 4


def test_missing_or_unrelated_weights_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        build_model("resnet18", 3, weights_path=tmp_path / "nope.pt")
    path = tmp_path / "other.pt"
    torch.save({"something.else": torch.zeros(3)}, path)
    with pytest.raises(ModelError, match="shares no parameters"):
        build_model("resnet18", 3, weights_path=path)
