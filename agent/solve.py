"""`solve(task, settings) -> Result`: pack → mode → loop → patch → self-check.

`start_run` prepares a run (workspace, pack, mode, prompt prefix, trajectory); `resume_run`
rebuilds one from its directory; `finish_run` turns the loop's outcome into a `Result`.
"""

from __future__ import annotations

import secrets as _secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.errors import ConfigError
from agent.loop import Agent, Limits, Outcome
from agent.model import Model, OpenAIModel
from agent.modes import MODE_TABLE, choose_mode, parse_mode
from agent.prompt import PromptPrefix, task_chunk
from agent.records import (
    CheckRecord,
    CheckRun,
    Delta,
    Event,
    Mode,
    ModeChanged,
    ModelCalled,
    Result,
    RunStarted,
    Task,
    ToolFinished,
    Usage,
)
from agent.secrets import redact_outgoing
from agent.settings import Settings, load_settings
from agent.tokens import get_tokenizer
from agent.trajectory import INTERRUPTED_TOOL, Trajectory, assistant_turns

__all__ = ["solve", "resume", "Run", "start_run", "resume_run", "finish_run", "as_task", "git_patch"]

# Tokens kept free beside the pack for the conversation (tool outputs, edits, reasoning).
CONVERSATION_RESERVE = 128_000


def as_task(task: Task | str) -> Task:
    """A Task from a Task or a plain statement."""
    return task if isinstance(task, Task) else Task(statement=str(task))


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def _base_commit(repo: Path) -> str | None:
    if not (repo / ".git").exists():
        return None
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_patch(workspace, base: str | None) -> str:
    """The patch from `base` to the working tree (untracked files included); "" outside git."""
    from tools.git import is_repo, workspace_diff

    if base is None or not is_repo(workspace):
        return ""
    return workspace_diff(workspace, base=base, binary=True)


def make_worktree(repo: Path, run_id: str, state_dir: Path) -> Path:
    """A git worktree of HEAD on its own branch `tome/<run_id>`."""
    path = state_dir / "worktrees" / run_id
    path.parent.mkdir(parents=True, exist_ok=True)
    _git(repo, "worktree", "add", "-q", "-b", f"tome/{run_id}", str(path), "HEAD")
    return path


@dataclass
class Run:
    """A prepared run: the loop and where its files are."""

    run_id: str
    run_dir: Path
    repo: Path
    agent: Agent
    trajectory: Trajectory
    settings: Settings


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + _secrets.token_hex(3)


def _make_checker(ctx) -> Callable[[str], CheckRecord]:
    from tools.run_tests import execute_tests

    def check(command: str) -> CheckRecord:
        run = execute_tests(ctx, command)
        summary = run.render()
        return CheckRecord(
            command=command,
            passed=run.ok,
            summary=redact_outgoing(summary),
            passed_count=run.passed,
            failed_count=run.failed + run.errors,
        )

    return check


def _toolbox(repo: Path, base: str | None, settings: Settings, run_dir: Path, *,
             interactive: bool, approve: Callable[[str], bool] | None):
    from tools import default_tools
    from tools.base import ToolContext, Toolbox
    from tools.workspace import Workspace

    ctx = ToolContext(
        workspace=Workspace(repo, base_commit=base),
        state_dir=run_dir,
        settings=settings,
        interactive=interactive,
        approve=approve,
    )
    return Toolbox(default_tools(), ctx, tokenizer=get_tokenizer(settings.profile().tokenizer))


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_steps=settings.max_steps,
        max_cost=settings.max_cost,
        max_time=settings.max_time,
        max_tokens=settings.max_tokens,
    )


