"""Score one prediction: fresh checkout, model patch, test patch, named tests, parsed statuses.

The patch is applied, the log parsed and graded as the official SWE-bench harness does (see
grading.py); tests in the known-failures table are left out and listed. Errors are harness-side:
the environment would not build, the patch would not apply, the tests timed out; each comes
with a message and the log folder to look in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from agent.errors import TomeError
from agent.evaluation.envs import Environment, ensure_env, env_key, restore_missing, run_logged
from agent.evaluation.envspecs import EnvSpec, env_spec, test_command
from agent.evaluation.grading import grade
from agent.evaluation.known_failures import KnownFailure, builtin_known_failures
from agent.evaluation.logparse import parser_for
from agent.evaluation.workspace import (
    Checkout,
    checkout,
    file_lock,
    find_repo,
    git,
    remove_checkout,
)
from agent.records import EvalInstance, Prediction, Score

__all__ = [
    "APPLY_CHAIN", "PatchError", "ScoreConfig", "apply_patch", "apply_test_patch", "judge",
    "prepare_checkout", "rescore", "score_prediction", "setup_commit", "write_applied_diff",
]


class ScoreConfig(BaseModel):
    """Where repositories, environments and checkouts live, how long tests may run, what is known broken."""

    model_config = ConfigDict(extra="forbid")

    repos_dir: Path
    env_cache: Path
    work_dir: Path = Field(description="Scratch folder for per-task checkouts.")
    timeout: float | None = Field(default=None, description="Seconds for a test run (spec's default if None).")
    keep_checkouts: bool = False
    specs: dict[str, dict[str, EnvSpec]] | None = Field(
        default=None, description="Spec table to use instead of envspecs.SPECS.")
    known_failures: dict[str, KnownFailure] = Field(
        default_factory=builtin_known_failures,
        description="Tests left out of each instance's verdict (and reported), by instance id.")


class PatchError(TomeError):
    """A patch does not apply to the checkout."""


def _patch_paths(patch: str) -> list[str]:
    paths: list[str] = []
    try:
        pairs = [(f.source_file, f.target_file) for f in PatchSet(patch)]
    except UnidiffParseError:  # a model's patch need not parse as a whole: its git headers then
        pairs = re.findall(r"^diff --git (a/\S+) (b/\S+)", patch, re.MULTILINE)
    for pair in pairs:
        for p in pair:
            if p and p != "/dev/null":
                p = p[2:] if p[:2] in ("a/", "b/") else p
                if p not in paths:
                    paths.append(p)
    return paths


# swebench/harness/run_evaluation.py @ 7a21e05, GIT_APPLY_CMDS (lines 54-59): the first command
# that exits 0 applied the patch; before each retry the tree is reset (lines 302-309). `--reject`
# exits 1 whenever it rejects a hunk (git builtin/apply.c, apply_patch: `if (apply_with_reject)
# exit(1)`), so it succeeds only where plain `git apply` would: patches with drifted context
# are placed by `--3way` (when the cache has the preimage blob) or by `patch --fuzz`.
APPLY_CHAIN: list[list[str]] = [
    ["git", "apply", "--verbose"],
    ["git", "apply", "--verbose", "--3way"],
    ["git", "apply", "--verbose", "--reject"],
    ["patch", "--batch", "--forward", "--fuzz=5", "-p1", "-i"],
]
_RESET = [["git", "checkout", "--", "."], ["git", "clean", "-fd"]]


def _logged(cmd: list[str], repo: Path, log: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}[exit {done.returncode}]\n")
    return done


def _write_patch_file(patch: str, *, name: str, log: Path) -> Path:
    file = log.parent / f"{name}.diff"
    file.write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
    return file


def _refuse_missing(patch: str, missing: Sequence[str], name: str) -> None:
    lacking = [p for p in _patch_paths(patch) if p in set(missing)]
    if lacking:
        raise PatchError(f"{name} patch changes {lacking[0]}, whose blob the repository cache lacks "
                         f"(and no remote supplied it){f'; also {lacking[1:]}' if lacking[1:] else ''}")


def apply_patch(repo: Path, patch: str, *, name: str, log: Path, missing: Sequence[str] = ()) -> str:
    """Apply a model patch through the official chain; the command that placed it, or PatchError."""
    _refuse_missing(patch, missing, name)
    file = _write_patch_file(patch, name=name, log=log)
    last = None
    for attempt, cmd in enumerate(APPLY_CHAIN):
        if attempt:
            for step in _RESET:
                _logged(step, repo, log)
        last = _logged([*cmd, str(file)], repo, log)
        if last.returncode == 0:
            return " ".join(cmd)
    # lines 321-330: the chain can leave the patch applied while each command exited non-zero
    if _logged(["git", "apply", "--check", "--reverse", str(file)], repo, log).returncode == 0:
        return "already applied"
    why = ((last.stderr.strip() or last.stdout.strip()) if last else "").splitlines()
    raise PatchError(f"{name} patch does not apply: " + " | ".join(why[-4:]))


def apply_test_patch(repo: Path, patch: str, *, log: Path, missing: Sequence[str] = ()) -> None:
    """The eval script's `git apply -v -` (test_spec/python.py, make_eval_script_list_py): no fallback."""
    _refuse_missing(patch, missing, "test")
    file = _write_patch_file(patch, name="test", log=log)
    done = _logged(["git", "apply", "--verbose", str(file)], repo, log)
    if done.returncode:
        why = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise PatchError("test patch does not apply: " + " | ".join(why[-4:]))


