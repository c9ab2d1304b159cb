"""pipelines package of slipway."""
