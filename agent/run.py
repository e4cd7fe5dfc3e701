"""`solve(task, settings) -> Result`: pack → mode → loop → patch → self-check.

One path through a run: every entry point (the CLI, chat, eval, the demo, the Python API) builds
a `RunSpec` and hands it to `start_run` (or to `solve`, which also runs it to its end).

    RunSpec ─► plan_run (pack, mode, prefix) ─► start_run (run dir, trajectory, loop) ─► Run
    Run ─► complete (the loop, under the live view) ─► finish_run ─► Result

`resume_run` rebuilds a Run from its directory; a finished one reports how it ended.
"""

from __future__ import annotations

import secrets as _secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.hooks import HookRunner, hooked_tools
from agent.instructions import Instructions, collect_instructions, scoped_instructions, touched_dirs
from agent.loop import Agent, Limits, Outcome, open_call_answers
from agent.mcp_client import McpHub, connect_servers
from agent.model import Model, OpenAIModel
from agent.modes import choose_mode, parse_mode
from agent.prompt import PromptPrefix, task_chunk
from agent.records import (
    CheckRecord,
    CheckRun,
    Delta,
    Event,
    Mode,
    ModeChanged,
    ModelCalled,
    Pack,
    Result,
    RunEnded,
    RunStarted,
    RunStatus,
    Task,
    Triaged,
)
from agent.secrets import redact_outgoing
from agent.settings import Settings, load_settings, user_config_path
from agent.tokens import get_tokenizer
from agent.trajectory import Trajectory, assistant_turns, spent
from agent.treelock import TreeLock, tree_lock
from tools.gitcmd import git as run_git
from tools.workspace import TEMP_PATHSPEC, remove_stale_temp_files

__all__ = [
    "solve", "resume", "RunSpec", "RunHooks", "Run", "RunPlan", "plan_run", "start_run", "resume_run",
    "complete", "finish_run", "with_mcp_tools", "as_task", "git_patch", "require_key", "final_outcome", "FINAL_STATUSES",
]

# A run that ended so is over: resuming it reports how it ended and calls no model.
FINAL_STATUSES = frozenset({RunStatus.SOLVED, RunStatus.UNCHECKED})



def as_task(task: Task | str) -> Task:
    """A Task from a Task or a plain statement."""
    return task if isinstance(task, Task) else Task(statement=str(task))


