"""A configuration file (YAML or TOML) read as a settings source, after the checks that
pydantic-settings does not make: the file holds a mapping of sections, and no API key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from .errors import ConfigError

__all__ = ["file_source", "refuse_api_keys"]


def file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The settings `path` holds, as the source `Settings` reads below flags and variables.

    Raises:
        ConfigError: not .yaml/.yml/.toml, not a mapping, or an API key written in it.
    """
    suffix = path.suffix.lower()
    source: PydanticBaseSettingsSource
    if suffix in {".yaml", ".yml"}:
        _refuse_non_mapping(path)
        source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
    elif suffix == ".toml":
        source = TomlConfigSettingsSource(settings_cls, toml_file=path)
    else:
        raise ConfigError(f"Config file {path} must end in .yaml, .yml or .toml.")
    refuse_api_keys(path, source())
    return source


def refuse_api_keys(path: Path, data: Any) -> None:
    """Raises ConfigError when `data`, read from `path`, holds an `api_key` at any depth
    (without its value): keys come from the environment variables a file names."""
    keys = sorted(set(_api_keys(data)))
    if keys:
        raise ConfigError(
            f"{path} holds an API key ({', '.join(keys)}; its value is not shown): a key in a "
            "file ends up in version control and backups. Put the key in an environment "
            f"variable and name that variable with {keys[0]}_env (e.g. api_key_env: "
            "OPENAI_API_KEY), then remove the key from the file.")


def _refuse_non_mapping(path: Path) -> None:
    """A YAML file of a list or a bare value is no configuration (TOML is always a table)."""
    with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):  # reported later
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if data is not None and not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else "a single value"
            raise ConfigError(f"Config file {path} holds {kind}, not a mapping of sections "
                              "(provider:, collections:, ...): see the README's configuration "
                              "reference.")


def _api_keys(data: Any, where: str = "") -> Iterator[str]:
    """The paths of the `api_key` entries in `data`, at any depth (`provider.api_key`,
    `provider.fallbacks.0.api_key`)."""
    items = (data.items() if isinstance(data, dict) else
             enumerate(data) if isinstance(data, list) else ())
    for name, value in items:
        path = f"{where}.{name}" if where else str(name)
        if name == "api_key" and value not in (None, ""):
            yield path
        else:
            yield from _api_keys(value, path)
