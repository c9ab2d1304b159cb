"""MLflow: model references, models logged as MLflow models, the registry client, run tracking
and lineage. No torch."""
