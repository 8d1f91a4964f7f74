"""Settings from exactly the given values: the environment the tests run in is not consulted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from worker.config.settings import Settings


class _ExactSettings(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def exact_settings(values: Mapping[str, Any]) -> Settings:
    """Names as fields (`kafka_security_protocol`) or as variables (`KAFKA_SECURITY_PROTOCOL`)."""
    return _ExactSettings(**{name.lower(): value for name, value in values.items()})
