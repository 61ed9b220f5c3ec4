"""Configuration: a YAML or TOML file, MIGRATOR_* environment variables and CLI flags.

Precedence is flags > environment > file > defaults, decided in one place:
`load_settings()`. Library functions take a `Settings` object and never read the
environment themselves; the only environment reads are here, in `load_settings`.
"""

from __future__ import annotations

import contextvars
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .catalog import REGISTRY
from .config_files import file_source
from .errors import ConfigError
from .naming import check_env_name, check_new_name, check_url, env_variable, redact_url
from .texts import BLANK_TEXT
from .wording import closest_key, describe_validation, section_type

__all__ = ["CollectionSettings", "debugging", "DEFAULT_STORE_PATH",
    "Distance", "ENV_NOT_SETTINGS", "fill_api_key", "load_settings", "MigrationSettings",
    "ProviderSettings", "Settings", "StoreSettings", "SyncSettings", "unknown_variables",
    "VerifySettings"]

Distance = Literal["Cosine", "Dot", "Euclid", "Manhattan"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StoreSettings(_Section):
    """Where a Qdrant instance is: a local-mode directory (`path`) or a server (`url`)."""

    path: Path | None = None
    url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str = "QDRANT_API_KEY"
    prefer_grpc: bool = False
    timeout: float = Field(default=60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value, "a Qdrant server URL such as http://localhost:6333")

    @field_validator("api_key_env")
    @classmethod
    def _key_variable(cls, value: str) -> str:
        check_env_name(value)
        return value

    @model_validator(mode="after")
    def _one_location(self) -> StoreSettings:
        if self.path is not None and self.url is not None:
            raise ValueError("set either path (embedded store) or url (Qdrant server), not both")
        return self

    @property
    def identity(self) -> str:
        """Which store this is, for keying migrations and ownership: the server's URL
        without credentials, or the embedded store's absolute path."""
        if self.url:
            return "url:" + redact_url(self.url).rstrip("/")
        path = str(self.path or DEFAULT_STORE_PATH)
        return "memory" if path == ":memory:" else f"path:{Path(path).resolve()}"

    @property
    def location(self) -> str:
        """A printable description with no secret in it."""
        if self.url:
            return redact_url(self.url)
        return f"embedded store at {self.path or DEFAULT_STORE_PATH}"


DEFAULT_STORE_PATH = Path("qdrant_data")


class ProviderSettings(_Section):
    """The embedding provider and model that the target collection is built with."""

    name: str = "hashing"
    model: str = "hash-ngrams-v1"
    dimensions: int | None = Field(default=None, gt=0, le=65536)  # Qdrant's largest size
    dimension_policy: Literal["error", "truncate", "pad"] = "error"
    send_dimensions: bool | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    api_version: str | None = None
    deployment: str | None = None
    concurrency: int = Field(default=4, ge=1, le=512)
    batch_size: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=10, ge=0)
    encoding_format: Literal["base64", "float"] = "base64"
    price_per_mtok: float | None = Field(default=None, ge=0)  # USD; over the catalog's
    max_tokens_per_input: int | None = Field(default=None, gt=0)  # over the catalog's
    long_input: Literal["fail", "truncate", "chunk-mean"] = "fail"
    tier: Literal["free", "tier1", "tier2", "tier3", "tier4", "tier5"] | None = None
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    rate_window: float = Field(default=60.0, gt=0)  # seconds the limits above count over
    adaptive_pacing: bool = True
    adaptive_concurrency: bool = True  # requests in flight follow the server, up to concurrency
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[ProviderSettings] = Field(default_factory=list)  # same model, in order
    # batch mode: the provider's batch API at its batch price, into the cache, then the run
    batch: bool = False
    batch_wait: bool = False  # poll until every batch job is collected (else submit, exit)
    batch_poll: float = Field(default=60.0, gt=0)  # seconds between polls
    keep_batch_files: bool = False  # leave input and output files at the provider
    # what is still running when a batch run ends: wait for it (run again, or --wait), or
    # cancel it and embed it synchronously
    batch_fallback: Literal["wait", "sync"] = "wait"
    _section: str = PrivateAttr(default="provider")
    _where: str = PrivateAttr(default="")

    def at(self, section: str, *, where: str | None = None) -> ProviderSettings:
        """A copy of these settings that knows they are found at `section` (of a file
        described by `where`, e.g. "of candidate 2 in compare.yaml")."""
        placed = self.model_copy()
        placed._section = section
        if where is not None:
            placed._where = where
        return placed

    def nested(self, inner: ProviderSettings, part: str) -> ProviderSettings:
        """`inner` (a fallback's settings) placed at `part` under these settings."""
        return inner.at(".".join(filter(None, [self._section, part])), where=self._where)

    def setting(self, key: str) -> str:
        """How a message names one of these settings: `provider.batch_size`, or
        `batch_size of candidate 2 in compare.yaml`."""
        named = ".".join(filter(None, [self._section, key]))
        return f"{named} {self._where}" if self._where else named

    @field_validator("name")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in REGISTRY:
            raise ValueError(f"unknown provider {value!r}; choose one of "
                             f"{', '.join(REGISTRY)}")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return check_url(value, "an API root such as http://localhost:8000/v1")

    @field_validator("api_key_env")
    @classmethod
    def _key_variable(cls, value: str | None) -> str | None:
        return check_env_name(value)

    @property
    def key_env(self) -> str | None:
        return self.api_key_env or REGISTRY[self.name].key_env

    @property
    def key_missing(self) -> bool:
        """The provider needs a key (self-hosted servers often do not) and none is set."""
        return self.api_key is None and REGISTRY[self.name].key_required

    def key(self) -> str | None:
        """The API key; None for a provider that works without one.

        Raises:
            ConfigError: the provider needs a key and none is set.
        """
        if self.key_missing:
            raise ConfigError(
                f"No API key for provider {self.name!r}: set "
                f"{env_variable(self.key_env, self.setting('api_key_env'))} (or name "
                f"another one with {self.setting('api_key_env')}).")
        return self.api_key.get_secret_value() if self.api_key is not None else None