def _git(repo: Path, *args: str) -> str:
    proc = run_git(*args, cwd=repo, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def _base_commit(repo: Path) -> str | None:
    if not (repo / ".git").exists():
        return None
    proc = run_git("rev-parse", "HEAD", cwd=repo, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_patch(workspace, base: str | None) -> str:
    """The patch from `base` to the working tree (untracked files included); "" outside git."""
    from tools.git import is_repo, workspace_diff

    if base is None or not is_repo(workspace):
        return ""
    return workspace_diff(workspace, base=base, binary=True, paths=[".", TEMP_PATHSPEC])


def make_worktree(repo: Path, run_id: str, state_dir: Path) -> Path:
    """A git worktree of HEAD on its own branch `tome/<run_id>`."""
    path = state_dir / "worktrees" / run_id
    path.parent.mkdir(parents=True, exist_ok=True)
    _git(repo, "worktree", "add", "-q", "-b", f"tome/{run_id}", str(path), "HEAD")
    return path


@dataclass(frozen=True)
class RunHooks:
    """Where a run reports as it goes; each is optional."""

    on_event: Callable[[Event], None] | None = None  # every trajectory event (live view, --json)
    on_delta: Callable[[Delta], None] | None = None  # streamed model text
    on_stage: Callable[[str], None] | None = None  # preparation steps (packing, mode)
    live: Callable[[], AbstractContextManager] | None = None  # entered around the loop (a live view)


@dataclass(frozen=True)
class RunSpec:
    """Everything one new run needs. The CLI, chat, eval, the demo and the Python API all build
    one and hand it to `start_run` or `solve`: no other way starts a run (`resume_run` only
    rebuilds one from its directory)."""

    task: Task
    settings: Settings
    repo: Path = Path(".")
    worktree: bool = False  # work in a new git worktree on branch tome/<run id>
    interactive: bool = False  # a person is there to approve destructive commands
    approve: Callable[[str], bool] | None = None  # asks that person
    chat: bool = False  # a text answer ends the turn, not the run
    model: Model | None = None  # a client to use instead of the one the settings describe
    run_id: str | None = None
    hooks: RunHooks = field(default_factory=RunHooks)


@dataclass
class Run:
    """A prepared run: the loop and where its files are."""

    run_id: str
    run_dir: Path
    repo: Path
    agent: Agent
    trajectory: Trajectory
    settings: Settings
    hooks: RunHooks = field(default_factory=RunHooks)
    ended: Outcome | None = None  # set when the run had already finished
    mcp: McpHub | None = None  # the MCP sessions the run's tools call

    def go(self) -> Outcome:
        """Run the loop, or report the end of a run that had already finished."""
        return self.ended or self.agent.run()

    def close(self) -> None:
        """Release what the run holds open (its MCP servers)."""
        if self.mcp is not None:
            self.mcp.close()


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
             interactive: bool, approve: Callable[[str], bool] | None, extra: Sequence[Any] = ()):
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
    hooks = _user_hooks(settings, repo, run_dir.name)
    return Toolbox(hooked_tools([*default_tools(), *extra], hooks), ctx,
                   tokenizer=get_tokenizer(settings.profile().tokenizer))


def _user_hooks(settings: Settings, repo: Path, run_id: str) -> HookRunner:
    from agent.secrets import redact as redact_secrets

    return HookRunner(settings.hooks, cwd=repo, run_id=run_id, redact=lambda text: redact_secrets(text)[0])


def _settle_sandbox(settings: Settings, *, interactive: bool,
                    approve: Callable[[str], bool] | None) -> Settings:
    """Fail closed before anything is packed or sent: no usable sandbox, no (headless) run."""
    from tools.sandbox import settle_sandbox

    return settle_sandbox(settings, interactive=interactive, confirm=approve)


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_steps=settings.max_steps,
        max_cost=settings.max_cost,
        max_time=settings.max_time,
        max_tokens=settings.max_tokens,
    )


@dataclass(frozen=True)
class RunPlan:
    """What a run sends before its first model call: the pack, the mode and why, the prefix."""

    task: Task
    repo: Path
    base: str | None
    pack: Pack
    mode: Mode  # with `triage`, the fallback's, until the triage turn decides
    mode_reason: str
    prefix: PromptPrefix
    triage: bool = False  # the run starts with a triage turn (agent.triage)


def require_key(settings: Settings) -> None:
    """Fail before any work when the endpoint's key is missing (a configuration error, exit 2)."""
    if settings.resolved_api_key() is None:
        profile = settings.profile()
        raise ConfigError(
            f"no API key for {profile.name}: set {profile.api_key_env} "
            f"(or api_key in {user_config_path()})"
        )


def plan_run(task: Task | str, settings: Settings, *, repo: Path,
             on_stage: Callable[[str], None] | None = None) -> RunPlan:
    """Pack the repository and choose the mode: everything up to the first request, writing nothing."""
    from agent.pack import build_pack, default_budget

    task = as_task(task)
    stage = on_stage or (lambda _msg: None)
    repo = Path(repo).resolve()
    if not repo.is_dir():
        raise ConfigError(f"repository {repo} does not exist")
    profile = settings.profile()
    stage("packing the repository")
    explicit = parse_mode(settings.mode)
    budget = settings.pack_budget or default_budget(profile, explicit)
    stable = collect_instructions(repo, named=settings.instructions)
    for message in stable.warnings:
        stage(message)
    instructions = stable.chunk()
    if instructions:  # the instructions share the pack's budget
        budget = max(budget - get_tokenizer(profile.tokenizer).count(instructions), 0)
    pack = build_pack(repo, task=task, budget=budget, model=settings.model, settings=settings)
    scoped = scoped_instructions(repo, touched_dirs(pack))
    triage = explicit is None and settings.triage
    if explicit is not None:
        mode, reason = explicit, "chosen on the command line"
    else:
        choice = choose_mode(task, pack, profile=profile)
        mode, reason = choice.mode, "; ".join(choice.reasons)
    if triage:
        stage(f"mode: a triage turn decides (fallback {mode.label}: {reason})")
    else:
        stage(f"mode: {mode.label} ({reason})")
    prefix = PromptPrefix(  # saved in the run directory as it is sent: redacted
        instructions=instructions,
        pack=pack.document,
        task=redact_outgoing(task_chunk(task.statement, relevant=pack.relevant, check_command=task.test_command,
                                        scoped_instructions=Instructions(scoped=scoped).scoped_block())),
    )
    return RunPlan(task=task, repo=repo, base=_base_commit(repo), pack=pack, mode=mode,
                   mode_reason=reason, prefix=prefix, triage=triage)


