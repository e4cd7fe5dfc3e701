"""Model names: aliases, unknown names as usage errors with the closest match, `tome models`, and a
stated stand-in counter for a tokenizer no offline package ships."""

from __future__ import annotations

import json

import pytest

from agent.errors import ConfigError
from agent.profiles import PROFILES, get_profile
from agent.settings import load_settings
from test_cli_solve import env_for, lines_of, tome


@pytest.mark.parametrize(("typed", "profile"), [("pro", "deepseek-v4-pro"), ("flash", "deepseek-flash"),
                                                 ("FLASH", "deepseek-flash"), ("deepseek-v4-pro", "deepseek-v4-pro")])
def test_aliases_pick_the_profile(typed, profile):
    assert get_profile(typed).name == profile


@pytest.mark.parametrize(("typed", "closest"), [("deepseek-v4pro", "deepseek-v4-pro"), ("deepsek-flash", "deepseek-flash")])
def test_unknown_names_are_errors_naming_the_closest(typed, closest):
    with pytest.raises(ConfigError, match=f"Did you mean '{closest}'"):
        get_profile(typed)


def test_unknown_name_with_a_base_url_is_generic_with_a_warning(tmp_path):
    loaded = load_settings(tmp_path, cli={"model": "my-local-llm", "base_url": "http://127.0.0.1:8000/v1"},
                           environ={}, user_file=tmp_path / "none.toml")
    assert loaded.settings.profile().name == "my-local-llm"
    assert any("generic" in w and "32,768" in w for w in loaded.warnings)


@pytest.mark.parametrize("as_json", [True, False])
def test_cli_unknown_model_exits_2_before_anything(tmp_path, repo, as_json):
    args = ["solve", "x", "--repo", str(repo), "--model", "deepseek-v4pro", *(["--json"] if as_json else [])]
    proc = tome(args, env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 2
    assert "Did you mean 'deepseek-v4-pro'" in proc.stderr
    assert "pack budget" not in proc.stderr  # the old symptom: a 32K generic profile, then a budget of 0
    if as_json:
        assert json.loads(proc.stdout.splitlines()[-1])["result"]["exit_code"] == 2


def test_tome_models_lists_every_profile(tmp_path):
    proc = tome(["models", "--json"], env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = lines_of(proc.stdout)
    by_name = {r["name"]: r for r in rows[:-1]}
    assert set(by_name) == set(PROFILES)
    assert "flash" in by_name["deepseek-flash"]["aliases"]
    assert by_name["deepseek-v4-pro"]["context_window"] == 1_048_576
    assert "stands in for o200k_base" in by_name["gpt-4.1"]["tokenizer"]
    table = tome(["models"], env=env_for(tmp_path), cwd=tmp_path)
    assert "deepseek-v4-pro" in table.stdout and "1,048,576" in table.stdout


def test_a_profile_whose_tokenizer_cannot_load_packs_with_a_stated_stand_in(tmp_path, repo):
    """gpt-4.1 counts with o200k_base, which no offline package ships: tome packs with cl100k_base
    and says so, instead of failing."""
    proc = tome(["pack", str(repo), "--model", "gpt-4.1", "--json"], env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tokenizer"] == "cl100k_base"
    doctor = tome(["doctor", "--json"], env={**env_for(tmp_path), "TOME_MODEL": "gpt-4.1",
                                             "OPENAI_API_KEY": "sk-x"}, cwd=repo)
    assert "not available offline: counting with cl100k_base" in doctor.stdout
