"""Configuration as code: every setting of a run is defined once, here, with its default.

torch-free and kfp-free. `TrainConfig`, `PromotionPolicy`, `ClusterOptions` and the other
sections of an `ExperimentConfig` are the only source of defaults: CLI options, component and
pipeline signatures, the compiled pipeline's defaults and the docs derive from them, and tests
hold the rest (the chart's ConfigMap keys, the service's `Settings`) against them.
"""
