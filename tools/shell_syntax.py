"""A command line as the shell reads it: every simple command it can run, from a real parse.

tree-sitter's bash grammar (tree-sitter-language-pack) parses the text; every `command` node is
taken, wherever it sits (subshells, `{ …; }`, `if`/`for`/`while`/`case` bodies, function bodies,
`$(…)`, pipelines). Each command is then unwrapped the way the programs involved run their
arguments: wrappers (`sudo`, `env`, `timeout`, `nice`, `xargs`, `nohup`, `command`, `exec`, …) run
the rest of their words as a command; a shell's `-c` string, a shell's heredoc or herestring,
`eval`'s words, `trap`'s action, `watch`'s words, `su -c`, `env -S` and `find -exec … ;` are command lines of their
own, parsed the same way, recursively. Words keep their run-time expansions as written (`$HOME`,
`$(…)`), so a judge can tell a static path from one known only when it runs.
"""

from __future__ import annotations

import codecs
import functools
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command", "Syntax", "read_command_line"]

MAX_DEPTH = 8
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "fish"})
# wrapper -> (its options that take a value, positional words before the command it runs)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    name: (frozenset(opts.split()), positional)
    for name, opts, positional in (
        ("sudo", "-u -g -h -p -C -D -R -T -U -r -t --user --group --host --prompt --close-from "
                 "--chdir --chroot --command-timeout --other-user --role --type", 0),
        ("doas", "-u -C", 0),
        ("env", "-u --unset -C --chdir", 0),
        ("nice", "-n --adjustment", 0),
        ("ionice", "-c -n -p -P -u --class --classdata", 0),
        ("timeout", "-s --signal -k --kill-after", 1),
        ("xargs", "-a -d -E -e -I -L -l -n -P -s --arg-file --delimiter --eof --replace "
                  "--max-lines --max-args --max-procs --max-chars --process-slot-var", 0),
        ("stdbuf", "-i -o -e --input --output --error", 0),
        ("flock", "-w --timeout -E --conflict-exit-code", 1),
        ("taskset", "", 1),
        ("chroot", "--userspec --groups", 1),
        ("strace", "-o -e -p -s -u -E -a -b -I -O -S -X -P", 0),
        ("ltrace", "-o -e -p -s -u -a -n", 0),
        ("nohup", "", 0), ("setsid", "", 0), ("time", "", 0), ("command", "", 0),
        ("builtin", "", 0), ("exec", "-a", 0), ("chronic", "", 0), ("unbuffer", "", 0),
        ("caffeinate", "", 0), ("valgrind", "", 0), ("torsocks", "", 0), ("proxychains", "", 0),
        ("proxychains4", "", 0), ("catchsegv", "", 0), ("faketime", "", 1), ("unshare", "", 0),
        ("systemd-run", "-u --unit -p --property -E --setenv", 0), ("firejail", "", 0),
        ("runuser", "-u --user -g --group", 0), ("sg", "", 1), ("cpulimit", "-l --limit", 0),
    )
}  # fmt: skip
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


@dataclass(frozen=True)
class Command:
    """One simple command the line can run, unwrapped: the program and its words."""

    argv: tuple[str, ...]
    """Quotes removed; a word that expands at run time keeps its `$`/backquote text."""
    wrappers: tuple[str, ...] = ()
    """The wrappers it ran under, outermost first (`sudo`, `timeout`, `bash -c`, ...)."""
    after: tuple[str, ...] = ()
    """Programs of the earlier stages of its pipeline (what feeds its stdin)."""

    @property
    def name(self) -> str:
        """The program's base name (`/usr/bin/rm` -> `rm`)."""
        return os.path.basename(self.argv[0]) if self.argv else ""


