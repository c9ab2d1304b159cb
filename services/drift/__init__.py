"""Drift monitor: compares served traffic (the prediction log) with the model's reference.json."""
