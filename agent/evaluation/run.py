"""Run many tasks: a process per task (`--workers N` at a time) or Ray tasks; resumable.

Each task writes `<run_dir>/<instance_id>/score.json` (and prediction.json); a rerun skips tasks
that have one. A worker that dies without writing its score marks only that task as an error.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError, TomeError
from agent.evaluation.logparse import strip_ansi
from agent.evaluation.score import (
    ScoreConfig,
    prepare_checkout,
    rescore,
    score_prediction,
)
from agent.evaluation.sources import PatchSource
from agent.evaluation.workspace import find_repo, remove_checkout
from agent.records import EvalInstance, Prediction, Score

__all__ = ["RunConfig", "load_finished", "run_task", "run_tasks"]

OnDone = Callable[[Score], None]


class RunConfig(BaseModel):
    """How a run is executed and where its per-task folders go."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path
    workers: int = Field(default=1, ge=1)
    executor: Literal["local", "ray"] = "local"
    task_timeout: float | None = Field(default=None, description="Seconds for a whole task (solve + score).")
    ray_address: str | None = Field(default=None, description="Ray cluster address; None starts a local one.")
    retry_errors: bool = Field(default=False, description="Run tasks again whose earlier score is an error.")
    rescore: bool = Field(default=False, description="Judge finished tasks again from their kept test logs.")


def load_finished(run_dir: Path, instances: Sequence[EvalInstance]) -> dict[str, Score]:
    """Scores already written by an earlier run of the same run_dir."""
    out: dict[str, Score] = {}
    for inst in instances:
        f = run_dir / inst.instance_id / "score.json"
        if f.is_file():
            try:
                out[inst.instance_id] = Score.model_validate_json(f.read_text())
            except ValueError:
                continue  # a torn write: run it again
    return out


def _crash_score(instance: EvalInstance, log_dir: Path, message: str, model: str) -> Score:
    return Score(instance_id=instance.instance_id, repo=instance.repo, difficulty=instance.difficulty,
                 model=model, status="error", error=message, log_dir=str(log_dir))


def run_task(instance: EvalInstance, source: PatchSource, config: ScoreConfig, log_dir: Path) -> tuple[Prediction | None, Score]:
    """Get the patch from `source`, then score it; exceptions become an error Score."""
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        workdir = None
        if source.needs_checkout:
            workdir = prepare_checkout(instance, config, config.work_dir / f"{instance.instance_id}.solve").path
        try:
            prediction = source(instance, workdir)
        finally:
            if workdir is not None and not config.keep_checkouts:
                remove_checkout(find_repo(config.repos_dir, instance.repo), workdir)
    except (TomeError, OSError, ValueError, RuntimeError) as e:
        (log_dir / "solve_error.txt").write_text(traceback.format_exc())
        return None, _crash_score(instance, log_dir, f"patch source failed: {type(e).__name__}: {e}",
                                  source.name)
    (log_dir / "prediction.json").write_text(prediction.model_dump_json(indent=1))
    return prediction, score_prediction(instance, prediction, config=config, log_dir=log_dir)


