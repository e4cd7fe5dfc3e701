"""Search: grep (ripgrep when on PATH, pure Python otherwise), find_files, find_symbol.

Every search is bounded in wall-clock time (`SEARCH_TIMEOUT`) and says so when it runs out:
ripgrep is killed at the deadline; the Python engine scans in a thread the call waits for only
until the deadline, matching with the `regex` module, which releases the GIL and gives up at a
timeout of its own. A catastrophic pattern such as `(a+)+$` is an observation, not a freeze.

Both grep engines see the same files (gitignore-aware like git: `.gitignore` files at every
level and `.git/info/exclude`; hidden and binary files skipped) and print the same lines.
Globs follow gitignore rules relative to the workspace root: `*.py` matches at any depth,
`pkg/*.py` only directly under `pkg/`. Every result list is capped and says its total.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pathspec
import regex

from tools.base import ToolContext, ToolError, tool
from tools.workspace import plain_lines

__all__ = [
    "SEARCH_TIMEOUT",
    "SEARCH_TOOLS",
    "GrepHit",
    "SearchTimeout",
    "find_definitions",
    "find_files",
    "find_symbol",
    "grep",
    "rg_binary",
    "search_text",
    "walk_files",
]

MAX_LINE = 300
COUNT_LIMIT = 20_000  # stop counting matches beyond this
_BINARY_PROBE = 8192
SEARCH_TIMEOUT = 10.0  # seconds for one grep, find_files or find_symbol call


class SearchTimeout(ToolError):
    """A search passed its deadline; the message says what to change."""

    kind = "timeout"


@dataclass
class Deadline:
    """The time one search may take."""

    seconds: float
    advice: str = "narrow the search with path or glob"
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.seconds - (time.monotonic() - self.start)

    def check(self) -> None:
        """Raise SearchTimeout once the deadline has passed."""
        if self.left() <= 0:
            self.expired()

    def expired(self) -> None:
        """Raise the SearchTimeout observation."""
        raise SearchTimeout(f"the search timed out after {self.seconds:g} s; {self.advice}.")


def rg_binary() -> str | None:
    """The ripgrep executable on PATH (the optional `ripgrep` package provides one), if any."""
    return shutil.which("rg")


# --------------------------------------------------------------------------------------------
# Walking like git
# --------------------------------------------------------------------------------------------


def _load_spec(path: Path) -> pathspec.PathSpec | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def walk_files(root: Path, start: Path | None = None, *, use_git: bool = True) -> Iterator[Path]:
    """Files under `start` (default root) that git would not ignore, hidden ones skipped, sorted."""
    start = start or root
    listed = _git_listed(root, start) if use_git else None
    if listed is not None:
        yield from listed
        return
    specs: list[tuple[Path, pathspec.PathSpec]] = []
    exclude = _load_spec(root / ".git" / "info" / "exclude")
    if exclude:
        specs.append((root, exclude))
    # .gitignore files of the directories above `start` apply too.
    parts = start.relative_to(root).parts
    for d in [root, *(root.joinpath(*parts[:i]) for i in range(1, len(parts)))]:
        spec = _load_spec(d / ".gitignore")
        if spec:
            specs.append((d, spec))
    if start.is_file():
        if not _ignored(start, False, specs):
            yield start
        return
    yield from _walk(start, specs, root)


def _git_listed(root: Path, start: Path) -> list[Path] | None:
    """The same files as the walk below, from `git ls-files` (much faster) when root is a repo."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    rel = start.relative_to(root).as_posix()
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", rel],
            check=False,
            cwd=root,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    names = sorted(
        {n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n},
        key=lambda n: n.split("/"),
    )
    out = []
    for n in names:
        if any(part.startswith(".") for part in n.split("/")):
            continue
        p = root / n
        if p.is_file() and not p.is_symlink():
            out.append(p)
    return out


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.PathSpec]]) -> bool:
    verdict: bool | None = None
    for base, spec in specs:
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        res = spec.check_file(rel + "/" if is_dir else rel)
        if res.include is not None:
            verdict = res.include
    return bool(verdict)


