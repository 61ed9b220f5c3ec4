"""`migrator compare`: datasets, candidates, metrics, measurements and the reports."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from migrator.cli import cli
from migrator.comparison import CompareResult, compare
from migrator.comparison import report as compare_report
from migrator.comparison.candidates import finish, load_candidates, parse_flag
from migrator.comparison.datasets import label, load_beir, load_collection, load_dataset, load_texts
from migrator.comparison.results import SCHEMA
from migrator.errors import ConfigError, DataError
from migrator.metrics import mrr_at_k, ndcg_at_k, normalized, recall_at_k, top_k
from migrator.records import Query, read_labels
from migrator.texts import TextSource
from migrator.vector_cache import EmbeddingCache

from .conftest import make_collection, texts
from .loopback import Fault, LoopbackServer

TINY = Path(__file__).parent / "data" / "tinybeir"


def candidates(*flags: str, reference: str | None = None) -> list[Any]:
    return finish([c for flag in flags for c in parse_flag(flag)], reference)


def loopback_candidates(path: Path, *servers: tuple[str, LoopbackServer], **extra: Any
                        ) -> list[Any]:
    """A candidates file naming one openai-compatible candidate per loopback server."""
    entries = [{"name": name, "provider": "openai-compatible", "model": "loop-embed",
                "base_url": server.url + "/v1", "batch_size": 4, "concurrency": 1,
                "max_retries": 0, **extra.get(name, {})}
               for name, server in servers]
    path.write_text(json.dumps({"candidates": entries}))  # JSON is YAML
    return load_candidates(path, environ=extra.get("environ", {}))


# ---- metrics, by hand ----------------------------------------------------------------------


def test_ndcg_with_graded_relevance_by_hand() -> None:
    gains = {"a": 2.0, "b": 1.0}
    ideal = 2 + 1 / np.log2(3)
    assert ndcg_at_k(["b", "x", "a"], gains, 10) == pytest.approx((1 + 2 / 2) / ideal)
    assert ndcg_at_k(["a", "b"], gains, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"] * 10 + ["a"], gains, 10) == 0.0  # past the cut


def test_a_query_without_relevant_documents_scores_zero_and_beir_leaves_it_out() -> None:
    assert ndcg_at_k(["a", "b"], {}, 10) == 0.0
    assert recall_at_k(["a"], set(), 10) == 0.0
    assert mrr_at_k(["a"], set(), 10) == 0.0
    dataset = load_beir(TINY)
    assert [q.id for q in dataset.queries] == ["q1", "q2", "q3", "q4", "q5", "q6"]  # not q7


def test_recall_with_fewer_results_than_k_and_mrr() -> None:
    assert recall_at_k(["a"], {"a", "b"}, 10) == 0.5
    assert recall_at_k([], {"a"}, 10) == 0.0
    assert mrr_at_k(["x", "a", "b"], {"a", "b"}, 10) == 0.5
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_top_k_orders_ties_by_document_row_even_across_the_cut() -> None:
    docs = np.array([[1, 0], [0.6, 0.8], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    query = np.array([[1, 0]], dtype=np.float32)
    assert top_k(query, docs, 2).tolist() == [[0, 2]]  # three tie for first: lowest rows
    assert top_k(query, docs, 4).tolist() == [[0, 2, 4, 1]]
    assert top_k(query, docs, 50).shape == (1, 5)  # fewer documents than k
    repeat = np.tile(docs, (60, 1))
    assert (top_k(query, repeat, 7) == top_k(query, repeat, 7, block=1)).all()


def test_top_k_is_exact_against_a_full_sort() -> None:
    rng = np.random.default_rng(4)
    docs, queries = normalized(rng.standard_normal((500, 8))), normalized(
        rng.standard_normal((40, 8)))
    expected = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :10]
    assert (top_k(queries, docs, 10) == expected).all()


# ---- datasets --------------------------------------------------------------------------------


def test_beir_documents_are_title_and_text(tmp_path: Path) -> None:
    dataset = load_dataset(TINY)
    assert dataset.kind == "beir" and dataset.labelled
    assert dataset.doc_texts[0].startswith("Tides Ocean tides rise")
    assert dataset.queries[0].gains == {"d1": 2.0, "d2": 1.0}
    assert load_dataset(TINY).fingerprint() == dataset.fingerprint()


def test_a_broken_beir_directory_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    with pytest.raises(ConfigError, match="queries.jsonl, qrels/test.tsv missing"):
        load_beir(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "y"}\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\t9\t1\n")
    with pytest.raises(DataError, match="1 document.* missing from corpus.jsonl"):
        load_beir(tmp_path)
    with pytest.raises(ConfigError, match="--sample does not apply to a BEIR"):
        load_dataset(tmp_path, sample=5)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\t1\t1\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": " "}\n')
    with pytest.raises(DataError, match="query 'q' has relevance labels but no text"):
        load_beir(tmp_path)


def test_texts_file_leaves_out_records_without_text_and_samples_by_seed(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    rows = [{"id": i, "body": t} for i, t in enumerate(texts(50))] + [{"id": 99, "body": ""}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    body = TextSource.from_settings("body", None)
    dataset = load_texts(path, text=body, sample=20, queries=5, seed=3)
    assert len(dataset.doc_ids) == 20 and len(dataset.queries) == 5
    assert dataset.population == 50 and not dataset.labelled
    assert any("1 record without text" in n for n in dataset.notes)
    again = load_texts(path, text=body, sample=20, queries=5, seed=3)
    assert again.fingerprint() == dataset.fingerprint()
    assert load_texts(path, text=body, sample=20, seed=4).doc_ids != dataset.doc_ids
    with pytest.raises(DataError, match="no record with text in its field 'text'"):
        load_texts(path)
    titled = load_texts(path, text=TextSource.from_settings(None, "{id}: {body}"), queries=1)
    assert titled.doc_texts[0] == "0: " + texts(1)[0] and titled.warnings == []


def test_a_template_field_no_record_has_is_warned_of(tmp_path: Path, memory_store: Any
                                                     ) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "title": f"T{i}", "body": t})
                              for i, t in enumerate(texts(5))))
    typo = TextSource.from_settings(None, "{title}. {bdoy}")
    assert load_texts(path, text=typo, queries=1).warnings == [
        "The text template of 'notes.jsonl' has {bdoy}, which none of its records has: it "
        "renders empty in every text. A typo?"]
    make_collection(memory_store.client, "docs", n=30)
    typo = TextSource.from_settings(None, "{text} {txet}")
    dataset = load_collection(memory_store, "docs", typo, sample=10, queries=4)
    assert [w[:45] for w in dataset.warnings] == ["The text template of 'docs' has {txet}, which"]
    assert terminal_lines(dataset)[0] == f"warning: {dataset.warnings[0]}"
    right = load_collection(memory_store, "docs", TextSource.from_settings(None, "{text}"),
                            sample=10, queries=4)
    assert right.warnings == []


def terminal_lines(dataset: Any) -> list[str]:
    result = compare(dataset, candidates("hashing:hash-words-v1"))
    return [line for line in compare_report.terminal(result).splitlines()
            if line.startswith("warning:")]


def test_texts_csv_and_repeated_ids(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,text\n1,alpha beta\n2,gamma delta\n")
    assert load_texts(path).doc_ids == ["1", "2"]
    path.write_text("id,text\n1,alpha beta\n1,gamma delta\n")
    with pytest.raises(DataError, match="ids repeat"):
        load_texts(path)


def test_a_collection_sample(memory_store: Any) -> None:
    make_collection(memory_store.client, "docs", n=30)
    dataset = load_collection(memory_store, "docs", TextSource.from_settings(None, None),
                              sample=10, queries=4, seed=1)
    assert dataset.kind == "collection" and dataset.population == 30
    assert len(dataset.doc_ids) == 10 and len(dataset.queries) == 4
    memory_store.swap_alias("live", "docs")  # named as the user named it, not as it resolves
    served = load_collection(memory_store, "live", TextSource.from_settings(None, None),
                             sample=10, queries=4, seed=1)
    assert served.name == "live" and served.fingerprint() == dataset.fingerprint()
    assert "'live' is an alias of collection 'docs'" in served.notes


def test_own_labels_score_a_texts_file_and_stay_in_its_sample(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"n{i}", "text": t})
                              for i, t in enumerate(texts(80))))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"query": "ocean tides", "relevant_ids": ["n0", "n75"]}) + "\n"
                      + json.dumps({"query": "guitar chords", "relevant": {"n3": 2}}) + "\n")
    queries = read_labels(labels)
    keep = {d for q in queries for d in q.gains}
    dataset = label(load_texts(path, sample=10, seed=2, keep=keep), queries, "labels.jsonl")
    assert {"n0", "n75", "n3"} <= set(dataset.doc_ids) and len(dataset.doc_ids) == 10
    assert dataset.labelled and dataset.queries[1].gains == {"n3": 2.0}
    assert any("the 3 relevant ones included" in n for n in dataset.notes)
    result = compare(dataset, candidates("hashing:hash-words-v1"))
    assert set(result.candidates[0].quality) >= {"ndcg@10", "recall@100", "mrr@10"}
    with pytest.raises(DataError, match="1 relevant id .* is not a document of t.jsonl"):
        label(load_texts(path), [Query("q", "x", {"nope": 1.0})], "labels.jsonl")
    labels.write_text('{"query": "no ids"}\n')
    with pytest.raises(DataError, match="record 1 needs a \"query\" and a non-empty"):
        read_labels(labels)


def test_own_labels_fetch_relevant_points_a_collection_sample_missed(
        tmp_path: Path, path_store: Any) -> None:
    make_collection(path_store.client, "docs", n=60)
    path_store.close()
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"query": "credit cards", "relevant_ids": [3, 58]}) + "\n")
    runner = CliRunner()
    result = runner.invoke(cli, [
        "compare", "--collection", "docs", "--qdrant-path", str(tmp_path / "qdrant"),
        "--candidate", "hashing:hash-words-v1", "--sample", "5", "--labels", str(labels),
        "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dataset"]["labelled"] and data["dataset"]["queries"] == 1
    assert data["dataset"]["documents"] == 7  # 5 drawn + the 2 relevant points fetched
    assert "ndcg@10" in data["candidates"][0]["quality"]
    labels.write_text(json.dumps({"query": "x", "relevant_ids": [999]}) + "\n")
    missing = runner.invoke(cli, [
        "compare", "--collection", "docs", "--qdrant-path", str(tmp_path / "qdrant"),
        "--candidate", "hashing:hash-words-v1", "--labels", str(labels)])
    assert missing.exit_code == 1 and "1 relevant id is not a point with text" in (
        missing.output)
    beir = runner.invoke(cli, ["compare", str(TINY), "--candidate", "hashing:hash-words-v1",
                               "--labels", str(labels)])
    assert beir.exit_code == 2 and "brings its own labels" in beir.output


# ---- candidates ------------------------------------------------------------------------------


def test_a_dimensions_list_is_one_candidate_per_size(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("reference: words\ncandidates:\n"
                    "  - {name: words, provider: hashing, model: hash-words-v1}\n"
                    "  - {name: grams, provider: hashing, model: hash-ngrams-v1,"
                    " dimensions: [64, 32], input_types: false}\n")
    found = load_candidates(path)
    assert [c.name for c in found] == ["words", "grams@64", "grams@32"]
    assert [c.provider.dimensions for c in found] == [None, 64, 32]
    assert found[0].reference and not found[1].input_types
    assert found[1].provider.long_input == "truncate"  # compare's default


@pytest.mark.parametrize(("text", "message"), [
    ("candidates: []\n", "lists no candidates"),
    ("candidates:\n  - {provider: hashing}\n", "candidate 1: needs `provider` and `model`"),
    ("candidates:\n  - {provider: hashing, model: m, concurrency: 0}\n", "concurrency"),
    ("candidates:\n  - {provider: hashing, model: m, colour: red}\n", "colour: unknown key"),
    ("reference: nope\ncandidates:\n  - {provider: hashing, model: hash-words-v1}\n",
     "reference 'nope' is not a candidate"),
    ("candidates:\n  - {provider: hashing, model: hash-words-v1}\n"
     "  - {provider: hashing, model: hash-words-v1}\n", "Two candidates are named"),
    ("other: 1\n", "unknown key"),
    ("candidates:\n  - {provider: openai, model: text-embedding-3-small, api_key: sk-x12345}\n",
     r"holds an API key \(candidates.0.api_key; its value is not shown\)"),
])
def test_bad_candidates_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_candidates(path)


def test_candidate_flags() -> None:
    (flag,) = parse_flag("openai:text-embedding-3-small:512")
    assert flag.name == "openai/text-embedding-3-small@512" and flag.provider.dimensions == 512
    assert parse_flag("local:all-MiniLM-L6-v2")[0].provider.concurrency == 1
    assert flag.provider.concurrency == 4  # the provider default
    for bad in ("openai", ":m", "openai:", "openai::512", "ollama:m::512"):
        with pytest.raises(ConfigError, match="--candidate"):
            parse_flag(bad)
    # Ollama's model names hold a colon: only a last part of digits is a size (the tag was
    # taken for a size, "is not a number")
    (tagged,) = parse_flag("ollama:nomic-embed-text:v1.5")
    assert tagged.provider.model == "nomic-embed-text:v1.5" and tagged.provider.dimensions is None
    (sized,) = parse_flag("ollama:nomic-embed-text:v1.5:256")
    assert sized.provider.model == "nomic-embed-text:v1.5" and sized.provider.dimensions == 256
    # a reference may be spelt as its flag (it was refused: "is not a candidate")
    marked = candidates("openai:text-embedding-3-small:512", "hashing:hash-words-v1",
                        reference="hashing:hash-words-v1")
    assert [c.reference for c in marked] == [False, True]


# ---- runs ------------------------------------------------------------------------------------


def test_hashing_run_is_deterministic_and_scores_every_figure() -> None:
    run = [compare(load_dataset(TINY), candidates("hashing:hash-words-v1",
                                                  "hashing:hash-ngrams-v1:64"))
           for _ in range(2)]
    first, second = run[0].candidates, run[1].candidates
    for a, b in zip(first, second, strict=True):
        assert a.ok and a.quality == b.quality and (a.ranked == b.ranked).all()
    words = first[0]
    assert set(words.quality) == {"ndcg@10", "recall@10", "recall@100", "mrr@10",
                                  "agreement@10"}
    assert 0.5 < words.quality["ndcg@10"].value <= 1.0  # type: ignore[operator]
    assert words.quality["agreement@10"].value == 1.0  # the reference
    assert words.storage["float32"].value == 256 * 4 * 1_000_000
    assert words.storage["binary"].value == 32 * 1_000_000
    assert words.cost["run"].value == 0.0 and words.cost["run"].method == "catalog"
    assert words.tokens["documents"].method == "estimated"  # hashing reports no tokens


def test_the_faster_provider_is_reported_faster(tmp_path: Path) -> None:
    with LoopbackServer(dims=16, latency=0.005) as fast, \
            LoopbackServer(dims=16, latency=0.06) as slow:
        found = loopback_candidates(tmp_path / "c.yaml", ("slow", slow), ("fast", fast))
        result = compare(load_dataset(TINY), found)
    by_name = {c.name: c for c in result.candidates}
    fast_r, slow_r = by_name["fast"], by_name["slow"]
    assert fast_r.ok and slow_r.ok
    for q in ("p50", "p95"):
        assert fast_r.latency_ms[q].value < slow_r.latency_ms[q].value  # type: ignore[operator]
    assert slow_r.latency_ms["p50"].value >= 60  # type: ignore[operator]
    assert (fast_r.throughput["texts_per_s"].value  # type: ignore[operator]
            > slow_r.throughput["texts_per_s"].value)
    assert "HTTP request" in fast_r.latency_ms["p50"].note
    # 20 documents and 6 queries in batches of 4: 5 + 2 requests, each timed
    assert len(fast_r.latencies) == 7
    # the same deterministic vectors: identical quality, full agreement
    assert fast_r.quality == {**slow_r.quality, "agreement@10": fast_r.quality["agreement@10"]}
    assert fast_r.quality["agreement@10"].value == 1.0


def test_rate_limiting_is_reported_beside_the_throughput(tmp_path: Path) -> None:
    with LoopbackServer(dims=16) as server:
        server.faults.extend([Fault(429, {"error": {"message": "slow down"}},
                                    headers={"retry-after-ms": "10"})] * 2)
        found = loopback_candidates(tmp_path / "c.yaml", ("limited", server),
                                    limited={"max_retries": 3})
        (limited,) = compare(load_dataset(TINY), found).candidates
    assert limited.ok
    assert limited.requests["throttled"].value == 2 and limited.requests["retries"].value == 2
    assert limited.requests["sent"].value == 9  # 7 answered + 2 throttled
    assert "429s" in compare_report.terminal(compare(load_dataset(TINY), candidates(
        "hashing:hash-words-v1")))


def test_a_candidate_with_a_bad_key_fails_and_the_others_are_measured(tmp_path: Path) -> None:
    with LoopbackServer(dims=16, api_key="right") as server:
        found = loopback_candidates(
            tmp_path / "c.yaml", ("good", server), ("bad", server),
            good={"api_key_env": "GOOD_KEY"}, bad={"api_key_env": "BAD_KEY"},
            environ={"GOOD_KEY": "right", "BAD_KEY": "wrong"})
        result = compare(load_dataset(TINY), found)
    good, bad = result.candidates
    assert good.ok and good.quality["ndcg@10"].value is not None
    assert bad.status == "failed" and "ProviderAuthError" in (bad.error or "")
    assert "wrong" not in (bad.error or "") and "right" not in (bad.error or "")
    assert result.failed == [bad]
    assert "FAILED bad: ProviderAuthError" in compare_report.terminal(result)


def test_a_candidates_messages_name_its_keys_where_they_can_be_set(tmp_path: Path) -> None:
    # they named provider.* keys, which a candidates file does not have
    with LoopbackServer(dims=16, api_key="right") as server:
        found = loopback_candidates(tmp_path / "c.yaml", ("good", server), ("bad", server),
                                    bad={"api_key_env": "BAD_KEY"},
                                    environ={"BAD_KEY": "wrong"})
        found[0].provider.base_url = "http://127.0.0.1:9/v1"  # nothing listens there
        keyless = parse_flag("openai:text-embedding-3-small", environ={})
        result = compare(load_dataset(TINY), [*found, *keyless])
    where = tmp_path / "c.yaml"
    unreachable, refused, flag = (c.error or "" for c in result.candidates)
    assert f"Check base_url of candidate 1 in {where} and" in unreachable
    assert f"read from the variable named by api_key_env of candidate 2 in {where})" in refused
    assert "or name another one with api_key_env of a --candidates file entry" in flag
    assert "provider." not in unreachable + refused + flag


def test_cost_comes_from_measured_tokens_and_the_catalog_price(tmp_path: Path) -> None:
    with LoopbackServer(dims=1536) as server:
        entry = {"name": "small", "provider": "openai-compatible",
                 "model": "text-embedding-3-small", "base_url": server.url + "/v1"}
        path = tmp_path / "c.yaml"
        path.write_text(json.dumps([entry]))
        result = compare(load_dataset(TINY), load_candidates(path, environ={}),
                         collection_size=2_000_000, collection_label="docs")
    (small,) = result.candidates
    docs, queries = small.tokens["documents"].value, small.tokens["queries"].value
    assert small.tokens["documents"].method == "measured"  # the server reported usage
    assert small.cost["run"].value == pytest.approx((docs + queries) * 0.02 / 1e6)  # type: ignore[operator]
    assert small.cost["run"].method == "catalog"
    per_doc = docs / 20  # type: ignore[operator]
    assert small.cost["per_1m_documents"].value == pytest.approx(per_doc * 0.02, abs=1e-4)
    assert small.cost["collection"].value == pytest.approx(per_doc * 2 * 0.02, abs=1e-4)
    assert small.cost["collection"].method == "estimated"
    assert small.throughput["time_for_collection_s"].method == "estimated"


def test_a_second_run_is_answered_by_the_cache_and_a_sweep_shares_it(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "state")
    model = {"model": "text-embedding-3-small"}
    try:
        with LoopbackServer(dims=1536) as server:
            found = loopback_candidates(tmp_path / "c.yaml", ("full", server), full=model)
            first = compare(load_dataset(TINY), found, cache=cache)
            sent = server.requests
            cut = loopback_candidates(tmp_path / "s.yaml", ("cut", server), cut={
                **model, "dimensions": 256, "dimension_policy": "truncate",
                "send_dimensions": False})
            second = compare(load_dataset(TINY), found + cut, cache=cache)
            assert server.requests == sent  # not one request: same texts, same raw vectors
    finally:
        cache.close()
    again, truncated = second.candidates
    assert again.quality == first.candidates[0].quality
    assert again.latency_ms["p50"].value is None and "--no-cache" in again.latency_ms["p50"].note
    assert again.texts["from_cache"] == 26 and again.cost["run"].value == 0.0
    assert again.tokens["documents"].value == first.candidates[0].tokens["documents"].value
    assert again.cost["per_1m_documents"] == first.candidates[0].cost["per_1m_documents"]
    assert truncated.ok and truncated.dims == 256 and truncated.texts["from_cache"] == 26


def test_a_size_cut_client_side_reports_the_timings_of_the_requests_it_reused(
        tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "state")
    model = {"model": "text-embedding-3-small"}
    try:
        with LoopbackServer(dims=1536, latency=0.01) as server:
            found = loopback_candidates(tmp_path / "c.yaml", ("full", server), full=model)
            found += loopback_candidates(tmp_path / "s.yaml", ("cut", server), cut={
                **model, "dimensions": 64, "dimension_policy": "truncate",
                "send_dimensions": False})
            full, cut = compare(load_dataset(TINY), found, cache=cache).candidates
    finally:
        cache.close()
    assert cut.texts["from_cache"] == 26 and cut.dims == 64
    assert cut.latency_ms["p50"].value == full.latency_ms["p50"].value
    assert cut.latency_ms["p50"].note.startswith("as measured for full")
    assert cut.throughput["texts_per_s"].value == full.throughput["texts_per_s"].value
    assert cut.cost["per_1m_documents"] == full.cost["per_1m_documents"]


def test_without_labels_self_retrieval_and_agreement(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts(60)))
    result = compare(load_texts(path, queries=20),
                     candidates("hashing:hash-ngrams-v1", "hashing:hash-words-v1"))
    grams, words = result.candidates
    assert result.quality_keys == ["self_recall@10", "agreement@10"]
    assert grams.quality["self_recall@10"].value == 1.0
    assert grams.quality["agreement@10"].value == 1.0  # the reference
    assert 0.0 <= words.quality["agreement@10"].value < 1.0  # type: ignore[operator]


def test_extrapolation_defaults_to_what_a_sample_was_drawn_from(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts(60)))
    words = candidates("hashing:hash-words-v1")
    assert compare(load_texts(path, queries=5), words).collection_size is None  # all of it
    sampled = compare(load_texts(path, sample=30, queries=5), words)
    assert sampled.collection_size == 60 and sampled.collection_label == "t.jsonl"
    assert "collection" in sampled.candidates[0].cost


def test_hashing_is_not_cached_computing_it_is_cheaper(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "state")
    try:
        for _ in range(2):
            (words,) = compare(load_dataset(TINY), candidates("hashing:hash-words-v1"),
                               cache=cache).candidates
            assert words.texts["from_cache"] == 0 and words.latencies
        assert cache.stats().entries == 0
    finally:
        cache.close()


def test_long_inputs_follow_the_candidate_policy(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    long_text = "word " * 40_000
    path.write_text("\n".join(json.dumps({"text": t}) for t in [*texts(10), long_text]))
    dataset = load_texts(path, queries=3)
    with LoopbackServer(dims=16) as server:
        found = loopback_candidates(tmp_path / "c.yaml", ("cut", server), ("strict", server),
                                    strict={"long_input": "fail"})
        result = compare(dataset, found)
    cut, strict = result.candidates
    assert cut.ok and cut.texts["over_limit"] >= 1
    assert strict.status == "failed" and "1 of 11 document texts are over" in (strict.error or "")


# ---- reports ---------------------------------------------------------------------------------


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one (void elements aside)."""

    VOID = {"meta", "br", "img", "hr", "input", "link", "path", "use", "rect", "circle",
            "line", "stop", "polyline", "polygon", "ellipse"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == []
    return checker


@pytest.fixture
def sweep_result() -> CompareResult:
    return compare(load_dataset(TINY), candidates(
        "hashing:hash-words-v1", "hashing:hash-ngrams-v1:64", "hashing:hash-ngrams-v1:256",
        "openai:text-embedding-3-small"), collection_size=10_000, collection_label="docs")


def test_html_report_parses_and_embeds_charts(sweep_result: CompareResult,
                                              tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the charts extra is not installed")
    text = Path(compare_report.write(sweep_result, tmp_path / "r.html")).read_text()
    checker = _parse(text)
    assert checker.tags.count("svg") == 3  # quality/cost, latency, quality/dims
    assert "<?xml" not in text and "http://" not in text.split("<svg")[0]  # self-contained
    assert "openai/text-embedding-3-small" in text and "failed" in text
    assert compare_report.html_report(sweep_result).count("<svg") == 3


def test_html_report_without_matplotlib_says_why(sweep_result: CompareResult,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    text = compare_report.html_report(sweep_result)
    _parse(text)
    assert "<svg" not in text and "matplotlib is not installed" in text
    assert "nDCG@10" in text


def test_json_schema_is_stable(sweep_result: CompareResult, tmp_path: Path) -> None:
    data = json.loads(Path(compare_report.write(sweep_result, tmp_path / "r.json")).read_text())
    assert data["schema"] == SCHEMA
    assert set(data) == {"schema", "dataset", "reference", "collection_size",
                         "collection_label", "environment", "candidates"}
    assert set(data["dataset"]) == {"name", "kind", "documents", "queries", "labelled",
                                    "population", "sha256", "notes", "warnings"}
    assert {"migrator", "python", "packages", "date", "cache", "seed"} <= set(
        data["environment"])
    ok = data["candidates"][0]
    assert set(ok) == {"name", "provider", "model", "dimensions", "input_types", "reference",
                       "status", "error", "dims", "quality", "latency_ms", "throughput",
                       "tokens", "cost", "storage_per_1m_vectors", "requests", "texts",
                       "seconds", "warnings"}
    for group in ("quality", "latency_ms", "throughput", "tokens", "cost",
                  "storage_per_1m_vectors", "requests"):
        for figure in ok[group].values():
            assert set(figure) == {"value", "method", "note"}
            assert figure["method"] in {"measured", "estimated", "catalog", "computed"}
    failed = data["candidates"][-1]
    assert failed["status"] == "failed" and failed["quality"] == {}


def test_markdown_report_marks_how_figures_were_obtained(sweep_result: CompareResult) -> None:
    text = compare_report.markdown(sweep_result)
    assert text.startswith("# Embedding model comparison")
    assert "## Quality" in text and "## Speed and cost" in text and "## Storage" in text
    assert "~ estimated" in text and "## Failed candidates" in text
    assert "| quality | ndcg@10 |" in text
    with pytest.raises(ConfigError, match="end it in .md, .html or .json"):
        compare_report.write(sweep_result, "report.txt")


# ---- the command -----------------------------------------------------------------------------


def test_cli_writes_every_report_and_exits_1_when_a_candidate_failed(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["compare", str(TINY), "--candidate", "hashing:hash-words-v1", "--candidate",
            "hashing:hash-ngrams-v1", "-o", "r.md", "-o", "r.html", "-o", "r.json", "-q"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.output and "hashing/hash-ngrams-v1" in result.output
    assert all((tmp_path / f"r.{ext}").is_file() for ext in ("md", "html", "json"))
    failing = runner.invoke(cli, [*args, "--candidate", "openai:text-embedding-3-small",
                                  "--json"])
    assert failing.exit_code == 1
    assert "1 of 3 candidates failed: openai/text-embedding-3-small" in failing.output
    data = json.loads(failing.output[:failing.output.rindex("}") + 1])
    assert [c["status"] for c in data["candidates"]] == ["ok", "ok", "failed"]


def test_cli_on_a_collection_extrapolates_to_its_size(tmp_path: Path, path_store: Any) -> None:
    make_collection(path_store.client, "docs", n=40)
    path_store.close()
    result = CliRunner().invoke(cli, [
        "compare", "--collection", "docs", "--qdrant-path", str(tmp_path / "qdrant"),
        "--candidate", "hashing:hash-words-v1", "--sample", "30", "--queries", "10",
        "--size-of", "docs", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dataset"]["documents"] == 30 and data["dataset"]["population"] == 40
    assert data["collection_size"] == 40 and data["collection_label"] == "docs"


@pytest.mark.parametrize(("args", "message"), [
    ([str(TINY)], "Name the models to compare"),
    (["--candidate", "hashing:hash-words-v1"], "Give a dataset"),
    ([str(TINY), "--candidate", "hashing:nope"], "Unknown hashing model 'nope'"),
    ([str(TINY), "--candidate", "hashing:hash-words-v1", "--queries", "0"],
     "0 is not in the range x>=1"),
    ([str(TINY), "--candidate", "hashing", "-q"], "write provider:model"),
])
def test_cli_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["compare", *args])
    assert result.exit_code in (1, 2)
    assert message in result.output


@pytest.mark.parametrize(("out", "message"), [
    ("missing/report.md", "the directory"),
    ("report.pdf", "Cannot tell the report format"),
])
def test_a_report_that_cannot_be_written_is_refused_before_anything_is_paid(
        tmp_path: Path, out: str, message: str) -> None:
    with LoopbackServer(dims=16) as server:
        loopback_candidates(tmp_path / "c.yaml", ("loop", server))
        result = CliRunner().invoke(cli, [
            "compare", str(TINY), "--candidates", str(tmp_path / "c.yaml"),
            "-o", str(tmp_path / "ok.md"), "-o", str(tmp_path / out),
            "--state-dir", str(tmp_path / "state")])
        assert server.requests == 0
    assert result.exit_code == 2, result.output
    assert message in result.output and str(tmp_path / out) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ok.md").exists()


def test_the_compare_command_is_one_library_call(tmp_path: Path) -> None:
    """comparison.run: extrapolation to a collection's size, the cache in the state
    directory, and the reports written, as `migrator compare` does them."""
    from qdrant_client import QdrantClient

    from migrator import MigrationSettings, Settings, StoreSettings
    from migrator.comparison import run

    from .conftest import make_collection

    client = QdrantClient(path=str(tmp_path / "q"))
    make_collection(client, "docs", n=25)
    client.close()
    settings = Settings(source=StoreSettings(path=tmp_path / "q"),
                        migration=MigrationSettings(state_dir=tmp_path / "state"))
    outputs = [tmp_path / "r.md", tmp_path / "r.json"]
    result = run(settings, load_dataset(TINY), candidates("hashing:hash-words-v1"),
                 outputs=outputs, size_of="docs")
    assert result.collection_size == 25 and result.collection_label == "docs"
    assert all(path.stat().st_size > 0 for path in outputs)
    assert json.loads(outputs[1].read_text())["collection_size"] == 25
