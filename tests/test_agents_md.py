"""AGENTS.md as prompt instructions: root and nested files, the user's file, trust, budget, cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.prompt import PromptPrefix
from agent.records import Task
from agent.run import plan_run
from agent.settings import Settings
from loop_helpers import git
from test_cli_solve import env_for, lines_of, tome

FAKE_KEY = "sk-" + "0123456789abcdef" * 2  # the deepseek-api-key rule's shape (agent/secrets.py)


def make_tree(tmp_path: Path) -> Path:
    """A repository with AGENTS.md at the root, in pkg/, in pkg/sub/ and in other/."""
    root = tmp_path / "repo"
    for d in ("pkg/sub", "other"):
        (root / d).mkdir(parents=True)
    (root / "AGENTS.md").write_text("Root rule: run `make test` before submitting.\n")
    (root / "pkg" / "AGENTS.md").write_text("pkg rule: tabs are forbidden.\n")
    (root / "pkg" / "sub" / "AGENTS.md").write_text("sub rule: tabs are required here.\n")
    (root / "other" / "AGENTS.md").write_text("other rule: never shown for pkg tasks.\n")
    (root / "pkg" / "sub" / "mod.py").write_text("def f():\n    return 1\n")
    (root / "other" / "thing.py").write_text("def g():\n    return 2\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty user config dir (XDG_CONFIG_HOME is where tome looks for ~/.config/tome)."""
    config = tmp_path / "home" / ".config"
    (config / "tome").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config / "tome"


def settings(tmp_path: Path, **over) -> Settings:
    return Settings(model="deepseek-v4-pro", api_key="sk-x", state_dir=tmp_path / "state",
                    cache_dir=tmp_path / "cache", mode="non-think", **over)


def test_root_in_the_stable_chunk_nested_with_the_task_nearest_last(tmp_path, home):
    repo = make_tree(tmp_path)
    plan = plan_run(Task(statement="f in pkg/sub/mod.py returns the wrong value"), settings(tmp_path), repo=repo)
    prefix = plan.prefix
    assert "Root rule" in prefix.instructions and "pkg rule" not in prefix.instructions
    task = prefix.task
    assert task.index("pkg rule") < task.index("sub rule")  # outermost first: the nearest wins
    assert "applies to pkg/sub/" in task and "other rule" not in task
    messages = prefix.messages()
    assert messages[0].content == prefix.system and messages[1].content == prefix.instructions
    assert messages[2].content == prefix.pack


def test_user_file_comes_first_and_tome_toml_names_more_files(tmp_path, home):
    repo = make_tree(tmp_path)
    (home / "AGENTS.md").write_text("User rule: answer in English.\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "style.md").write_text("Named rule: short functions.\n")
    plan = plan_run("fix g", settings(tmp_path, instructions=["docs/style.md", "../outside.md"]), repo=repo)
    text = plan.prefix.instructions
    assert text.index("User rule") < text.index("Root rule") < text.index("Named rule")


def test_a_named_file_outside_the_repository_is_ignored_with_a_warning(tmp_path, home):
    repo = make_tree(tmp_path)
    (tmp_path / "secret.md").write_text("outside rule\n")
    (repo / "link.md").symlink_to(tmp_path / "secret.md")
    stages: list[str] = []
    plan = plan_run("fix g", settings(tmp_path, instructions=["../secret.md", "link.md"]), repo=repo,
                    on_stage=stages.append)
    assert "outside rule" not in plan.prefix.instructions
    assert sum("is not a file inside" in s for s in stages) == 2


def test_project_file_may_name_instruction_files(tmp_path, home):
    from agent.settings import load_settings

    repo = make_tree(tmp_path)
    (repo / "tome.toml").write_text('instructions = ["CONTRIBUTING.md"]\n')
    loaded = load_settings(repo, environ={}, user_file=home / "config.toml")
    assert loaded.settings.instructions == ["CONTRIBUTING.md"] and not loaded.warnings


def test_secrets_in_agents_md_are_redacted(tmp_path, home):
    repo = make_tree(tmp_path)
    (repo / "AGENTS.md").write_text(f"Use the key {FAKE_KEY} for staging.\n")
    (repo / "pkg" / "sub" / "AGENTS.md").write_text(f"also {FAKE_KEY}\n")
    plan = plan_run("fix pkg/sub/mod.py", settings(tmp_path), repo=repo)
    assert FAKE_KEY not in plan.prefix.instructions + plan.prefix.task
    assert "[REDACTED:" in plan.prefix.instructions and "[REDACTED:" in plan.prefix.task


def test_instructions_count_in_the_pack_budget(tmp_path, home):
    from agent.tokens import get_tokenizer

    repo = make_tree(tmp_path)
    (repo / "AGENTS.md").write_text("A long rule. " * 400)
    plan = plan_run("fix g", settings(tmp_path, pack_budget=20_000), repo=repo)
    counted = get_tokenizer(settings(tmp_path).profile().tokenizer).count(plan.prefix.instructions)
    assert counted > 1_000 and plan.pack.budget == 20_000 - counted


def test_two_tasks_on_one_commit_share_the_prefix_up_to_the_task(tmp_path, home):
    repo = make_tree(tmp_path)
    one = plan_run("f in pkg/sub/mod.py is wrong", settings(tmp_path), repo=repo).prefix
    two = plan_run("g in other/thing.py is wrong", settings(tmp_path), repo=repo).prefix
    assert one.instructions == two.instructions and one.pack == two.pack
    assert one.stable_sha256() == two.stable_sha256()
    assert one.sha256() != two.sha256()  # the task chunks (and their scoped instructions) differ
    assert "other rule" in two.task and "other rule" not in one.task


def test_a_prefix_saved_before_instructions_keeps_its_hash(tmp_path):
    # A run recorded before the chunk existed must still resume (run.py checks the hash).
    old_json = '{"system":"s","pack":"p","task":"t"}'
    import hashlib

    assert PromptPrefix.model_validate_json(old_json).sha256() == hashlib.sha256(old_json.encode()).hexdigest()


def test_dry_run_lists_the_instructions_chunk(scripted, tmp_path):
    repo = make_tree(tmp_path)
    server = scripted([])
    proc = tome(["solve", "fix pkg/sub/mod.py", "--repo", str(repo), "--base-url", server.base_url,
                 "--dry-run", "--json"], env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    report = lines_of(proc.stdout)[-1]["result"]
    names = [c["name"] for c in report["chunks"]]
    assert names[:3] == ["system", "instructions", "tools"] and all(c["tokens"] > 0 for c in report["chunks"])
    assert not server.requests
