"""Configuration: file, MIGRATOR_* env and flags, with flags > env > file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator import ConfigError, load_settings
from migrator.cli.shell import with_collections
from migrator.settings import CollectionSettings


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (None, None, None, 4),  # default
        (7, None, None, 7),  # file beats default
        (7, "9", None, 9),  # env beats file
        (7, "9", 11, 11),  # flag beats env
        (None, None, 11, 11),  # flag beats default
        (7, None, 11, 11),  # flag beats file
    ],
)
def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_file: int | None,
                    in_env: str | None, flag: int | None, expected: int) -> None:
    config = write(tmp_path, f"provider:\n  concurrency: {in_file}\n" if in_file else "{}\n")
    if in_env:
        monkeypatch.setenv("MIGRATOR_PROVIDER__CONCURRENCY", in_env)
    settings = load_settings(config, {"provider": {"concurrency": flag}})
    assert settings.provider.concurrency == expected


def test_nested_values_merge_across_sources(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, "provider:\n  name: openai\n  model: text-embedding-3-small\n"
                             "  dimensions: 512\n")
    monkeypatch.setenv("MIGRATOR_PROVIDER__CONCURRENCY", "16")
    settings = load_settings(config, {"provider": {"dimensions": 256, "model": None}})
    provider = settings.provider
    assert (provider.name, provider.model, provider.dimensions, provider.concurrency) == (
        "openai", "text-embedding-3-small", 256, 16)


def test_toml_file(tmp_path: Path) -> None:
    config = write(tmp_path, '[source]\nurl = "http://localhost:6333"\n\n'
                             '[[collections]]\nname = "docs"\nalias = "live"\n', "c.toml")
    settings = load_settings(config)
    assert settings.source.url == "http://localhost:6333"
    assert settings.collections[0].alias == "live"


def test_collections_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_COLLECTIONS", '[{"name": "docs", "text_field": "body"}]')
    assert load_settings().collections[0].text_field == "body"


@pytest.mark.parametrize(("name", "value"), [("MIGRATOR_COLLECTIONS", "docs"),
                                             ("MIGRATOR_PROVIDER", '{"api_key": "sk-9x'),])
def test_an_env_list_or_table_that_is_not_json_names_the_variable(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """It read 'error parsing value for field "collections" from source
    "EnvSettingsSource"'."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"{name} is not valid JSON (")
    assert "MIGRATOR_COLLECTIONS='[{\"name\": \"docs\"}]'" in message
    assert "EnvSettingsSource" not in message and "sk-9x" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("provider:\n  modle: x\n",
         r"provider.modle: unknown key \(did you mean 'provider.model'\?\)\.$"),
        ("sourse:\n  path: x\n", r"sourse: unknown key \(did you mean 'source'\?\)"),
        ("migration:\n  batch_size: 8\n",
         r"migration.batch_size: unknown key \(did you mean 'provider.batch_size'\?\)"),
        ("model: m\n", r"model: unknown key \(did you mean 'provider.model'\?\)"),
        ("collections:\n  - name: docs\n    alais: x\n",
         r"collections.0.alais: unknown key \(did you mean 'collections.0.alias'\?\)"),
        ("provider:\n  text_field: x\n",  # under each collection: not one key to name
         "provider.text_field: unknown key; the keys here are name, model, dimensions, "),
        ("verify:\n  treshold: 0.9\n", "verify.treshold: unknown key; the keys here are "
                                        "enabled, sample, seed, k, min_self_recall, "),
        ("provider:\n  dimensions: lots\n", "provider.dimensions: Input should be a valid "
                                            "integer.*got 'lots'"),
        ("provider:\n  name: acme\n", "provider.name: unknown provider 'acme'; choose one "
                                        "of hashing"),
        ("migration:\n  missing_text: ignore\n", "migration.missing_text"),
        ("collections:\n  - name: docs\n    text_field: a\n    text_template: '{b}'\n",
         "set text_field or text_template, not both"),
        ("source:\n  path: q\n  url: http://x\n", "set either path"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize(("name", "meant"), [
    ("MIGRATOR_PROVIDER__MODLE", "MIGRATOR_PROVIDER__MODEL"),
    ("MIGRATOR_MIGRATION__BATCH_SIZE", "MIGRATOR_PROVIDER__BATCH_SIZE"),
    ("MIGRATOR_PROVDER__API_KEY_ENV", "MIGRATOR_PROVIDER__API_KEY_ENV"),
])
def test_a_mistyped_variable_names_the_one_it_meant(monkeypatch: pytest.MonkeyPatch, name: str,
                                                    meant: str) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError, match=f"{name}: no key .* \\(did you mean {meant}\\?\\)"):
        load_settings()


