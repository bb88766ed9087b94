"""Shared pydantic configuration: every spec model rejects unknown keys and takes numbers as numbers.

Strict: `true` is not 1 and "3" is not 3 (JSON has real numbers and booleans;
coercing them hid typos such as `"units": true`, a 1-unit layer). Floats are
finite (NaN and +inf passed "> 0" bounds). Every integer lies in +-2^32, so no
size or seed can overflow the 64-bit arithmetic of torch before the size
budget (`nn/budget.py`) judges it; fields have tighter bounds of their own.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

INT_LIMIT = 2**32


class SpecModel(BaseModel):
    """Base of every spec model: strict keys and types, finite floats, bounded integers, validated assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True, strict=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _integers_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT_LIMIT:
                digits = str(abs(item))
                raise ValueError(f"an integer of {len(digits)} digits ({digits[:12]}...) is out of range: integers in a spec lie within +-2^32 "
                                 f"({INT_LIMIT:,})")
        return value
