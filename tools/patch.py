"""apply_patch: a unified diff applied all-or-nothing, like `git apply`, but tolerant.

Parsing is `unidiff`'s. Applying follows `git apply`: each hunk's old lines must match the file
exactly, searched outward from the stated line (first the nearest positions, then the whole
file); a hunk starting at line 0 or 1 must match at the top, a hunk without trailing context at
the end; lines produced by an earlier hunk are never matched again. When no exact match exists,
the tool, unlike git, retries while ignoring line-ending, trailing-whitespace and then all
whitespace differences (keeping the file's own context lines and line endings) and says so.
Wrong hunk line counts, a frequent slip in hand-written diffs, are recounted from the body.

Nothing is written unless every hunk of every file applies; every write is undoable.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from tools.base import ToolContext, ToolError, tool
from tools.edit import nearest_lines, numbered
from tools.workspace import (
    PathError,
    Workspace,
    decode,
    new_file_mode,
    plain_lines,
    sha256,
    split_lines,
)

__all__ = [
    "PATCH_TOOLS",
    "FileChange",
    "FilePatch",
    "Hunk",
    "PatchError",
    "apply_patch",
    "apply_patch_to_workspace",
    "parse_patch",
    "plan_patch",
]

DEV_NULL = "/dev/null"
# Matching levels: exact (git), then ever looser normalisations of a line.
_LEVELS: list[tuple[str, Callable[[str], str]]] = [
    ("exact", lambda s: s),
    ("ignoring line endings", lambda s: s.rstrip("\r\n")),
    ("ignoring trailing whitespace", lambda s: s.rstrip()),
    ("ignoring whitespace", lambda s: " ".join(s.replace("\ufeff", "").split())),
]


class PatchError(ToolError):
    """The patch cannot be parsed or does not apply; nothing was changed."""

    kind = "patch_failed"


@dataclass
class Hunk:
    """One hunk: its header numbers and (type, text) lines, text with its line ending."""

    src_start: int
    src_len: int
    tgt_start: int
    tgt_len: int
    header: str
    lines: list[tuple[str, str]]

    @property
    def old(self) -> list[str]:
        """Lines the hunk expects in the file (context and removed)."""
        return [v for t, v in self.lines if t in " -"]

    @property
    def new(self) -> list[str]:
        """Lines the hunk leaves in the file (context and added)."""
        return [v for t, v in self.lines if t in " +"]


@dataclass
class FilePatch:
    """The part of a patch about one file."""

    old_path: str | None  # None: the file is created
    new_path: str | None  # None: the file is deleted
    hunks: list[Hunk]
    old_mode: str | None = None
    new_mode: str | None = None
    binary: bool = False


@dataclass
class FileChange:
    """What applying a FilePatch does: new bytes (None = delete) at a path, and notes."""

    old_path: str | None
    new_path: str | None
    data: bytes | None
    executable: bool | None = None  # None: keep the file's mode
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """A, D, R or M like git's name-status."""
        if self.old_path is None:
            return "A"
        if self.new_path is None:
            return "D"
        return "R" if self.old_path != self.new_path else "M"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[\w+-]*\s*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
# A header without numbers ("@@", "@@ @@", "@@ def f():"): the hunk is searched for everywhere.
_BARE_HEADER = re.compile(r"^@@(?:\s*@@)?(?:\s(.*))?$")


