"""Outlines: a file reduced to its signatures and the first line of each docstring.

Python uses `ast` and keeps each `class`/`def` header as written; other languages use
tree-sitter (`tree-sitter-language-pack`) and keep the first line of each definition; markdown
and reStructuredText keep their headings. Files with nothing to outline get None.
"""

from __future__ import annotations

import ast
import functools
import gc
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["LANGUAGES", "Outliner", "outline"]

# file suffix -> tree-sitter-language-pack language name
LANGUAGES: dict[str, str] = {
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp",
    ".rb": "ruby", ".php": "php", ".kt": "kotlin", ".swift": "swift", ".scala": "scala",
    ".lua": "lua", ".sh": "bash",
}

_DEFINITIONS = frozenset(
    {
        "function_declaration", "function_definition", "method_definition", "method_declaration",
        "class_declaration", "class_definition", "class_specifier", "struct_specifier",
        "interface_declaration", "type_declaration", "enum_declaration", "function_item",
        "struct_item", "enum_item", "trait_item", "impl_item", "mod_item", "constructor_declaration",
        "method", "class", "module", "singleton_method", "function_signature", "abstract_class_declaration",
        "type_alias_declaration", "lexical_declaration", "namespace_definition", "object_declaration",
    }
)
_CONTAINERS = frozenset(
    {"class_body", "declaration_list", "body_statement", "program", "source_file", "translation_unit",
     "export_statement", "field_declaration_list", "interface_body", "enum_body", "block", "module"}
)
# Declaration lines of C-like and scripting languages, for when no grammar is available.
_DECLARATION = re.compile(
    r"^[ \t]{0,8}(?:export[ \t]+)?(?:default[ \t]+)?(?:pub(?:\([a-z]+\))?[ \t]+)?(?:async[ \t]+)?"
    r"(?:(?:public|private|protected|internal|static|abstract|final|override|virtual)[ \t]+)*"
    r"(?:function\*?|class|interface|type|enum|struct|impl|trait|fn|func|def|module|namespace|object)"
    r"[ \t]+[A-Za-z_$][^\n]{0,200}$",
    re.MULTILINE,
)
_HEADING = re.compile(r"^(#{1,6} .+)$", re.MULTILINE)
_RST_UNDERLINE = re.compile(r"^([^\n]+)\n([=\-~^\"'`#*+])\2{2,}[ \t]*$", re.MULTILINE)


def _first_doc_line(node: ast.AST) -> str | None:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        value = body[0].value.value
        if isinstance(value, str) and value.strip():
            return value.strip().splitlines()[0].strip()
    return None


def _python(text: str) -> str | None:
    """Tree-sitter's parse where it has no error (twice as fast as `ast` on large files; the
    outlines are identical on every django and sympy file), else `ast`'s."""
    parser = _parser("python")
    if parser is not None:
        data = text.encode("utf-8")
        tree = parser.parse(data)
        if not tree.root_node.has_error:
            return _python_tree_sitter(tree.root_node, data)
    return _python_ast(text)


@functools.cache
def _parser(language: str) -> Any:
    """tree-sitter's parser for `language`, made once per process; None without a grammar."""
    try:
        from tree_sitter_language_pack import get_parser

        return get_parser(language)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - any grammar failure (not installed, download refused) degrades
        return None


def _ts_first_statement(node: Any) -> Any:
    return next((c for c in node.named_children if c.type != "comment"), None)


