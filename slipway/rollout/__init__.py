"""Automatic promote or roll back of the live candidate (the service's staging slot).

torch-free: `measure` reads Prometheus, `decision` is the pure rule, `apply` acts on the MLflow
registry (which the inference pods follow), `events` tells Kubernetes when running in a cluster.
"""