def _unquote(name: str) -> str:
    """Undo git's C-style quoting of unusual file names."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        raw = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        return raw.encode("latin-1").decode("utf-8", "surrogateescape")
    return name


def _strip_prefix(name: str | None) -> str | None:
    if name is None:
        return None
    name = _unquote(name.strip())
    if name == DEV_NULL:
        return None
    if name.startswith(("a/", "b/")):
        return name[2:]
    return name


def _recount(text: str) -> str:
    """Rewrite every hunk header's line counts from the hunk's body."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _HUNK_HEADER.match(lines[i].rstrip("\r\n"))
        bare = None if m else _BARE_HEADER.match(lines[i].rstrip("\r\n"))
        if not m and not bare:
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        src = tgt = 0
        while j < len(lines):
            line = lines[j]
            if line.startswith(("@@ ", "diff --git ")) or (
                line.startswith("--- ") and j + 1 < len(lines) and lines[j + 1].startswith("+++ ")
            ):
                break
            tag = line[:1]
            if tag in (" ", "\n", "\r"):
                src += 1
                tgt += 1
            elif tag == "-":
                src += 1
            elif tag == "+":
                tgt += 1
            elif tag != "\\":
                break
            j += 1
        # Trailing blank lines between files are separators, not context.
        body = lines[i + 1 : j]
        while body and body[-1] in ("\n", "\r\n") and src > 0:
            body.pop()
            src -= 1
            tgt -= 1
        if m:
            s_start, t_start, section = int(m.group(1)), int(m.group(3)), m.group(5)
        else:
            s_start = t_start = 1 if src else 0
            section = f" {bare.group(1)}" if bare and bare.group(1) else ""
        out.append(f"@@ -{s_start},{src} +{t_start},{tgt} @@{section}\n")
        out.extend(body)
        out.extend(lines[i + 1 + len(body) : j])
        i = j
    return "".join(out)


def _to_file_patches(ps: PatchSet) -> list[FilePatch]:
    files: list[FilePatch] = []
    for pf in ps:
        old = _strip_prefix(pf.source_file)
        new = _strip_prefix(pf.target_file)
        hunks: list[Hunk] = []
        for h in pf:
            lines: list[tuple[str, str]] = []
            for line in h:
                t = line.line_type
                if t == "\\":
                    if lines:  # the line before has no newline at the end of its file
                        pt, pv = lines[-1]
                        lines[-1] = (pt, pv[:-2] if pv.endswith("\r\n") else pv.rstrip("\n"))
                    continue
                if t not in (" ", "-", "+"):
                    continue  # unidiff's trailing empty separator lines
                lines.append((t, line.value))
            header = (
                f"@@ -{h.source_start},{h.source_length} +{h.target_start},{h.target_length} @@"
            )
            hunks.append(
                Hunk(
                    h.source_start, h.source_length, h.target_start, h.target_length, header, lines
                )
            )
        files.append(
            FilePatch(old, new, hunks, pf.source_mode, pf.target_mode, bool(pf.is_binary_file))
        )
    return files


def parse_patch(text: str) -> list[FilePatch]:
    """Parse a unified diff (git or plain); a PatchError says what is wrong with it."""
    fenced = _FENCE.search(text)
    if fenced and "@@" in fenced.group(1):
        text = fenced.group(1)
    if not text.endswith("\n"):
        text += "\n"
    try:
        if any(
            _BARE_HEADER.match(line) and not _HUNK_HEADER.match(line) for line in text.splitlines()
        ):
            raise UnidiffParseError("hunk headers without line numbers")
        files = _to_file_patches(PatchSet(text))
    except UnidiffParseError as first:
        try:
            files = _to_file_patches(PatchSet(_recount(text)))
        except UnidiffParseError:
            raise PatchError(
                f"the patch could not be parsed ({first}); nothing was changed. Send a unified "
                "diff: '--- a/path' and '+++ b/path' lines, then hunks that start with "
                "'@@ -old,count +new,count @@' and whose lines start with ' ', '-' or '+'."
            ) from None
    if not files:
        raise PatchError(
            "the patch holds no file changes; nothing was changed. Send a unified diff with "
            "'--- a/path', '+++ b/path' and '@@' hunk lines."
        )
    return files


# --------------------------------------------------------------------------------------------
# Applying hunks to lines
# --------------------------------------------------------------------------------------------


class _HunkFailed(Exception):
    def __init__(self, index: int, hunk: Hunk) -> None:
        self.index, self.hunk = index, hunk