class CollectionSettings(_Section):
    """One source collection (or alias) to migrate, with where its text is and where it goes."""

    name: str = Field(min_length=1)
    text_field: str | None = None
    text_template: str | None = None
    vector: str | None = None
    target: str | None = None
    alias: str | None = None
    distance: Distance | None = None
    # in-place: the new model's vector is added to this collection under `new_vector`
    strategy: Literal["new-collection", "in-place"] | None = None  # migration.strategy
    new_vector: str | None = None

    @field_validator("target", "alias")
    @classmethod
    def _creatable(cls, value: str | None) -> str | None:
        return None if value is None else check_new_name(value)

    @field_validator("new_vector")
    @classmethod
    def _creatable_vector(cls, value: str | None) -> str | None:
        return None if value is None else check_new_name(value, "vector")

    @field_validator("text_field", "text_template")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"{value!r} {BLANK_TEXT}")
        return value

    @field_validator("distance", mode="before")
    @classmethod
    def _distance_in_any_case(cls, value: Any) -> Any:
        """`cosine` as well as Qdrant's own `Cosine`."""
        if isinstance(value, str):
            return {d.lower(): d for d in get_args(Distance)}.get(value.lower(), value)
        return value

    @model_validator(mode="after")
    def _one_text_source(self) -> CollectionSettings:
        if self.text_field and self.text_template:
            raise ValueError(
                f"collection {self.name!r}: set text_field or text_template, not both"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _from_spec(cls, data: Any) -> Any:
        """A collection in a configuration file may be written as on the command line."""
        return _spec_values(data) if isinstance(data, str) else data

    @classmethod
    def parse(cls, spec: str) -> CollectionSettings:
        """Parse a CLI spec: `docs` or `docs,text_field=body,alias=docs_live,target=docs_v2`."""
        name = spec.split(",")[0].strip()
        try:
            return cls.model_validate(_spec_values(spec))
        except ValidationError as exc:
            raise ConfigError(describe_validation(exc, prefix=f"--collection {name}",
                                                  model=cls)) from exc
        except ValueError as exc:
            raise ConfigError(f"--collection {spec!r}: {exc}.") from exc


def _spec_values(spec: str) -> dict[str, str]:
    """`docs,text_field=body,alias=docs_live` as {"name": "docs", "text_field": ...}."""
    name, *pairs = [part.strip() for part in spec.split(",")]
    values: dict[str, str] = {"name": name}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} is not key=value; write for example "
                             "'docs,text_field=body,alias=docs_live' (a value holding a "
                             "comma, such as a template, goes in its own flag: "
                             "--text-template)")
        if key.strip() in values:
            raise ValueError(f"{key.strip()!r} is given twice; give it once")
        values[key.strip()] = value.strip()
    return values


