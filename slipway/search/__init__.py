"""Hyperparameter search: the sampler, the pruning rule, trial runs and picking the winner.

`space` turns a `SearchConfig` into trial parameter sets (grid, random, Optuna TPE), `pruning`
decides when a trial is far behind its siblings, `trial` runs one trial through the training
step with MLflow child runs, and `selection` picks the best trial and writes the summary.
"""