def test_bad_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_PROVIDER__CONCURRENCY", "0")
    with pytest.raises(ConfigError, match="provider.concurrency: Input should be greater"):
        load_settings()


def test_missing_file_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must end in .yaml, .yml or .toml"):
        load_settings(write(tmp_path, "{}", "config.ini"))


def test_unreadable_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Could not read the configuration"):
        load_settings(write(tmp_path, "provider: [unclosed\n"))


def test_api_keys_come_from_the_named_variables_and_are_never_shown(tmp_path: Path) -> None:
    config = write(tmp_path, "provider:\n  name: openai\n  model: text-embedding-3-small\n"
                             "  api_key_env: MY_KEY\n")
    settings = load_settings(config, environ={"MY_KEY": "sk-secret-123", "QDRANT_API_KEY": "q"})
    assert settings.provider.api_key is not None
    assert settings.provider.api_key.get_secret_value() == "sk-secret-123"
    assert settings.source.api_key is not None
    assert "sk-secret-123" not in repr(settings) and "sk-secret-123" not in str(
        settings.model_dump())


def test_default_key_variable_per_provider() -> None:
    settings = load_settings(None, {"provider": {"name": "openrouter", "model": "m"}},
                             environ={"OPENROUTER_API_KEY": "k"})
    assert settings.provider.key_env == "OPENROUTER_API_KEY"
    assert settings.provider.api_key is not None


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "provider:\n  api_key: [sk-should-not-appear]\n"))
    assert "sk-should-not-appear" not in str(caught.value)


@pytest.mark.parametrize("section", ["provider", "source", "target"])
def test_a_key_given_as_its_variables_name_is_refused_and_never_echoed(section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {section: {"api_key_env": "sk-proj-abc123-xyz"}})
    assert "sk-proj-abc123-xyz" not in str(caught.value)
    assert "not the name of an environment variable" in str(caught.value)


def test_a_variable_name_that_may_be_a_key_is_not_printed() -> None:
    pasted = "AbCdEf1234567890abcdef1234567890abcdef12"  # a legal name, but no one's variable
    for name, hidden in ((pasted, True), (None, False)):
        provider = {"name": "openai", "model": "m", "api_key_env": name}
        settings = load_settings(None, {"provider": provider}, environ={})
        with pytest.raises(ConfigError) as missing:
            settings.provider.key()
        assert (pasted in str(missing.value)) is False
        assert ("set the environment variable OPENAI_API_KEY" in str(missing.value)) is (
            not hidden)


def test_secrets_in_a_url_are_masked_before_it_is_printed() -> None:
    from migrator.naming import redact_url

    url = "https://u:pw@h.example/v1?api-version=2024-10-21&api_key=k1&sig=s2#frag"
    assert redact_url(url) == ("https://***@h.example/v1?api-version=2024-10-21&api_key=***"
                               "&sig=***#frag")


def test_urls_with_credentials_are_redacted() -> None:
    settings = load_settings(None, {"source": {"url": "https://user:pw@qdrant.example:6333"}})
    assert settings.source.location == "https://***@qdrant.example:6333"


def test_collection_spec_parsing() -> None:
    spec = CollectionSettings.parse("docs, text_field=meta.body ,alias=live,target=docs_v2")
    assert (spec.name, spec.text_field, spec.alias, spec.target) == (
        "docs", "meta.body", "live", "docs_v2")
    with pytest.raises(ConfigError, match="'oops' is not key=value"):
        CollectionSettings.parse("docs,oops")
    with pytest.raises(ConfigError, match="--collection docs.*colour: unknown key"):
        CollectionSettings.parse("docs,colour=red")
    with pytest.raises(ConfigError, match="'alias' is given twice"):  # the last one won
        CollectionSettings.parse("docs,alias=a,alias=b")
    with pytest.raises(ConfigError, match="a template, goes in its own flag: --text-template"):
        CollectionSettings.parse("docs,text_template={title}, {text}")


