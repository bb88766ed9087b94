"""Shared pydantic configuration: every spec model rejects unknown keys."""

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """Base of every spec model: strict keys, validated assignment, frozen-free."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)
