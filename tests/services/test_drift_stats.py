"""Drift statistics and the rotation-aware log reader, on plain arrays and real files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from services.drift import stats
from services.drift.logreader import Position, RotatingLogReader

RNG = np.random.default_rng(7)


EDGES = np.linspace(0, 1, 21)


def binned(values: np.ndarray) -> np.ndarray:
    return stats.bin_counts(values, EDGES)


def test_psi_is_near_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    reference = binned(RNG.normal(0.3, 0.1, 5000))
    same = binned(RNG.normal(0.3, 0.1, 1000))
    scores = [
        stats.psi(reference, binned(RNG.normal(0.3 + d, 0.1, 1000))) for d in (0.05, 0.1, 0.2)
    ]
    assert stats.psi(reference, same) < 0.05
    assert scores == sorted(scores)
    assert scores[1] > 0.2, "a one-sigma shift must exceed the usual 0.2 threshold"
    assert scores[2] > 1.0


def test_psi_of_a_small_sample_with_empty_bins_stays_finite() -> None:
    reference = binned(RNG.uniform(0, 1, 5000))
    score = stats.psi(reference, binned(np.array([0.5, 0.51])))
    assert np.isfinite(score)
    assert 0.05 < score < 1.0, "smoothing keeps two values in one bin a bounded shift"
    assert stats.psi(reference, binned(np.full(200, 0.5))) > 2.0


def test_bins_are_prometheus_buckets_upper_edge_inclusive_and_outer_bins_open() -> None:
    counts = binned(np.array([0.0, 0.05, 0.0500001, 0.999, 1.0, 1.7, -0.2]))
    assert counts.sum() == 7 and len(counts) == 20
    assert counts[0] == 3  # -0.2, 0.0 and 0.05 (le="0.05")
    assert counts[1] == 1 and counts[-1] == 3


def test_categorical_psi_counts_unknown_labels_and_shifted_mixes() -> None:
    reference = {"a": 0.5, "b": 0.3, "c": 0.2}
    same = {"a": 50, "b": 30, "c": 20}
    assert stats.categorical_psi(reference, same, 1000) < 0.01
    assert stats.categorical_psi(reference, {"c": 100}, 1000) > 1.0
    unknown = stats.categorical_psi(reference, {**same, "zzz": 50}, 1000)
    assert unknown > 0.2


def test_a_class_the_small_reference_never_predicted_costs_little_when_rare() -> None:
    reference = {"a": 0.5, "b": 0.5, "c": 0.0}
    current = {"a": 48, "b": 49, "c": 3}
    assert stats.categorical_psi(reference, current, reference_n=70) < 0.1


def test_binned_ks_pvalue_separates_same_from_shifted() -> None:
    reference = binned(RNG.normal(0.3, 0.1, 3000))
    assert stats.binned_ks_pvalue(reference, binned(RNG.normal(0.3, 0.1, 500))) > 0.01
    assert stats.binned_ks_pvalue(reference, binned(RNG.normal(0.4, 0.1, 500))) < 1e-6
    assert np.isnan(stats.binned_ks_pvalue(reference, np.zeros(20)))


class RenamingLog:
    """Writes lines and rotates like the inference service: <path> -> <path>.1 -> <path>.2."""

    def __init__(self, path: Path, backups: int = 3) -> None:
        self.path, self.backups, self.n = path, backups, 0

    def write(self, count: int, partial: str = "") -> list[str]:
        lines = [f'{{"n": {self.n + i}}}' for i in range(count)]
        self.n += count
        with self.path.open("a") as handle:
            handle.write("".join(line + "\n" for line in lines) + partial)
        return lines

    def rotate(self) -> None:
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def test_reader_returns_only_new_complete_lines(tmp_path: Path) -> None:
    log = RenamingLog(tmp_path / "p.jsonl")
    reader = RotatingLogReader(log.path)
    assert reader.read_new() == []
    first = log.write(3, partial='{"n": "half')
    assert reader.read_new() == first
    assert reader.read_new() == []
    with log.path.open("a") as handle:
        handle.write('"}\n')
    assert reader.read_new() == ['{"n": "half"}']


@pytest.mark.parametrize("rotations", [1, 2])
def test_reader_follows_rotations_without_loss_or_repeats(tmp_path: Path, rotations: int) -> None:
    log = RenamingLog(tmp_path / "p.jsonl")
    reader = RotatingLogReader(log.path)
    first = log.write(4)
    assert reader.read_new() == first
    expected = log.write(2)
    for _ in range(rotations):
        log.rotate()
        expected += log.write(3)
    assert reader.read_new() == expected
    assert reader.lost == 0
    assert reader.read_new() == []


def test_reader_resumes_from_a_saved_position_after_rotation(tmp_path: Path) -> None:
    log = RenamingLog(tmp_path / "p.jsonl")
    reader = RotatingLogReader(log.path)
    reader.read_new()
    log.write(5)
    reader.read_new()
    saved = reader.position.to_dict()
    expected = log.write(1)
    log.rotate()
    expected += log.write(2)
    restarted = RotatingLogReader(log.path, Position.from_dict(saved))
    assert restarted.read_new() == expected


def test_reader_rereads_a_truncated_file(tmp_path: Path) -> None:
    log = RenamingLog(tmp_path / "p.jsonl")
    reader = RotatingLogReader(log.path)
    log.write(5)
    reader.read_new()
    log.path.write_text('{"n": "new"}\n')
    assert reader.read_new() == ['{"n": "new"}']


def test_reader_that_lost_its_file_reads_what_is_left_and_says_so(tmp_path: Path) -> None:
    log = RenamingLog(tmp_path / "p.jsonl", backups=1)
    reader = RotatingLogReader(log.path)
    log.write(2)
    reader.read_new()
    log.rotate()
    backup = log.write(2)
    log.rotate()  # the file the reader was in is gone now
    current = log.write(1)
    assert reader.read_new() == backup + current
    assert reader.lost == 1