@pytest.mark.parametrize(("spec", "message"), [
    ("docs,target=a/b", "'a/b' holds '/'"),
    ("docs,target=", "cannot be named ''"),
    ("docs,alias=live:2", "'live:2' holds ':'"),
    ("docs,target=" + "x" * 256, "at most 255 characters"),
    ("docs,new_vector=a/b", "'a/b' holds '/', which Qdrant does not allow in a vector name"),
    ("docs,new_vector=", "a new vector cannot be named ''"),
    ("docs,new_vector=" + "é" * 101, "a vector name is at most 200 bytes"),
])
def test_a_name_qdrant_would_refuse_is_refused_first(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CollectionSettings.parse(spec)


def test_collection_flags_fill_specs_and_override_config(tmp_path: Path) -> None:
    config = write(tmp_path, "collections:\n  - name: a\n    text_template: '{t}'\n"
                             "  - name: b\n")
    settings = with_collections(load_settings(config), text_field="body")
    assert [(c.name, c.text_field, c.text_template) for c in settings.collections] == [
        ("a", "body", None), ("b", "body", None)]

    settings = with_collections(load_settings(), ["x,text_field=own", "y"], text_field="body",
                                vector="dense")
    assert [(c.name, c.text_field, c.vector) for c in settings.collections] == [
        ("x", "own", "dense"), ("y", "body", "dense")]


def test_a_blank_text_field_is_refused_not_read_as_the_default(tmp_path: Path) -> None:
    """`--text-field "$FIELD"` with the variable unset embedded the default field 'text'."""
    for flags in ({"text_field": ""}, {"text_template": "  "}):
        with pytest.raises(ConfigError, match="names no text"):
            with_collections(load_settings(), ["docs"], **flags)
    with pytest.raises(ConfigError, match="text_field: '' names no text"):
        CollectionSettings.parse("docs,text_field=")


def test_a_distance_may_be_written_in_any_case(tmp_path: Path) -> None:
    config = write(tmp_path, "collections:\n  - name: a\n    distance: cosine\n")
    assert load_settings(config).collections[0].distance == "Cosine"
    assert with_collections(load_settings(), ["b"], distance="euclid").collections[
        0].distance == "Euclid"


def test_alias_flag_needs_exactly_one_collection() -> None:
    with pytest.raises(ConfigError, match="--alias name one collection, but this run has 2"):
        with_collections(load_settings(), ["a", "b"], alias="live")


def test_text_field_and_template_flags_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="--text-field or --text-template, not both"):
        with_collections(load_settings(), ["a"], text_field="x", text_template="{y}")


def test_fallback_keys_come_from_their_own_variables(tmp_path: Path) -> None:
    config = write(tmp_path, "provider:\n  name: openai\n  model: text-embedding-3-small\n"
                             "  fallbacks:\n    - name: openrouter\n"
                             "      model: openai/text-embedding-3-small\n")
    settings = load_settings(config, environ={"OPENAI_API_KEY": "a", "OPENROUTER_API_KEY": "b"})
    fallback = settings.provider.fallbacks[0]
    assert fallback.api_key is not None and fallback.api_key.get_secret_value() == "b"


def test_collections_in_a_file_may_be_written_as_on_the_command_line(tmp_path: Path) -> None:
    config = write(tmp_path, "collections:\n  - docs,text_field=body,alias=live\n  - faq\n")
    settings = load_settings(config)
    assert [(c.name, c.text_field, c.alias) for c in settings.collections] == [
        ("docs", "body", "live"), ("faq", None, None)]


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"),
                                            ("just text\n", "a single value")])
def test_a_file_that_is_no_mapping_says_so(tmp_path: Path, text: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=f"holds {kind}, not a mapping of sections"):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize(("name", "text", "where"), [
    ("c.yaml", "provider:\n  name: openai\n  model: m\n  api_key: sk-in-a-file-0123\n",
     "provider.api_key"),
    ("c.toml", '[source]\nurl = "http://q:6333"\napi_key = "sk-in-a-file-0123"\n',
     "source.api_key"),
    ("c.yaml", "provider:\n  name: openai\n  model: m\n  fallbacks:\n    - name: azure\n"
               "      model: m\n      api_key: sk-in-a-file-0123\n",
     "provider.fallbacks.0.api_key"),
])
def test_a_key_written_in_a_file_is_refused_unshown(tmp_path: Path, name: str, text: str,
                                                    where: str) -> None:
    """The README says keys are read only from environment variables; a file's key was
    taken, on its way to version control."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    message = str(refused.value)
    assert f"{path} holds an API key ({where}; its value is not shown)" in message
    assert f"name that variable with {where}_env" in message
    assert "sk-in-a-file-0123" not in message
