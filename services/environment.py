"""A service's settings at process start: read from the environment, checked, or one error.

pydantic-settings ignores a variable that names no field, so `SLIPWAY_MAX_BACH_SIZE=32` would
leave the default silently in place. Every entry point that builds `Settings` from the
environment (`python -m services.inference`, `python -m services.drift`, `slipway serve`,
`slipway drift`) builds them here; `create_app(settings)` never reads the environment.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings

from slipway.config.env import check_environment
from slipway.config.experiment import describe_errors
from slipway.errors import ConfigError
from slipway.registry.ref import ModelRef, ModelRefError

S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """`cls` from its `env_prefix` variables, then `overrides` (field names), which win.

    A variable with the prefix that names no field, or a value a field refuses, is a
    `ConfigError` naming it (with the closest field for a misspelling).
    """
    check_environment(os.environ, cls.model_config.get("env_prefix", ""), cls.model_fields)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, "invalid setting")) from None


def check_model_ref(value: str) -> ModelRef:
    """A setting's model reference, parsed; a malformed one is a field error carrying the one
    malformed-reference message (`slipway.registry.ref.ModelRefError`)."""
    try:
        return ModelRef.parse(value)
    except ModelRefError as exc:
        raise PydanticCustomError("model_ref", "{message}", {"message": str(exc)}) from None