def with_mcp_tools(plan: RunPlan, mcp: McpHub | None) -> RunPlan:
    """The plan with the MCP tools' schemas (sorted, fixed for the run) in its prefix."""
    if mcp is None or not mcp.tools:
        return plan
    return replace(plan, prefix=plan.prefix.model_copy(update={"mcp_tools": [t.schema() for t in mcp.tools]}))


def start_run(spec: RunSpec) -> Run:
    """Check the key, pack the repository, choose the mode, write the prefix and the first event."""
    hooks = spec.hooks
    if spec.model is None:
        require_key(spec.settings)
    repo = Path(spec.repo).resolve()
    if not repo.is_dir():
        raise ConfigError(f"repository {repo} does not exist")
    settings = _settle_sandbox(spec.settings, interactive=spec.interactive, approve=spec.approve)
    run_id = spec.run_id or _new_run_id()
    run_dir = settings.state_dir / "runs" / run_id
    if spec.worktree:
        repo = make_worktree(repo, run_id, settings.state_dir)
    lock = tree_lock(repo)
    lock.acquire()  # before anything is written: a refused run leaves no trace
    remove_stale_temp_files(repo)  # what killed writes left, before the pack can show it
    plan = plan_run(spec.task, settings, repo=repo, on_stage=hooks.on_stage)
    run_dir.mkdir(parents=True, exist_ok=True)
    # After the pack: the sessions' thread would keep the packer from forking (agent/pack/build.py).
    mcp = connect_servers(settings, cwd=repo, log_dir=run_dir, warn=hooks.on_stage)
    try:
        return _started(spec, settings=settings, plan=with_mcp_tools(plan, mcp), run_id=run_id,
                        run_dir=run_dir, mcp=mcp, lock=lock)
    except BaseException:
        if mcp is not None:
            mcp.close()  # no run holds the servers: stop them before the error goes on
        raise


def _started(spec: RunSpec, *, settings: Settings, plan: RunPlan, run_id: str, run_dir: Path,
             mcp: McpHub | None, lock: TreeLock) -> Run:
    """Write the prefix and the first event, and build the loop (`settings`: the spec's, with the
    sandbox settled)."""
    hooks = spec.hooks
    profile = settings.profile()
    plan.prefix.save(run_dir / "prefix.json")
    traj = Trajectory.create(run_dir / "trajectory.jsonl")
    if hooks.on_event:
        traj.subscribe(hooks.on_event)
    limits = _limits(settings)
    traj.append(RunStarted(
        t=time.time(), run_id=run_id, task=plan.task, model=profile.name, base_url=settings.base_url,
        mode=plan.mode, mode_reason=plan.mode_reason,
        repo=str(plan.repo), base_commit=plan.base, check_command=plan.task.test_command,
        prefix_sha256=plan.prefix.sha256(), pack_tokens=plan.pack.totals.tokens,
        limits=limits.caps, triage=plan.triage and not spec.chat,  # a chat's first message is no task
    ))
    agent = _agent(traj, plan.prefix, settings, plan.repo, plan.base, run_dir, model=spec.model,
                   chat=spec.chat, interactive=spec.interactive, approve=spec.approve,
                   on_delta=hooks.on_delta, pack_tokens=plan.pack.totals.tokens, lock=lock, limits=limits,
                   mcp=mcp)
    return Run(run_id=run_id, run_dir=run_dir, repo=plan.repo, agent=agent, trajectory=traj,
               settings=settings, hooks=hooks, mcp=mcp)


