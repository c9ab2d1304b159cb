"""torchvision classifiers by name, for any number of classes and 1 or 3 input channels.

Weights are never downloaded: pretrained weights come from a local file only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from slipway.config.training import ARCHITECTURES
from slipway.errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _factory(arch: str) -> Callable[..., torch.nn.Module]:
    import torchvision.models as tvm

    if arch not in ARCHITECTURES:
        raise ModelError(
            f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}"
        )
    return getattr(tvm, arch)


def _first_conv(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.Conv2d]:
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            return parent, attr, module
    raise ModelError("model has no Conv2d layer")


def _set_in_channels(model: torch.nn.Module, in_channels: int) -> None:
    import torch

    parent, attr, conv = _first_conv(model)
    if conv.in_channels == in_channels:
        return
    replacement = torch.nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    setattr(parent, attr, replacement)


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    weights_path: str | os.PathLike[str] | None = None,
) -> torch.nn.Module:
    """Build `arch` with a `num_classes` head and an `in_channels` stem.

    `weights_path` is a local state-dict file (for example torchvision's ImageNet weights copied
    into the cluster). Its stem is averaged to one channel for grayscale inputs and its head is
    skipped when the class count differs.
    """
    if num_classes < 2:
        raise ModelError("num_classes must be at least 2")
    if in_channels not in (1, 3):
        raise ModelError("in_channels must be 1 or 3")
    model = _factory(arch)(weights=None, num_classes=num_classes)
    _set_in_channels(model, in_channels)
    if weights_path is not None:
        load_pretrained(model, weights_path)
    return model


def load_pretrained(model: torch.nn.Module, weights_path: str | os.PathLike[str]) -> None:
    """Load a local state dict, adapting the stem and skipping a mismatched head."""
    import torch

    if not os.path.isfile(weights_path):
        raise ModelError(f"weights file not found: {weights_path}")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read weights from {weights_path}: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    own = model.state_dict()
    usable: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        if key not in own:
            skipped.append(key)
            continue
        target = own[key]
        if value.shape == target.shape:
            usable[key] = value
        elif value.dim() == 4 and value.shape[1] == 3 and target.shape[1] == 1:
            usable[key] = value.mean(dim=1, keepdim=True)
        else:
            skipped.append(key)
    if not usable:
        raise ModelError(f"{weights_path} shares no parameters with this architecture")
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s, skipped %d", len(usable), weights_path, len(skipped))


def load_trained(model_dir: str | os.PathLike[str], device: str = "cpu") -> torch.nn.Module:
    """Rebuild the model of a slipway model folder from its card and weights, in eval mode."""
    import torch

    from slipway.contract.card import WEIGHTS_FILE, load_card

    card = load_card(model_dir)
    prep = card.transform
    model = build_model(card.arch, card.num_classes, prep.channels)
    weights = os.path.join(model_dir, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise ModelError(f"{model_dir} has no {WEIGHTS_FILE}")
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device).eval()