def _dominant_newline(lines: list[str]) -> str:
    crlf = sum(1 for l in lines if l.endswith("\r\n"))
    return "\r\n" if crlf * 2 > len(lines) else "\n"


def _positions(start: int, lo: int, hi: int) -> Iterator[int]:
    """start, start+1, start-1, start+2, ... clipped to [lo, hi] (git's search order)."""
    start = min(max(start, lo), hi)
    yield start
    for d in range(1, hi - lo + 1):
        if start + d <= hi:
            yield start + d
        if start - d >= lo:
            yield start - d
        if start + d > hi and start - d < lo:
            return


def _find(
    lines: list[str],
    patched: list[bool],
    old: list[str],
    start: int,
    norm: Callable[[str], str],
    *,
    at_start: bool,
    at_end: bool,
) -> int | None:
    hi = len(lines) - len(old)
    if hi < 0:
        return None
    want = [norm(o) for o in old]
    candidates: Iterable[int]
    if at_start:
        candidates = [0] if (not at_end or hi == 0) else []
    elif at_end:
        candidates = [hi]
    else:
        candidates = _positions(start, 0, hi)
    for pos in candidates:
        if all(not patched[pos + i] and norm(lines[pos + i]) == w for i, w in enumerate(want)):
            return pos
    return None


def apply_hunks(
    lines: list[str], hunks: list[Hunk], *, fuzzy: bool = True
) -> tuple[list[str], list[str]]:
    """Apply hunks to a file's lines (with endings): (new lines, notes), or _HunkFailed."""
    lines = list(lines)
    patched = [False] * len(lines)
    nl = _dominant_newline(lines)
    notes: list[str] = []
    delta = 0  # lines added minus removed by earlier hunks
    drift = 0  # how far the previous hunk sat from where it said
    levels = _LEVELS if fuzzy else _LEVELS[:1]
    for k, h in enumerate(hunks):
        old, types = h.old, [t for t, _ in h.lines]
        trailing = next((i for i, t in enumerate(reversed(types)) if t != " "), len(types))
        stated = (h.src_start - 1 if h.src_start > 0 else 0) + delta
        if not old and h.src_start > 0 and h.src_len == 0:
            stated += 1  # "-N,0": insert after line N
        # git: a hunk at line 0 or 1 must match at the top, one without trailing context at
        # the end (a hunk with no old lines at all only inserts, wherever it says).
        at_start = h.src_start <= 1
        at_end = trailing == 0 and bool(old)
        found: tuple[int, int] | None = None
        for li, (_, norm) in enumerate(levels):
            for constrained in (True, False) if fuzzy else (True,):
                pos = _find(
                    lines,
                    patched,
                    old,
                    stated + drift,
                    norm,
                    at_start=at_start and constrained,
                    at_end=at_end and constrained,
                )
                if pos is not None:
                    found = (pos, li)
                    break
            if found:
                break
        if found is None:
            raise _HunkFailed(k, h)
        pos, li = found
        block: list[str] = []
        j = pos
        for t, v in h.lines:
            if t == " ":
                block.append(v if li == 0 else lines[j])
                j += 1
            elif t == "-":
                j += 1
            else:
                if li > 0 and v.endswith("\n"):
                    v = v.rstrip("\r\n") + nl
                block.append(v)
        lines[pos : pos + len(old)] = block
        patched[pos : pos + len(old)] = [True] * len(block)
        if li > 0 or pos != stated + drift:
            where = f"at line {pos + 1}" + (
                f" (the header says {h.src_start})" if pos != stated else ""
            )
            how = f", {_LEVELS[li][0]}" if li else ""
            notes.append(f"hunk {k + 1} ({h.header}) applied {where}{how}")
        drift = pos - stated
        delta += len(block) - len(old)
    # A line without an ending can only be the last one; otherwise it would merge with the next.
    for i in range(len(lines) - 1):
        if not lines[i].endswith(("\n", "\r")):
            lines[i] += nl
    return lines, notes