def write_applied_diff(repo: Path, paths: list[str], dest: Path) -> None:
    """`git diff` of what the patches changed, new files included, over their own paths only.

    Only those paths: a diff of the whole tree would read blobs a partial cache lacks.
    """
    if not paths:
        dest.write_text("", encoding="utf-8")
        return
    new = git("ls-files", "--others", "--exclude-standard", "-z", "--", *paths, cwd=repo).stdout
    new_files = [p for p in new.split("\0") if p]
    if new_files:
        git("add", "--intent-to-add", "--", *new_files, cwd=repo)
    dest.write_text(git("diff", "--binary", "--", *paths, cwd=repo).stdout, encoding="utf-8")


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
    # The model may have edited files the test patch touches: put them back first (the eval
    # script's `git checkout <base> <test files>`). ls-tree reads trees only, never a blob.
    for path in _patch_paths(test_patch):
        if git("ls-tree", "--name-only", base, "--", path, cwd=repo).stdout.strip():
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
    applied_with = None
    if prediction.model_patch.strip():
        applied_with = apply_patch(repo, prediction.model_patch, name="model", log=log, missing=co.missing)
    # after the model patch: the chain's `git clean -fd` between attempts would remove restored files
    restore_missing(co, spec.restore, env=vars_, log=log)
    _reset_test_files(repo, instance.base_commit, instance.test_patch)
    apply_test_patch(repo, instance.test_patch, log=log, missing=co.missing)
    write_applied_diff(repo, _patch_paths(prediction.model_patch) + _patch_paths(instance.test_patch),
                       log_dir / "patch.diff")
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
    (log_dir / "exit_code").write_text(f"{code}\n")
    score = _base_score(instance, prediction, log_dir).model_copy(
        update={"setup_time": setup_time, "test_time": test_time, "applied_with": applied_with})
    return judge(instance, score, runner=spec.runner, log_dir=log_dir, known=config.known_failures)


def _exit_code(log_dir: Path) -> int | None:
    f = log_dir / "exit_code"
    try:
        return int(f.read_text().strip())
    except (OSError, ValueError):
        return None


def judge(instance: EvalInstance, score: Score, *, runner: str, log_dir: Path,
          known: dict[str, KnownFailure] | None = None) -> Score:
    """Parse the task's test log and grade it as the official harness does, known failures left out."""
    log = (log_dir / "test_output.txt").read_text(encoding="utf-8", errors="replace")
    parsed = parser_for(instance.repo, runner)(log)
    (log_dir / "tests.json").write_text(json.dumps({k: v.value for k, v in parsed.items()}, indent=1))
    entry = (known or {}).get(instance.instance_id)
    left_out = set(entry.tests) if entry else set()
    f2p = [t for t in instance.fail_to_pass if t not in left_out]
    p2p = [t for t in instance.pass_to_pass if t not in left_out]
    excluded = {t: entry.reason for t in [*instance.fail_to_pass, *instance.pass_to_pass]
                if entry and t in left_out}
    g = grade(f2p, p2p, parsed, exit_code=_exit_code(log_dir))
    return score.model_copy(update={"status": "resolved" if g.resolved else "unresolved",
                                    "fail_to_pass": g.fail_to_pass, "pass_to_pass": g.pass_to_pass,
                                    "excluded": excluded, "note": g.invalid_log})


def rescore(instance: EvalInstance, score: Score, *, config: ScoreConfig) -> Score:
    """Judge a finished task again from its kept test log (after a parser fix); errors stay errors."""
    if score.status == "error" or not score.log_dir or not (Path(score.log_dir) / "test_output.txt").is_file():
        return score
    spec = env_spec(instance.repo, instance.version, table=config.specs)
    return judge(instance, score, runner=spec.runner, log_dir=Path(score.log_dir), known=config.known_failures)
