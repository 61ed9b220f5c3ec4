from __future__ import annotations

import pytest

from migrator import ConfigError
from migrator.texts import TextSource


@pytest.mark.parametrize(
    ("field", "payload", "text", "reason"),
    [
        ("text", {"text": "hello"}, "hello", ""),
        ("metadata.content", {"metadata": {"content": "deep"}}, "deep", ""),
        ("chunks.1.text", {"chunks": [{"text": "a"}, {"text": "b"}]}, "b", ""),
        ("lines", {"lines": ["one", "two"]}, "one\ntwo", ""),
        ("text", {}, None, "no payload field 'text'"),
        ("text", {"text": None}, None, "payload field 'text' is null"),
        ("text", {"text": " \n\t"}, None, "payload field 'text' is empty"),
        ("text", {"text": {"nested": 1}}, None, "payload field 'text' is dict, not text"),
        ("a.b", {"a": "string"}, None, "no payload field 'a.b'"),
        # Qdrant's and JSONPath's index syntax, and a key that holds the dots itself (a
        # flattened payload): both read as missing, so every point was "without text"
        ("chunks[1].text", {"chunks": [{"text": "a"}, {"text": "b"}]}, "b", ""),
        ("meta.content", {"meta.content": "flat"}, "flat", ""),
        ("meta.content", {"meta.content": "flat", "meta": {"content": "deep"}}, "flat", ""),
        ("chunks[5].text", {"chunks": [{"text": "a"}]}, None, "no payload field 'chunks[5].text'"),
    ],
)
def test_field(field: str, payload: dict[str, object], text: str | None, reason: str) -> None:
    assert TextSource.from_settings(field, None).extract(payload) == (text, reason)


def test_template_renders_missing_fields_empty() -> None:
    source = TextSource.from_settings(None, "{title}\n\n{meta.body}")
    assert source.extract({"title": "T", "meta": {"body": "B"}}) == ("T\n\nB", "")
    assert source.extract({"meta": {"body": "B"}}) == ("\n\nB", "")
    assert source.extract({"other": 1})[0] is None


def test_template_needs_a_placeholder() -> None:
    with pytest.raises(ConfigError, match="has no {field} placeholder"):
        TextSource.from_settings(None, "static text")


def test_default_field_is_text() -> None:
    assert TextSource.from_settings(None, None).describe() == "field 'text'"


def test_a_template_field_no_payload_has_is_found() -> None:
    """A mistyped field renders empty in every text: the run went on, every text the title
    alone."""
    source = TextSource.from_settings(None, "{title}. {txet} {meta.lang} {sometimes}")
    payloads = [{"title": "a", "meta": {"lang": None}}, {"title": "b", "sometimes": "x"}]
    assert source.unfilled(payloads) == ["txet"]
    assert source.unfilled_warnings("docs", payloads) == [
        "The text template of 'docs' has {txet}, which none of its first 2 points has: it "
        "renders empty in every text. A typo?"]
    assert TextSource.from_settings("txet", None).unfilled(payloads) == []  # a field: an error
    assert source.unfilled_warnings("docs", []) == []


def test_a_blank_field_is_refused_for_every_command() -> None:
    """`migrator compare --text-field ''` (and ingest) embedded the default field 'text'."""
    with pytest.raises(ConfigError, match="text_field '' names no text"):
        TextSource.from_settings("", None)
    with pytest.raises(ConfigError, match="text_field ' ' names no text"):
        TextSource.from_settings(" ", None)
    assert TextSource.from_settings(None, None).field == "text"


def test_a_template_field_that_holds_objects_renders_empty_and_is_warned_of() -> None:
    """`{chunks}` over a list of objects embedded Python's repr of them, "[{'text': 'a'}...",
    as if it were the text, without a word."""
    source = TextSource.from_settings(None, "{title}. {chunks} {meta}")
    payload = {"title": "T", "chunks": [{"text": "a"}, {"text": "b"}], "meta": {"lang": "en"}}
    assert source.extract(payload) == ("T.  ", "")
    assert source.unfilled_warnings("docs", [payload]) == [
        "The text template of 'docs' has {chunks}, which holds objects, not text, in its "
        "first point: they render empty. Name a field inside, such as {chunks.0.text}.",
        "The text template of 'docs' has {meta}, which holds objects, not text, in its "
        "first point: they render empty. Name a field inside, such as {meta.lang}."]
    assert TextSource.from_settings(None, "{tags}").extract({"tags": ["a", "b"]}) == ("a\nb", "")


def test_a_template_placeholder_takes_a_format_spec() -> None:
    """`{price:.2f}` was looked up as a field named 'price:.2f': it rendered empty in every
    text, and the run went on with the price left out."""
    source = TextSource.from_settings(None, "{title} costs {price:.2f} ({stock:>4}|{tags:.1f})")
    assert source.fields == ["title", "price", "stock", "tags"]
    payload = {"title": "Pen", "price": 3, "stock": 12, "tags": [1, 2]}
    assert source.extract(payload) == ("Pen costs 3.00 (  12|1.0\n2.0)", "")
    assert source.unfilled([payload]) == []
    assert source.extract({"title": "Pen"}) == ("Pen costs  (|)", "")  # missing: empty


def test_a_format_spec_that_does_not_fit_the_value_is_the_points_reason() -> None:
    source = TextSource.from_settings(None, "{title} costs {price:.2f}")
    assert source.extract({"title": "Pen", "price": "3,50"}) == (
        None, "template field {price:.2f} cannot format str '3,50' (Unknown format code 'f' "
              "for object of type 'str')")


def test_a_key_with_a_colon_is_a_field_and_doubled_braces_are_literal() -> None:
    source = TextSource.from_settings(None, "{{raw}} {dc:title} {a:}")
    assert source.fields == ["dc:title", "a"]
    assert source.extract({"dc:title": "T", "a": 1}) == ("{raw} T 1", "")
    with pytest.raises(ConfigError, match="has no {field} placeholder"):
        TextSource.from_settings(None, "{{title}}")
