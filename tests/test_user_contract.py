"""The user's contract, as a new user meets it: the README's lines and the examples, run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent.demo import demo_dir, prepare_repo
from agent.testing.server import Script, ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOME_", "DEEPSEEK_", "OPENAI_"))}
    env.update({"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
                "TOME_STATE_DIR": str(tmp_path / "state"), "TOME_CACHE_DIR": str(tmp_path / "cache")})
    env.update(extra)
    return env


def test_readme_import_line_gives_the_functions(tmp_path):
    """`from agent import solve, Task, Settings` (README, 'For scripts') must give the function:
    the run module was named agent/solve.py and shadowed it once imported."""
    line = re.search(r"`(from agent import [^`]+)`", README).group(1)
    code = f"{line}\nimport agent.run\nimport agent\nassert callable(solve), solve\nassert agent.solve is solve\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_no_public_name_is_shadowed_by_a_submodule():
    """Every lazy export of `agent` stays what it is after every submodule is imported."""
    import importlib
    import pkgutil

    import agent

    before = {name: getattr(agent, name) for name in agent.__all__}
    for info in pkgutil.iter_modules(agent.__path__):
        importlib.import_module(f"agent.{info.name}")
    for name, value in before.items():
        assert getattr(agent, name) is value, f"agent.{name} changed after importing the submodules"


@pytest.mark.slow
def test_example_solve_issue_runs_as_written(tmp_path):
    """examples/solve_issue.py, run as its docstring says, against the scripted server replaying the demo."""
    repo = prepare_repo(tmp_path / "repo")
    statement = (repo / "ISSUE.md").read_text(encoding="utf-8")
    with ScriptedServer(Script.from_json(demo_dir() / "script.json")) as server:
        env = _clean_env(tmp_path, DEEPSEEK_API_KEY="sk-example-test", TOME_BASE_URL=server.base_url,
                         TOME_SAFETY_SANDBOX="off")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "solve_issue.py"), str(repo), statement,
             "python -m pytest -q tests"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("solved:")
    assert "check passed" in proc.stdout
    assert (tmp_path / "tome.patch").read_text().startswith("diff --git")


@pytest.mark.slow
def test_wheel_ships_the_demo(tmp_path):
    """A wheel install must be able to run `tome demo`: its files are package data."""
    src = tmp_path / "src"  # a copy of the tracked files: the build leaves build/ beside its source
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [wheel] = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in demo_dir().rglob("*") if p.is_file()
               and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    assert shipped and shipped <= names, shipped - names


@pytest.mark.parametrize("layout", ["owner__repo", "owner__repo.git"])
def test_repos_dir_takes_a_clone_or_a_bare_mirror(tmp_path, layout):
    """`--repos-dir` holds owner__repo/ (a clone) or owner__repo.git (`git clone --mirror`)."""
    from agent.evaluation.workspace import find_repo

    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "base"], check=True)
    repos = tmp_path / "repos"
    args = ["--mirror"] if layout.endswith(".git") else []
    subprocess.run(["git", "clone", "-q", *args, str(src), str(repos / layout)], check=True)
    git_dir = find_repo(repos, "owner/repo")
    head = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert len(head) == 40


def _readme_commands() -> list[list[str]]:
    """Every `tome ...` command in the README's bash blocks, as the argv a user types."""
    import shlex

    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0]  # the trailing comments
            for part in re.split(r"\s{2,}|\|\s*|&&\s*", line):
                if part.strip().startswith("tome "):
                    found.append(shlex.split(part.strip())[1:])
    for span in re.findall(r"`(tome [^`]+)`", README):  # and the ones in the text
        found.append(shlex.split(span)[1:])
    return found


@pytest.mark.parametrize("argv", _readme_commands(), ids=" ".join)
def test_every_readme_command_is_accepted_as_typed(argv):
    """The README's commands parse as written (their options exist, their values are accepted)."""
    from agent.cli import _parser

    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected is None:  # `tome --help`
        with pytest.raises(SystemExit) as done:
            _parser(None).parse_args(argv)
        assert done.value.code == 0
        return
    args = _parser(selected).parse_args(argv)
    assert args.command == selected
