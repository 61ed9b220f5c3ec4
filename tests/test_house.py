"""The house rules, read from the source with `ast`: no import cycle (imports inside
functions included: they run too), the third-party boundaries, and a module map that
matches the tree."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "migrator"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports, at the top or inside a function, by absolute name."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports. Importing `a.b.c` runs `a/b/__init__.py`
    too, so a module outside a subpackage that imports one of its modules depends on the
    subpackage's `__init__` as well."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target in imported(name, path):
            if target not in known or target == name:
                continue
            graph[name].add(target)
            parent = target.rsplit(".", 1)[0]
            if parent in known and parent != name and not name.startswith(parent + "."):
                graph[name].add(parent)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def importers(prefix: str) -> set[str]:
    return {name for name, path in modules().items()
            if any(t == prefix or t.startswith(prefix + ".") for t in imported(name, path))}


def test_third_parties_stay_behind_their_boundaries() -> None:
    assert {m for m in importers("qdrant_client") if not m.startswith("migrator.store")} == set()
    assert {m.rsplit(".", 1)[0] if m != "migrator.cli" else m
            for m in importers("click") | importers("tqdm")} == {"migrator.cli"}
    assert {m for m in importers("httpx") if not m.startswith("migrator.embedding")} == set()


def test_only_settings_reads_the_environment() -> None:
    readers = {name for name, path in modules().items()
               if re.search(r"\bos\.(environ|getenv)\b", path.read_text(encoding="utf-8"))}
    assert readers == {"migrator.settings"}


def test_the_module_map_matches_the_tree() -> None:
    """docs/architecture.md lists every module, and every module it lists exists."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = {m.replace("/", ".").removesuffix(".py")
              for m in re.findall(r"`(migrator/[\w/]+\.py)`", text)}
    on_disk = {str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
               for p in PACKAGE.rglob("*.py")}
    assert listed - on_disk == set(), "listed but gone"
    assert on_disk - listed == set(), "in the tree but not on the map"


def test_one_provider_registry() -> None:
    """Settings, key variables and the CLI's choices all come from `catalog.REGISTRY`;
    each entry names a class that the registry's one constructor can build."""
    import importlib

    from migrator.catalog import REGISTRY
    from migrator.cli.commands import migrate
    from migrator.settings import ProviderSettings

    for provider in REGISTRY.values():
        module, _, name = provider.embedder.partition(":")
        cls = getattr(importlib.import_module(f"migrator.embedding.{module}"), name)
        assert callable(cls.from_settings)
        settings = ProviderSettings(name=provider.name, model="m")
        assert settings.key_env == provider.key_env
        assert settings.key_missing == provider.key_required
    choice = next(p for p in migrate.params if p.name == "provider")
    assert list(choice.type.choices) == list(REGISTRY)  # type: ignore[attr-defined]


OPTIONAL = {"matplotlib", "tiktoken", "sentence_transformers", "torch"}


def test_habits() -> None:
    """Every module says what it exports; the library never `assert`s (python -O drops
    them); an import inside a function is only for an optional dependency."""
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.name != "__main__.py":
            assert any(isinstance(n, ast.Assign) and any(
                getattr(t, "id", "") == "__all__" for t in n.targets) for n in tree.body), name
        assert not any(isinstance(n, ast.Assert) for n in ast.walk(tree)), name
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    roots = {"." if node.level else (node.module or "").split(".")[0]}
                else:
                    continue
                assert roots <= OPTIONAL, f"{name}: {ast.unparse(node)} inside a function"


# docs/architecture.md's layers, top first; a module belongs to its longest listed prefix
LAYERS = [
    ["migrator", "migrator.__main__", "migrator.cli"],
    ["migrator.comparison"],
    ["migrator.migration", "migrator.syncing", "migrator.aliases", "migrator.status",
     "migrator.ingestion", "migrator.demo", "migrator.report", "migrator.status_report"],
    ["migrator.preflight"],
    ["migrator.pipeline", "migrator.sources", "migrator.catchup", "migrator.gate",
     "migrator.results", "migrator.ownership", "migrator.spending", "migrator.planning",
     "migrator.batching", "migrator.inplace"],
    ["migrator.verification"],
    ["migrator.jobs", "migrator.sampling"],
    ["migrator.embedding", "migrator.store", "migrator.state", "migrator.vector_cache",
     "migrator.records", "migrator.batch_ledger"],
    ["migrator.databases"],
    ["migrator.errors", "migrator.settings", "migrator.config_files", "migrator.naming",
     "migrator.locks",
     "migrator.blocking", "migrator.catalog", "migrator.texts", "migrator.metrics",
     "migrator.interrupts", "migrator.wording"],
]


def layer(module: str) -> int:
    """The depth of `module`'s layer (0 is the top)."""
    found = [(len(prefix), depth) for depth, prefixes in enumerate(LAYERS)
             for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
    assert found, f"{module} is in no layer"
    return max(found)[1]


def test_arrows_point_down() -> None:
    """An import may stay in its layer or go down, never up (a back-up arrow)."""
    up = sorted((a, b) for a, targets in import_graph().items() for b in targets
                if layer(b) < layer(a))
    assert up == []


def test_one_embedder_composition() -> None:
    """Layers go on a provider in one place (`embedding.build_embedder` / `compose`), in one
    order; nothing else constructs them or asks what is under a layer."""
    built = re.compile(r"(?<!class )\b(AdaptedEmbedder|CachedEmbedder|Metered|FallbackEmbedder)\(")
    for name, path in modules().items():
        source = path.read_text(encoding="utf-8")
        if name != "migrator.embedding":
            assert built.findall(source) == [], name
        assert "innermost" not in source and ".inner.inner" not in source, name


def test_the_stack_is_sizing_over_cache_over_meter_over_provider(tmp_path: Path) -> None:
    from migrator.embedding import build_embedder
    from migrator.embedding.adapter import AdaptedEmbedder
    from migrator.embedding.cache import CachedEmbedder
    from migrator.embedding.meter import Metered
    from migrator.embedding.openai import OpenAIEmbedder
    from migrator.settings import ProviderSettings
    from migrator.vector_cache import EmbeddingCache

    settings = ProviderSettings(name="openai-compatible", model="m", base_url="http://x/v1",
                                dimensions=8, dimension_policy="truncate")
    with EmbeddingCache(tmp_path) as cache:
        stack = build_embedder(settings, cache=cache)
        layers = []
        while stack is not None:
            layers.append(type(stack))
            stack = getattr(stack, "inner", None)
    assert layers == [AdaptedEmbedder, CachedEmbedder, Metered, OpenAIEmbedder]


def test_no_module_over_500_lines() -> None:
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}