def _write(score: Score, log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    tmp = log_dir / "score.json.tmp"
    tmp.write_text(score.model_dump_json(indent=1))
    tmp.replace(log_dir / "score.json")


def _child(instance: EvalInstance, source: PatchSource, config: ScoreConfig, log_dir: Path) -> None:
    os.setpgid(0, 0)  # so a timed-out task can be ended with its children
    try:
        _, score = run_task(instance, source, config, log_dir)
    except Exception as e:  # noqa: BLE001  (our bug, not the patch's: say so on this task, go on)
        (log_dir / "internal_error.txt").write_text(traceback.format_exc())
        score = _crash_score(instance, log_dir, f"internal error: {type(e).__name__}: {e}", source.name)
    _write(score, log_dir)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _run_local(todo: list[EvalInstance], source: PatchSource, config: ScoreConfig,
               run: RunConfig, on_done: OnDone) -> None:
    ctx = multiprocessing.get_context("fork")  # sources need not be picklable; children only compute
    queue = list(reversed(todo))
    running: dict[int, tuple[multiprocessing.process.BaseProcess, EvalInstance, float]] = {}
    try:
        _drive(queue, running, source, config, run, on_done, ctx)
    finally:  # interrupted: end the workers too, they are ours
        for proc, _, _ in running.values():
            _kill(proc)


def _drive(queue: list[EvalInstance], running: dict[int, tuple[multiprocessing.process.BaseProcess, EvalInstance, float]],
           source: PatchSource, config: ScoreConfig, run: RunConfig, on_done: OnDone,
           ctx: multiprocessing.context.BaseContext) -> None:
    while queue or running:
        while queue and len(running) < run.workers:
            inst = queue.pop()
            proc = ctx.Process(target=_child, args=(inst, source, config, run.run_dir / inst.instance_id),
                               daemon=False)
            proc.start()
            running[proc.sentinel] = (proc, inst, time.monotonic())
        wait(list(running), timeout=1.0)
        for sentinel, (proc, inst, started) in list(running.items()):
            log_dir = run.run_dir / inst.instance_id
            overdue = run.task_timeout is not None and time.monotonic() - started > run.task_timeout
            if proc.is_alive() and not overdue:
                continue
            if proc.is_alive():
                _kill(proc)
                score = _crash_score(inst, log_dir, f"task timed out after {run.task_timeout:.0f}s",
                                     source.name)
                _write(score, log_dir)
            else:
                proc.join()
                found = load_finished(run.run_dir, [inst]).get(inst.instance_id)
                score = found or _crash_score(inst, log_dir, f"worker crashed ({_exit_reason(proc.exitcode)})",
                                              source.name)
                if found is None:
                    _write(score, log_dir)
            del running[sentinel]
            on_done(score)


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.join()


def _ray_task(instance: EvalInstance, source: PatchSource, config: ScoreConfig, log_dir: str) -> Score:
    _, score = run_task(instance, source, config, Path(log_dir))
    return score


def _run_ray(todo: list[EvalInstance], source: PatchSource, config: ScoreConfig,
             run: RunConfig, on_done: OnDone) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs the ray extra: pip install 'tome-agent[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=run.ray_address, num_cpus=None if run.ray_address else run.workers,
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
    refs = {remote.remote(inst, source, config, str(run.run_dir / inst.instance_id)): inst for inst in todo}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=run.task_timeout)
            if not done:
                for ref, inst in refs.items():
                    ray.cancel(ref, force=True)
                    score = _crash_score(inst, run.run_dir / inst.instance_id,
                                         f"task timed out after {run.task_timeout:.0f}s", source.name)
                    _write(score, run.run_dir / inst.instance_id)
                    on_done(score)
                return
            for ref in done:
                inst = refs.pop(ref)
                log_dir = run.run_dir / inst.instance_id
                try:
                    score = ray.get(ref)
                except Exception as e:  # noqa: BLE001  (a dead worker or a raising task: that task only)
                    log_dir.mkdir(parents=True, exist_ok=True)
                    (log_dir / "worker_error.txt").write_text(str(e))
                    first = strip_ansi(str(e)).strip().splitlines()
                    score = _crash_score(inst, log_dir, f"worker crashed ({type(e).__name__}"
                                         f"{': ' + first[-1] if first else ''})", source.name)
                _write(score, log_dir)
                on_done(score)
    finally:
        if started_here:
            ray.shutdown()


def run_tasks(instances: Sequence[EvalInstance], source: PatchSource, *, config: ScoreConfig,
              run: RunConfig, on_done: OnDone | None = None) -> list[Score]:
    """Score every instance not already finished in `run.run_dir`; return all scores in input order."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with (run.run_dir / "run.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another tome eval is running in {run.run_dir}; wait for it "
                              "or give another --run-id") from None
        return _run_tasks(instances, source, config=config, run=run, on_done=on_done)


def _run_tasks(instances: Sequence[EvalInstance], source: PatchSource, *, config: ScoreConfig,
               run: RunConfig, on_done: OnDone | None) -> list[Score]:
    finished = load_finished(run.run_dir, instances)
    if run.rescore:
        by_id = {i.instance_id: i for i in instances}
        for iid, old in finished.items():
            new = rescore(by_id[iid], old, config=config)
            if new != old:
                _write(new, run.run_dir / iid)
        finished = load_finished(run.run_dir, instances)
    if run.retry_errors:
        finished = {k: v for k, v in finished.items() if v.status != "error"}
    todo = [i for i in instances if i.instance_id not in finished]
    callback = on_done or (lambda s: None)
    if todo:
        (_run_ray if run.executor == "ray" else _run_local)(todo, source, config, run, callback)
    done = load_finished(run.run_dir, instances)
    return [done[i.instance_id] for i in instances if i.instance_id in done]
