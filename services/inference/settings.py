"""Configuration of the inference service: environment variables with the `SLIPWAY_` prefix.

One `Settings` object is built at start-up and passed down; nothing else in the service reads
`os.environ`, so tests create apps with their own settings side by side.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the service; the Helm chart sets the same names as env vars."""

    model_config = SettingsConfigDict(
        env_prefix="SLIPWAY_", extra="ignore", protected_namespaces=()
    )

    model_source: str = Field(
        default=".slipway/models/demo",
        description="Local model folder or `models:/<name>@<alias>` in the MLflow registry.",
    )
    model_name: str = Field(
        default="", description="Served name; default: the registered model name, else the card's."
    )
    mlflow_tracking_uri: str = ""
    staging_source: str = Field(
        default="", description="Optional second model, served as `<model_name>-staging`."
    )
    backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(default=0, ge=0, description="Intra-op threads; 0 = library default.")
    intra_op_spinning: bool = Field(
        default=False,
        description="Let onnxruntime threads spin-wait between forwards (its own default). Off "
        "here: spinning burns the pod's CPU quota and competes with request handling on small "
        "or shared machines.",
    )
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_batch_wait_ms: float = Field(default=5.0, ge=0)
    max_queue: int = Field(default=256, ge=1)
    max_upload_bytes: int = Field(default=10 * MIB, ge=1)
    max_image_pixels: int = Field(default=25_000_000, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    reload_interval_s: float = Field(default=30.0, ge=0, description="0 disables hot reload.")
    prediction_log_path: str = ""
    prediction_log_max_bytes: int = Field(default=50 * MIB, ge=1024)
    prediction_log_backups: int = Field(default=5, ge=0)
    cors_origins: str = Field(default="", description="Comma-separated allowed origins.")
    auth_token: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    drain_seconds: float = Field(
        default=10.0, ge=0, description="After SIGTERM: seconds served while reporting not ready."
    )
    model_cache_dir: str = "/tmp/slipway-models"
    log_level: str = "INFO"
    fault_injection: bool = False

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def is_registry_source(self) -> bool:
        return self.model_source.startswith("models:/")