def _agent(traj: Trajectory, prefix: PromptPrefix, settings: Settings, repo: Path, base: str | None,
           run_dir: Path, *, model: Model | None, chat: bool, interactive: bool,
           approve: Callable[[str], bool] | None, on_delta: Callable[[Delta], None] | None,
           pack_tokens: int, lock: TreeLock | None, limits: Limits, mcp: McpHub | None) -> Agent:
    profile = settings.profile()
    saved = {s["function"]["name"]: s for s in prefix.mcp_tools}  # fixed when the run started
    extra = [t.pinned(saved[t.name]) for t in (mcp.tools if mcp else []) if t.name in saved]
    toolbox = _toolbox(repo, base, settings, run_dir, interactive=interactive, approve=approve, extra=extra)
    return Agent(
        model=model or OpenAIModel.from_settings(settings),
        toolbox=toolbox,
        prefix=prefix,
        trajectory=traj,
        profile=profile,
        limits=limits,
        tokenizer=get_tokenizer(profile.tokenizer),
        checker=_make_checker(toolbox.ctx),
        check_command=traj.started.check_command,
        pack_tokens=pack_tokens,
        chat=chat,
        on_delta=on_delta,
        tree_lock=lock,
    )


def resume_run(
    run_dir: Path,
    settings: Settings,
    *,
    model: Model | None = None,
    interactive: bool = False,
    approve: Callable[[str], bool] | None = None,
    hooks: RunHooks | None = None,
) -> Run:
    """Rebuild a run from its directory; interrupted tool calls are marked as such.

    The run keeps its model and endpoint unless `settings` names others. A finished run is
    left as it is: its `ended` says how it ended, and `go()` calls no model (nor takes the lock)."""
    hooks = hooks or RunHooks()
    as_written = Trajectory.load(run_dir / "trajectory.jsonl", repair=False)
    ended = final_outcome(as_written)
    if ended is None:
        settings = _settle_sandbox(settings, interactive=interactive, approve=approve)
    lock = None
    if ended is None:  # locked before the trajectory is rewritten (load repairs a torn last line)
        lock = tree_lock(Path(as_written.started.repo))
        lock.acquire()
    traj = Trajectory.load(run_dir / "trajectory.jsonl", repair=ended is None)
    prefix = PromptPrefix.load(run_dir / "prefix.json")
    started = traj.started
    if "model" not in settings.model_fields_set:
        settings = settings.model_copy(update={"model": started.model})
    if settings.base_url is None:
        settings = settings.model_copy(update={"base_url": started.base_url})
    if prefix.sha256() != started.prefix_sha256:
        raise ConfigError(f"{run_dir}/prefix.json does not match the trajectory (edited by hand?)")
    repo = Path(started.repo)
    if hooks.on_event and ended is None:
        traj.subscribe(hooks.on_event)
    if ended is None:
        now = time.time()
        for answer in open_call_answers(traj, "the run stopped before this call ran"):
            traj.append(answer.model_copy(update={"t": now}))
        if model is None:
            require_key(settings)
        remove_stale_temp_files(repo)
    mcp = connect_servers(settings, cwd=repo, log_dir=run_dir, warn=hooks.on_stage) \
        if ended is None and prefix.mcp_tools else None
    agent = _agent(traj, prefix, settings, repo, started.base_commit, run_dir, model=model, chat=False,
                   interactive=interactive, approve=approve, on_delta=hooks.on_delta,
                   pack_tokens=started.pack_tokens, lock=lock, limits=_limits(settings), mcp=mcp)
    return Run(run_id=started.run_id, run_dir=run_dir, repo=repo, agent=agent, trajectory=traj,
               settings=settings, hooks=hooks, ended=ended, mcp=mcp)


