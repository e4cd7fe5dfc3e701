"""An evaluation as a page: resolved rates by group, cost and time spread, a row per instance.

    eval dir ─► load_eval (report, per-instance files) ─► render_eval ─► HTML

Links are relative (`<instance>/run.html`, `<instance>/test_output.txt`), so the same page works
from disk beside its folders and from the live server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from agent.errors import ConfigError
from agent.evaluation.report import build_report, group_rows
from agent.records import EvalReport, Prediction, Score
from agent.secrets import redact_outgoing
from agent.webview import charts
from agent.webview.page import document, esc

__all__ = ["InstanceFiles", "EvalView", "Agreement", "load_eval", "load_official", "render_eval",
           "INSTANCE_FILES", "RUN_PAGE"]

RUN_PAGE = "run.html"  # an instance's run page, beside its logs
INSTANCE_FILES = ("test_output.txt", "setup.log", "patch.diff")  # what a row links to, when present


@dataclass(frozen=True)
class InstanceFiles:
    """What an instance's folder holds that the page links to."""

    trajectory: Path | None  # the agent run behind the prediction, when there was one
    logs: tuple[str, ...]


@dataclass(frozen=True)
class Agreement:
    """tome's verdicts against another grader's, per repository, with the instances that differ."""

    by_repo: dict[str, tuple[int, int]]  # repo -> (agree, disagree)
    disagreements: list[tuple[str, bool, bool]]  # (instance, tome resolved, official resolved)


@dataclass
class EvalView:
    """An evaluation as the page shows it."""

    eval_dir: Path
    report: EvalReport
    files: dict[str, InstanceFiles] = field(default_factory=dict)
    agreement: Agreement | None = None


def _report(eval_dir: Path) -> EvalReport:
    """report.json, or (an evaluation still running) a report from the scores written so far."""
    path = eval_dir / "report.json"
    if path.is_file():
        try:
            return EvalReport.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ConfigError(f"{path} is not a tome eval report: {str(e).splitlines()[0]}") from None
    scores = []
    for f in sorted(eval_dir.glob("*/score.json")):
        try:
            scores.append(Score.model_validate_json(f.read_text(encoding="utf-8")))
        except ValueError:
            continue  # being written
    if not scores and not (eval_dir / "predictions.jsonl").is_file():
        raise ConfigError(f"{eval_dir} is not an evaluation (no report.json, no <instance>/score.json)")
    return build_report(scores, run_id=eval_dir.name, model=scores[0].model if scores else "")


def _files(eval_dir: Path, score: Score) -> InstanceFiles:
    folder = eval_dir / score.instance_id
    trajectory = None
    pred = folder / "prediction.json"
    if pred.is_file():
        try:
            recorded = Prediction.model_validate_json(pred.read_text(encoding="utf-8")).trajectory
        except ValueError:
            recorded = None
        if recorded and Path(recorded).is_file():
            trajectory = Path(recorded)
    return InstanceFiles(trajectory=trajectory, logs=tuple(n for n in INSTANCE_FILES if (folder / n).is_file()))


def load_official(path: Path) -> set[str]:
    """The instances another grader resolved: a SWE-bench report (`resolved_ids`) or a JSON list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the official verdicts {path}: {e}") from None
    ids = data.get("resolved_ids", data.get("resolved")) if isinstance(data, dict) else data
    if not isinstance(ids, list):
        raise ConfigError(f"{path}: want a SWE-bench report with resolved_ids, or a JSON list of ids")
    return {str(i) for i in ids}


def _agreement(scores: list[Score], official: set[str]) -> Agreement:
    by_repo: dict[str, tuple[int, int]] = {}
    differ = []
    for s in sorted(scores, key=lambda s: s.instance_id):
        want, got = s.instance_id in official, s.resolved
        agree, disagree = by_repo.get(s.repo or "?", (0, 0))
        by_repo[s.repo or "?"] = (agree + (got == want), disagree + (got != want))
        if got != want:
            differ.append((s.instance_id, got, want))
    return Agreement(by_repo=dict(sorted(by_repo.items())), disagreements=differ)


def load_eval(eval_dir: Path, *, official: set[str] | None = None) -> EvalView:
    """The report of `eval_dir` with what each instance's folder holds (and the agreement, if asked)."""
    report = _report(eval_dir)
    files = {s.instance_id: _files(eval_dir, s) for s in report.scores}
    agreement = _agreement(report.scores, official) if official is not None else None
    return EvalView(eval_dir=eval_dir, report=report, files=files, agreement=agreement)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _rate_rows(groups: list[tuple[str, list[Score]]]) -> list[charts.BarRow]:
    rows = []
    for label, group in groups:
        n = len(group)
        ok = sum(s.status == "resolved" for s in group)
        err = sum(s.status == "error" for s in group)
        rows.append(charts.BarRow(label, [charts.Part("resolved", ok / n, "var(--ok)"),
                                          charts.Part("unresolved", (n - ok - err) / n, "var(--line)"),
                                          charts.Part("error", err / n, "var(--bad)")],
                                  note=f"{ok}/{n} ({100 * ok / n:.0f}%)"))
    return rows