def _walk(d: Path, specs: list[tuple[Path, pathspec.PathSpec]], root: Path) -> Iterator[Path]:
    if d != root:
        spec = _load_spec(d / ".gitignore")
        if spec:
            specs = [*specs, (d, spec)]
    try:
        entries = sorted(os.scandir(d), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        p = Path(e.path)
        try:
            is_dir = e.is_dir(follow_symlinks=False)
            is_file = e.is_file(follow_symlinks=False)
        except OSError:
            continue
        if not (is_dir or is_file) or _ignored(p, is_dir, specs):
            continue
        if is_dir:
            yield from _walk(p, specs, root)
        else:
            yield p


def _glob_spec(glob: str | None) -> pathspec.PathSpec | None:
    if not glob:
        return None
    return pathspec.GitIgnoreSpec.from_lines([g.strip() for g in glob.split(",") if g.strip()])


# --------------------------------------------------------------------------------------------
# grep
# --------------------------------------------------------------------------------------------


@dataclass
class GrepHit:
    """One printed line: a match or a context line."""

    path: str
    line: int
    text: str
    match: bool


@dataclass
class GrepResult:
    """Lines to print (capped), with totals."""

    hits: list[GrepHit]
    matches: int
    files: int
    complete: bool  # False when counting stopped at COUNT_LIMIT


def _hit_cap(max_results: int, context: int) -> int:
    """Lines worth keeping: enough for max_results matches with their context, plus one."""
    return (max_results + 1) * (1 + 2 * context)


def _clip(text: str) -> str:
    text = text.rstrip("\r\n")
    return (
        text
        if len(text) <= MAX_LINE
        else text[:MAX_LINE] + f" [... {len(text) - MAX_LINE} more characters]"
    )


def search_text(
    root: Path,
    pattern: str,
    *,
    start: Path | None = None,
    glob: str | None = None,
    ignore_case: bool = False,
    context: int = 0,
    max_results: int = 100,
    engine: Literal["auto", "rg", "python"] = "auto",
    timeout: float = SEARCH_TIMEOUT,
) -> GrepResult:
    """Search file contents under `start` for a regex; ripgrep or pure Python, same results.

    Raises SearchTimeout (an observation for the model) when the search takes over `timeout` s."""
    rg = rg_binary() if engine in ("auto", "rg") else None
    if engine == "rg" and rg is None:
        raise RuntimeError("ripgrep (rg) is not on PATH")
    deadline = Deadline(timeout, "simplify the pattern (nested repeats such as (a+)+ backtrack "
                        "exponentially) or narrow the search with path or glob")
    if rg:
        return _search_rg(rg, root, pattern, start or root, glob, ignore_case, context, max_results, deadline)
    return _search_py(root, pattern, start or root, glob, ignore_case, context, max_results, deadline)


def _search_py(root, pattern, start, glob, ignore_case, context, max_results, deadline: Deadline) -> GrepResult:
    # `regex` (V0: re's syntax and behaviour) rather than `re`: it can release the GIL while it
    # matches (`concurrent`) and it gives up at a timeout, where `re` holds the GIL until done.
    # Its timeout counts CPU seconds (a loaded machine stretches them), so the scan runs in a
    # thread that the call waits for only until the wall-clock deadline; left behind, the thread
    # stops at its next deadline check or regex timeout. A child process killed at the deadline
    # would also bound `re`, but costs a process start (and importing this module) per call.
    try:
        rx = regex.compile(pattern, regex.V0 | (regex.IGNORECASE if ignore_case else 0))
    except (regex.error, re.error) as e:
        raise ToolError(
            f"the pattern {pattern!r} is not a valid regular expression: {e}."
        ) from None
    return _bounded(lambda: _scan_py(root, rx, start, glob, context, max_results, deadline), deadline)


def _bounded(work: Callable[[], GrepResult], deadline: Deadline) -> GrepResult:
    """`work()`, run in a thread and waited for until the deadline (wall clock)."""
    out: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            out.append((True, work()))
        except BaseException as e:  # handed to the caller below
            out.append((False, e))

    worker = threading.Thread(target=target, name="tome-grep", daemon=True)
    worker.start()
    worker.join(max(deadline.left(), 0.0))
    if not out:
        deadline.expired()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def _scan_py(root, rx: regex.Pattern, start, glob, context, max_results, deadline: Deadline) -> GrepResult:
    gspec = _glob_spec(glob)
    hits: list[GrepHit] = []
    matches = files = 0
    for p in walk_files(root, start):
        deadline.check()
        rel = p.relative_to(root).as_posix()
        if gspec is not None and not gspec.match_file(rel):
            continue
        try:
            data = p.read_bytes()
        except OSError:
            continue
        if b"\x00" in data[:_BINARY_PROBE]:
            continue
        lines = plain_lines(data.decode("utf-8", errors="replace"))
        found = _matching_lines(rx, lines, deadline)
        if not found:
            continue
        files += 1
        matches += len(found)
        shown: set[int] = set()
        for i in found:
            shown.update(range(max(0, i - context), min(len(lines), i + context + 1)))
        hit_set = set(found)
        for i in sorted(shown):
            if len(hits) >= _hit_cap(max_results, context):
                break
            hits.append(GrepHit(rel, i + 1, _clip(lines[i]), i in hit_set))
        if matches >= COUNT_LIMIT:
            return GrepResult(hits, matches, files, complete=False)
    return GrepResult(hits, matches, files, complete=True)


def _matching_lines(rx: regex.Pattern, lines: list[str], deadline: Deadline) -> list[int]:
    found = []
    try:
        for i, line in enumerate(lines):
            left = deadline.left()
            if left <= 0:
                deadline.expired()
            if rx.search(line, concurrent=True, timeout=left):
                found.append(i)
    except TimeoutError:  # the regex module's own timeout
        deadline.expired()
    return found


def _search_rg(rg, root, pattern, start, glob, ignore_case, context, max_results, deadline: Deadline) -> GrepResult:
    cmd = [
        rg,
        "--json",
        "--sort",
        "path",
        "--no-require-git",
        "--no-ignore-parent",
        "--no-ignore-global",
        "--no-ignore-dot",
        "--no-config",
    ]
    if ignore_case:
        cmd.append("--ignore-case")
    if context:
        cmd += ["--context", str(context)]
    # rg's --glob would override the ignore files, so globs are applied to its results below;
    # basename-only globs also go in as a file type (types do respect ignore files) for speed.
    gspec = _glob_spec(glob)
    globs = [g.strip() for g in (glob or "").split(",") if g.strip()]
    if globs and all("/" not in g and not g.startswith("!") for g in globs):
        cmd += [f"--type-add=tomeglob:{g}" for g in globs] + ["--type", "tomeglob"]
    cmd += ["--regexp", pattern]
    if start != root:
        cmd += ["--", start.relative_to(root).as_posix()]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RIPGREP_CONFIG_PATH": ""},
    )
    hits: list[GrepHit] = []
    matches = 0
    files: set[str] = set()
    complete = True
    assert proc.stdout is not None and proc.stderr is not None
    killer = threading.Timer(max(deadline.left(), 0.0), proc.kill)
    killer.start()
    try:
        for raw in proc.stdout:
            ev = json.loads(raw)
            kind = ev["type"]
            if kind not in ("match", "context"):
                continue
            data = ev["data"]
            path = data["path"].get("text") or data["path"].get("bytes", "")
            text = data["lines"].get("text")
            if text is None:
                continue  # not valid UTF-8: the Python engine would replace, rg reports bytes
            if gspec is not None and not gspec.match_file(path):
                continue
            if kind == "match":
                matches += 1
                files.add(path)
            if len(hits) < _hit_cap(max_results, context):
                hits.append(GrepHit(path, data["line_number"], _clip(text), kind == "match"))
            if matches >= COUNT_LIMIT:
                complete = False
                break
    finally:
        if not complete:
            proc.kill()
        err = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
        killer.cancel()
    if complete and deadline.left() <= 0 and code < 0:  # killed at the deadline
        deadline.expired()
    if complete and code == 2 and not hits:
        msg = err.strip().splitlines()
        raise ToolError(
            f"the pattern {pattern!r} is not a valid regular expression (or the glob is wrong); "
            f"ripgrep says: {' '.join(m.strip() for m in msg[-6:]) or 'error'}. Fix it and try again."
        )
    return GrepResult(hits, matches, len(files), complete)


