"""The base of every configuration section: unknown keys are an error, not silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section: typed, validated, documented fields; unknown keys refused."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        coerce_numbers_to_str=True,
        protected_namespaces=(),
    )