def _failure_message(path: str, text: str, exc: _HunkFailed, total: int) -> str:
    h = exc.hunk
    old = "".join(exc.hunk.old)
    msg = [
        (
            f"hunk {exc.index + 1} of {total} for {path} ({h.header}) does not apply: the lines "
            f"it removes or keeps were not found near line {h.src_start} nor anywhere else in "
            "the file."
        )
    ]
    if old.strip():
        near = nearest_lines(text, old, limit=1)
        if near:
            first, last, ratio = near[0]
            plain = plain_lines(text)
            msg.append(f"Closest lines {first}-{last} ({ratio:.0%} similar):")
            msg.append(numbered(plain[first - 1 : last], first).rstrip("\n"))
    msg.append(
        "No file was changed. View the current lines, then send the patch again with context "
        "and removed lines copied exactly (or use str_replace)."
    )
    return "\n".join(msg)


# --------------------------------------------------------------------------------------------
# Planning a whole patch against a set of files
# --------------------------------------------------------------------------------------------


def plan_patch(
    files: list[FilePatch],
    read: Callable[[str], tuple[bytes, bool] | None],
    *,
    fuzzy: bool = True,
) -> list[FileChange]:
    """Compute every file's new bytes without writing; `read(path)` -> (bytes, executable) or None."""
    current: dict[str, tuple[bytes, bool] | None] = {}

    def get(path: str) -> tuple[bytes, bool] | None:
        if path not in current:
            current[path] = read(path)
        return current[path]

    changes: list[FileChange] = []
    for fp in files:
        if fp.binary:
            raise PatchError(
                f"the patch changes the binary file {fp.new_path or fp.old_path}; binary patches "
                "are not supported here. Nothing was changed; use the shell for binary files."
            )
        if fp.old_path is None and fp.new_path is None:
            raise PatchError("a file section of the patch names /dev/null on both sides.")
        src = fp.old_path if fp.old_path is not None else fp.new_path
        assert src is not None
        existing = get(src) if fp.old_path is not None else None
        if fp.old_path is not None and existing is None:
            raise PatchError(
                f"the patch changes {fp.old_path}, which does not exist; nothing was changed. "
                "Check the path (find_files), or mark a new file with '--- /dev/null'."
            )
        if fp.old_path is None and get(fp.new_path) is not None:  # type: ignore[arg-type]
            raise PatchError(
                f"the patch creates {fp.new_path}, which already exists; nothing was changed. "
                "Patch it as a modification (with its current lines as context) instead."
            )
        renamed = fp.new_path is not None and fp.old_path not in (None, fp.new_path)
        if renamed and get(fp.new_path) is not None:  # type: ignore[arg-type]
            raise PatchError(
                f"the patch renames {fp.old_path} to {fp.new_path}, which already exists; "
                "nothing was changed."
            )
        data, executable = existing if existing is not None else (b"", False)
        if data and b"\x00" in data[:8192]:
            raise PatchError(f"{src} is a binary file; it cannot be patched as text.")
        text, encoding, _ = decode(data)
        # Keep a BOM as a character, as git does: the patch's first line carries it too.
        if encoding == "utf-8" and data.startswith(b"\xef\xbb\xbf"):
            text = "\ufeff" + text
        try:
            new_lines, notes = apply_hunks(split_lines(text), fp.hunks, fuzzy=fuzzy)
        except _HunkFailed as e:
            raise PatchError(_failure_message(src, text, e, len(fp.hunks))) from None
        new_text = "".join(new_lines)
        if fp.new_path is None:
            if new_text:
                raise PatchError(
                    f"the patch deletes {fp.old_path} but the file holds more than the patch "
                    "removes; nothing was changed. View it and include all of its lines."
                )
            changes.append(FileChange(fp.old_path, None, None, None, notes))
            current[fp.old_path] = None  # type: ignore[index]
            continue
        try:
            out = new_text.encode(encoding)
        except UnicodeEncodeError as e:
            raise PatchError(
                f"{fp.new_path} is {encoding}-encoded and cannot hold "
                f"{new_text[e.start : e.end]!r}; nothing was changed."
            ) from None
        exe: bool | None = None  # None: keep the file's mode
        if fp.old_path is None or (fp.new_mode and fp.new_mode != fp.old_mode):
            exe = fp.new_mode is not None and fp.new_mode.endswith("755")
        if fp.old_path is not None and fp.new_path != fp.old_path:
            current[fp.old_path] = None
            if exe is None:
                exe = executable
        current[fp.new_path] = (out, executable if exe is None else exe)
        changes.append(FileChange(fp.old_path, fp.new_path, out, exe, notes))
    return changes


