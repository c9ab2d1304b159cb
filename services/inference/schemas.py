"""Request and response shapes: the v1 JSON API and the Open Inference Protocol v2 (REST/JSON).

The v2 models follow KServe's `open_inference_rest.yaml`: tensors are `{name, shape, datatype,
data, parameters?}` with `data` flattened in row-major order (nested lists are accepted too).
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


class ModelsResponse(BaseModel):
    models: list[str] = Field(description="Served model names (KServe V1 list models).")
    default: str = Field(description="The model `/v1/predict` uses without `?model=`.")
    details: list[dict[str, Any]] = Field(
        description="Per model: name, ready, version, alias, classes, arch, metrics, dataset."
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


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]