@dataclass
class Syntax:
    """What a command line can run, and what in it did not parse."""

    commands: list[Command] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Snippets the grammar could not read (or nesting too deep to follow)."""
    fork_bombs: list[str] = field(default_factory=list)
    """Functions that start copies of themselves in a pipeline or in the background."""


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from tree_sitter_language_pack import get_parser

    return get_parser("bash")


def read_command_line(text: str) -> Syntax:
    """Every simple command `text` can run (nested command lines included), parse errors, fork bombs."""
    out = Syntax()
    _read(text, out, wrappers=(), depth=0)
    return out


def _read(text: str, out: Syntax, *, wrappers: tuple[str, ...], depth: int) -> None:
    if depth > MAX_DEPTH:
        out.errors.append(f"command lines nested more than {MAX_DEPTH} deep")
        return
    tree = _parser().parse(text.encode("utf-8", errors="surrogateescape"))
    for node in _walk(tree.root_node):
        if node.type == "ERROR" or node.is_missing:
            out.errors.append(_snippet(node, text))
        elif node.type == "command":
            argv = _argv(node)
            if argv:
                stdin = _stdin_text(node)
                cmd = Command(argv=argv, wrappers=wrappers, after=_pipeline_before(node))
                _unwrap(cmd, stdin, out, depth=depth)
        elif node.type == "function_definition" and _spawns_itself(node):
            out.fork_bombs.append(_text(node.child_by_field_name("name")) or "?")


def _walk(node: Any) -> Any:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _text(node: Any) -> str:
    return node.text.decode("utf-8", errors="replace") if node is not None else ""


def _snippet(node: Any, text: str) -> str:
    start = max(0, node.start_byte - 20)
    around = text.encode("utf-8", errors="surrogateescape")[start : node.end_byte + 20]
    return around.decode("utf-8", errors="replace").strip() or "(end of the command)"


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------


def _word(node: Any) -> str:
    """A word's value with quoting removed; expansions stay as written (they start with `$`)."""
    kind = node.type
    raw = _text(node)
    if kind == "word":
        return _unescape(raw)
    if kind == "raw_string":
        return raw[1:-1]
    if kind in ("string", "translated_string"):
        inner = raw[raw.index('"') + 1 : -1] if raw.endswith('"') else raw
        for a, b in (('\\"', '"'), ("\\`", "`"), ("\\$", "$"), ("\\\\", "\\")):
            inner = inner.replace(a, b)
        return inner
    if kind == "ansi_c_string":
        try:
            return codecs.decode(raw[2:-1], "unicode_escape")
        except UnicodeDecodeError:
            return raw
    if kind == "concatenation":
        return "".join(_word(c) for c in node.children)
    return raw  # number, expansions, substitutions: as written


def _unescape(raw: str) -> str:
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1] if raw[i + 1] != "$" else "\\$")
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def _argv(node: Any) -> tuple[str, ...]:
    words = []
    for i, child in enumerate(node.children):
        if node.field_name_for_child(i) in ("name", "argument"):
            words.append(_word(child.children[0] if child.type == "command_name" else child))
    return tuple(words)


def _stdin_text(node: Any) -> str | None:
    """The text of a herestring or heredoc the command reads as its standard input."""
    holders = [node]
    if node.parent is not None and node.parent.type == "redirected_statement":
        holders.append(node.parent)
    for holder in holders:
        for child in holder.children:
            if child.type == "herestring_redirect" and child.named_child_count:
                return _word(child.named_children[-1])
            if child.type == "heredoc_redirect":
                body = next((c for c in child.children if c.type == "heredoc_body"), None)
                return _text(body)
    return None


def _pipeline_before(node: Any) -> tuple[str, ...]:
    stage = node.parent if node.parent is not None and node.parent.type == "redirected_statement" else node
    pipe = stage.parent
    if pipe is None or pipe.type != "pipeline":
        return ()
    names = []
    for child in pipe.children:
        if child == stage:
            break
        for n in _walk(child):
            if n.type == "command":
                argv = _unwrapped_name(_argv(n))
                if argv:
                    names.append(argv)
                break
    return tuple(names)


def _unwrapped_name(argv: tuple[str, ...]) -> str:
    while argv and os.path.basename(argv[0]) in _WRAPPERS:
        argv = _after_wrapper(argv)
    while argv and "=" in argv[0] and not argv[0].startswith("-"):
        argv = argv[1:]  # env's NAME=VALUE words
    return os.path.basename(argv[0]) if argv else ""


def _spawns_itself(node: Any) -> bool:
    """A function whose body runs itself in a pipeline or in the background: a fork bomb."""
    name = _text(node.child_by_field_name("name"))
    body = node.child_by_field_name("body")
    if not name or body is None:
        return False
    for n in _walk(body):
        if n.type != "command" or _unwrapped_name(_argv(n)) != name:
            continue
        up = n
        while up is not None and up != body:
            nxt = up.next_sibling
            if up.type == "pipeline" or (nxt is not None and nxt.type == "&"):
                return True
            up = up.parent
    return False


# --------------------------------------------------------------------------------------------
# Unwrapping: the command a wrapper runs, and command lines inside commands
# --------------------------------------------------------------------------------------------


