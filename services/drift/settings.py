"""Settings of the drift monitor, read once from `SLIPWAY_DRIFT_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.environment import check_model_ref


class Settings(BaseSettings):
    """Everything the drift monitor can be told; the Helm chart sets these as env vars."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_DRIFT_", extra="ignore")

    source: Literal["log", "prometheus"] = Field(
        "log",
        description="Where the window comes from: `log` (the prediction log, shared by the "
        "pods on a volume) or `prometheus` (the pods' drift histograms; no shared volume).",
    )
    prometheus_url: str = Field(
        "http://127.0.0.1:9090", description="Prometheus base URL (source `prometheus`)."
    )
    prometheus_range: str = Field(
        "1h",
        pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$",
        description="PromQL range of the window (source `prometheus`), e.g. 15m, 1h.",
    )
    prometheus_selector: str = Field(
        "",
        description='Extra PromQL label matchers (source `prometheus`), e.g. namespace="prod".',
    )
    model_name: str = Field(
        "",
        description="Served model name whose traffic is judged (the `model` label; needed by "
        "source `prometheus`).",
    )
    prediction_log_path: Path = Field(
        Path("predictions.jsonl"),
        description="The service's JSONL prediction log, or a glob matching one log per replica.",
    )
    reference: str = Field(
        "",
        description="reference.json, a model folder, or a model reference: "
        "`models:/<name>@<alias>` (followed), `models:/<name>/<version>` (pinned), "
        "`models:/<name>`, `runs:/<run_id>/<path>`, a file:// or object-store URI.",
    )
    mlflow_tracking_uri: str = Field("", description="Tracking URI for models:/ references.")
    reference_refresh_s: float = Field(
        300.0,
        ge=0,
        description="Seconds between re-reading a reference that can move (an alias, "
        "`models:/<name>`, an object-store URI); 0 = never. A pinned version is read once.",
    )
    window: int = Field(
        1000, ge=1, description="Sliding window of the newest log records (source `log`)."
    )
    min_records: int = Field(100, ge=1, description="Records needed before drift is judged.")
    interval_s: float = Field(30.0, gt=0, description="Seconds between evaluations.")
    psi_threshold: float = Field(0.2, gt=0, description="PSI above this is drift.")
    ks_pvalue: float = Field(0.01, gt=0, lt=1, description="KS p-value below this is drift.")
    confidence_drop: float = Field(
        0.1, gt=0, lt=1, description="Mean confidence this far below the reference is drift."
    )
    embedding_pvalue: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="MMD p-value of logged embeddings vs the reference's below which the "
        "report shows embedding drift (the alert uses the service's own gauge).",
    )
    state_path: Path | None = Field(
        None, description="Checkpoint of read offsets and the window, to resume after restarts."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8081, ge=0, le=65535, description="Port to listen on.")
    log_level: str = Field("INFO", description="Python logging level.")

    @field_validator("state_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("reference")
    @classmethod
    def _model_ref(cls, value: str) -> str:
        if value:
            check_model_ref(value)
        return value

    @model_validator(mode="after")
    def _prometheus_needs_a_model(self) -> Settings:
        if self.source == "prometheus" and not self.model_name:
            raise ValueError("source prometheus needs SLIPWAY_DRIFT_MODEL_NAME (the served name)")
        return self