def _ts_doc_line(first: Any, data: bytes) -> str | None:
    """The first docstring line when `first` is a plain string statement (as ast sees it)."""
    node = first
    if node is not None and node.type == "expression_statement":
        node = node.named_children[0] if node.named_child_count == 1 else None
    if node is None or node.type not in ("string", "concatenated_string"):
        return None
    try:
        value = ast.literal_eval(data[node.start_byte : node.end_byte].decode("utf-8"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None  # f-strings and the like are not docstrings
    if isinstance(value, str) and value.strip():
        return value.strip().splitlines()[0].strip()
    return None


def _python_tree_sitter(root: Any, data: bytes) -> str | None:
    lines = data.split(b"\n")
    out: list[str] = []
    doc = _ts_doc_line(_ts_first_statement(root), data)
    if doc:
        out.append(f'"""{doc}"""')

    def visit(parent: Any, depth: int) -> None:
        for node in parent.named_children:
            if node.type == "decorated_definition":
                node = node.child_by_field_name("definition")
            if node is None or node.type not in ("function_definition", "class_definition"):
                continue
            body = node.child_by_field_name("body")
            first = _ts_first_statement(body) if body is not None else None
            row = node.start_point.row
            body_row = first.start_point.row if first is not None else row
            header = [line.decode("utf-8").rstrip("\r") for line in lines[row : max(body_row, row + 1)]]
            out.extend(_header_lines(header, one_line=body_row == row, depth=depth))
            d = _ts_doc_line(first, data)
            if d:
                out.append(f'{" " * (4 * depth)}    """{d}"""')
            if node.type == "class_definition" and depth < 2 and body is not None:
                visit(body, depth + 1)

    visit(root, 0)
    return "\n".join(out) + "\n" if out else None


def _header_lines(header: list[str], *, one_line: bool, depth: int) -> list[str]:
    """A definition's header lines as the outline shows them, indented to `depth`."""
    while len(header) > 1 and (not header[-1].strip() or header[-1].lstrip().startswith("#")):
        header.pop()  # comments between the signature and the body
    # One-line definitions (`def f(): return 1`) keep only up to the colon.
    if one_line and header:
        header = [header[0].split(":", 1)[0] + ": ..."] if ":" in header[0] else header[:1]
    indent = " " * (4 * depth)
    return [indent + h.strip() if i == 0 else h for i, h in enumerate(header)]


def _python_ast(text: str) -> str | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = text.splitlines()
    out: list[str] = []
    doc = _first_doc_line(tree)
    if doc:
        out.append(f'"""{doc}"""')

    def visit(nodes: list[ast.stmt], depth: int) -> None:
        for node in nodes:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            first = node.body[0] if node.body else None
            # A decorated first statement starts at its first decorator, not at its `def`.
            body_start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))]) if first else node.lineno
            start = node.lineno - 1
            stop = max(body_start - 1, node.lineno)
            header = lines[start:stop]
            out.extend(_header_lines(header, one_line=body_start == node.lineno, depth=depth))
            indent = " " * (4 * depth)
            d = _first_doc_line(node)
            if d:
                out.append(f'{indent}    """{d}"""')
            if isinstance(node, ast.ClassDef) and depth < 2:
                visit(node.body, depth + 1)

    visit(tree.body, 0)
    return "\n".join(out) + "\n" if out else None


def _tree_sitter(text: str, language: str) -> str | None:
    parser = _parser(language)
    if parser is None:
        return _declarations(text)
    data = text.encode("utf-8")
    tree = parser.parse(data)
    out: list[str] = []

    def visit(node: object, depth: int) -> None:
        for child in node.children:  # type: ignore[attr-defined]
            kind = child.type
            if not child.is_named:  # keywords such as JavaScript's `class` token
                continue
            if kind in _DEFINITIONS:
                body = child.child_by_field_name("body")
                end = body.start_byte if body is not None and body.start_byte > child.start_byte else child.end_byte
                line = data[child.start_byte : end].split(b"\n", 1)[0].decode("utf-8", "replace")
                out.append("    " * depth + line.rstrip().rstrip("{").rstrip())
                if depth < 2:
                    visit(child, depth + 1)
            elif kind in _CONTAINERS or kind.endswith("_body"):
                visit(child, depth)

    visit(tree.root_node, 0)
    return "\n".join(out) + "\n" if out else None


def _declarations(text: str) -> str | None:
    found = [m.group(0).rstrip().rstrip("{").rstrip() for m in _DECLARATION.finditer(text)]
    return "\n".join(found) + "\n" if found else None


def _headings(text: str, markdown: bool) -> str | None:
    if markdown:
        found = _HEADING.findall(text)
    else:
        found = [m.group(1).strip() for m in _RST_UNDERLINE.finditer(text)]
    return "\n".join(found) + "\n" if found else None


def outline(path: str, text: str) -> str | None:
    """The outline of `text` (named `path`), or None when the language has none."""
    dot = path.rfind(".")
    suffix = path[dot:].lower() if dot > path.rfind("/") else ""
    if suffix in (".py", ".pyi"):
        return _python(text)
    if suffix in (".md", ".markdown"):
        return _headings(text, True)
    if suffix in (".rst", ".txt"):
        return _headings(text, False)
    language = LANGUAGES.get(suffix)
    return _tree_sitter(text, language) if language else None


_SHARE_FROM = 6  # fewer files than this are outlined in-process: a worker costs more


def _outline_pair(item: tuple[str, str]) -> str | None:
    return outline(*item)


class Outliner:
    """Outlines many files at once, on forked worker processes when there are enough to share
    (parsing holds the GIL, so threads would not help). Use as a context manager."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        """`outline(path, text)` of each (path, text), in order."""
        return list(self.stream(items))

    def stream(self, items: Sequence[tuple[str, str]]) -> Iterator[str | None]:
        """The outlines of `items` in order, as they are ready: with workers, all are parsed
        ahead (closing the iterator early cancels what has not started); without, each is
        parsed when asked for."""
        if (
            len(items) < _SHARE_FROM
            or self.workers < 2
            or not sys.platform.startswith("linux")
            or (self._pool is None and threading.active_count() > 1)  # forking beside threads is unsafe
        ):
            return (outline(path, text) for path, text in items)
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: the workers need nothing from disk and start in milliseconds. They freeze
            # what they inherit: otherwise every collection walks (and copies) the parent's heap,
            # which made a worker parse at half the parent's speed.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("fork"), initializer=gc.freeze
            )
        return self._pool.map(_outline_pair, items)  # one file a task: sizes vary a hundredfold

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Outliner:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
