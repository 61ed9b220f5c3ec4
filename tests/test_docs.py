"""Meta-tests: the docs and the public API stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import migrator
from migrator import ConfigError, load_settings
from migrator.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_is_in_the_readme(command: str) -> None:
    headings = [line for line in README.splitlines() if line.startswith("### ")]
    assert any(f"`migrator {command}`" in heading for heading in headings)
    assert f"migrator {command} " in README or f"migrator {command}\n" in README


def test_all_is_sorted_and_complete() -> None:
    assert migrator.__all__ == sorted(migrator.__all__)
    for name in migrator.__all__:
        assert hasattr(migrator, name), name
    public = {n for n in vars(migrator) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(migrator, n)).__name__ == "module"}
    assert public - modules - {"annotations"} - set(migrator.__all__) == set()


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_example_configs_load(config: Path) -> None:
    try:
        settings = load_settings(config)
    except ConfigError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(str(exc))
    assert settings.collections


def test_readme_config_example_matches_the_file() -> None:
    block = re.search(r"with `configs/openai-3-small-512.yaml`:\n\n```yaml\n(.*?)```", README,
                      re.S)
    assert block is not None
    shown = yaml.safe_load(block.group(1))
    actual = yaml.safe_load((ROOT / "configs" / "openai-3-small-512.yaml").read_text())
    for section, values in shown.items():
        for key, value in (values.items() if isinstance(values, dict) else []):
            assert actual[section][key] == value
    assert shown["collections"][0].items() <= actual["collections"][0].items()


def test_readme_setup_commands() -> None:
    assert "pip install -e . && migrator demo" in README
    assert "pip install -e '.[test]' && python -m pytest" in README
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "compare").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_example_candidate_files_load(path: Path) -> None:
    from migrator.comparison.candidates import load_candidates

    found = load_candidates(path, environ={})
    assert found and sum(c.reference for c in found) == 1
