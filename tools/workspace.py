"""The workspace: every path confined to one root, atomic writes, text kept byte-faithful, undo.

Rules, each a `ToolError` the model can act on:

- a path is resolved against the root and must stay inside it: `..`, absolute paths elsewhere,
  NUL bytes and symlinks that point outside are refused; nothing is ever written under `.git/`;
- a file is written atomically (temp file in the same directory, fsync, rename) and keeps its
  mode bits;
- text keeps its encoding (UTF-8, else a Latin-1 round trip), BOM, line endings and final
  newline outside the edited span: edits work on the decoded text with its own line endings;
- a file that changed on disk since the model last viewed it (or since our own last write) is
  not overwritten: the model is asked for a fresh view;
- every write keeps the previous bytes in a per-file undo history.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.base import ToolError

__all__ = [
    "PathError",
    "StaleFileError",
    "TextFile",
    "Workspace",
    "decode",
    "new_file_mode",
    "plain_lines",
    "sha256",
    "split_lines",
]

_UNDO_DEPTH = 50


class PathError(ToolError):
    """A path the model gave is not allowed or does not exist."""

    kind = "path_error"


class StaleFileError(ToolError):
    """The file changed on disk since the model last saw it."""

    kind = "stale_file"


_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split at "\n" only, as git and ripgrep count them.

    (str.splitlines also splits at form feeds, "\x1c" and "\u2028", shifting line numbers.)
    """
    return _LINE.findall(text)


def plain_lines(text: str) -> list[str]:
    """Lines without their endings ("\n" or "\r\n"), split like `split_lines`."""
    return [line.removesuffix("\n").removesuffix("\r") for line in _LINE.findall(text)]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class TextFile:
    """A decoded text file and what it takes to write it back byte-faithfully."""

    path: Path
    text: str  # decoded, line endings untouched
    encoding: str  # "utf-8" or "latin-1"
    bom: bool
    newline: str  # the dominant line ending: "\n", "\r\n" or "\r"
    digest: str  # sha256 of the bytes read

    def encode(self, text: str) -> bytes:
        """Bytes for `text` in this file's encoding and BOM (a ToolError if it cannot be)."""
        try:
            data = text.encode(self.encoding)
        except UnicodeEncodeError as e:
            bad = text[e.start : e.end]
            raise ToolError(
                f"{self.path.name} is {self.encoding}-encoded and cannot hold {bad!r}; "
                "use characters that encoding can represent (or an escape sequence)."
            ) from None
        return (b"\xef\xbb\xbf" + data) if self.bom else data

    def to_file_newlines(self, text: str) -> str:
        """Convert the model's "\\n" line endings to this file's dominant ending."""
        if self.newline == "\n":
            return text
        return text.replace("\r\n", "\n").replace("\n", self.newline)


def _dominant_newline(text: str) -> str:
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    best = max((lf, "\n"), (crlf, "\r\n"), (cr, "\r"), key=lambda x: x[0])
    return best[1] if best[0] else "\n"


def decode(data: bytes) -> tuple[str, str, bool]:
    """(text, encoding, bom) for bytes: UTF-8 (with or without BOM), else Latin-1."""
    bom = data.startswith(b"\xef\xbb\xbf")
    body = data[3:] if bom else data
    try:
        return body.decode("utf-8"), "utf-8", bom
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", False