def _charts(report: EvalReport) -> str:
    sections: dict[str, list[tuple[str, list[Score]]]] = {}
    for section, label, group in group_rows(report.scores):
        if group:
            sections.setdefault(section, []).append((label, group))
    out = [charts.bars(f"rate-{section}", f"resolved rate: {section}", _rate_rows(groups), scale=1.0)
           for section, groups in sections.items()]
    if report.scores:
        out.append(charts.histogram("cost-chart", "cost per instance (USD)", [s.cost for s in report.scores],
                                    unit="$"))
        out.append(charts.histogram("time-chart", "time per instance (solve + setup + test, s)",
                                    [s.solve_time + s.setup_time + s.test_time for s in report.scores], unit="s"))
    return "".join(out)


def _tests(tests: dict) -> str:
    ok = sum(1 for v in tests.values() if v.ok)
    return f"{ok}/{len(tests)}" if tests else "-"


def _row(s: Score, files: InstanceFiles) -> str:
    # "./" and quoting keep an odd instance id (say "javascript:...") a relative path
    folder = f"./{quote(s.instance_id, safe='')}"
    links = [f'<a href="{folder}/{RUN_PAGE}">run</a>'] if files.trajectory is not None else []
    links += [f'<a href="{folder}/{esc(name)}">{esc(name)}</a>' for name in files.logs]
    tag = {"resolved": "ok", "error": "failed"}.get(s.status, "")
    why = s.error or s.note
    detail = f'<div class="muted">{esc(redact_outgoing(why))}</div>' if why else ""
    return (f'<tr class="instance" data-id="{esc(s.instance_id)}"><td><code>{esc(s.instance_id)}</code>{detail}</td>'
            f"<td>{esc(s.repo)}</td><td>{esc(s.difficulty or '-')}</td><td>{esc(s.mode or '-')}</td>"
            f'<td><span class="tag {tag}">{esc(s.status)}</span></td>'
            f'<td class="num">{_tests(s.fail_to_pass)}</td><td class="num">{_tests(s.pass_to_pass)}</td>'
            f'<td class="num">{s.cost:.4f}</td><td class="num">{s.solve_time + s.setup_time + s.test_time:.1f}</td>'
            f"<td>{' · '.join(links)}</td></tr>")


def _agreement_html(a: Agreement) -> str:
    agree = sum(x for x, _ in a.by_repo.values())
    total = agree + sum(y for _, y in a.by_repo.values())
    rows = "".join(f'<tr><td>{esc(repo)}</td><td class="num">{x + y}</td><td class="num">{x}</td>'
                   f'<td class="num">{y}</td></tr>' for repo, (x, y) in a.by_repo.items())
    differ = "".join(f"<li><code>{esc(i)}</code>: tome {'resolved' if got else 'unresolved'}, official "
                     f"{'resolved' if want else 'unresolved'}</li>" for i, got, want in a.disagreements)
    return (f'<p id="agreement-total">{agree}/{total} verdicts agree with the official ones</p>'
            '<table class="rows" id="agreement"><tr><th>repository</th><th class="num">instances</th>'
            f'<th class="num">agree</th><th class="num">disagree</th></tr>{rows}</table>'
            + (f"<ul>{differ}</ul>" if differ else ""))


def render_eval(view: EvalView, *, version: str | None = None) -> str:
    """The whole page of an evaluation (live when `version` says which files it shows)."""
    r = view.report
    n = len(r.scores)
    rate = f"{100 * r.resolved_instances / n:.1f}%" if n else "-"
    cost = sum(s.cost for s in r.scores)
    facts = [("model", esc(r.model)), ("resolved", f"{r.resolved_instances}/{n} ({rate})"
              + (f" of {r.total_instances} instances" if r.total_instances != n else "")),
             ("unresolved", str(r.unresolved_instances)), ("errors", str(r.error_instances)),
             ("empty patches", str(r.empty_patch_instances)), ("cost", f"${cost:.4f}"),
             ("wall time", f"{r.wall_time:.0f} s")]
    head = (f"<h1>tome eval <code>{esc(r.run_id)}</code></h1><table class=\"facts\" id=\"facts\">"
            + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>")
    table = ('<table class="rows" id="instances"><tr><th>instance</th><th>repository</th><th>difficulty</th>'
             '<th>mode</th><th>status</th><th class="num">FAIL_TO_PASS</th><th class="num">PASS_TO_PASS</th>'
             '<th class="num">cost $</th><th class="num">time s</th><th>files</th></tr>'
             + "".join(_row(s, view.files[s.instance_id]) for s in sorted(r.scores, key=lambda s: s.instance_id))
             + "</table>")
    body = [head, "<section><h2>Charts</h2>", _charts(r), "</section>",
            f"<section><h2>Instances ({n})</h2>{table}</section>"]
    if view.agreement is not None:
        body.append("<section><h2>Agreement with the official verdicts</h2>"
                    f"{_agreement_html(view.agreement)}</section>")
    excluded = "".join(f"<li><code>{esc(i)}</code>: {len(t)} test(s) left out "
                       f"({esc('; '.join(sorted(set(t.values()))))})</li>" for i, t in r.excluded_tests.items())
    if excluded:
        body.append(f"<section><h2>Known failures left out</h2><ul>{excluded}</ul></section>")
    return document(f"tome eval {r.run_id}", "".join(body), version=version)
