"""Score one prediction: fresh checkout, model patch, test patch, named tests, parsed statuses.

Resolved iff every FAIL_TO_PASS and PASS_TO_PASS test passes. Errors are harness-side: the
environment would not build, the patch would not apply, the tests timed out; each comes with
a message and the log folder to look in.
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from unidiff import PatchSet

from agent.errors import TomeError
from agent.evaluation.envs import Environment, ensure_env, env_key, run_logged
from agent.evaluation.envspecs import EnvSpec, env_spec, test_command
from agent.evaluation.logparse import PARSERS, match_tests
from agent.evaluation.workspace import (
    Checkout,
    checkout,
    file_lock,
    find_repo,
    git,
    remove_checkout,
)
from agent.records import EvalInstance, Prediction, Score

__all__ = ["PatchError", "ScoreConfig", "apply_patch", "prepare_checkout", "score_prediction", "setup_commit"]


class ScoreConfig(BaseModel):
    """Where repositories, environments and checkouts live, and how long tests may run."""

    model_config = ConfigDict(extra="forbid")

    repos_dir: Path
    env_cache: Path
    work_dir: Path = Field(description="Scratch folder for per-task checkouts.")
    timeout: float | None = Field(default=None, description="Seconds for a test run (spec's default if None).")
    keep_checkouts: bool = False
    specs: dict[str, dict[str, EnvSpec]] | None = Field(
        default=None, description="Spec table to use instead of envspecs.SPECS.")


class PatchError(TomeError):
    """A patch does not apply to the checkout."""


def _patch_paths(patch: str) -> list[str]:
    paths: list[str] = []
    for f in PatchSet(patch):
        for p in (f.source_file, f.target_file):
            if p and p != "/dev/null":
                p = p[2:] if p[:2] in ("a/", "b/") else p
                if p not in paths:
                    paths.append(p)
    return paths


def apply_patch(repo: Path, patch: str, *, name: str, log: Path) -> None:
    """Apply a unified diff with `git apply`, falling back to `patch --fuzz`; PatchError if neither can."""
    file = log.parent / f"{name}.diff"
    file.write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
    first = git("apply", "--verbose", "--whitespace=nowarn", str(file), cwd=repo, check=False)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ git apply {file.name}\n{first.stdout}{first.stderr}[exit {first.returncode}]\n")
    if first.returncode == 0:
        return
    dry = subprocess.run(["patch", "--batch", "--fuzz=5", "-p1", "--dry-run", "-i", str(file)],
                         cwd=repo, capture_output=True, text=True, check=False)
    if dry.returncode == 0:
        done = subprocess.run(["patch", "--batch", "--fuzz=5", "-p1", "-i", str(file)],
                              cwd=repo, capture_output=True, text=True, check=False)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"$ patch --fuzz=5 -p1\n{done.stdout}{done.stderr}[exit {done.returncode}]\n")
        if done.returncode == 0:
            return
    why = (first.stderr.strip() or first.stdout.strip()).splitlines()
    raise PatchError(f"{name} patch does not apply: " + " | ".join(why[-4:]))


def prepare_checkout(instance: EvalInstance, config: ScoreConfig, dest: Path) -> Checkout:
    """A clean checkout of the instance's repository at its base commit."""
    return checkout(find_repo(config.repos_dir, instance.repo), instance.base_commit, dest)


def setup_commit(instance: EvalInstance, git_dir: Path) -> str:
    """The commit an environment is built at: environment_setup_commit if the cache has it, else base."""
    c = instance.environment_setup_commit
    if c and git("cat-file", "-e", f"{c}^{{commit}}", git_dir=git_dir, check=False).returncode == 0:
        return c
    return instance.base_commit


def _reset_test_files(repo: Path, base: str, test_patch: str) -> None:
    # The model may have edited files the test patch touches: put them back first (as SWE-bench).
    for path in _patch_paths(test_patch):
        known = git("cat-file", "-e", f"{base}:{path}", cwd=repo, check=False).returncode == 0
        if known:
            git("checkout", base, "--", path, cwd=repo)
        elif (repo / path).exists():
            (repo / path).unlink()


def _error(instance: EvalInstance, prediction: Prediction, log_dir: Path, message: str, **kw: float) -> Score:
    return _base_score(instance, prediction, log_dir).model_copy(
        update={"status": "error", "error": message, **kw})


def _base_score(instance: EvalInstance, prediction: Prediction, log_dir: Path) -> Score:
    return Score(
        instance_id=instance.instance_id, repo=instance.repo, difficulty=instance.difficulty,
        model=prediction.model_name_or_path, status="unresolved",
        empty_patch=not prediction.model_patch.strip(), cost=prediction.cost,
        usage=prediction.usage, mode=prediction.mode, solve_time=prediction.elapsed,
        log_dir=str(log_dir),
    )