def start_run(
    task: Task | str,
    settings: Settings,
    *,
    repo: Path,
    model: Model | None = None,
    run_id: str | None = None,
    worktree: bool = False,
    interactive: bool = False,
    approve: Callable[[str], bool] | None = None,
    chat: bool = False,
    on_delta: Callable[[Delta], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Run:
    """Pack the repository, choose the mode, write the prefix and the first event."""
    from agent.pack import build_pack

    task = as_task(task)
    stage = on_stage or (lambda _msg: None)
    repo = Path(repo).resolve()
    if not repo.is_dir():
        raise ConfigError(f"repository {repo} does not exist")
    run_id = run_id or _new_run_id()
    run_dir = settings.state_dir / "runs" / run_id
    if worktree:
        repo = make_worktree(repo, run_id, settings.state_dir)
    base = _base_commit(repo)
    profile = settings.profile()

    stage("packing the repository")
    explicit = parse_mode(settings.mode)
    reserve = MODE_TABLE[explicit or Mode.MAX].max_output_tokens + CONVERSATION_RESERVE
    budget = settings.pack_budget or max(profile.context_window - reserve, 0)
    pack = build_pack(repo, task=task, budget=budget, model=settings.model, settings=settings)

    if explicit is not None:
        mode, reason = explicit, "chosen on the command line"
    else:
        choice = choose_mode(task, pack, profile=profile)
        mode, reason = choice.mode, "; ".join(choice.reasons)
    stage(f"mode: {mode.label} ({reason})")

    prefix = PromptPrefix(  # saved in the run directory as it is sent: redacted
        pack=pack.document,
        task=redact_outgoing(task_chunk(task.statement, relevant=pack.relevant, check_command=task.test_command)),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix.save(run_dir / "prefix.json")
    traj = Trajectory.create(run_dir / "trajectory.jsonl")
    if on_event:
        traj.subscribe(on_event)
    limits = _limits(settings)
    traj.append(RunStarted(
        t=time.time(), run_id=run_id, task=task, model=profile.name, base_url=settings.base_url,
        mode=mode, mode_reason=reason,
        repo=str(repo), base_commit=base, check_command=task.test_command,
        prefix_sha256=prefix.sha256(), pack_tokens=pack.totals.tokens,
        limits={"max_steps": limits.max_steps, "max_cost": limits.max_cost,
                "max_time": limits.max_time, "max_tokens": limits.max_tokens},
    ))
    agent = _agent(traj, prefix, settings, repo, base, run_dir, model=model, chat=chat,
                   interactive=interactive, approve=approve, on_delta=on_delta,
                   pack_tokens=pack.totals.tokens)
    return Run(run_id=run_id, run_dir=run_dir, repo=repo, agent=agent, trajectory=traj, settings=settings)


def _agent(traj: Trajectory, prefix: PromptPrefix, settings: Settings, repo: Path, base: str | None,
           run_dir: Path, *, model: Model | None, chat: bool, interactive: bool,
           approve: Callable[[str], bool] | None, on_delta: Callable[[Delta], None] | None,
           pack_tokens: int) -> Agent:
    profile = settings.profile()
    toolbox = _toolbox(repo, base, settings, run_dir, interactive=interactive, approve=approve)
    return Agent(
        model=model or OpenAIModel.from_settings(settings),
        toolbox=toolbox,
        prefix=prefix,
        trajectory=traj,
        profile=profile,
        limits=_limits(settings),
        tokenizer=get_tokenizer(profile.tokenizer),
        checker=_make_checker(toolbox.ctx),
        check_command=traj.started.check_command,
        pack_tokens=pack_tokens,
        chat=chat,
        on_delta=on_delta,
    )


def resume_run(
    run_dir: Path,
    settings: Settings,
    *,
    model: Model | None = None,
    interactive: bool = False,
    approve: Callable[[str], bool] | None = None,
    on_delta: Callable[[Delta], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Run:
    """Rebuild a run from its directory; interrupted tool calls are marked as such.

    The run keeps its model and endpoint unless `settings` names others."""
    traj = Trajectory.load(run_dir / "trajectory.jsonl")
    prefix = PromptPrefix.load(run_dir / "prefix.json")
    started = traj.started
    if "model" not in settings.model_fields_set:
        settings = settings.model_copy(update={"model": started.model})
    if settings.base_url is None:
        settings = settings.model_copy(update={"base_url": started.base_url})
    if prefix.sha256() != started.prefix_sha256:
        raise ConfigError(f"{run_dir}/prefix.json does not match the trajectory (edited by hand?)")
    if on_event:
        traj.subscribe(on_event)
    now = time.time()
    for ev in traj.unfinished_tools():
        traj.append(ToolFinished(t=now, call_id=ev.call_id, name=ev.name, content=INTERRUPTED_TOOL, ok=False))
    answered = {e.call_id for e in traj.of_type(ToolFinished)}
    for ev in list(traj.of_type(ModelCalled)):
        for call in ev.response.message.tool_calls:
            if call.id not in answered and ev.response.finish_reason != "length":
                traj.append(ToolFinished(t=now, call_id=call.id, name=call.name, ok=False,
                                         content="[not run: the run stopped before this call ran]"))
    repo = Path(started.repo)
    agent = _agent(traj, prefix, settings, repo, started.base_commit, run_dir, model=model, chat=False,
                   interactive=interactive, approve=approve, on_delta=on_delta,
                   pack_tokens=started.pack_tokens)
    return Run(run_id=started.run_id, run_dir=run_dir, repo=repo, agent=agent, trajectory=traj,
               settings=settings)


def finish_run(run: Run, outcome: Outcome) -> Result:
    """The typed result of a run: status, patch, last check, plan, cost."""
    events = run.trajectory.events
    started = run.trajectory.started
    plans = [t.content for t in assistant_turns(events) if t.content and "Goal" in t.content]
    checks = [e.check for e in events if isinstance(e, CheckRun)]
    modes = [started.mode, *(e.new for e in events if isinstance(e, ModeChanged))]
    calls = [e for e in events if isinstance(e, ModelCalled)]
    usage = Usage()
    for e in calls:
        usage = usage + e.response.usage
    return Result(
        run_id=run.run_id,
        status="unchecked" if outcome.status == "turn" else outcome.status,
        exit_code=outcome.exit_code,
        reason=outcome.reason,
        patch=git_patch(run.agent.toolbox.ctx.workspace, started.base_commit),
        check=outcome.check or (checks[-1] if checks else None),
        plan=plans[-1] if plans else None,  # the latest re-plan wins
        summary=outcome.summary,
        mode=modes[-1],
        modes=modes,
        steps=len(calls),
        cost=sum(e.response.cost for e in calls),
        usage=usage,
        elapsed=run.agent.elapsed,
        trajectory=str(run.trajectory.path),
    )


def solve(
    task: Task | str,
    settings: Settings | None = None,
    *,
    repo: Path | str = ".",
    model: Model | None = None,
    worktree: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> Result:
    """Solve `task` in `repo` headlessly: pack, choose the mode, loop, take the patch, check."""
    settings = settings or load_settings(Path(repo)).settings
    run = start_run(task, settings, repo=Path(repo), model=model, worktree=worktree, on_event=on_event)
    return finish_run(run, run.agent.run())


def resume(run_dir: Path | str, settings: Settings | None = None, *, model: Model | None = None) -> Result:
    """Continue a crashed or stopped run from its directory."""
    settings = settings or load_settings().settings
    run = resume_run(Path(run_dir), settings, model=model)
    return finish_run(run, run.agent.run())
