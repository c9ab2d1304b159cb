"""The search space: validation before anything runs, and reproducible trials."""

from __future__ import annotations

import pytest

from slipway.config.experiment import load_experiment
from slipway.config.search import SearchConfig
from slipway.errors import ConfigError
from slipway.search.space import search_key, suggest, trial_key, trial_training

BAD_SPACES = [
    ("{training.lr: {choice: []}}", "search.space.training.lr", "choice is empty"),
    ("{training.lr: {low: 0.1, high: 0.01}}", "search.space.training.lr", "low (0.1) > high"),
    ("{training.lr: {low: 0, high: 1, log: true}}", "training.lr", "log range needs low > 0"),
    ("{training.learning_rate: {value: 1}}", "training.learning_rate", "unknown parameter"),
    ("{model.name: {choice: [a, b]}}", "model.name", "unknown parameter"),
    ("{training.arch: {choice: [resnet18, vgg]}}", "training.arch", "'vgg' is not a valid"),
    ("{training.lr: {low: 0.1}}", "training.lr", "needs both low and high"),
    ("{training.lr: {choice: [1], value: 1}}", "training.lr", "exactly one of"),
]


@pytest.mark.parametrize(("space", "key", "message"), BAD_SPACES)
def test_a_bad_space_is_one_error_naming_the_key(space: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_experiment(None, [f"search.space={space}"])
    text = str(caught.value)
    assert len(text.splitlines()) == 1, text
    assert key in text and message in text


def _search(method: str, **extra: object) -> SearchConfig:
    space = {
        "training.lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "training.batch_size": {"choice": [16, 32, 64]},
        "training.epochs": {"low": 1, "high": 4, "type": "int"},
        "training.arch": {"value": "resnet18"},
    }
    return SearchConfig.model_validate({"method": method, "space": space, **extra})


def test_grid_is_every_combination_in_order_up_to_n_trials() -> None:
    search = SearchConfig.model_validate(
        {
            "method": "grid",
            "n_trials": 100,
            "grid_points": 3,
            "space": {
                "training.lr": {"low": 1e-3, "high": 1e-1, "log": True},
                "training.augment": {"choice": [True, False]},
            },
        }
    )
    trials = suggest(search, 0)
    assert len(trials) == 6
    lrs = sorted({t["params"]["training.lr"] for t in trials})
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1])
    assert trials[0]["params"] == {"training.lr": pytest.approx(1e-3), "training.augment": True}
    assert [t["index"] for t in trials] == list(range(6))


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_the_same_seed_gives_the_same_trials_within_bounds(method: str) -> None:
    search = _search(method, n_trials=6, seed=7)
    first, again = suggest(search, 0), suggest(search, 0)
    assert first == again
    other = suggest(_search(method, n_trials=6, seed=8), 0)
    assert other != first
    for trial in first:
        params = trial["params"]
        assert 1e-4 <= params["training.lr"] <= 1e-1
        assert params["training.batch_size"] in (16, 32, 64)
        assert isinstance(params["training.epochs"], int) and 1 <= params["training.epochs"] <= 4
        assert params["training.arch"] == "resnet18"
    signatures = {tuple(sorted(t["params"].items())) for t in first}
    assert len(signatures) == len(first)  # no parameter set twice


def test_random_rounds_are_slices_of_one_draw() -> None:
    whole = suggest(_search("random", n_trials=4), 0)
    rounds = _search("random", n_trials=4, rounds=2)
    split = suggest(rounds, 0) + suggest(rounds, 1)
    assert [t["params"] for t in split] == [t["params"] for t in whole]
    assert [t["round"] for t in split] == [0, 0, 1, 1]
    assert [t["index"] for t in split] == [0, 1, 2, 3]


def test_tpe_later_rounds_are_conditioned_on_the_earlier_results() -> None:
    search = SearchConfig.model_validate(
        {
            "method": "tpe",
            "n_trials": 12,
            "rounds": 2,
            "seed": 3,
            "objective": "val_loss",
            "space": {"training.lr": {"low": 1e-4, "high": 1.0, "log": True}},
        }
    )
    first = suggest(search, 0)
    assert len(first) == 6

    def finished(loss_of) -> list[dict]:
        rows = []
        for trial in first:
            lr = trial["params"]["training.lr"]
            rows.append({**trial, "status": "completed", "val_loss": loss_of(lr)})
        return rows

    small_is_good = suggest(search, 1, finished(lambda lr: lr))
    large_is_good = suggest(search, 1, finished(lambda lr: 1 / lr))
    assert [t["index"] for t in small_is_good] == list(range(6, 12))
    assert small_is_good == suggest(search, 1, finished(lambda lr: lr))  # reproducible
    low = sorted(t["params"]["training.lr"] for t in small_is_good)
    high = sorted(t["params"]["training.lr"] for t in large_is_good)
    assert low[len(low) // 2] < high[len(high) // 2]


def test_tpe_replays_pruned_and_failed_trials() -> None:
    search = _search("tpe", n_trials=4, rounds=2)
    first = suggest(search, 0)
    history = [
        {**first[0], "status": "completed", "val_accuracy": 0.8},
        {**first[1], "status": "pruned", "val_accuracy": 0.1, "epochs_run": 1},
    ]
    second = suggest(search, 1, history)
    assert [t["index"] for t in second] == [2, 3]


def test_trial_key_follows_what_is_trained_not_where() -> None:
    base = {"epochs": 2, "device": "cpu"}
    one = trial_training(base, {"training.lr": 0.01})
    assert one.lr == 0.01 and one.epochs == 2
    same_elsewhere = trial_training(
        {**base, "device": "cuda", "num_workers": 4}, {"training.lr": 0.01}
    )
    assert trial_key(one, "data-a") == trial_key(same_elsewhere, "data-a")
    assert trial_key(one, "data-a") != trial_key(one, "data-b")
    assert trial_key(one, "data-a") != trial_key(
        trial_training(base, {"training.lr": 0.02}), "data-a"
    )
    search = _search("random")
    more_trials = _search("random", n_trials=20, parallelism=5)
    assert search_key(search, base, "d") == search_key(more_trials, base, "d")
    assert search_key(search, base, "d") != search_key(_search("random", seed=1), base, "d")


def test_the_order_of_the_space_in_the_file_does_not_matter() -> None:
    lr = {"choice": [0.1, 0.2]}
    wd = {"choice": [0.0, 1e-4]}
    one = SearchConfig.model_validate(
        {"method": "grid", "space": {"training.lr": lr, "training.weight_decay": wd}}
    )
    other = SearchConfig.model_validate(
        {"method": "grid", "space": {"training.weight_decay": wd, "training.lr": lr}}
    )
    assert suggest(one, 0) == suggest(other, 0)
    assert [t["params"]["training.lr"] for t in suggest(one, 0)] == [0.1, 0.1, 0.2, 0.2]