def score_prediction(instance: EvalInstance, prediction: Prediction, *, config: ScoreConfig,
                     log_dir: Path) -> Score:
    """Check one prediction on a fresh checkout and return its Score (never raises for a bad patch)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "setup.log"
    log.write_text("")
    t0 = time.monotonic()
    try:
        spec = env_spec(instance.repo, instance.version, table=config.specs)
        git_dir = find_repo(config.repos_dir, instance.repo)
        env = ensure_env(spec, env_key(instance.repo, instance.version), cache_dir=config.env_cache,
                         git_dir=git_dir, setup_commit=setup_commit(instance, git_dir))
    except TomeError as e:
        return _error(instance, prediction, log_dir, f"environment: {e}", setup_time=time.monotonic() - t0)
    dest = config.work_dir / instance.instance_id
    try:
        co = checkout(git_dir, instance.base_commit, dest)
        return _score_in(instance, prediction, spec, env, co, log_dir=log_dir, config=config, t0=t0)
    except PatchError as e:
        return _error(instance, prediction, log_dir, str(e), setup_time=time.monotonic() - t0)
    except (TomeError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or ""
        return _error(instance, prediction, log_dir, f"{type(e).__name__}: {e} {detail}".strip(),
                      setup_time=time.monotonic() - t0)
    finally:
        if not config.keep_checkouts:
            remove_checkout(git_dir, dest)


def _score_in(instance: EvalInstance, prediction: Prediction, spec: EnvSpec, env: Environment,
              co: Checkout, *, log_dir: Path, config: ScoreConfig, t0: float) -> Score:
    log = log_dir / "setup.log"
    repo = co.path
    vars_ = env.env_vars(spec, repo, ccache_dir=config.env_cache / "ccache")
    if co.missing and spec.restore:
        for step in spec.restore:
            run_logged(step, cwd=repo, env=vars_, log=log)
    if prediction.model_patch.strip():
        apply_patch(repo, prediction.model_patch, name="model", log=log)
    _reset_test_files(repo, instance.base_commit, instance.test_patch)
    apply_patch(repo, instance.test_patch, name="test", log=log)
    (log_dir / "patch.diff").write_text(git("diff", cwd=repo).stdout, encoding="utf-8")
    timeout = config.timeout or spec.timeout
    with ExitStack() as stack:
        if spec.task_install and env.root is not None:  # the task's build rebinds the shared env
            stack.enter_context(file_lock(config.env_cache / f"{env.key}.use.lock"))
        for step in spec.task_install:
            if run_logged(step, cwd=repo, env=vars_, log=log, timeout=timeout):
                return _error(instance, prediction, log_dir,
                              f"task install `{step}` failed; see {log}", setup_time=time.monotonic() - t0)
        setup_time = time.monotonic() - t0
        out = log_dir / "test_output.txt"
        out.write_text("")
        argv = [env.python, *test_command(spec, instance.test_patch)]
        t1 = time.monotonic()
        code = run_logged(argv, cwd=repo, env=vars_, log=out, timeout=timeout)
        test_time = time.monotonic() - t1
    if code == 124:
        return _error(instance, prediction, log_dir, f"tests timed out after {timeout:.0f}s; see {out}",
                      setup_time=setup_time, test_time=test_time)
    score = _base_score(instance, prediction, log_dir).model_copy(
        update={"setup_time": setup_time, "test_time": test_time})
    return judge(instance, score, runner=spec.runner, log_dir=log_dir)


def judge(instance: EvalInstance, score: Score, *, runner: str, log_dir: Path) -> Score:
    """Parse the task's test log and decide: resolved iff every FAIL_TO_PASS and PASS_TO_PASS passes."""
    log = (log_dir / "test_output.txt").read_text(encoding="utf-8", errors="replace")
    parsed = PARSERS[runner](log)
    (log_dir / "tests.json").write_text(json.dumps({k: v.value for k, v in parsed.items()}, indent=1))
    f2p = match_tests(instance.fail_to_pass, parsed)
    p2p = match_tests(instance.pass_to_pass, parsed)
    resolved = all(s.ok for s in f2p.values()) and all(s.ok for s in p2p.values())
    return score.model_copy(update={"status": "resolved" if resolved else "unresolved",
                                    "fail_to_pass": f2p, "pass_to_pass": p2p})


def rescore(instance: EvalInstance, score: Score, *, config: ScoreConfig) -> Score:
    """Judge a finished task again from its kept test log (after a parser fix); errors stay errors."""
    if score.status == "error" or not score.log_dir or not (Path(score.log_dir) / "test_output.txt").is_file():
        return score
    spec = env_spec(instance.repo, instance.version, table=config.specs)
    return judge(instance, score, runner=spec.runner, log_dir=Path(score.log_dir))