def _after_wrapper(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The words of the command `argv[0]` (a wrapper) runs: its options and positionals skipped."""
    values, positional = _WRAPPERS[os.path.basename(argv[0])]
    rest = list(argv[1:])
    while rest:
        w = rest[0]
        if w == "--":
            rest.pop(0)
            break
        if not w.startswith("-") or w == "-":
            break
        rest.pop(0)
        if w.startswith("--"):
            if "=" not in w and w in values and rest:
                rest.pop(0)
        elif (w in values or (len(w) > 2 and f"-{w[-1]}" in values)) and rest:
            rest.pop(0)  # `-u root`, or a cluster ending in a value flag (`-Eu root`)
    if os.path.basename(argv[0]) == "env":
        while rest and "=" in rest[0] and not rest[0].startswith("-"):
            rest.pop(0)
    return tuple(rest[positional:])


def _unwrap(cmd: Command, stdin: str | None, out: Syntax, *, depth: int) -> None:
    argv, name = cmd.argv, cmd.name
    nested = cmd.wrappers + (name,)
    if name in _WRAPPERS:
        if name == "command" and any(w in ("-v", "-V") for w in argv[1:2]):
            return  # `command -v x` looks x up, runs nothing
        if name == "env":
            split = _env_split_string(argv)
            if split is not None:
                _read(split, out, wrappers=nested, depth=depth + 1)
                return
        inner = _after_wrapper(argv)
        if inner:
            _unwrap(Command(argv=inner, wrappers=nested, after=cmd.after), stdin, out, depth=depth)
        return
    out.commands.append(cmd)
    script = _nested_line(cmd, stdin)
    if script is not None:
        _read(script, out, wrappers=nested, depth=depth + 1)
    if name == "find":
        for inner in _find_exec_commands(argv):
            _unwrap(Command(argv=inner, wrappers=nested), None, out, depth=depth)


def _nested_line(cmd: Command, stdin: str | None) -> str | None:
    """The command line a command runs as shell code, if any (`sh -c S`, `eval`, `su -c S`...)."""
    argv, name = cmd.argv, cmd.name
    if name in SHELLS:
        return _shell_script(argv, stdin)
    if name == "eval":
        return " ".join(argv[1:])
    if name == "trap" and len(argv) > 2 and not argv[1].startswith("-"):
        return argv[1]  # run when a signal or EXIT comes
    if name == "su" or name == "runuser":
        for i, w in enumerate(argv):
            if w in ("-c", "--command") and i + 1 < len(argv):
                return argv[i + 1]
            if w.startswith("--command="):
                return w.split("=", 1)[1]
        return None
    if name == "watch":
        rest = list(argv[1:])
        while rest and rest[0].startswith("-"):
            if rest.pop(0) in ("-n", "--interval") and rest:
                rest.pop(0)
        return " ".join(rest) or None
    return None


def _shell_script(argv: tuple[str, ...], stdin: str | None) -> str | None:
    """`bash -c S` -> S; `bash` reading a heredoc or herestring -> its text; a script file -> None."""
    rest = list(argv[1:])
    has_c = False
    while rest:
        w = rest[0]
        if w == "--":
            rest.pop(0)
            break
        if not w.startswith(("-", "+")) or w in ("-", "+"):
            break
        rest.pop(0)
        if w in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file") and rest:
            rest.pop(0)
        elif not w.startswith("--") and "c" in w[1:]:
            has_c = True
    if has_c:
        return rest[0] if rest else ""
    if not rest or rest[0] == "-":
        return stdin
    return None


def _env_split_string(argv: tuple[str, ...]) -> str | None:
    for i, w in enumerate(argv[1:], start=1):
        if w in ("-S", "--split-string") and i + 1 < len(argv):
            return " ".join(argv[i + 1 :])
        if w.startswith("--split-string="):
            return " ".join((w.split("=", 1)[1], *argv[i + 1 :]))
        if w.startswith("-S") and len(w) > 2:
            return " ".join((w[2:], *argv[i + 1 :]))
        if not w.startswith("-"):
            return None
    return None


def _find_exec_commands(argv: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The commands `find … -exec CMD … ;` (or `+`) runs, one per -exec/-execdir/-ok."""
    found: list[tuple[str, ...]] = []
    i = 0
    while i < len(argv):
        if argv[i] in _FIND_EXEC:
            j = i + 1
            while j < len(argv) and argv[j] not in (";", "\\;", "+"):
                j += 1
            if j > i + 1:
                found.append(argv[i + 1 : j])
            i = j
        i += 1
    return found

