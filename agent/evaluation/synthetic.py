"""A tiny SWE-style instance built from scratch: a git repo whose gold patch fixes a failing test.

Used by the tests and handy for trying `tome eval` without fetching real repositories.
"""

from __future__ import annotations

from pathlib import Path

from agent.evaluation.envspecs import EnvSpec, register_spec
from agent.evaluation.score import ScoreConfig
from agent.records import EvalInstance
from tools.gitcmd import git as run_git

__all__ = ["SYNTHETIC_REPO", "make_synthetic", "synthetic_setup", "synthetic_spec_table"]

SYNTHETIC_REPO = "example/calc"

_SOURCE = "def add(a, b):\n    return a - b\n\n\ndef neg(a):\n    return -a\n"
_TESTS = "from calc import add, neg\n\n\ndef test_neg():\n    assert neg(2) == -2\n"


def synthetic_spec_table() -> dict[str, dict[str, EnvSpec]]:
    """The spec table with the synthetic repo run by this interpreter (no venv, no install)."""
    spec = EnvSpec(runner="pytest", install=[], use_current_interpreter=True, timeout=120,
                   test_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    return register_spec(SYNTHETIC_REPO, spec)


def _git(repo: Path, *args: str) -> str:
    return run_git("-c", "user.name=t", "-c", "user.email=t@example.com", *args, cwd=repo).stdout


def _diff_after(repo: Path, path: str, text: str) -> str:
    target = repo / path
    old = target.read_text() if target.exists() else None
    target.write_text(text)
    _git(repo, "add", "-N", path)
    diff = _git(repo, "diff")
    if old is None:
        _git(repo, "rm", "-q", "--cached", path)
        target.unlink()
    else:
        target.write_text(old)
    return diff


def make_synthetic(repos_dir: Path, *, instance_id: str = "example__calc-1") -> EvalInstance:
    """Create (or reuse) `repos_dir/example__calc` and return an instance on it."""
    repo = repos_dir / SYNTHETIC_REPO.replace("/", "__")
    if not (repo / ".git").exists():
        (repo / "calc").mkdir(parents=True)
        (repo / "tests").mkdir()
        (repo / "calc" / "__init__.py").write_text(_SOURCE)
        (repo / "tests" / "test_calc.py").write_text(_TESTS)
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", "calc with a bug in add")
    base = _git(repo, "rev-parse", "HEAD").strip()
    gold = _diff_after(repo, "calc/__init__.py", _SOURCE.replace("a - b", "a + b"))
    test_patch = _diff_after(repo, "tests/test_calc.py",
                             _TESTS + "\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    return EvalInstance(
        instance_id=instance_id, repo=SYNTHETIC_REPO, base_commit=base, version="1.0",
        problem_statement="add(2, 3) returns -1 instead of 5.", patch=gold, test_patch=test_patch,
        fail_to_pass=["tests/test_calc.py::test_add"], pass_to_pass=["tests/test_calc.py::test_neg"],
        difficulty="<15 min fix",
    )


def synthetic_setup(root: Path) -> tuple[EvalInstance, ScoreConfig]:
    """The synthetic instance under `root/repos` and a ScoreConfig with its folders under `root`."""
    inst = make_synthetic(root / "repos")
    cfg = ScoreConfig(repos_dir=root / "repos", env_cache=root / "envs", work_dir=root / "work",
                      specs=synthetic_spec_table())
    return inst, cfg
