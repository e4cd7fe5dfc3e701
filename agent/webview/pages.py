"""What a view shows: a run, an evaluation, or a run not started yet; each gives its HTML and a version.

The version changes when the files behind the page change; the live server's poller compares it.
`write_pages` writes the self-contained files: `view.html` in a run's folder, `report.html` in an
evaluation's (with `<instance>/run.html` beside each instance's logs when the agent made its patch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.errors import ConfigError
from agent.secrets import redact_outgoing
from agent.webview.page import document

if TYPE_CHECKING:
    from agent.webview.evalpage import EvalView

__all__ = ["Page", "RunPage", "EvalPage", "FollowRun", "page_for", "write_pages", "RUN_VIEW", "EVAL_VIEW"]

RUN_VIEW = "view.html"
EVAL_VIEW = "report.html"


class Page(Protocol):
    """Something the view can show."""

    def version(self) -> str:
        """Changes whenever the page would."""
        ...

    def html(self, *, version: str | None = None) -> str:
        """The whole page; live (polling for changes) when `version` says which files it shows."""
        ...

    def part(self, path: str) -> tuple[str, str] | None:
        """(content type, body) of a page or file the page links to (relative `path`), or None."""
        ...


def _stamp(*paths: Path) -> str:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            out.append("-")
    return "/".join(out)


@dataclass(frozen=True)
class RunPage:
    """One run's folder (trajectory.jsonl, patch.diff)."""

    run_dir: Path

    def version(self) -> str:
        """The trajectory's and the patch's size and mtime."""
        return _stamp(self.run_dir / "trajectory.jsonl", self.run_dir / "patch.diff")

    def html(self, *, version: str | None = None) -> str:
        """The run's page, from its trajectory as it is on disk now."""
        from agent.records import RunEnded
        from agent.trajectory import Trajectory
        from agent.webview.runpage import redacted, render_run, run_patch, run_view

        traj = Trajectory.load(self.run_dir / "trajectory.jsonl", repair=False)
        patch, source = run_patch(self.run_dir, traj.started, over=isinstance(traj.events[-1], RunEnded))
        view = run_view(redacted(traj.events), redact_outgoing(patch))
        return render_run(view, patch_source=source, version=version)

    def part(self, path: str) -> tuple[str, str] | None:
        """A run page links to nothing else."""
        return None


@dataclass(frozen=True)
class EvalPage:
    """An evaluation's folder (report.json, one folder per instance), optionally with official verdicts."""

    eval_dir: Path
    official: frozenset[str] | None = None

    def view(self) -> EvalView:
        """The report and the instances' files as they are on disk now."""
        from agent.webview.evalpage import load_eval

        return load_eval(self.eval_dir, official=set(self.official) if self.official is not None else None)

    def version(self) -> str:
        """The report's and every score's size and mtime."""
        return _stamp(self.eval_dir / "report.json", *sorted(self.eval_dir.glob("*/score.json")))

    def html(self, *, version: str | None = None) -> str:
        """The evaluation's page."""
        from agent.webview.evalpage import render_eval

        return render_eval(self.view(), version=version)

    def part(self, path: str) -> tuple[str, str] | None:
        """`<instance>/run.html` (its run's page) or one of its logs, for instances of this report only."""
        from agent.webview.evalpage import RUN_PAGE

        iid, _, name = path.strip("/").partition("/")
        files = self.view().files.get(iid)
        if files is None:
            return None
        if name == RUN_PAGE and files.trajectory is not None:
            return "text/html; charset=utf-8", RunPage(files.trajectory.parent).html()
        if name in files.logs:
            text = (self.eval_dir / iid / name).read_text(encoding="utf-8", errors="replace")
            return "text/plain; charset=utf-8", redact_outgoing(text)
        return None


@dataclass
class FollowRun:
    """The run a `tome solve --view` is about to start: a waiting page until its first event."""

    run_dir: Path | None = None
    waiting: str = field(default="packing the repository and choosing the mode")

    def version(self) -> str:
        """The run's version once it started."""
        return RunPage(self.run_dir).version() if self.run_dir else "waiting"

    def html(self, *, version: str | None = None) -> str:
        """The run's page, or a page saying it has not started yet."""
        if self.run_dir is None or not (self.run_dir / "trajectory.jsonl").is_file():
            return document("tome run", f'<h1>tome run</h1><p class="live">{self.waiting}…</p>', version=version)
        return RunPage(self.run_dir).html(version=version)

    def part(self, path: str) -> tuple[str, str] | None:
        """Nothing else."""
        return None


def _is_eval(path: Path) -> bool:
    return (path / "report.json").is_file() or any(path.glob("*/score.json"))


def page_for(target: str | None, settings, *, last: bool = False,
             official: frozenset[str] | None = None) -> RunPage | EvalPage:
    """The page `target` names: a run (id or folder; the latest with `last`) or an evaluation folder."""
    from agent.solve_cli import run_dir_of

    path = Path(target) if target else None
    if path is not None and path.is_dir() and not (path / "trajectory.jsonl").is_file() and _is_eval(path):
        return EvalPage(path.resolve(), official=official)
    if official is not None:
        raise ConfigError("--official compares an evaluation's verdicts: name an evaluation folder")
    return RunPage(run_dir_of(settings, target, last=last).resolve())


def write_pages(page: RunPage | EvalPage, output: Path | None = None) -> list[Path]:
    """Write the page's self-contained file(s); the main page first."""
    if isinstance(page, RunPage):
        dest = output or page.run_dir / RUN_VIEW
        _write(dest, page.html())
        return [dest]
    from agent.webview.evalpage import RUN_PAGE, render_eval

    dest = output or page.eval_dir / EVAL_VIEW
    view = page.view()
    written = [dest]
    _write(dest, render_eval(view))
    for iid, files in sorted(view.files.items()):
        if files.trajectory is not None:  # beside the instance's logs, where the report links
            run_page = dest.parent / iid / RUN_PAGE
            _write(run_page, RunPage(files.trajectory.parent).html())
            written.append(run_page)
    return written


def _write(dest: Path, html: str) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(dest)
    except OSError as e:
        raise ConfigError(f"cannot write {dest}: {e.strerror}") from None