def _format_hits(hits: list[GrepHit], max_results: int, *, groups: bool) -> tuple[str, int]:
    """Lines like ripgrep's (path:line:text for matches, path-line-text for context)."""
    out: list[str] = []
    shown = 0
    prev: tuple[str, int] | None = None
    for h in hits:
        if h.match:
            if shown >= max_results:
                break
            shown += 1
        if groups and prev is not None and (h.path != prev[0] or h.line != prev[1] + 1):
            out.append("--")
        sep = ":" if h.match else "-"
        out.append(f"{h.path}{sep}{h.line}{sep}{h.text}")
        prev = (h.path, h.line)
    return "\n".join(out), shown


@tool
def grep(
    ctx: ToolContext,
    pattern: str,
    path: str = ".",
    glob: str | None = None,
    ignore_case: bool = False,
    context: int = 0,
    max_results: int = 100,
) -> str:
    """Search file contents with a regular expression (gitignore-aware; hidden and binary files skipped).

    Args:
        pattern: Regular expression (Rust/Python syntax), e.g. "def \\w+_total\\(".
        path: File or directory to search, relative to the workspace root.
        glob: Only files matching this glob (gitignore style, relative to the root), e.g. "*.py" or "src/**/*.ts"; several separated by commas.
        ignore_case: Match case-insensitively.
        context: Lines of context to show around each match (0-10).
        max_results: Most matching lines to show (1-500); the total is always reported.
    """
    ws = ctx.workspace
    start = ws.resolve(path, must_exist=True)
    if not 0 <= context <= 10:
        raise ToolError("context must be between 0 and 10 lines.")
    if not 1 <= max_results <= 500:
        raise ToolError("max_results must be between 1 and 500.")
    if not pattern:
        raise ToolError("the pattern is empty; give a regular expression to search for.")
    res = search_text(
        ws.root,
        pattern,
        start=start,
        glob=glob,
        ignore_case=ignore_case,
        context=context,
        max_results=max_results,
    )
    return _render_grep(res, pattern, max_results, context)


