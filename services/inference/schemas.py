"""Request and response shapes: the v1 JSON API and the Open Inference Protocol v2 (REST).

The v2 models follow KServe's `open_inference_rest.yaml`: tensors are `{name, shape, datatype,
data, parameters?}` with `data` flattened in row-major order (nested lists are accepted too). With
the binary tensor data extension a tensor has no `data`: `parameters.binary_data_size` says how
many bytes of the body after the JSON object hold it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    error: str


class Readiness(BaseModel):
    status: str = Field(description="ready, loading or draining.")
    models: dict[str, str | None] = Field(description="Loaded version of each served model.")
    errors: dict[str, str] | None = Field(
        default=None, description="Why a model is not loaded yet."
    )


class ClassScore(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    probability: float


class FilePrediction(BaseModel):
    file: str
    top_class: str
    confidence: float
    top_k: list[ClassScore]
    width: int
    height: int


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[FilePrediction]
    latency_ms: float


class ExplainResponse(BaseModel):
    model: str
    version: str
    top_class: str
    confidence: float
    method: str = Field(description="occlusion: the top class's probability drop per patch.")
    patch: int = Field(description="Patch side in model-input pixels.")
    stride: int = Field(description="Step between patches in model-input pixels.")
    forwards: int = Field(description="Images run through the model (occluded copies + 1).")
    grid: list[list[float]] = Field(
        description="Probability drop of the top class per patch position, rows top to bottom."
    )
    grid_origin: list[int] = Field(description="Pixel offset of each row (and column) of `grid`.")
    overlay_png: str = Field(description="Base64 PNG: the map drawn over the model's input.")
    gradcam: dict[str, Any] | None = Field(
        default=None,
        description="With the torch backend: Grad-CAM of the top class on the last feature "
        "map (`grid`, at the map's resolution) and its `overlay_png`; otherwise null.",
    )
    width: int
    height: int
    latency_ms: float


class ModelsResponse(BaseModel):
    models: list[str] = Field(description="Served model names (KServe V1 list models).")
    default: str = Field(description="The model `/v1/predict` uses without `?model=`.")
    details: list[dict[str, Any]] = Field(
        description="Per model: name, ready, version, alias, classes, arch, metrics, dataset."
    )
    traffic: dict[str, Any] = Field(
        description="How the main model's requests are split: mode (off, canary, shadow), "
        "weight, share (what the candidate gets now), candidate, candidate_ready, "
        "client_key_header."
    )


# Open Inference Protocol v2 ------------------------------------------------------------------


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


Parameters = dict[str, Any]


class RequestInput(BaseModel):
    name: str = Field(description="`input` (FP32 or UINT8 [N, C, H, W]) or `image` (BYTES [N]).")
    shape: list[int]
    datatype: str = Field(description="FP32, UINT8, BYTES, ... (the protocol's datatypes).")
    parameters: Parameters | None = Field(
        default=None,
        description="`binary_data_size` (int): the tensor is that many bytes of the binary part.",
    )
    data: list[Any] | None = Field(
        default=None,
        description="Row-major values (flat or nested); BYTES as strings, images as base64. "
        "Absent when `parameters.binary_data_size` is given.",
    )


class RequestOutput(BaseModel):
    name: str = Field(description="`probabilities`, `logits` or `label`.")
    parameters: Parameters | None = Field(
        default=None,
        description="`binary_data` (bool): return it in the binary part; `classification` (int "
        "k): the top k as BYTES `<value>:<index>:<label>` strings.",
    )


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_output` (bool): every output in binary."
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        default=None, description="Outputs to return; default: all, in JSON."
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size` when the data is in the binary part."
    )
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]