class Workspace:
    """A directory the tools may read and write, with confinement, freshness checks and undo."""

    def __init__(self, root: Path | str, *, base_commit: str | None = None) -> None:
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(self.root)
        self.base_commit = base_commit
        self._seen: dict[Path, str] = {}  # path -> sha256 of the bytes the model last saw
        self._history: dict[Path, list[tuple[bytes | None, int | None]]] = {}

    # ---------------------------------------------------------------------------------------
    # Paths
    # ---------------------------------------------------------------------------------------

    def resolve(self, path: str | Path, *, write: bool = False, must_exist: bool = False) -> Path:
        """The real path of `path` inside the root, or a PathError saying why not."""
        raw = str(path)
        if "\x00" in raw:
            raise PathError(f"path {raw!r} contains a NUL byte; give a plain relative path.")
        if not raw.strip():
            raise PathError("the path is empty; give a path relative to the workspace root.")
        p = Path(raw)
        candidate = p if p.is_absolute() else self.root / p
        lexical = Path(os.path.normpath(candidate))
        if not _is_within(lexical, self.root):
            raise PathError(
                f"{raw} is outside the workspace ({self.root}); use a path inside it, "
                "relative to the root."
            )
        real = lexical.resolve(strict=False)
        if not _is_within(real, self.root):
            raise PathError(
                f"{raw} goes through a symlink that points outside the workspace ({real}); "
                "edit the file inside the workspace instead."
            )
        rel = real.relative_to(self.root)
        if write and ".git" in (rel.parts + lexical.relative_to(self.root).parts):
            raise PathError(
                f"{raw} is inside .git/; the repository's metadata is not editable. Use the "
                "git tools or the shell's git commands."
            )
        if must_exist and not real.exists():
            raise PathError(
                f"{raw} does not exist; check the path with find_files or view a directory."
            )
        return real

    def rel(self, path: Path) -> str:
        """`path` relative to the root, as the model should write it."""
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)

    # ---------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------

    def read_bytes(self, path: Path) -> bytes:
        """Bytes of a resolved regular file, or a PathError."""
        if path.is_dir():
            raise PathError(f"{self.rel(path)} is a directory; view it to list its contents.")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise PathError(
                f"{self.rel(path)} does not exist; check the path with find_files, or create it."
            ) from None
        except OSError as e:
            raise PathError(f"{self.rel(path)}: cannot read ({e.strerror}).") from None

    def read_text(self, path: Path) -> TextFile:
        """Decode a resolved file for editing; binary files are refused."""
        data = self.read_bytes(path)
        if b"\x00" in data[:8192]:
            raise ToolError(
                f"{self.rel(path)} is a binary file; it cannot be viewed or edited as text."
            )
        text, encoding, bom = decode(data)
        return TextFile(path, text, encoding, bom, _dominant_newline(text), sha256(data))

    # ---------------------------------------------------------------------------------------
    # Freshness
    # ---------------------------------------------------------------------------------------

    def mark_seen(self, path: Path, digest: str) -> None:
        """Record that the model has seen these bytes of `path` (after a view or our write)."""
        self._seen[path] = digest

    def has_seen(self, path: Path) -> bool:
        """Whether the model has viewed (or we have written) `path` in this run."""
        return path in self._seen

    def check_fresh(self, path: Path, digest: str | None) -> None:
        """Refuse to overwrite a file that changed on disk since the model last saw it."""
        seen = self._seen.get(path)
        if seen is not None and seen != digest:
            raise StaleFileError(
                f"{self.rel(path)} changed on disk since you last viewed it (by a command or "
                "another program). View it again, then redo the edit against what it holds now."
            )

    # ---------------------------------------------------------------------------------------
    # Writing
    # ---------------------------------------------------------------------------------------

    def write_bytes(
        self, path: Path, data: bytes, *, mode: int | None = None, record: bool = True
    ) -> None:
        """Atomically write a resolved path (keeping mode bits unless `mode` is given); undoable."""
        if ".git" in path.relative_to(self.root).parts:
            raise PathError(f"{self.rel(path)} is inside .git/; it is not editable.")
        old: bytes | None = None
        old_mode: int | None = None
        if path.exists():
            if path.is_dir():
                raise PathError(f"{self.rel(path)} is a directory, not a file.")
            old = path.read_bytes()
            old_mode = stat.S_IMODE(path.stat().st_mode)
        if not path.parent.is_dir():
            if path.parent.exists():
                raise PathError(f"{self.rel(path.parent)} is a file, not a directory.")
            path.parent.mkdir(parents=True)
        _atomic_write(path, data, old_mode if mode is None else mode)
        if record:
            hist = self._history.setdefault(path, [])
            hist.append((old, old_mode))
            del hist[:-_UNDO_DEPTH]
        self._seen[path] = sha256(data)

    def delete(self, path: Path, *, record: bool = True) -> None:
        """Delete a resolved file, keeping its bytes in the undo history."""
        if ".git" in path.relative_to(self.root).parts:
            raise PathError(f"{self.rel(path)} is inside .git/; it is not editable.")
        data = self.read_bytes(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        path.unlink()
        if record:
            self._history.setdefault(path, []).append((data, mode))
        self._seen.pop(path, None)
        # Like git, leave no empty directories behind (undo recreates them).
        parent = path.parent
        while parent != self.root and _is_within(parent, self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def undo(self, path: Path) -> str:
        """Restore the bytes `path` had before our last write to it; says what it did."""
        hist = self._history.get(path)
        if not hist:
            raise ToolError(
                f"there is no edit of {self.rel(path)} to undo (undo covers edits made with the "
                "editing tools in this run; use restore_checkpoint for shell changes)."
            )
        old, mode = hist.pop()
        if old is None:
            if path.exists():
                path.unlink()
            self._seen.pop(path, None)
            return f"Undid the creation of {self.rel(path)}: the file is removed."
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
        _atomic_write(path, old, mode)
        self._seen[path] = sha256(old)
        return f"Restored {self.rel(path)} to its state before the last edit."

    def history_depth(self, path: Path) -> int:
        """How many edits of `path` can be undone."""
        return len(self._history.get(path, []))


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for an instant)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def new_file_mode(*, executable: bool = False) -> int:
    """Mode bits a new file gets here: 0666 (0777 when executable) less the umask."""
    return (0o777 if executable else 0o666) & ~_umask()


def _atomic_write(path: Path, data: bytes, mode: int | None) -> None:
    """Temp file in the same directory, fsync, chmod, rename, fsync the directory."""
    if mode is None:
        mode = new_file_mode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tome-tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