def _render_grep(res: GrepResult, pattern: str, max_results: int, context: int) -> str:
    if res.matches == 0:
        return f"No matches for {pattern!r}."
    body, shown = _format_hits(res.hits, max_results, groups=context > 0)
    total = f"{res.matches:,}" if res.complete else f"more than {res.matches:,}"
    head = f"{total} matching line{'s' if res.matches != 1 else ''} in {res.files:,} file{'s' if res.files != 1 else ''}"
    if shown < res.matches:
        head += f" (showing the first {shown}; narrow the search with path or glob, or raise max_results)"
    return head + ":\n" + body


# --------------------------------------------------------------------------------------------
# find_files
# --------------------------------------------------------------------------------------------


@tool
def find_files(ctx: ToolContext, pattern: str, path: str = ".", max_results: int = 200) -> str:
    """Find files by glob (gitignore style: "*.py" at any depth, "tests/**/test_*.py" anchored); gitignored files skipped.

    Args:
        pattern: Glob, or several separated by commas.
        path: Directory to search, relative to the workspace root.
        max_results: Most paths to list (1-2000); the total is always reported.
    """
    ws = ctx.workspace
    start = ws.resolve(path, must_exist=True)
    if not 1 <= max_results <= 2000:
        raise ToolError("max_results must be between 1 and 2000.")
    spec = _glob_spec(pattern)
    if spec is None:
        raise ToolError("the pattern is empty; give a glob such as '*.py'.")
    deadline = Deadline(SEARCH_TIMEOUT, "narrow the search with path or a more specific pattern")
    found = []
    for p in walk_files(ws.root, start):
        deadline.check()
        rel = p.relative_to(ws.root).as_posix()
        if spec.match_file(rel):
            found.append(rel)
    if not found:
        return f"No files match {pattern!r} under {ws.rel(start)}."
    head = f"{len(found):,} file{'s' if len(found) != 1 else ''} match {pattern!r}"
    if len(found) > max_results:
        head += f" (showing the first {max_results}; narrow the pattern or path)"
    return head + ":\n" + "\n".join(found[:max_results])


