"""A unified diff as HTML, per file: added and removed lines marked, their code highlighted in the
file's language (pygments, by file name), headers and hunk lines as they are."""

from __future__ import annotations

from html import escape

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

__all__ = ["split_files", "file_html"]

_KIND = {"+": "add", "-": "del", " ": "ctx", "\\": "meta"}


def split_files(patch: str) -> list[tuple[str, str]]:
    """(path, its part of the diff) per file, in order."""
    files: list[tuple[str, list[str]]] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git ") or not files:
            path = line.rstrip("\n").split(" b/", 1)[-1] if line.startswith("diff --git ") else "(patch)"
            files.append((path, []))
        files[-1][1].append(line)
    return [(path, "".join(lines)) for path, lines in files]


def _lexer(path: str) -> Lexer | None:
    try:  # the options keep every line, blank ones at either end included, so lines stay aligned
        return get_lexer_for_filename(path, stripnl=False, stripall=False, ensurenl=True)
    except ClassNotFound:
        return None


def _highlighted(code: list[str], lexer: Lexer | None) -> list[str]:
    """Each line of `code` as HTML, highlighted as one text so strings and comments span lines."""
    if lexer is None or not code:
        return [escape(line) for line in code]
    out = highlight("\n".join(code) + "\n", lexer, HtmlFormatter(nowrap=True)).split("\n")[: len(code)]
    return out if len(out) == len(code) else [escape(line) for line in code]


def file_html(path: str, diff: str) -> str:
    """One file's diff as a <pre> of marked lines; the old side (context and removed lines) and the
    new side (context and added lines) are highlighted apart, each as the code it was."""
    lines = diff.splitlines()
    in_hunk = False
    old_at: list[int] = []
    new_at: list[int] = []
    for i, line in enumerate(lines):
        if line.startswith("@@"):
            in_hunk = True
        elif line.startswith("diff --git ") or line.startswith("GIT binary patch"):
            in_hunk = False
        elif in_hunk and line[:1] in ("-", " "):
            old_at.append(i)
        if in_hunk and line[:1] in ("+", " "):
            new_at.append(i)
    lexer = _lexer(path)
    html: dict[int, str] = {}
    for side in (old_at, new_at):  # context lines end up as the new side shows them
        for i, h in zip(side, _highlighted([lines[i][1:] for i in side], lexer)):
            html[i] = f'<span class="line {_KIND[lines[i][0]]}">{escape(lines[i][0])}{h}</span>'
    rows = [html.get(i) or f'<span class="line meta">{escape(line)}</span>' for i, line in enumerate(lines)]
    return f'<pre class="diff highlight">{"".join(rows)}</pre>'