def final_outcome(traj: Trajectory) -> Outcome | None:
    """How a finished run ended (solved, or submitted unchecked); None when it can go on."""
    last = traj.events[-1]
    if not isinstance(last, RunEnded) or last.status not in FINAL_STATUSES:
        return None
    if last.check is None:  # written before run_ended carried its check
        checks = [e.check for e in traj.of_type(CheckRun)]
        last = last.model_copy(update={"check": checks[-1] if checks else None})
    return last


def finish_run(run: Run, outcome: Outcome) -> Result:
    """The typed result of a run: status, patch, last check, plan, cost (its MCP servers are stopped)."""
    run.close()
    events = run.trajectory.events
    started = run.trajectory.started
    plans = [t.content for t in assistant_turns(events) if t.content and "Goal" in t.content]
    checks = [e.check for e in events if isinstance(e, CheckRun)]
    decided = [e for e in events if isinstance(e, Triaged) and e.chosen is not None]
    modes = [decided[0].chosen if decided else started.mode, *(e.new for e in events if isinstance(e, ModeChanged))]
    usage, cost = spent(events)
    return Result(
        run_id=run.run_id,
        status=RunStatus.UNCHECKED if outcome.status is RunStatus.TURN else outcome.status,
        exit_code=outcome.exit_code,
        reason=outcome.reason,
        patch=git_patch(run.agent.toolbox.ctx.workspace, started.base_commit),
        check=outcome.check or (checks[-1] if checks else None),
        plan=plans[-1] if plans else None,  # the latest re-plan wins
        summary=outcome.summary,
        mode=modes[-1],
        modes=modes,
        triage=decided[0].verdict if decided else None,
        steps=sum(1 for e in events if isinstance(e, ModelCalled)),
        cost=cost,
        usage=usage,
        elapsed=run.agent.elapsed,
        trajectory=str(run.trajectory.path),
    )


def complete(run: Run) -> Result:
    """Run the loop to its end (under the spec's live view, if any) and take the result."""
    live = run.hooks.live if run.ended is None and run.hooks.live else nullcontext
    with live():
        outcome = run.go()
    result = finish_run(run, outcome)
    if run.ended is None:  # the final patch beside the trajectory, redacted like it (tome view shows it)
        (run.run_dir / "patch.diff").write_text(redact_outgoing(result.patch), encoding="utf-8")
    if run.ended is None and run.settings.hooks.run_end:
        _user_hooks(run.settings, run.repo, run.run_id).run_end(result.model_dump(
            mode="json", include={"run_id", "status", "exit_code", "reason", "summary", "cost", "steps",
                                  "trajectory"}))
    return result


def solve(
    task: RunSpec | Task | str,
    settings: Settings | None = None,
    *,
    repo: Path | str = ".",
    model: Model | None = None,
    worktree: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> Result:
    """Solve `task` in `repo`: pack, choose the mode, loop, take the patch, check. Headless unless
    a RunSpec says otherwise (the CLI and eval pass one; the keywords build one)."""
    if isinstance(task, RunSpec):
        spec = task
    else:
        spec = RunSpec(task=as_task(task), settings=settings or _loaded(Path(repo)), repo=Path(repo),
                       model=model, worktree=worktree, hooks=RunHooks(on_event=on_event))
    return complete(start_run(spec))


def _loaded(project: Path | None) -> Settings:
    """The layered settings; what they ignored (a planted key, an unknown model) is a Python warning."""
    import warnings

    loaded = load_settings(project)
    for message in loaded.warnings:
        warnings.warn(message, UserWarning, stacklevel=3)
    return loaded.settings


def resume(run_dir: Path | str, settings: Settings | None = None, *, model: Model | None = None) -> Result:
    """Continue a crashed or stopped run from its directory; a finished one reports how it ended."""
    return complete(resume_run(Path(run_dir), settings or _loaded(None), model=model))