# --------------------------------------------------------------------------------------------
# find_symbol
# --------------------------------------------------------------------------------------------


@dataclass
class Definition:
    """Where a name is defined."""

    path: str
    line: int
    kind: str
    qualname: str
    source: str


def _python_defs(rel: str, text: str, name: str) -> list[Definition]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = plain_lines(text)
    want = name.split(".")
    out: list[Definition] = []

    def add(qual: list[str], line: int, kind: str) -> None:
        if qual[-len(want) :] == want:
            out.append(Definition(rel, line, kind, ".".join(qual), _clip(lines[line - 1].strip())))

    def visit(body: list[ast.stmt], scope: list[str], *, in_class: bool, top: bool) -> None:
        # `top`: module or class level, where assignments define names too.
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                add([*scope, stmt.name], stmt.lineno, "class")
                visit(stmt.body, [*scope, stmt.name], in_class=True, top=True)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                add([*scope, stmt.name], stmt.lineno, "method" if in_class else "function")
                visit(stmt.body, [*scope, stmt.name], in_class=False, top=False)
            elif top and isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            add([*scope, n.id], stmt.lineno, "variable")
            else:
                # Definitions under if / try / with / for (e.g. `if TYPE_CHECKING:`) still count.
                for field in ("body", "orelse", "finalbody"):
                    sub = getattr(stmt, field, None)
                    if isinstance(sub, list):
                        visit(sub, scope, in_class=in_class, top=top)
                for handler in getattr(stmt, "handlers", []) or []:
                    visit(handler.body, scope, in_class=in_class, top=top)

    visit(tree.body, [], in_class=False, top=True)
    out.sort(key=lambda d: d.line)
    return out


# Definition patterns for other languages ({n} is the escaped name).
_PATTERNS: dict[tuple[str, ...], list[tuple[str, str]]] = {
    (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx"): [
        ("function", r"\bfunction\s*\*?\s+{n}\s*[<(]"),
        ("class", r"\bclass\s+{n}\b"),
        ("interface", r"\binterface\s+{n}\b"),
        ("type", r"\btype\s+{n}\s*[<=]"),
        ("enum", r"\benum\s+{n}\b"),
        ("variable", r"\b(?:const|let|var)\s+{n}\s*[:=]"),
        (
            "method",
            r"^\s*(?:(?:public|private|protected|static|async|readonly|get|set)\s+)*{n}\s*\([^)]*\)[^;=]*\{{\s*$",
        ),
    ],
    (".go",): [
        ("function", r"^func\s+(?:\([^)]*\)\s*)?{n}\s*[\[(]"),
        ("type", r"^\s*type\s+{n}\b"),
        ("variable", r"^\s*(?:var|const)\s+{n}\b"),
    ],
    (".rs",): [
        ("function", r"\bfn\s+{n}\b"),
        ("type", r"\b(?:struct|enum|trait|type|union|mod)\s+{n}\b"),
        ("variable", r"\b(?:const|static)\s+{n}\b"),
        ("macro", r"\bmacro_rules!\s*{n}\b"),
    ],
    (".java", ".kt", ".scala", ".cs"): [
        ("class", r"\b(?:class|interface|enum|record|object|trait)\s+{n}\b"),
        ("function", r"\bfun\s+{n}\b|\bdef\s+{n}\b"),
        ("method", r"^\s*(?:[\w<>\[\],?]+\s+){{1,6}}{n}\s*\([^;]*$"),
    ],
    (".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh"): [
        ("macro", r"^\s*#\s*define\s+{n}\b"),
        ("type", r"\b(?:struct|union|enum|class)\s+{n}\s*(?:\{{|:|$)"),
        ("type", r"\btypedef\b.*\b{n}\s*;"),
        ("function", r"^[\w\s\*&:<>,]*\b{n}\s*\([^;]*$"),
    ],
    (".rb",): [
        ("function", r"\bdef\s+(?:self\.)?{n}\b"),
        ("class", r"\b(?:class|module)\s+{n}\b"),
    ],
    (".sh", ".bash"): [
        ("function", r"^\s*(?:function\s+)?{n}\s*\(\)"),
        ("function", r"^\s*function\s+{n}\b"),
    ],
    (".php",): [
        ("function", r"\bfunction\s+&?{n}\s*\("),
        ("class", r"\b(?:class|interface|trait|enum)\s+{n}\b"),
    ],
}


