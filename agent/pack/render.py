"""Render a pack: header, directory tree, then file blocks in path order; xml or markdown.

Every block starts at a line start with a delimiter character (`<` or `#`) and ends with a
newline, so piece boundaries are also tokenizer pre-token boundaries: the document's count is
the sum of its pieces' counts (tests check this against counting the whole document).
A file block names its path and line count, so its end is unambiguous whatever it contains.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

from agent.invisible import invisible_note, show_invisible

__all__ = ["TREE_LEVELS", "Format", "fence_language", "file_block", "footer", "header", "is_pack", "relevant_block", "tree"]

Format = Literal["xml", "markdown"]
TREE_LEVELS: tuple[str, ...] = ("files", "dirs", "dirs:3", "dirs:2", "dirs:1")

_TICKS = re.compile(r"`{3,}")
_LANG = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
    ".tsx": "tsx", ".jsx": "jsx", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".md": "markdown", ".rst": "rst", ".html": "html", ".css": "css", ".sh": "bash", ".go": "go",
    ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cpp": "cpp", ".rb": "ruby", ".sql": "sql",
    ".txt": "text", ".cfg": "ini", ".ini": "ini", ".xml": "xml",
}


def fence_language(path: str) -> str:
    """Markdown fence language for a path (empty when unknown)."""
    dot = path.rfind(".")
    return _LANG.get(path[dot:].lower(), "") if dot > path.rfind("/") else ""


def _attr(value: str) -> str:
    """An XML attribute value, always in double quotes (xml.sax.saxutils.quoteattr would do,
    but importing it pulls in urllib and http: a twentieth of a second per process)."""
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("\n", "&#10;"), ("\r", "&#13;"), ("\t", "&#9;")):
        value = value.replace(raw, escaped)
    return f'"{value}"'


def _body(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def file_block(path: str, text: str, fmt: Format, *, level: str = "full") -> str:
    """One file's block: its path, level and line count, then the text.

    Invisible characters (bidi controls, zero-width, tags) in the path or text are written as
    escapes (`\\u202e`) with a note that the file holds them; other files are unchanged."""
    path, _ = show_invisible(path)
    text, invisible = show_invisible(text)
    body = _body(text)
    lines = body.count("\n")
    if fmt == "xml":
        lvl = "" if level == "full" else f' level="{level}"'
        note = f" note={_attr(invisible_note(invisible, where='this file'))}" if invisible else ""
        return f"<file path={_attr(path)}{lvl} lines=\"{lines}\"{note}>\n{body}</file>\n"
    longest = max(map(len, _TICKS.findall(body)), default=0) if "`" in body else 0
    fence = "`" * max(3, longest + 1)
    title = "File" if level == "full" else "Outline"
    note = f"\n\n{invisible_note(invisible, where='This file')}" if invisible else ""
    return f"## {title}: `{path}` ({lines} lines){note}\n\n{fence}{fence_language(path)}\n{body}{fence}\n\n"


def header(repo: str, commit: str | None, budget: int, counts: dict[str, int], fmt: Format) -> str:
    """The document's first block: repository, commit, budget and totals (no task)."""
    c = counts
    if fmt == "xml":
        attrs = " ".join(
            f'{k}="{v}"'
            for k, v in [
                ("commit", commit or "none"), ("budget", budget), ("files", c["files"]),
                ("full", c["full"]), ("outline", c["outline"]), ("path_only", c["path_only"]),
                ("skipped", c["skipped"]),
            ]
        )
        return (
            f"<repository name={_attr(repo)} {attrs}>\n"
            "Files are listed in the tree, then given in path order: full text, or an outline "
            "(signatures and first docstring lines) where the budget is short.\n"
        )
    return (
        f"# Repository `{repo}`\n\ncommit {commit or 'none'}, budget {budget} tokens, "
        f"{c['files']} files: {c['full']} full, {c['outline']} outline, {c['path_only']} path only, "
        f"{c['skipped']} skipped.\n\n"
    )


# The first line of a document `header` writes, in each format: what `is_pack` recognizes.
_HEADER_SHAPE = re.compile(
    rb'<repository name="[^"\n]*" commit="[^"\n]*" budget="\d+" files="\d+" full="\d+" outline="\d+" '
    rb'path_only="\d+" skipped="\d+">\nFiles are listed in the tree, then given in path order'
    rb"|# Repository `[^\n]*`\n\ncommit \S+, budget \d+ tokens, \d+ files: \d+ full, \d+ outline, "
    rb"\d+ path only, \d+ skipped\.\n"
)


def is_pack(data: bytes) -> bool:
    """Whether `data` starts as a pack document this module renders (one written into the tree
    it packs, whatever its name, is never packed again)."""
    return data[:1] in (b"<", b"#") and _HEADER_SHAPE.match(data, 0, 4096) is not None


def footer(fmt: Format) -> str:
    """The document's closing block."""
    return "</repository>\n" if fmt == "xml" else "<!-- end of repository -->\n"


def tree(paths: Sequence[str], level: str, fmt: Format) -> str:
    """The directory tree at `level`: every file, or directories (to a depth) with file counts."""
    lines: list[str] = []
    if level == "files":
        prev: list[str] = []
        for p in paths:
            parts = p.split("/")
            common = 0
            while common < min(len(prev), len(parts) - 1) and prev[common] == parts[common]:
                common += 1
            for d in range(common, len(parts) - 1):
                lines.append("  " * d + parts[d] + "/")
            lines.append("  " * (len(parts) - 1) + parts[-1])
            prev = parts[:-1]
    else:
        depth = int(level.split(":")[1]) if ":" in level else 10_000
        counts: dict[tuple[str, ...], int] = defaultdict(int)
        for p in paths:
            parts = tuple(p.split("/")[:-1])
            counts[parts[:depth]] += 1
        # Every ancestor directory appears, with the files under it.
        totals: dict[tuple[str, ...], int] = defaultdict(int)
        for d, n in counts.items():
            for i in range(len(d) + 1):
                totals[d[:i]] += n
        for d in sorted(totals):
            if not d:
                lines.append(f"./ ({totals[d]} files)")
                continue
            lines.append("  " * (len(d) - 1) + d[-1] + f"/ ({totals[d]} files)")
    body, _ = show_invisible("\n".join(lines) + "\n")
    if fmt == "xml":
        return f'<tree level="{level}">\n{body}</tree>\n'
    return f"## Tree\n\n```text\n{body}```\n\n"


def relevant_block(entries: Iterable[tuple[str, str, list[str]]], fmt: Format) -> str:
    """The task-specific block: ranked files with level and reasons, to follow the pack."""
    rows = [f"{i}. {path} [{level}]: {'; '.join(reasons)}" for i, (path, level, reasons) in enumerate(entries, 1)]
    if not rows:
        return ""
    body = "\n".join(rows) + "\n"
    if fmt == "xml":
        return f"<relevant_files>\nFiles ranked for this task, most relevant first:\n{body}</relevant_files>\n"
    return f"## Relevant files\n\nFiles ranked for this task, most relevant first:\n\n{body}\n"
