"""DistributedDataParallel under a real `torchrun` (gloo, 2 CPU processes) against one process.

What must match and why: `batch_size` is global, and the 2 ranks take the two halves of the
batch one process takes, with the same per-image mirroring. DDP averages the two half-batch
gradients, which is the full-batch gradient. So losses and weights agree up to float summation
order, provided nothing normalises per rank: BatchNorm in training mode would use per-rank
batch statistics (PyTorch has no SyncBatchNorm on CPU; on CUDA slipway converts to it). These
tests therefore train with `freeze_batchnorm=True` and resnet18 (no dropout).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slipway.config.training import TrainConfig
from slipway.contract.preprocessing import Preprocessing
from slipway.errors import SlipwayError
from slipway.training.datasets import normalize_batch
from slipway.training.launch import LaunchError, run_training
from slipway.training.loop import TrainResult, train

TINY = dict(
    arch="resnet18",
    epochs=2,
    batch_size=16,
    image_size=16,
    max_batches_per_epoch=2,
    freeze_batchnorm=True,
    seed=3,
    lr=5e-4,
)


@pytest.mark.parametrize("channels", [1, 3])
def test_device_normalisation_is_bit_identical_to_the_serving_transform(channels: int) -> None:
    prep = Preprocessing(
        24, channels, mean=(0.2, 0.5, 0.7)[:channels], std=(0.3, 0.25, 0.2)[:channels]
    )
    rng = np.random.default_rng(0)
    mode = "L" if channels == 1 else "RGB"
    shape = (5, 30, 30) if channels == 1 else (5, 30, 30, 3)
    images = [Image.fromarray(a, mode) for a in rng.integers(0, 256, shape, dtype=np.uint8)]
    pixels = np.stack([np.asarray(prep.resize(im)) for im in images])
    expected = np.stack([prep(im) for im in images])
    got = normalize_batch(torch.from_numpy(pixels), prep).numpy()
    np.testing.assert_array_equal(got, expected)
    last = normalize_batch(torch.from_numpy(pixels), prep, channels_last=True)
    assert last.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(last.numpy(), expected)


def test_two_ranks_take_the_two_halves_of_each_single_process_batch() -> None:
    dataset = list(range(103))

    def batches(world: int, rank: int, per_rank: int) -> list[list[int]]:
        sampler = torch.utils.data.DistributedSampler(dataset, world, rank, seed=7)
        sampler.set_epoch(4)
        return list(torch.utils.data.BatchSampler(sampler, per_rank, drop_last=False))

    single = batches(1, 0, 16)
    rank0, rank1 = batches(2, 0, 8), batches(2, 1, 8)
    assert len(rank0) == len(rank1)
    for step in range(len(single) - 1):  # the last batch is padded by DistributedSampler
        assert sorted(rank0[step] + rank1[step]) == sorted(single[step])


def _history(result: TrainResult) -> list[tuple[float, float]]:
    return [(h.train_loss, h.val_loss) for h in result.history]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pt", weights_only=True)


def _assert_same_training(a: TrainResult, b: TrainResult) -> None:
    assert [h.epoch for h in a.history] == [h.epoch for h in b.history]
    for (ta, va), (tb, vb) in zip(_history(a), _history(b), strict=True):
        assert ta == pytest.approx(tb, rel=1e-4)
        assert va == pytest.approx(vb, rel=1e-4)
    # Adam divides by the gradient's own scale, so weights whose gradient is ~0 amplify
    # summation-order noise; compare all weights together, relative to their size.
    wa, wb = _weights(a.model_dir), _weights(b.model_dir)
    keys = [k for k in wa if wa[k].is_floating_point()]
    diff = sum(((wa[k].double() - wb[k].double()) ** 2).sum() for k in keys) ** 0.5
    size = sum((wa[k].double() ** 2).sum() for k in keys) ** 0.5
    assert diff / size < 1e-4, f"weights differ by {diff / size:.2e} of their norm"


@pytest.fixture(scope="module")
def ddp_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("ddp") / "model"
    return run_training(demo_data, out, TrainConfig(**TINY), gpus_per_node=2)


@pytest.mark.slow
def test_two_processes_train_like_one(
    ddp_run: TrainResult, demo_data: Path, tmp_path: Path
) -> None:
    single = train(demo_data, tmp_path / "single", TrainConfig(**TINY))
    _assert_same_training(ddp_run, single)
    assert ddp_run.card.training["world_size"] == 2
    assert ddp_run.card.metrics["val_loss"] == pytest.approx(single.card.metrics["val_loss"])
    state = torch.load(ddp_run.model_dir / "checkpoints" / "last.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG kept
    assert (ddp_run.model_dir / "reference.json").is_file()
    assert not any("module." in key for key in _weights(ddp_run.model_dir))


# Every rank of this script stops right after epoch 1 has been checkpointed, as if the job's
# pods were killed there.
KILLED_AFTER_EPOCH_1 = """
import sys
from slipway.config.training import TrainConfig
from slipway.training.loop import train

class Killed(Exception):
    pass

def on_epoch(result):
    if result.epoch == 1:
        raise Killed

try:
    train(sys.argv[1], sys.argv[2], TrainConfig(**{config}), on_epoch=on_epoch)
except Killed:
    sys.exit(3)
"""


@pytest.mark.slow
def test_killed_ddp_run_resumes_exactly_on_two_or_one_processes(
    ddp_run: TrainResult, demo_data: Path, tmp_path: Path
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_AFTER_EPOCH_1.format(config=repr(TINY)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node=2", str(script), str(demo_data), str(tmp_path / "m")]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert killed.returncode != 0
    state = torch.load(tmp_path / "m" / "checkpoints" / "last.pt", weights_only=False)
    assert state["epoch"] == 1
    shutil.copytree(tmp_path / "m", tmp_path / "copy")

    resumed = run_training(demo_data, tmp_path / "m", TrainConfig(**TINY), gpus_per_node=2)
    assert resumed.resumed_from_epoch == 1
    _assert_same_training(resumed, ddp_run)
    # The same checkpoint resumed by one process: the global batch does not change.
    single = train(demo_data, tmp_path / "copy", TrainConfig(**TINY))
    assert single.resumed_from_epoch == 1
    _assert_same_training(single, ddp_run)


@pytest.mark.slow
def test_a_failing_run_reports_its_error_in_one_line(demo_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "weights_path": str(tmp_path / "missing.pt")})
    with pytest.raises(LaunchError, match=r"status \d+: error: weights file not found"):
        run_training(demo_data, tmp_path / "m", config, gpus_per_node=2)


def test_batch_must_split_evenly_over_processes(demo_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "batch_size": 15})
    with pytest.raises(SlipwayError, match="batch_size 15 must be divisible"):
        run_training(demo_data, tmp_path / "m", config, gpus_per_node=2)
    assert not (tmp_path / "m").exists()  # refused before any process started


def test_cli_refuses_a_batch_that_does_not_split_in_one_line(
    demo_data: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-c", "from slipway.cli import main; main()", "train"]
    command += ["--data", str(demo_data), "--out", str(tmp_path / "m")]
    command += ["--gpus-per-node", "3", "--set", "training.batch_size=64"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "batch_size 64 must be divisible by the number of processes" in result.stderr
    assert "Traceback" not in result.stderr
