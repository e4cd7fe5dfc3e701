"""The workspace: every path confined to one root, atomic writes, text kept byte-faithful, undo.

Rules, each a `ToolError` the model can act on:

- a path is resolved against the root and must stay inside it: `..`, absolute paths elsewhere,
  NUL bytes and symlinks that point outside are refused; nothing is ever written under `.git/`;
- a file is written atomically (temp file in the same directory, fsync, rename) and keeps its
  mode bits; every read, write, delete and undo goes through the directory handles of
  `_Dirs`, so a directory swapped for a symlink after the path check is refused, not followed;
- tome's own temp files are named `.<name>.<pid>.<hex>.tome-tmp` (`TEMP_SUFFIX`): a write killed
  mid-way leaves one, which `remove_stale_temp_files` deletes at the start of the next run and
  `TEMP_PATHSPEC` keeps out of every patch;
- text keeps its encoding (UTF-8, else a Latin-1 round trip), BOM, line endings and final
  newline outside the edited span: edits work on the decoded text with its own line endings;
- a file that changed on disk since the model last viewed it (or since our own last write) is
  not overwritten: the model is asked for a fresh view;
- every write keeps the previous bytes in a per-file undo history.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.errors import ToolError

__all__ = [
    "TEMP_PATHSPEC",
    "TEMP_SUFFIX",
    "PathError",
    "StaleFileError",
    "TextFile",
    "Workspace",
    "decode",
    "new_file_mode",
    "plain_lines",
    "remove_stale_temp_files",
    "sha256",
    "split_lines",
]

_UNDO_DEPTH = 50

# tome's temp files: `.<name>.<pid of the writer>.<8 hex>.tome-tmp`, the one pattern for them.
TEMP_SUFFIX = ".tome-tmp"
_TEMP_NAME = re.compile(r"\A\..*\.(\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + r"\Z", re.DOTALL)
# A git pathspec that leaves them out, at any depth (gitglossary(7), "pathspec": exclude, glob).
TEMP_PATHSPEC = f":(exclude,glob)**/*{TEMP_SUFFIX}"


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
        if not _is_within(path, self.root):  # a spill file of a cut result, in tome's state
            try:
                return path.read_bytes()
            except OSError as e:
                raise PathError(f"{self.rel(path)}: cannot read ({e.strerror}).") from None
        with self._parent(path, reading=True) as d:
            found = d.read()
        if found is None:
            raise PathError(
                f"{self.rel(path)} does not exist; check the path with find_files, or create it."
            )
        return found[0]

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
        with self._parent(path, create=True) as d:
            old = d.read()
            kept = old[1] if old else None
            _atomic_write(d, data, kept if mode is None else mode)
        if record:
            hist = self._history.setdefault(path, [])
            hist.append(old or (None, None))
            del hist[:-_UNDO_DEPTH]
        self._seen[path] = sha256(data)

    def delete(self, path: Path, *, record: bool = True) -> None:
        """Delete a resolved file, keeping its bytes in the undo history."""
        with self._parent(path) as d:
            old = d.read()
            if old is None:
                raise PathError(f"{self.rel(path)} does not exist; check the path with find_files.")
            os.unlink(d.name, dir_fd=d.fd)
            d.prune_empty()  # like git, leave no empty directories behind (undo recreates them)
        if record:
            self._history.setdefault(path, []).append(old)
        self._seen.pop(path, None)

    def undo(self, path: Path) -> str:
        """Restore the bytes `path` had before our last write to it; says what it did."""
        hist = self._history.get(path)
        if not hist:
            raise ToolError(
                f"there is no edit of {self.rel(path)} to undo (undo covers edits made with the "
                "editing tools in this run; use restore_checkpoint for shell changes)."
            )
        old, mode = hist[-1]
        with self._parent(path, create=old is not None) as d:
            if old is None:
                if d.read() is not None:
                    os.unlink(d.name, dir_fd=d.fd)
            else:
                _atomic_write(d, old, mode)
        hist.pop()  # only once it is undone: a refused undo can be retried
        if old is None:
            self._seen.pop(path, None)
            return f"Undid the creation of {self.rel(path)}: the file is removed."
        self._seen[path] = sha256(old)
        return f"Restored {self.rel(path)} to its state before the last edit."

    def history_depth(self, path: Path) -> int:
        """How many edits of `path` can be undone."""
        return len(self._history.get(path, []))

    @contextmanager
    def _parent(
        self, path: Path, *, create: bool = False, reading: bool = False
    ) -> Iterator[_Dirs]:
        """The directories down to `path`'s, opened race-free; OS errors become PathErrors."""
        rel = path.relative_to(self.root)
        if ".git" in rel.parts and not reading:
            raise PathError(f"{self.rel(path)} is inside .git/; it is not editable.")
        try:
            with _Dirs(self.root, rel, create=create) as d:
                yield d
        except OSError as e:
            outcome = "nothing was read" if reading else "nothing was changed"
            raise PathError(f"{self.rel(path)}: {outcome}: {_os_error_message(e)}") from None


