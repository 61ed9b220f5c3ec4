"""The exceptions migrator raises. Every message is a whole sentence that names the
collection, provider or setting involved and says what to do next."""

from __future__ import annotations

from typing import Any

__all__ = ["BadInput", "BudgetExceeded", "CollectionExists", "CollectionNotFound", "ConfigError",
    "ConfigErrorMixin", "CorruptState", "DataError", "DimensionMismatch", "InputTooLong",
    "Interrupted", "MigratorError", "MissingText", "NotSent", "ProviderAuthError", "ProviderError",
    "ProviderQuotaError", "ProviderRateLimited", "ProviderResponseError", "ProviderUnreachable",
    "SchemaMismatch", "StateBusy", "StateError", "StoreError", "VerificationFailed"]


class MigratorError(Exception):
    """Base class of every error migrator raises on purpose."""

    exit_code = 1


class ConfigError(MigratorError):
    """Bad or contradictory configuration."""

    exit_code = 2


class ProviderError(MigratorError):
    """An embedding provider failed or answered something unusable."""

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (401/403) or no API key was configured."""


class ProviderQuotaError(ProviderError):
    """The account is out of credit or quota; retrying cannot help."""


class ProviderUnreachable(ProviderError):
    """No connection could be made to an endpoint that has never answered (connection
    refused, an unknown host): a wrong base_url, not a transient fault, so not retried."""


class ProviderRateLimited(ProviderError):
    """The provider kept answering 429 after every retry."""


class ProviderResponseError(ProviderError):
    """The provider answered with an error or a response that failed validation."""


class ConfigErrorMixin:
    exit_code = 2


class DimensionMismatch(ConfigErrorMixin, ProviderResponseError):
    """Vectors of another size (or norm) than the model and configuration promise.

    A configuration problem at heart (wrong model, a server that cuts vectors), so exit 2.
    """


class StoreError(MigratorError):
    """Qdrant failed or refused an operation."""


class CollectionNotFound(StoreError):
    """A collection or alias does not exist."""


class CollectionExists(StoreError):
    """A collection that must be new already exists."""


class SchemaMismatch(StoreError):
    """A collection exists but its vectors do not fit the migration."""


class DataError(MigratorError):
    """The data in the source collection cannot be migrated as configured."""


class MissingText(DataError):
    """Points have no text (or only whitespace) where the configuration says to find it."""

    def __init__(self, message: str, *, point_ids: list[Any], skip_file: str | None) -> None:
        super().__init__(message)
        self.point_ids = point_ids
        self.skip_file = skip_file


class BadInput(ConfigErrorMixin, DataError):
    """An input file or a text cannot be used as given (encoding, ids, a missing field):
    fixed by the user before anything is written, so exit 2."""


class InputTooLong(DataError):
    """A text is longer than the model accepts."""


class StateError(MigratorError):
    """The state database is unreadable, corrupt or from a newer migrator."""


class Interrupted(MigratorError):
    """The run was stopped by a signal; its checkpoint is saved. Exit 128 + the signal's
    number: 130 for SIGINT (Ctrl-C), 143 for SIGTERM."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class NotSent(MigratorError):
    """A request was not sent (again) because the run is stopping: its texts are embedded
    when the run resumes. The pipeline drops its page; nothing else should see this."""


class BudgetExceeded(MigratorError):
    """The next request would take the run's spend past `migration.max_cost`: the run
    stopped before sending it, with its checkpoint saved. `spent` is what it paid (USD)."""

    def __init__(self, message: str, *, spent: float) -> None:
        super().__init__(message)
        self.spent = spent


class StateBusy(StateError):
    """Another process holds a state or cache file's write lock (longer than a write
    waits)."""


class CorruptState(StateError):
    """A state or cache file is not a readable database of ours (as opposed to one the
    user may not read or write)."""


class VerificationFailed(MigratorError):
    """Verification ran and a check is below its threshold; carries the report."""

    exit_code = 3

    def __init__(self, message: str, *, report: Any = None) -> None:
        super().__init__(message)
        self.report = report
