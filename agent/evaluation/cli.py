"""`tome eval TASKS.jsonl`: score gold, empty, a predictions file, or the agent on SWE-bench tasks."""

from __future__ import annotations

import argparse
import json
import re
import signal
import time
from pathlib import Path

from agent.errors import ConfigError

__all__ = ["configure", "default_env_cache", "run"]


def default_env_cache() -> Path:
    """Where environments are cached between runs (~/.cache/tome/eval-envs)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("tome", appauthor=False)) / "eval-envs"


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Add eval's options (the model and limit options come from the shared settings group)."""
    from agent.cli import add_settings_options

    parser.add_argument("tasks", type=Path, help="SWE-bench JSONL (or JSON list) of instances")
    add_settings_options(parser)  # --model gold|empty|NAME, --mode, --max-cost, ... and --json
    parser.add_argument("--predictions", type=Path, help="score another system's predictions file")
    parser.add_argument("--repos-dir", type=Path, default=Path("repos"),
                        help="one clone per repository: <dir>/<owner>__<name> (default ./repos)")
    parser.add_argument("--env-cache", type=Path, default=None,
                        help=f"environments per (repo, version) (default {default_env_cache()})")
    parser.add_argument("--output-dir", type=Path, default=Path("tome-eval"),
                        help="runs go to <dir>/<run-id>/ (default ./tome-eval)")
    parser.add_argument("--run-id", help="name of the run; rerunning the same id skips finished tasks")
    parser.add_argument("--workers", type=int, default=1, help="tasks at a time (default 1)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--instance-ids", nargs="+", metavar="ID", help="only these instances")
    parser.add_argument("--timeout", type=float, help="seconds for one test run (default per spec)")
    parser.add_argument("--task-timeout", type=float, help="seconds for a whole task (solve + score)")
    parser.add_argument("--keep-checkouts", action="store_true", help="keep per-task worktrees")
    parser.add_argument("--retry-errors", action="store_true", help="on a rerun, run errored tasks again")
    parser.add_argument("--rescore", action="store_true",
                        help="on a rerun, judge finished tasks again from their kept test logs")
    parser.add_argument("--known-failures", type=Path, metavar="FILE",
                        help='JSON {"instance_id": {"reason": ..., "tests": [...]}} of tests to leave out '
                        "of the verdict (added to the built-in table; each is listed in report.json)")
    parser.add_argument("--env-specs", type=Path,
                        help='JSON {"owner/repo": {"version or *": {EnvSpec fields}}} added to the built-in specs')


def _interrupt(signum: int, frame: object) -> None:
    # a plain `kill` ends the workers as Ctrl-C does, instead of orphaning them
    raise KeyboardInterrupt


def _run_id(args: argparse.Namespace, model: str) -> str:
    return args.run_id or re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}-{args.tasks.stem}")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation, write predictions and report, print the table; 1 if any task errored."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from agent.evaluation.envspecs import load_spec_file
    from agent.evaluation.known_failures import (
        builtin_known_failures,
        load_known_failures,
        merge_known_failures,
    )
    from agent.evaluation.report import (
        build_report,
        print_report,
        write_predictions,
        write_report,
    )
    from agent.evaluation.run import RunConfig, run_tasks
    from agent.evaluation.score import ScoreConfig
    from agent.evaluation.sources import source_for
    from agent.evaluation.tasks import load_instances
    from agent.records import Prediction

    if args.model is None and args.predictions is None:
        raise ConfigError("say what to score: --model gold|empty|NAME or --predictions FILE")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    instances = load_instances(args.tasks, instance_ids=args.instance_ids)
    cli = {k: getattr(args, k) for k in ("base_url", "mode", "max_cost", "max_steps", "max_time")
           if getattr(args, k, None) is not None}
    source = source_for(args.model, predictions=args.predictions, settings_cli=cli)
    if args.predictions is not None:
        have = set(getattr(source, "predictions", {}))
        instances = [i for i in instances if i.instance_id in have]
    run_id = _run_id(args, source.name)
    run_dir = (args.output_dir / run_id).resolve()
    known = builtin_known_failures()
    if args.known_failures is not None:
        known = merge_known_failures(known, load_known_failures(args.known_failures))
    config = ScoreConfig(repos_dir=args.repos_dir.resolve(),
                         env_cache=(args.env_cache or default_env_cache()).resolve(),
                         work_dir=run_dir / "checkouts", timeout=args.timeout,
                         specs=load_spec_file(args.env_specs) if args.env_specs else None,
                         known_failures=known)
    runcfg = RunConfig(run_dir=run_dir, workers=args.workers, executor=args.executor,
                       task_timeout=args.task_timeout, ray_address=args.ray_address,
                       retry_errors=args.retry_errors, rescore=args.rescore)
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.monotonic()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[tally]}"), TimeElapsedColumn(), console=console,
                  disable=args.json, transient=False) as progress:
        tally = {"resolved": 0, "unresolved": 0, "error": 0}
        bar = progress.add_task(run_id, total=len(instances), tally="")

        def done(score: object) -> None:
            tally[score.status] += 1  # type: ignore[attr-defined]
            progress.update(bar, advance=1, tally=" ".join(f"{k} {v}" for k, v in tally.items()))

        from agent.evaluation.run import load_finished

        finished = load_finished(run_dir, instances)
        if args.retry_errors:
            finished = {k: v for k, v in finished.items() if v.status != "error"}
        progress.update(bar, completed=len(finished))
        scores = run_tasks(instances, source, config=config, run=runcfg, on_done=done)
    report = build_report(scores, run_id=run_id, model=source.name, total=len(instances),
                          wall_time=time.monotonic() - t0)
    preds = []
    for s in scores:
        f = run_dir / s.instance_id / "prediction.json"
        if f.is_file():
            preds.append(Prediction.model_validate_json(f.read_text()))
    write_predictions(run_dir / "predictions.jsonl", preds)
    write_report(run_dir / "report.json", report)
    if args.json:
        print(json.dumps(report.model_dump(mode="json", exclude={"scores"})))
    else:
        print_report(report)
        Console(stderr=True).print(f"report: {run_dir / 'report.json'}")
    return 1 if report.error_instances else 0
