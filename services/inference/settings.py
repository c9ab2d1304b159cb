"""Configuration of the inference service: environment variables with the `SLIPWAY_` prefix.

One `Settings` object is built at start-up and passed down; nothing else in the service reads
`os.environ`, so tests create apps with their own settings side by side.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.environment import check_model_ref
from slipway.errors import ConfigError

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the service; the Helm chart sets the same names as env vars."""

    model_config = SettingsConfigDict(
        env_prefix="SLIPWAY_", extra="ignore", protected_namespaces=()
    )

    model_source: str = Field(
        default=".slipway/models/demo",
        description="The model: `models:/<name>@<alias>` (followed when the alias moves), "
        "`models:/<name>/<version>` (pinned, never reloaded), `models:/<name>` (newest version), "
        "`runs:/<run_id>/<path>`, a local model folder, or a file:// or object-store URI.",
    )
    model_name: str = Field(
        default="", description="Served name; default: the registered model name, else the card's."
    )
    mlflow_tracking_uri: str = Field(
        default="", description="MLflow tracking URI for `models:/` sources."
    )
    staging_source: str = Field(
        default="",
        description="Optional second model (any MODEL_SOURCE form), served as "
        "`<model_name>-staging`.",
    )
    canary_mode: Literal["off", "canary", "shadow"] = Field(
        default="off",
        description="How the staging model (the candidate) gets live traffic: off (only by its "
        "name), canary (answers `canary_weight` of the main model's requests) or shadow (gets a "
        "copy of each; production answers). Needs `staging_source`.",
    )
    canary_weight: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of the main model's requests the candidate answers in canary mode.",
    )
    canary_header: str = Field(
        default="X-Slipway-Client-Key",
        min_length=1,
        description="Request header (gRPC: metadata key) whose value keeps a client on one "
        "variant: the same value always gets the same answer source at a given weight.",
    )
    shadow_max_in_flight: int = Field(
        default=4,
        ge=1,
        description="Shadow copies predicted at once; a request beyond it (or beyond half the "
        "queue budget) is not copied and counts as `shed`.",
    )
    backend: Literal["auto", "onnxruntime", "openvino", "torch"] = Field(
        default="auto",
        description="auto (the fastest this host has, measured at load), onnxruntime, openvino "
        "(image variant BACKEND=openvino) or torch (image variant BACKEND=torch).",
    )
    precision: Literal["auto", "fp32", "int8", "fp16"] = Field(
        default="auto",
        description="auto (CPU: INT8 when the export's accuracy gate passed it and it measures "
        "faster; CUDA: FP16 when it agrees with FP32 and measures faster), fp32, int8 (refused "
        "if the INT8 model failed its gate) or fp16 (torch backend, for GPUs).",
    )
    autotune_seconds: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="Time budget of the auto choice's measured warm-up, shared by the candidates.",
    )
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="cpu or cuda.")
    threads: int = Field(
        default=0,
        ge=0,
        description="Intra-op threads; 0 = the CPUs the container may use (cgroup CPU quota, "
        "capped by the CPU affinity), not the host's core count.",
    )
    streams: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field(
        default="auto",
        description="OpenVINO: batches in flight at once while the queue is deep and the event "
        "loop keeps up, each on its share of the threads. auto = as many as OpenVINO's "
        "throughput hint picks for FP32 models, one batch at a time for INT8 (measured on 2 "
        "cores: FP32 serves more with streams, INT8 less); 0 = the hint's number for both; "
        "1 = one batch at a time on every thread. A lone request always gets every thread.",
    )
    intra_op_spinning: bool = Field(
        default=False,
        description="Let onnxruntime threads spin-wait between forwards (its own default). Off "
        "here: spinning burns the pod's CPU quota and competes with request handling on small "
        "or shared machines.",
    )
    max_batch_size: int = Field(default=16, ge=1, le=1024, description="Largest batch formed.")
    max_batch_wait_ms: float = Field(
        default=5.0, ge=0, description="Longest wait for a batch to fill, in ms."
    )
    max_queue: int = Field(
        default=256, ge=1, description="Queued images before requests get 503 (the backstop)."
    )
    latency_slo_ms: float = Field(
        default=500.0, gt=0, description="Latency objective of a prediction request, in ms."
    )
    queue_budget_ms: float = Field(
        default=0.0,
        ge=0,
        description="Longest expected queue wait (queued images x recent cost per image) a "
        "request is admitted with; beyond it 503 + Retry-After at once. 0: 80 % of "
        "latency_slo_ms.",
    )
    max_upload_bytes: int = Field(default=10 * MIB, ge=1)
    max_image_pixels: int = Field(default=25_000_000, ge=1)
    inline_decode_max_pixels: int = Field(
        default=384 * 384,
        ge=0,
        description="Uploads of at most this many pixels in all are decoded on the event loop, "
        "larger ones on a worker thread: handing a small image to a thread costs more CPU than "
        "decoding it (+9 % throughput at INT8 on 2 cores). 0: always a thread.",
    )
    request_timeout_s: float = Field(default=30.0, gt=0)
    reload_interval_s: float = Field(
        default=30.0, ge=0, description="Seconds between checks for a new model; 0: no hot reload."
    )
    prediction_log_path: str = Field(
        default="", description="JSONL prediction log for the drift monitor; empty: none."
    )
    prediction_log_max_bytes: int = Field(default=50 * MIB, ge=1024)
    prediction_log_backups: int = Field(default=5, ge=0)
    cors_origins: str = Field(default="", description="Comma-separated allowed origins.")
    auth_token: str = ""
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    grpc_port: int = Field(
        default=8085,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol gRPC server (same host, same process, "
        "same batcher); 0: no gRPC server.",
    )
    drain_seconds: float = Field(
        default=10.0, ge=0, description="After SIGTERM: seconds served while reporting not ready."
    )
    embedding_sample_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of served images whose projected embedding is kept for the embedding "
        "drift test; 0: no capture (the backend then fetches the logits only).",
    )
    embedding_window: int = Field(
        default=500, ge=10, le=10_000, description="Projected embeddings kept per model version."
    )
    embedding_min_samples: int = Field(
        default=100, ge=10, description="Embeddings a version needs before it is tested."
    )
    embedding_drift_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between embedding drift tests (MMD)."
    )
    embedding_permutations: int = Field(
        default=200, ge=20, le=5000, description="Permutations of the MMD test's p-value."
    )
    explain_patch: int = Field(
        default=0,
        ge=0,
        description="Occlusion patch side in model-input pixels; 0: an eighth of the input.",
    )
    explain_stride: int = Field(
        default=0, ge=0, description="Occlusion stride in model-input pixels; 0: half the patch."
    )
    explain_max_forwards: int = Field(
        default=256,
        ge=2,
        le=4096,
        description="Most images one explanation may run (occluded copies + the original); a "
        "request asking for more gets 400.",
    )
    explain_queue_budget_ms: float = Field(
        default=0.0,
        ge=0,
        description="Longest expected queue wait an explanation is admitted with (it is shed "
        "before predictions); 0: a quarter of the prediction budget.",
    )
    model_cache_dir: str = "/tmp/slipway-models"
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    fault_injection: bool = False

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("model_source", "staging_source")
    @classmethod
    def _model_ref(cls, value: str, info: ValidationInfo) -> str:
        if value or info.field_name == "model_source":
            check_model_ref(value)
        return value

    @model_validator(mode="after")
    def _candidate(self) -> Settings:
        if self.canary_mode != "off" and not self.staging_source:
            raise ValueError(
                f"canary_mode={self.canary_mode} needs staging_source (the candidate model)"
            )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def admission_budget_s(self) -> float:
        """The queue-wait budget in seconds, derived from the latency SLO when not set."""
        return (self.queue_budget_ms or 0.8 * self.latency_slo_ms) / 1000.0

    @property
    def explain_budget_s(self) -> float:
        """The explanations' queue-wait budget: below the predictions' so they are shed first."""
        return self.explain_queue_budget_ms / 1000.0 or 0.25 * self.admission_budget_s


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """`FIELD=VALUE` items (`--set`) -> overrides; each field's own type converts the text.

    A name that is no field of `Settings` is one `ConfigError` naming it and the closest fields.
    """
    overrides: dict[str, str] = {}
    for item in items:
        raw, sep, value = item.partition("=")
        name = raw.strip().lower().replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"--set needs FIELD=VALUE, got {item!r}")
        if name not in Settings.model_fields:
            close = difflib.get_close_matches(name, list(Settings.model_fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"--set {item}: {name} is not a serving setting{hint}")
        overrides[name] = value
    return overrides
