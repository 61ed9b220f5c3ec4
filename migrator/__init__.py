"""migrator: move Qdrant collections from one embedding model to another.

    from migrator import load_settings, migrate
    result = migrate(load_settings("configs/demo.yaml"))
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("migrator")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

from .aliases import AliasMove, drop_old, old_collection, rollback, swap
from .catalog import ModelSpec, lookup
from .comparison import CandidateResult, CompareResult, acompare, compare
from .comparison.candidates import Candidate, load_candidates
from .comparison.datasets import Dataset, load_dataset
from .demo import DemoResult, demo
from .embedding import Embedder, Embedding, build_embedder
from .embedding.cache import cache_clear, cache_stats
from .errors import (
    BudgetExceeded,
    CollectionExists,
    CollectionNotFound,
    ConfigError,
    DataError,
    DimensionMismatch,
    InputTooLong,
    MigratorError,
    MissingText,
    ProviderAuthError,
    ProviderError,
    ProviderQuotaError,
    ProviderRateLimited,
    ProviderResponseError,
    SchemaMismatch,
    StateError,
    StoreError,
    VerificationFailed,
)
from .ingestion import IngestResult, ingest
from .migration import amigrate, migrate
from .pipeline import Progress
from .planning import PlanResult, plan
from .results import CollectionResult, MigrationResult
from .settings import (
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    StoreSettings,
    load_settings,
)
from .status import StatusReport, status
from .store import QdrantStore, open_store
from .syncing import SyncResult, sync
from .verification import VerificationReport, VerifyResult, verify
from .verification.dimensions import ValidationReport, validate

__all__ = [
    "AliasMove",
    "BudgetExceeded",
    "Candidate",
    "CandidateResult",
    "CollectionExists",
    "CollectionNotFound",
    "CollectionResult",
    "CollectionSettings",
    "CompareResult",
    "ConfigError",
    "DataError",
    "Dataset",
    "DemoResult",
    "DimensionMismatch",
    "Embedder",
    "Embedding",
    "IngestResult",
    "InputTooLong",
    "MigrationResult",
    "MigrationSettings",
    "MigratorError",
    "MissingText",
    "ModelSpec",
    "PlanResult",
    "Progress",
    "ProviderAuthError",
    "ProviderError",
    "ProviderQuotaError",
    "ProviderRateLimited",
    "ProviderResponseError",
    "ProviderSettings",
    "QdrantStore",
    "SchemaMismatch",
    "Settings",
    "StateError",
    "StatusReport",
    "StoreError",
    "StoreSettings",
    "SyncResult",
    "ValidationReport",
    "VerificationFailed",
    "VerificationReport",
    "VerifyResult",
    "__version__",
    "acompare",
    "amigrate",
    "build_embedder",
    "cache_clear",
    "cache_stats",
    "compare",
    "demo",
    "drop_old",
    "ingest",
    "load_candidates",
    "load_dataset",
    "load_settings",
    "lookup",
    "migrate",
    "old_collection",
    "open_store",
    "plan",
    "rollback",
    "status",
    "swap",
    "sync",
    "validate",
    "verify",
]