class _Dirs:
    """The directories from the root down to `rel`'s parent, each opened relative to the one above.

    Each component is opened with O_NOFOLLOW|O_DIRECTORY (open(2)): a directory swapped for a
    symlink after `Workspace.resolve` checked the path is refused here, not followed, and what is
    then done through `fd` (openat, renameat, unlinkat, mkdirat: Python's `dir_fd=`) stays in the
    directory that was opened, whatever is renamed meanwhile.
    """

    def __init__(self, root: Path, rel: Path, *, create: bool) -> None:
        self.parts = rel.parent.parts if rel.parent != Path(".") else ()
        self.name = rel.name
        self.fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        try:
            for i, part in enumerate(self.parts):
                where = "/".join(self.parts[: i + 1])
                self.fds.append(_open_dir(self.fds[-1], part, where, create))
        except BaseException:
            self.close()
            raise

    @property
    def fd(self) -> int:
        """The directory that holds `name`."""
        return self.fds[-1]

    def read(self) -> tuple[bytes, int] | None:
        """(bytes, mode bits) of the regular file `name`, None when there is none."""
        try:
            st = os.stat(self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise _Refused(_became_a_symlink(self.name))
        if stat.S_ISDIR(st.st_mode):
            raise _Refused("it is a directory, not a file.")
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("it is not a regular file (a device, socket or pipe); use the shell.")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.name, flags, dir_fd=self.fd)
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symlink now, after the lstat above
                raise _Refused(_became_a_symlink(self.name)) from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise _Refused("it changed while it was read; view it, then retry.")
            return f.read(), stat.S_IMODE(st.st_mode)

    def prune_empty(self) -> None:
        """Remove the directories that are now empty, deepest first (never the root)."""
        for i in range(len(self.parts), 0, -1):
            try:
                os.rmdir(self.parts[i - 1], dir_fd=self.fds[i - 1])
            except OSError:
                return

    def close(self) -> None:
        """Close every descriptor."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> _Dirs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Refused(OSError):
    """What is on disk is not what the path check saw (a symlink, a file for a directory)."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(parent: int, name: str, where: str, create: bool) -> int:
    """Open directory `name` in `parent` without following a symlink (made first if `create`)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except NotADirectoryError:
        raise _Refused(_not_a_dir(parent, name, where)) from None
    try:
        os.mkdir(name, 0o777, dir_fd=parent)
    except FileExistsError:
        pass  # made meanwhile: opened and checked below like any other
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except NotADirectoryError:
        raise _Refused(_not_a_dir(parent, name, where)) from None


def _not_a_dir(parent: int, name: str, where: str) -> str:
    try:
        link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        link = False
    return _became_a_symlink(where + "/") if link else f"{where} is a file, not a directory."


def _became_a_symlink(where: str) -> str:
    return (
        f"{where} became a symlink after the path was checked (something is changing the "
        f"workspace), and tome never follows one there. View {where}, then retry."
    )


def _os_error_message(e: OSError) -> str:
    if isinstance(e, _Refused):
        return str(e)
    if e.errno == errno.ENOENT:
        return "a directory on its path does not exist (any more); check it with find_files."
    return f"the file system refused ({e.strerror or e})."


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


def remove_stale_temp_files(root: Path | str) -> list[str]:
    """Delete the temp files that killed writes of tome left under `root`; their relative paths.

    A temp file is stale when the process its name records is gone (kill(2) with signal 0);
    `.git/` is not searched, symlinks are not followed (os.fwalk, unlinkat through its fds).
    """
    removed = []
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root):
        dirnames[:] = [n for n in dirnames if n != ".git"]
        for name in filenames:
            if name.endswith(TEMP_SUFFIX) and not _writer_alive(name):
                try:
                    os.unlink(name, dir_fd=dirfd)
                except FileNotFoundError:
                    continue
                removed.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(removed)


def _writer_alive(temp_name: str) -> bool:
    m = _TEMP_NAME.match(temp_name)
    if m is None:
        return False  # not ours in today's pattern (an older tome's): no writer to wait for
    try:
        os.kill(int(m.group(1)), 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _temp_name(name: str) -> str:
    return f".{name[:64]}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _atomic_write(d: _Dirs, data: bytes, mode: int | None) -> None:
    """Temp file beside `d.name` in `d.fd`, fsync, chmod, rename over it, fsync the directory."""
    tmp = _temp_name(d.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=d.fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), new_file_mode() if mode is None else mode)
        # rename(2) replaces a symlink at the destination rather than following it.
        os.replace(tmp, d.name, src_dir_fd=d.fd, dst_dir_fd=d.fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=d.fd)
        except FileNotFoundError:
            pass
        raise
    try:
        os.fsync(d.fd)
    except OSError:
        pass