def _pattern_defs(rel: str, text: str, name: str, suffix: str) -> list[Definition]:
    short = name.split(".")[-1]
    for exts, pats in _PATTERNS.items():
        if suffix in exts:
            compiled = [(k, re.compile(p.format(n=re.escape(short)))) for k, p in pats]
            break
    else:
        return []
    word = re.compile(rf"(?<![\w$]){re.escape(short)}(?![\w$])")
    out = []
    for i, line in enumerate(plain_lines(text), 1):
        if short not in line or not word.search(line):
            continue
        for kind, rx in compiled:
            if rx.search(line):
                out.append(Definition(rel, i, kind, short, _clip(line.strip())))
                break
    return out


def find_definitions(
    root: Path, name: str, *, start: Path | None = None, timeout: float = SEARCH_TIMEOUT
) -> list[Definition]:
    """Definitions of `name` (or `Class.method`) in Python (ast) and other languages (patterns)."""
    deadline = Deadline(timeout, "narrow the search with path")
    short = name.split(".")[-1].encode()
    word = re.escape(name.split(".")[-1])
    py_hint = re.compile(
        rf"^[ \t]*(?:(?:async[ \t]+)?def|class)[ \t]+{word}\b|^[ \t]*{word}[ \t]*(?::[^=\n]*)?=(?!=)",
        re.MULTILINE,
    )
    out: list[Definition] = []
    for p in walk_files(root, start):
        deadline.check()
        suffix = p.suffix.lower()
        if suffix not in (".py", ".pyi") and not any(suffix in e for e in _PATTERNS):
            continue
        try:
            data = p.read_bytes()
        except OSError:
            continue
        if short not in data or len(data) > 5_000_000 or b"\x00" in data[:_BINARY_PROBE]:
            continue
        text = data.decode("utf-8", errors="replace")
        rel = p.relative_to(root).as_posix()
        if suffix in (".py", ".pyi"):
            if py_hint.search(text):  # parse only files that seem to define the name
                out.extend(_python_defs(rel, text, name))
        else:
            out.extend(_pattern_defs(rel, text, name, suffix))
    return out


_NAME = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


@tool
def find_symbol(ctx: ToolContext, name: str, path: str = ".", max_results: int = 50) -> str:
    """Find where a function, class, method or variable is defined (Python by syntax tree, other languages by pattern).

    Args:
        name: The name, or a dotted suffix of a qualified name such as "Model.save".
        path: File or directory to search, relative to the workspace root.
        max_results: Most definitions to list (1-500); the total is always reported.
    """
    ws = ctx.workspace
    start = ws.resolve(path, must_exist=True)
    if not _NAME.match(name):
        raise ToolError(
            f"{name!r} is not an identifier; give a bare name like 'parse_args' or a dotted one "
            "like 'Parser.parse_args' (use grep for text patterns)."
        )
    if not 1 <= max_results <= 500:
        raise ToolError("max_results must be between 1 and 500.")
    defs = find_definitions(ws.root, name, start=start)
    if not defs:
        return f"No definition of {name!r} found under {ws.rel(start)}; try grep for uses or other spellings."
    head = f"{len(defs)} definition{'s' if len(defs) != 1 else ''} of {name!r}"
    if len(defs) > max_results:
        head += f" (showing the first {max_results}; narrow with path)"
    lines = [f"{d.path}:{d.line}: {d.kind} {d.qualname}: {d.source}" for d in defs[:max_results]]
    return head + ":\n" + "\n".join(lines)


SEARCH_TOOLS = (grep, find_files, find_symbol)
