"""MLflow: the model registry client, run tracking and lineage. No torch."""