class MigrationSettings(_Section):
    """How the pipeline runs."""

    page_size: int = Field(default=256, ge=1, le=10_000)
    queue_depth: int = Field(default=4, ge=1, le=1024)
    missing_text: Literal["fail", "skip"] = "fail"
    state_dir: Path = Path(".migrator")
    cache: bool = True
    catch_up: bool = True
    max_cost: float | None = Field(default=None, gt=0)  # USD one run may spend
    # new-collection: a copy with the new model's vector; in-place: a named vector added
    # to the same collection (Qdrant >= 1.18), for the application to switch `using`
    strategy: Literal["new-collection", "in-place"] = "new-collection"


class SyncSettings(_Section):
    """How a catch-up (after a backfill, or `migrator sync`) finds what changed."""

    # a payload field every write to the source sets to the time of the write (RFC 3339, or
    # epoch seconds or milliseconds), with a range index on a server: a catch-up then reads
    # only the points changed since the last one began, and the ids of the rest
    updated_field: str | None = Field(default=None, min_length=1)
    # how far behind this machine's clock the clocks that write `updated_field` may be
    clock_skew: float = Field(default=300.0, ge=0)
    # the largest share of an alias-served target's points one catch-up may delete (a
    # source emptied or recreated by mistake); 1 allows any
    max_delete: float = Field(default=0.5, ge=0, le=1)


class VerifySettings(_Section):
    """The checks `migrate` runs before it moves an alias, and their thresholds."""

    enabled: bool = True
    sample: int = Field(default=500, ge=1, le=100_000)
    seed: int = 0
    k: int = Field(default=10, ge=1, le=1000)
    min_self_recall: float | None = Field(default=0.95, ge=0, le=1)
    min_ann_recall: float | None = Field(default=0.95, ge=0, le=1)
    min_overlap: float | None = Field(default=None, ge=0, le=1)
    readiness_timeout: float = Field(default=600.0, gt=0)
    # labelled quality: queries with known relevant documents, embedded by both models
    queries: Path | None = None  # a BEIR directory, or JSONL of {"query", "relevant_ids"}
    source_provider: ProviderSettings | None = None  # the model the source was built with
    max_ndcg_drop: float = Field(default=0.02, ge=0, le=1)
    max_queries: int = Field(default=1000, ge=1)


