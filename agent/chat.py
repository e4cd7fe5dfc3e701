"""`tome chat`: an interactive, multi-turn session in a repository.

The prefix (system, pack, a fixed session chunk) is the same for every session on a commit, so
the provider's cache hits from the first message; each user message is appended to the history.
Slash commands: /undo, /diff, /cost, /mode [MODE], /pack, /quit. Destructive shell commands
ask before they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm, Prompt

from agent.cli import add_settings_options, settings_from_args
from agent.modes import MODE_TABLE
from agent.records import Task

__all__ = ["configure", "run", "ChatSession", "SESSION_TASK"]

SESSION_TASK = (
    "Interactive session: the user's requests follow as messages. Answer questions in text; "
    "for changes, work with the tools, run the tests that show the change, then call submit. "
    "Reply in text when you need the user."
)
COMMANDS = {
    "/help": "this list",
    "/undo": "bring the files back to how they were before the last turn",
    "/diff": "the changes so far, as a patch",
    "/cost": "money, tokens and cache hits so far",
    "/mode": f"show the reasoning mode, or set it: /mode {'|'.join(m.value for m in MODE_TABLE)}",
    "/pack": "what the model was given of the repository",
    "/quit": "end the session (also /exit, Ctrl-D)",
}
# shown as typed: print it escaped, or rich takes the brackets for markup
HELP = f"/help  /undo  /diff  /cost  /mode [{'|'.join(m.value for m in MODE_TABLE)}]  /pack  /quit"


class ChatSession:
    """One chat: a prepared run plus the slash commands; `send` runs one user turn."""

    def __init__(self, run, *, print_: Callable[[str], None]) -> None:
        self.run = run
        self.print = print_
        self.turn_checkpoints: list[str] = []

    def send(self, text: str) -> str:
        """Append the user's message and loop until the model answers in text or submits."""
        from tools.git import checkpoint_if_repo

        cp = checkpoint_if_repo(self.run.agent.toolbox.ctx.workspace, f"before chat turn: {text[:40]}")
        if cp is not None:
            self.turn_checkpoints.append(cp.id)
        self.run.agent.add_user_message(text)
        return self.run.agent.run().status

    def command(self, line: str) -> bool:
        """Run a slash command; False when the session should end."""
        from agent.errors import ConfigError
        from agent.modes import parse_mode
        from agent.run import git_patch

        name, _, arg = line.strip().partition(" ")
        agent = self.run.agent
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.print("\n".join(f"{cmd:<7} {what}" for cmd, what in COMMANDS.items()))
        elif name == "/diff":
            patch = git_patch(agent.toolbox.ctx.workspace, self.run.trajectory.started.base_commit)
            self.print(patch or "(no changes)")
        elif name == "/undo":
            self.print(self._undo())
        elif name == "/cost":
            u = agent.usage
            hit = u.cache_hit_tokens / u.prompt_tokens if u.prompt_tokens else 0.0
            self.print(f"${agent.cost:.4f}  {u.prompt_tokens:,} prompt ({hit:.0%} cache hit), "
                       f"{u.completion_tokens:,} output, {agent.steps} calls")
        elif name == "/mode":
            if arg.strip():
                try:
                    new = parse_mode(arg)
                except ConfigError as e:  # a typo must not end the session
                    self.print(f"{e}; the mode stays {agent.mode.label}")
                    return True
                if new is not None:
                    agent.set_mode(new, "set by the user")
            self.print(f"mode: {agent.mode.label}")
        elif name == "/pack":
            started = self.run.trajectory.started
            self.print(f"pack: {started.pack_tokens:,} tokens of {started.repo} at {started.base_commit or 'no commit'}")
        else:
            self.print(f"unknown command {name}; /help lists the commands")
        return True

    def _undo(self) -> str:
        """Bring the files back to how they were before the last chat turn."""
        from tools.git import restore_checkpoint

        if not self.turn_checkpoints:
            return "nothing to undo"
        return restore_checkpoint(self.run.agent.toolbox.ctx.workspace, self.turn_checkpoints.pop())


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of chat."""
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository (default: .)")
    parser.add_argument("--yes", "--approve", dest="yes", action="store_true",
                        help="run destructive commands without asking")
    add_settings_options(parser)


def run(args: argparse.Namespace) -> int:
    """The read-eval loop."""
    from agent.errors import ConfigError
    from agent.run import RunHooks, RunSpec, start_run
    from agent.view import LiveView

    console = Console()
    if args.json or not sys.stdin.isatty():
        raise ConfigError("tome chat is interactive; use tome solve --json for scripts")
    settings = settings_from_args(args, args.repo)
    view = LiveView(console, verbose=args.verbose)
    run_ = start_run(RunSpec(
        task=Task(statement=SESSION_TASK), settings=settings, repo=args.repo, interactive=True, chat=True,
        approve=(lambda _question: True) if args.yes else Confirm.ask,  # each question says what it asks
        hooks=RunHooks(on_event=view.on_event, on_delta=view.on_delta,
                       on_stage=lambda m: console.print(f"[dim]{m}[/]")),
    ))
    session = ChatSession(run_, print_=lambda text: console.print(escape(text)))
    console.print(f"[bold]tome chat[/] in {escape(str(run_.repo))}. ", escape(HELP), sep="")
    while True:
        try:
            line = Prompt.ask("[bold cyan]you[/]")
        except (EOFError, KeyboardInterrupt):
            break
        if not line.strip():
            continue
        if line.startswith("/"):
            if not session.command(line):
                break
            continue
        with view:
            session.send(line)
    console.print(f"session saved: tome replay {run_.run_id}")
    return 0
