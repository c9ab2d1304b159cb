"""Trial parameter sets from a search space: grid, random, and Optuna's TPE in rounds.

A trial is `{"index": i, "round": r, "params": {"training.lr": 0.001, ...}}`. Grid and random
draw every trial up front from the seed and hand each round its slice, so the trials do not
depend on how they are split into rounds. TPE asks Optuna for each round's trials after
replaying every finished trial of the earlier rounds (`history`) into an in-memory study, so
later rounds are conditioned on earlier results and the same seed and history give the same
trials. Parameter sets never repeat within a search: a repeat would train the same model twice.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from slipway.config.search import ParamSpace, SearchConfig
from slipway.config.training import TrainConfig

MAX_REDRAWS = 100
RUNTIME_ONLY = ("device", "num_workers", "cache_dir", "prefetch_factor")


def _plain(value: Any) -> Any:
    """numpy scalars to Python values (JSON, MLflow params, pipeline parameters)."""
    return value.item() if hasattr(value, "item") else value


def grid_values(param: ParamSpace, points: int) -> list[Any]:
    """The values a grid takes for one parameter."""
    if param.kind == "choice":
        return list(param.choice or [])
    if param.kind == "value":
        return [param.value]
    low, high = param.bounds()
    if low == high:
        return [low]
    if param.log:
        raw = [
            math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (points - 1))
            for i in range(points)
        ]
    else:
        raw = [low + i * (high - low) / (points - 1) for i in range(points)]
    if param.type == "int":
        return sorted({round(v) for v in raw})
    return raw


def _draw(param: ParamSpace, rng: Any) -> Any:
    if param.kind == "choice":
        choices = list(param.choice or [])
        return choices[int(rng.integers(len(choices)))]
    if param.kind == "value":
        return param.value
    low, high = param.bounds()
    if param.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return min(max(round(value), low), high) if param.type == "int" else float(value)


def _signature(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def all_trials(search: SearchConfig) -> list[dict[str, Any]]:
    """Every trial of a grid or random search, in order (at most n_trials, no repeats)."""
    import numpy as np

    keys = list(search.space)
    if search.method == "grid":
        combos = itertools.product(
            *(grid_values(search.space[k], search.grid_points) for k in keys)
        )
        sets = [dict(zip(keys, combo, strict=True)) for combo in combos]
    else:
        rng = np.random.default_rng(search.seed)
        sets, seen = [], set()
        for _ in range(search.n_trials * MAX_REDRAWS):
            if len(sets) == search.n_trials:
                break
            params = {k: _plain(_draw(search.space[k], rng)) for k in keys}
            if _signature(params) not in seen:
                seen.add(_signature(params))
                sets.append(params)
    return [{"index": i, "params": p} for i, p in enumerate(sets[: search.n_trials])]


def distributions(search: SearchConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna distributions of the searched parameters, and the fixed values."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    dists: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    for key, param in search.space.items():
        if param.kind == "value":
            fixed[key] = param.value
        elif param.kind == "choice":
            dists[key] = CategoricalDistribution(list(param.choice or []))
        elif param.type == "int":
            low, high = param.bounds()
            dists[key] = IntDistribution(int(low), int(high), log=param.log)
        else:
            dists[key] = FloatDistribution(param.low, param.high, log=param.log)  # type: ignore[arg-type]
    return dists, fixed


def _replay(study: Any, search: SearchConfig, history: list[dict[str, Any]], dists: dict) -> None:
    """Finished trials into the study: completed with their value, pruned with their last
    epoch's value as an intermediate value, failed as failed (TPE ignores those)."""
    from optuna.trial import TrialState, create_trial

    for done in sorted(history, key=lambda t: t["index"]):
        params = {k: done["params"][k] for k in dists if k in done["params"]}
        if len(params) != len(dists):
            continue
        value = done.get(search.objective)
        status = done.get("status")
        if status == "completed" and value is not None:
            trial = create_trial(params=params, distributions=dists, value=float(value))
        elif status == "pruned" and value is not None:
            epoch = int(done.get("epochs_run") or 1)
            trial = create_trial(
                params=params,
                distributions=dists,
                state=TrialState.PRUNED,
                intermediate_values={epoch: float(value)},
            )
        else:
            trial = create_trial(params=params, distributions=dists, state=TrialState.FAIL)
        study.add_trial(trial)


def tpe_round(
    search: SearchConfig, round_index: int, history: list[dict[str, Any]], count: int, first: int
) -> list[dict[str, Any]]:
    """`count` TPE trials for one round, conditioned on `history`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists, fixed = distributions(search)
    sampler = optuna.samplers.TPESampler(
        seed=search.seed + round_index,
        n_startup_trials=search.trials_per_round(),
        constant_liar=True,
    )
    study = optuna.create_study(
        direction="maximize" if search.maximize else "minimize", sampler=sampler
    )
    _replay(study, search, history, dists)
    seen = {_signature(t["params"]) for t in history}
    trials: list[dict[str, Any]] = []
    for _ in range(count * MAX_REDRAWS):
        if len(trials) == count:
            break
        asked = study.ask(dists)
        params = {**{k: _plain(v) for k, v in asked.params.items()}, **fixed}
        params = {k: params[k] for k in search.space}
        if _signature(params) in seen:
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
            continue
        seen.add(_signature(params))
        trials.append({"index": first + len(trials), "params": params})
    return trials


def suggest(
    search: SearchConfig, round_index: int, history: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The trials of round `round_index` (0-based); `history` holds the earlier rounds'."""
    history = history or []
    per_round = search.trials_per_round()
    first = round_index * per_round
    count = max(0, min(per_round, search.n_trials - first))
    if search.method == "tpe":
        trials = tpe_round(search, round_index, history, count, first)
    else:
        trials = all_trials(search)[first : first + count]
    return [{**t, "round": round_index} for t in trials]


def trial_training(base: dict[str, Any], params: dict[str, Any]) -> TrainConfig:
    """The training section of one trial: the experiment's, with the trial's parameters."""
    tree = dict(base)
    for key, value in params.items():
        tree[key.split(".", 1)[1]] = value
    return TrainConfig.model_validate(tree)


def trial_key(training: TrainConfig, fingerprint: str) -> str:
    """Identity of a trial: what it trains (settings that change the model) on which data."""
    import hashlib

    settings = training.model_dump(mode="json", exclude=set(RUNTIME_ONLY))
    text = json.dumps({"training": settings, "data": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def search_key(search: SearchConfig, training: dict[str, Any], fingerprint: str) -> str:
    """Identity of a search: rerunning the same one (more trials allowed) reopens its run."""
    import hashlib

    tree = search.model_dump(mode="json", exclude={"n_trials", "parallelism"})
    base = trial_training(training, {})
    tree["training"] = base.model_dump(mode="json", exclude=set(RUNTIME_ONLY))
    text = json.dumps({**tree, "data": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
