"""The editor: view, create, str_replace, insert, undo_edit (after Anthropic's reference editor).

Edits work on the file's decoded text with its own line endings, so bytes outside the edited
span never change. A mismatch is an observation that shows the nearest lines; a success shows a
numbered snippet of the result.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

from agent.invisible import unshow_invisible
from tools.base import ToolContext, ToolError, tool
from tools.workspace import PathError, TextFile, Workspace, plain_lines, split_lines

__all__ = [
    "EDIT_TOOLS",
    "create",
    "insert",
    "nearest_lines",
    "numbered",
    "str_replace",
    "undo_edit",
    "view",
]

SNIPPET_CONTEXT = 4
DIR_ENTRIES_CAP = 500
_SKIP_DIRS = {
    ".git",
    "__pycache__",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".tox",
    ".venv",
}


def numbered(lines: list[str], start: int = 1) -> str:
    """Lines (without endings) numbered like `cat -n`, starting at `start`."""
    return "".join(f"{i:6}\t{line}\n" for i, line in enumerate(lines, start))


def _plain_lines(text: str) -> list[str]:
    return plain_lines(text)


def _snippet(text: str, first: int, last: int) -> str:
    """Numbered lines first..last (1-based) with SNIPPET_CONTEXT lines around them."""
    lines = _plain_lines(text)
    lo = max(1, first - SNIPPET_CONTEXT)
    hi = min(len(lines), max(last, first) + SNIPPET_CONTEXT)
    return numbered(lines[lo - 1 : hi], lo)


def _syntax_note(path: Path, before: str | None, after: str) -> str:
    """A warning when a Python file that compiled before no longer does."""
    if path.suffix != ".py":
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if before is not None:
            try:
                compile(before, str(path), "exec", dont_inherit=True)
            except (SyntaxError, ValueError):
                return ""  # it was already broken: say nothing new
        try:
            compile(after, str(path), "exec", dont_inherit=True)
        except SyntaxError as e:
            return (
                f"\nWarning: {path.name} no longer parses as Python: {e.msg} at line {e.lineno}. "
                "Fix it, or undo_edit."
            )
        except ValueError:
            return ""
    return ""


def nearest_lines(text: str, needle: str, *, limit: int = 2) -> list[tuple[int, int, float]]:
    """The spans of `text` (1-based first, last line, similarity) most like `needle`."""
    lines = _plain_lines(text)
    want = plain_lines(needle) or [needle]
    n = max(1, len(want))
    anchors = [(j, w.strip()) for j, w in enumerate(want) if w.strip()][:6]
    if not lines or not anchors:
        return []
    stripped = [l.strip() for l in lines]
    starts: set[int] = set()
    for j, w in anchors:
        for i, s in enumerate(stripped):
            if not s:
                continue
            sm = difflib.SequenceMatcher(None, s, w, autojunk=False)
            if sm.real_quick_ratio() >= 0.6 and sm.quick_ratio() >= 0.6 and sm.ratio() >= 0.6:
                starts.add(max(0, i - j))
        if len(starts) > 400:
            break
    target = "\n".join(w.strip() for w in want)
    scored = []
    for s in starts:
        window = "\n".join(stripped[s : s + n])
        ratio = difflib.SequenceMatcher(None, window, target, autojunk=False).ratio()
        scored.append((ratio, s))
    scored.sort(key=lambda x: (-x[0], x[1]))
    out: list[tuple[int, int, float]] = []
    for ratio, s in scored:
        if any(abs(s + 1 - o[0]) < n for o in out):
            continue
        out.append((s + 1, min(len(lines), s + n), ratio))
        if len(out) >= limit:
            break
    return out


def _no_match_message(ws: Workspace, tf: TextFile, old: str) -> str:
    rel = ws.rel(tf.path)
    msg = [f"old_str was not found in {rel}; nothing was changed."]
    squashed = " ".join(old.split())
    if squashed and squashed in " ".join(tf.text.split()):
        msg.append(
            "The text is there but its whitespace or indentation differs: copy the lines exactly "
            "as view shows them (tabs vs spaces, trailing spaces)."
        )
    near = nearest_lines(tf.text, old)
    lines = _plain_lines(tf.text)
    for first, last, ratio in near:
        msg.append(f"Closest lines {first}-{last} ({ratio:.0%} similar):")
        msg.append(numbered(lines[first - 1 : last], first).rstrip("\n"))
    if not near:
        msg.append(f"No similar lines either; view {rel} to see what it holds now.")
    else:
        msg.append("Call str_replace again with old_str copied exactly from these lines.")
    return "\n".join(msg)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _open_for_edit(ctx: ToolContext, path: str) -> TextFile:
    ws = ctx.workspace
    p = ws.resolve(path, write=True)
    tf = ws.read_text(p)
    ws.check_fresh(p, tf.digest)
    return tf


def _write(ctx: ToolContext, tf: TextFile, new_text: str) -> None:
    ctx.workspace.write_bytes(tf.path, tf.encode(new_text))


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def _list_dir(ws: Workspace, p: Path) -> str:
    def visible(d: Path) -> list[str]:
        try:
            return sorted(x for x in os.listdir(d) if not x.startswith(".") and x not in _SKIP_DIRS)
        except OSError:
            return []

    entries: list[str] = []
    for name in visible(p):
        child = p / name
        if child.is_dir():
            entries.append(ws.rel(child) + "/")
            entries.extend(
                ws.rel(child / sub) + ("/" if (child / sub).is_dir() else "")
                for sub in visible(child)
            )
        else:
            entries.append(ws.rel(child))
    shown = entries[:DIR_ENTRIES_CAP]
    head = f"{ws.rel(p)}/ (two levels deep; hidden and cache directories skipped):\n"
    more = (
        f"\n[{len(entries) - len(shown)} more of {len(entries)} entries not shown; view a subdirectory]"
        if len(entries) > len(shown)
        else ""
    )
    return head + "\n".join(shown) + more


@tool
def view(ctx: ToolContext, path: str, view_range: list[int] | None = None) -> str:
    """Show a file with numbered lines, or list a directory two levels deep.

    Args:
        path: File or directory, relative to the workspace root.
        view_range: [first, last] line numbers to show (1-based, inclusive); last = -1 means to the end of the file.
    """
    ws = ctx.workspace
    spill = Path(path)
    if spill.is_absolute() and ctx.spill_dir.resolve() in spill.resolve().parents:
        p = spill.resolve()  # full text of a cut result: readable, never writable
        if not p.is_file():
            raise PathError(f"{path} does not exist.")
    else:
        p = ws.resolve(path, must_exist=True)
    if p.is_dir():
        if view_range is not None:
            raise ToolError(f"{path} is a directory; view_range applies to files only.")
        return _list_dir(ws, p)
    tf = ws.read_text(p)
    lines = _plain_lines(tf.text)
    first, last = 1, len(lines)
    if view_range is not None:
        if len(view_range) != 2:
            raise ToolError(
                "view_range must be two numbers: [first, last] (last = -1 for the end)."
            )
        first, last = view_range
        if last == -1:
            last = len(lines)
        if not 1 <= first <= max(1, len(lines)):
            raise ToolError(
                f"view_range starts at {first} but {path} has {len(lines)} lines; "
                f"use a first line from 1 to {len(lines)}."
            )
        if last < first:
            raise ToolError(f"view_range [{first}, {last}]: the last line comes before the first.")
        last = min(last, len(lines))
    if p.parent != ctx.spill_dir.resolve():
        ws.mark_seen(p, tf.digest)
    if not lines:
        return f"{path} is empty."
    body = numbered(lines[first - 1 : last], first)
    notes = []
    if tf.encoding != "utf-8" or tf.bom or tf.newline != "\n":
        notes.append(
            f"[{tf.encoding}{' with BOM' if tf.bom else ''}, line endings {tf.newline!r}: "
            "edits keep them; write plain \\n in your edits]"
        )
    if view_range is not None and (first > 1 or last < len(lines)):
        notes.append(f"[lines {first}-{last} of {len(lines)}]")
    return body + "\n".join(notes)


@tool
def create(ctx: ToolContext, path: str, file_text: str) -> str:
    """Create a new file with the given content (an existing file must be viewed first to be replaced).

    Args:
        path: The new file, relative to the workspace root; missing directories are created.
        file_text: The whole content of the file.
    """
    ws = ctx.workspace
    p = ws.resolve(path, write=True)
    if p.is_dir():
        raise PathError(f"{path} is a directory; give a file path.")
    if p.exists():
        tf = ws.read_text(p)
        if not ws.has_seen(p):
            raise ToolError(
                f"{path} already exists ({len(_plain_lines(tf.text))} lines). To change it use "
                "str_replace or insert; to replace it whole, view it first, then create again."
            )
        ws.check_fresh(p, tf.digest)
        before: str | None = tf.text
        data = tf.encode(tf.to_file_newlines(file_text))
    else:
        before = None
        data = file_text.encode("utf-8")
    ws.write_bytes(p, data)
    n = len(_plain_lines(file_text))
    verb = "Replaced" if before is not None else "Created"
    return f"{verb} {ws.rel(p)} ({n} lines).{_syntax_note(p, before, file_text)}"


@tool
def str_replace(ctx: ToolContext, path: str, old_str: str, new_str: str = "") -> str:
    """Replace text that occurs exactly once in a file; include enough surrounding lines to make it unique.

    Args:
        path: The file, relative to the workspace root.
        old_str: The exact text to replace, copied from the file (whitespace matters).
        new_str: The replacement text; empty to delete old_str.
    """
    ws = ctx.workspace
    if old_str == "":
        raise ToolError(
            "old_str is empty; copy the exact lines to replace (use insert to add lines)."
        )
    tf = _open_for_edit(ctx, path)
    old, new = old_str, new_str
    count = tf.text.count(old)
    if count == 0 and tf.newline != "\n":
        old, new = tf.to_file_newlines(old_str), tf.to_file_newlines(new_str)
        count = tf.text.count(old)
    if count == 0 and unshow_invisible(old) != old:
        # Copied from a view, which shows invisible characters as escapes (agent.invisible).
        old, new = unshow_invisible(old), unshow_invisible(new)
        count = tf.text.count(old)
    if count == 0:
        raise ToolError(_no_match_message(ws, tf, old_str), kind="no_match")
    if count > 1:
        at, start = [], 0
        while (i := tf.text.find(old, start)) != -1:
            at.append(_line_of(tf.text, i))
            start = i + len(old)
        raise ToolError(
            f"old_str occurs {count} times in {path}, starting at lines "
            f"{', '.join(map(str, at))}; nothing was changed. Add surrounding lines to old_str "
            "so that it matches exactly once.",
            kind="ambiguous_match",
        )
    index = tf.text.index(old)
    new_text = tf.text[:index] + new + tf.text[index + len(old) :]
    _write(ctx, tf, new_text)
    first = _line_of(new_text, index)
    last = first + max(0, len(_plain_lines(new)) - 1)
    return (
        f"Edited {ws.rel(tf.path)}. Lines {max(1, first - SNIPPET_CONTEXT)}-"
        f"{last + SNIPPET_CONTEXT} now read:\n{_snippet(new_text, first, last)}"
        "Check the change; fix it with another edit or undo_edit if it is wrong."
        f"{_syntax_note(tf.path, tf.text, new_text)}"
    )


@tool
def insert(ctx: ToolContext, path: str, insert_line: int, new_str: str) -> str:
    """Insert text after a given line of a file (0 inserts at the top).

    Args:
        path: The file, relative to the workspace root.
        insert_line: The line after which to insert (0 = before the first line).
        new_str: The text to insert.
    """
    ws = ctx.workspace
    tf = _open_for_edit(ctx, path)
    lines = split_lines(tf.text)
    if not 0 <= insert_line <= len(lines):
        raise ToolError(
            f"insert_line {insert_line} is out of range: {path} has {len(lines)} lines; "
            f"use a number from 0 to {len(lines)}."
        )
    nl = tf.newline
    chunk = tf.to_file_newlines(new_str)
    if insert_line == len(lines) and lines and not lines[-1].endswith(("\n", "\r")):
        # Appending to a file without a final newline: keep it without one.
        chunk = chunk.removesuffix(nl)
        new_text = tf.text + nl + chunk
    else:
        if not chunk.endswith(("\n", "\r")):
            chunk += nl
        new_text = "".join(lines[:insert_line]) + chunk + "".join(lines[insert_line:])
    _write(ctx, tf, new_text)
    first = insert_line + 1
    last = insert_line + max(1, len(_plain_lines(new_str)))
    return (
        f"Inserted {last - first + 1} lines into {ws.rel(tf.path)} after line {insert_line}. "
        f"Lines {max(1, first - SNIPPET_CONTEXT)}-{last + SNIPPET_CONTEXT} now read:\n"
        f"{_snippet(new_text, first, last)}"
        f"{_syntax_note(tf.path, tf.text, new_text)}"
    )


@tool
def undo_edit(ctx: ToolContext, path: str) -> str:
    """Undo the last edit made to a file with the editing tools (repeatable).

    Args:
        path: The file, relative to the workspace root.
    """
    ws = ctx.workspace
    p = ws.resolve(path, write=True)
    return ws.undo(p)


EDIT_TOOLS = (view, create, str_replace, insert, undo_edit)
