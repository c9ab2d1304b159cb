"""Training checkpoints: atomic writes, the identity check before resuming, and RNG states.

A checkpoint holds everything a killed run needs to continue as if it had never stopped,
including every process's random number generator states under DDP.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slipway.errors import ModelError

# Fields that must match for a checkpoint to be resumed rather than refused.
IDENTITY = ("arch", "image_size", "channels", "batch_size", "seed", "lr", "weight_decay")


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary name and rename: a kill mid-write leaves the old file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def check_resumable(state: dict[str, Any], config: dict[str, Any], fingerprint: str) -> None:
    """Refuse a checkpoint written by a different run (other knobs or other data)."""
    saved = state["config"]
    changed = [k for k in IDENTITY if saved.get(k) != config.get(k)]
    if state.get("fingerprint") != fingerprint:
        changed.append("dataset fingerprint")
    if changed:
        raise ModelError(
            f"the checkpoint was written by a different run ({', '.join(changed)} differ); "
            "use another output folder or delete the checkpoint to start over"
        )


def rng_state() -> dict[str, Any]:
    """Global RNG states (dropout draws from them), so a resumed run repeats a fresh one."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(saved: dict[str, Any] | list[dict[str, Any]], rank: int = 0) -> None:
    """Restore this rank's states; checkpoints hold one entry per rank (older ones a dict)."""
    states = saved if isinstance(saved, list) else [saved]
    state = states[rank % len(states)]
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
