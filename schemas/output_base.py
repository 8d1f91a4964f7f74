"""The base of every output's `data` model: extra fields forbidden, frozen, documented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OutputData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
