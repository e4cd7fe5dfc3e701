"""Project and user instructions (AGENTS.md) for the prompt.

Two parts, split by how stable they are (DESIGN §4.5):

    instructions chunk ─ the user's ~/.config/tome/AGENTS.md, the repository's root AGENTS.md and
                         the files its tome.toml names: the same for every task on one commit, so
                         it sits after the system prompt and before the pack, inside the cached prefix
    scoped block       ─ nested AGENTS.md files of the directories the task touches (the files it
                         names), outermost first: they go with the task, after the pack

The nearest file wins, as Codex reads them: files are concatenated from the root down, and a
deeper file's guidance overrides a shallower one for the files under it
(developers.openai.com/codex/guides/agents-md, "How Codex discovers guidance": files closer to
the working directory appear later in the combined prompt and override earlier guidance). Repository files are untrusted text: they are confined to the
repository, bounded, and redacted like the pack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from agent.records import Pack

__all__ = ["AGENTS_FILE", "InstructionFile", "Instructions", "collect_instructions",
           "scoped_instructions", "touched_dirs", "user_instructions_path"]

AGENTS_FILE = "AGENTS.md"
MAX_FILE_BYTES = 64 * 1024  # Codex's default project_doc_max_bytes is 32 KiB; twice that, per file
# Rank signals that mean the task itself points at a file (agent/pack/rank.py), not mere similarity.
_NAMED_SIGNALS = ("stack trace", "path named", "file named", "module named")


class InstructionFile(BaseModel):
    """One instructions file that was read: where from and what it says (already redacted)."""

    source: str  # "user", or the path relative to the repository
    scope: str  # "." for the whole repository, or the directory it governs
    text: str
    truncated: bool = False


class Instructions(BaseModel):
    """The instruction files of one run, split into the stable chunk and the task-scoped block."""

    stable: list[InstructionFile] = []
    scoped: list[InstructionFile] = []
    warnings: list[str] = []

    def chunk(self) -> str:
        """The instructions chunk (user, root, named files); "" when there are none."""
        if not self.stable:
            return ""
        head = ("# Instructions\n\nThe user's and the repository's instructions for working here. "
                "Follow them unless the task says otherwise.")
        return "\n\n".join([head, *(_section(f) for f in self.stable)]) + "\n"

    def scoped_block(self) -> str:
        """Nested AGENTS.md files for the directories the task touches; "" when there are none."""
        if not self.scoped:
            return ""
        head = ("Instructions for the directories this task touches; for files under a directory, "
                "its file overrides the ones above it:")
        return "\n\n".join([head, *(_section(f) for f in self.scoped)])


def _section(f: InstructionFile) -> str:
    where = "from the user's config" if f.source == "user" else f"from {f.source}"
    scope = "" if f.scope == "." or f.source == "user" else f" (applies to {f.scope}/)"
    cut = "\n[... cut at 64 KiB ...]" if f.truncated else ""
    return f"## {where}{scope}\n\n{f.text.strip()}{cut}"


def user_instructions_path() -> Path:
    """`~/.config/tome/AGENTS.md`, beside the user's config file."""
    from agent.settings import user_config_path

    return user_config_path().parent / AGENTS_FILE


def touched_dirs(pack: Pack) -> list[str]:
    """Directories of the files the task names (in a stack trace, by path, file or module name)."""
    dirs: set[str] = set()
    for item in pack.items:
        if any(r.startswith(_NAMED_SIGNALS) for r in item.reasons):
            parent = str(PurePosixPath(item.path).parent)
            if parent != ".":
                dirs.add(parent)
    return sorted(dirs)


def _read(path: Path, source: str, scope: str) -> InstructionFile | None:
    from agent.secrets import redact

    try:
        data = path.read_bytes()
    except OSError:
        return None
    text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
    if not text.strip():
        return None
    return InstructionFile(source=source, scope=scope, text=redact(text, path=source)[0],
                           truncated=len(data) > MAX_FILE_BYTES)


def _inside(repo: Path, relative: str) -> Path | None:
    """`relative` under the repository, or None when it leaves it (`..`, absolute, a symlink out)."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    path = (repo / rel).resolve()
    return path if path.is_relative_to(repo) and path.is_file() else None


def collect_instructions(repo: Path, *, named: Sequence[str] = (),
                         user_file: Path | None = None) -> Instructions:
    """The stable part: the user's AGENTS.md, the root one and the `named` files."""
    repo = repo.resolve()
    out = Instructions()
    user = _read(user_file or user_instructions_path(), "user", ".")
    if user is not None:
        out.stable.append(user)
    for relative in [AGENTS_FILE, *(n for n in named if n != AGENTS_FILE)]:
        path = _inside(repo, relative)
        if path is None:
            if relative != AGENTS_FILE:
                out.warnings.append(f"instructions file {relative!r} is not a file inside {repo}: ignored")
            continue
        found = _read(path, relative, ".")
        if found is not None:
            out.stable.append(found)
    return out


def scoped_instructions(repo: Path, dirs: Iterable[str]) -> list[InstructionFile]:
    """The nested AGENTS.md files between the root and each of `dirs`, outermost first."""
    repo = repo.resolve()
    scopes: set[str] = set()
    for d in dirs:
        parts = PurePosixPath(d).parts
        scopes.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    found: list[InstructionFile] = []
    for scope in sorted(scopes, key=lambda s: (s.count("/"), s)):  # the nearest comes last and wins
        path = _inside(repo, f"{scope}/{AGENTS_FILE}")
        read = _read(path, f"{scope}/{AGENTS_FILE}", scope) if path is not None else None
        if read is not None:
            found.append(read)
    return found
