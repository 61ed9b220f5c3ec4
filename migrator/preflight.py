"""What a migration run refuses before its first request, so that nothing is paid for a run
that cannot succeed: a vector to replace that is not there, an `updated_field` that cannot
be read as a time, a collection without text, a default target name Qdrant would refuse, an
estimate over the budget, an empty collection that verification could not check, an
in-place run that would rewrite the vector it reads, an alias that serves another
collection's data. (The first collection's text is checked by the probe itself.)
It also says what would slow the run down: a collection too big for the embedded store."""

from __future__ import annotations

from .embedding import Embedder
from .embedding.usage import Budget
from .inplace import in_place, new_vector_name, refuse_rewriting
from .jobs import check_default_target, refuse_empty, refuse_foreign_alias
from .planning import local_mode_warning
from .settings import Settings
from .spending import refuse_over_budget
from .state import State
from .store import CollectionSchema, QdrantStore
from .verification.dimensions import probe_texts

__all__ = ["refuse_before_paying"]


def refuse_before_paying(settings: Settings, source: QdrantStore, target: QdrantStore,
                         state: State, schemas: list[CollectionSchema], embedder: Embedder,
                         budget: Budget | None) -> list[str]:
    """Raise what would stop the run later (ConfigError, DataError, BudgetExceeded, ...);
    return warnings: the text of the collections after the first (the probe reads that
    one), and collections too big for the embedded store."""
    collections = settings.collections
    records = state.all()
    for config, schema in zip(collections, schemas, strict=True):
        schema.vector(config.vector)
        refuse_empty(source, schema, settings.verify.enabled)
        if config.target is None and not in_place(config, settings):
            check_default_target(config.name, embedder.spec, embedder.dims)
        if in_place(config, settings) and (config.new_vector or embedder.dims):
            refuse_rewriting(config, schema, schema.vector(config.vector).name, records,
                             new_vector_name(config, embedder.spec, embedder.dims or 0))
        if field := settings.sync.updated_field:
            source.time_form(schema.name, field)
        if config.alias is not None and not in_place(config, settings):
            refuse_foreign_alias(target, config.alias, schema.name, records)
    warnings = [warning for config, schema in zip(collections[1:], schemas[1:], strict=True)
                for warning in probe_texts(source, schema, config, embedder,
                                           settings.provider.long_input).warnings]
    warnings += [w for schema in schemas for w in local_mode_warning(target, schema.points_count)]
    if budget is not None:
        refuse_over_budget(budget, settings, source, target, state, schemas, embedder)
    return warnings