class Settings(BaseSettings):
    """Everything a migrator command needs. Build it with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="MIGRATOR_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    source: StoreSettings = Field(default_factory=StoreSettings)
    target: StoreSettings | None = None
    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    collections: list[CollectionSettings] = Field(default_factory=list)
    migration: MigrationSettings = Field(default_factory=MigrationSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(file_source(settings_cls, config_file))
        return tuple(sources)

    @property
    def target_store(self) -> StoreSettings:
        return self.target if self.target is not None else self.source


_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "migrator_config_file", default=None
)


def load_settings(
    config: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings with precedence overrides (CLI flags) > MIGRATOR_* env > file > defaults.

    Args:
        config: a YAML or TOML file; None for none.
        overrides: nested values from the command line; None values are ignored.
        environ: the environment to read API keys from (default: `os.environ`).

    Raises:
        ConfigError: the file is missing or unreadable, a key is unknown or a value is invalid.
    """
    path = Path(config) if config is not None else None
    if path is not None and not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; check the --config path.")
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError(
            "Unknown MIGRATOR_* variable(s) in the environment: " + "; ".join(unknown) + ". "
            "A setting is MIGRATOR_ + its key path joined by __ (e.g. MIGRATOR_PROVIDER__MODEL);"
            " fix the name or unset the variable.")
    token = _CONFIG_FILE.set(path)
    try:
        settings = Settings(**_drop_none(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, prefix=_origin(path), model=Settings)
                          ) from exc
    except SettingsError as exc:  # a variable holding a list or a table that is not JSON
        raise ConfigError(_unreadable_variable(exc, path)) from exc
    except (ValueError, yaml.YAMLError) as exc:  # unreadable YAML/TOML
        raise ConfigError(f"Could not read the configuration ({_origin(path)}): {exc}") from exc
    finally:
        _CONFIG_FILE.reset(token)
    return _resolve_keys(settings, os.environ if environ is None else environ)


ENV_NOT_SETTINGS = {"MIGRATOR_DEBUG", "MIGRATOR_TEST_QDRANT_URL"}  # read elsewhere


def debugging() -> bool:
    """MIGRATOR_DEBUG=1: errors show their traceback."""
    return bool(os.environ.get("MIGRATOR_DEBUG"))


def unknown_variables(environ: Any) -> list[str]:
    """MIGRATOR_* variables that name no setting, each with what is wrong (pydantic-settings
    would ignore them silently)."""
    found = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith("MIGRATOR_") or upper in ENV_NOT_SETTINGS:
            continue
        model: type[BaseModel] | None = Settings
        parts = upper.removeprefix("MIGRATOR_").lower().split("__")
        for depth, part in enumerate(parts):
            fields = model.model_fields if model is not None else {}
            if part not in fields:
                meant = closest_key(Settings, parts[:depth + 1])
                fixed = "__".join(map(str, (*meant, *parts[depth + 1:]))) if meant else ""
                hint = (f" (did you mean MIGRATOR_{fixed.upper()}?)" if fixed else
                        f" (keys here: {', '.join(fields)})" if fields else "")
                found.append(f"{name}: no key {part!r}{hint}")
                break
            model = section_type(fields[part].annotation)
    return found


def _resolve_keys(settings: Settings, environ: Any) -> Settings:
    """Fill API keys from the environment variables the configuration names."""
    fill_api_key(settings.provider, environ)
    for store in (settings.source, settings.target):
        if store is not None and store.api_key is None and environ.get(store.api_key_env):
            store.api_key = SecretStr(environ[store.api_key_env])
    return settings


def fill_api_key(provider: ProviderSettings, environ: Any = None) -> None:
    """Read the provider's (and its fallbacks') API key from the variable it names, in
    `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    for each in (provider, *provider.fallbacks):
        if each.api_key is None and each.key_env and environ.get(each.key_env):
            each.api_key = SecretStr(environ[each.key_env])


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is None:
            continue
        cleaned[key] = value
    return cleaned


def _unreadable_variable(exc: SettingsError, path: Path | None) -> str:
    """pydantic-settings says 'error parsing value for field "collections" from source
    "EnvSettingsSource"': which variable that is, and how its value is written."""
    found = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(exc))
    if found is None:
        return f"Could not read the configuration ({_origin(path)}): {exc}"
    return (f"MIGRATOR_{found.group(1).upper()} is not valid JSON ({exc.__cause__ or exc}): a "
            "list or a table set in the environment is written as JSON, e.g. "
            "MIGRATOR_COLLECTIONS='[{\"name\": \"docs\"}]'. Fix the variable or unset it; a "
            "single key is set by its own variable, e.g. MIGRATOR_PROVIDER__MODEL.")


def _origin(path: Path | None) -> str:
    return f"{path}, MIGRATOR_* variables and flags" if path else "MIGRATOR_* variables and flags"