def apply_patch_to_workspace(ws: Workspace, patch: str, *, fuzzy: bool = True) -> list[FileChange]:
    """Apply a patch to the workspace, all or nothing; returns what changed."""
    files = parse_patch(patch)

    def read(path: str) -> tuple[bytes, bool] | None:
        p = ws.resolve(path, write=True)
        if not p.exists():
            return None
        if p.is_dir():
            raise PathError(f"{path} is a directory; a patch can only change files.")
        data = ws.read_bytes(p)
        ws.check_fresh(p, sha256(data))
        return data, bool(p.stat().st_mode & 0o111)

    changes = plan_patch(files, read, fuzzy=fuzzy)
    done: list[Path] = []
    try:
        for ch in changes:
            if ch.old_path is not None and (ch.new_path is None or ch.new_path != ch.old_path):
                p = ws.resolve(ch.old_path, write=True)
                if p.exists():
                    ws.delete(p)
                    done.append(p)
            if ch.new_path is not None and ch.data is not None:
                p = ws.resolve(ch.new_path, write=True)
                ws.write_bytes(p, ch.data, mode=_mode_for(p, ch.executable))
                done.append(p)
    except BaseException as e:
        stuck = _roll_back(ws, done)
        if stuck and isinstance(e, ToolError):
            raise PatchError(
                f"{e}\nThe patch was partly applied and these files could not be put back: "
                f"{', '.join(stuck)}. Once the workspace is sane, undo_edit each of them."
            ) from None
        raise
    return changes


def _roll_back(ws: Workspace, done: list[Path]) -> list[str]:
    """Undo a half-applied patch's writes, newest first; returns the paths that stay changed."""
    stuck = []
    for p in reversed(done):
        try:
            ws.undo(p)
        except ToolError:  # a refused undo keeps its step, for undo_edit later
            stuck.append(ws.rel(p))
    return stuck


def _mode_for(path: Path, executable: bool | None) -> int | None:
    """Mode bits for a write: None keeps the file's own; else git's 644/755 rule under umask."""
    if executable is None:
        return None
    if not path.exists():
        return new_file_mode(executable=executable)
    current = stat.S_IMODE(path.stat().st_mode)
    if executable:
        return current | (new_file_mode(executable=True) & 0o111)
    return current & ~0o111


@tool
def apply_patch(ctx: ToolContext, patch: str) -> str:
    """Apply a unified diff (one or more files; new, deleted and renamed files too), all or nothing.

    Args:
        patch: The diff: '--- a/path', '+++ b/path', then '@@ -l,n +l,n @@' hunks with ' ', '-', '+' lines. Line numbers may be approximate; context lines must match the file.
    """
    changes = apply_patch_to_workspace(ctx.workspace, patch)
    out = [f"Applied the patch to {len(changes)} file{'s' if len(changes) != 1 else ''}:"]
    for ch in changes:
        name = ch.new_path if ch.status != "R" else f"{ch.old_path} -> {ch.new_path}"
        if ch.status == "D":
            name = ch.old_path
        out.append(f"  {ch.status} {name}")
        out.extend(f"      {n}" for n in ch.notes)
    out.append("View the changed lines to check them; undo_edit reverts one file.")
    return "\n".join(out)


PATCH_TOOLS = (apply_patch,)
