"""`tome view`: the pages of a real demo run and a real (synthetic) evaluation, in headless Chromium.

The demo runs as a real subprocess against the scripted server; the evaluation scores real
patches with real pytest runs; the pages are loaded from file:// (and from the live server) by
the system Chromium through Playwright, recording every request the page makes. Screenshots
go to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.evaluation.report import build_report, write_report
from agent.evaluation.run import RunConfig, run_tasks
from agent.evaluation.sources import AgentSource, GoldSource
from agent.evaluation.synthetic import make_synthetic, synthetic_setup
from agent.records import (
    AssistantMessage,
    Mode,
    ModeChanged,
    ModelCalled,
    ModelResponse,
    Prediction,
    Result,
    Task,
    Triaged,
    Usage,
)
from agent.trajectory import Trajectory
from tools.browser import DEFAULT_CHROMIUM, browser_problem

PROBLEM = browser_problem()
needs_browser = pytest.mark.skipif(PROBLEM is not None, reason=f"no headless browser here: {PROBLEM}")
FIX = "(ordered[mid - 1] + ordered[mid]) / 2"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOME_", "DEEPSEEK_", "OPENAI_"))}
    env.update({"HOME": str(tmp / "home"), "XDG_CONFIG_HOME": str(tmp / "home" / ".config"),
                "TOME_STATE_DIR": str(tmp / "state"), "TMPDIR": str(tmp), "NO_COLOR": "1"})
    env.pop("DISPLAY", None)  # never open a browser window from a test
    env.pop("WAYLAND_DISPLAY", None)
    return env


def tome(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The run folder a real `tome demo --keep` leaves (trajectory, prefix, patch.diff)."""
    tmp = tmp_path_factory.mktemp("demo")
    proc = tome(["demo", "--keep", "--json"], _env(tmp))
    assert proc.returncode == 0, proc.stderr
    [run_dir] = list(tmp.glob("tome-demo-*/state/runs/*"))
    return run_dir


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    dest = tmp_path / "runs" / demo_run.name
    shutil.copytree(demo_run, dest)
    return dest


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=DEFAULT_CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.requests = []  # every request the page makes, whatever its scheme
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    context.close()


def _view(target: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    proc = tome(["view", str(target), "--json", *extra], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])["result"]


# --------------------------------------------------------------------------------------------
# A run's page
# --------------------------------------------------------------------------------------------


@needs_browser
def test_the_demo_runs_page_loads_from_file_with_no_request_and_shows_the_run(demo_run, page, tmp_path):
    result = _view(demo_run, _env(tmp_path))
    html = Path(result["path"])
    assert html == demo_run / "view.html"
    page.goto(html.as_uri())
    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    assert page.requests == [html.as_uri()]  # the page itself, and nothing else
    traj = Trajectory.load(demo_run / "trajectory.jsonl", repair=False)
    steps = len(list(traj.of_type(ModelCalled)))
    triage = list(traj.of_type(Triaged))
    assert steps == 5 and len(triage) == 1 and triage[0].verdict is not None
    calls = steps + len(triage)  # the charts show every model call, the triage attempt first
    block = page.locator(".triage")
    assert block.count() == 1 and triage[0].verdict.rating in block.inner_text()
    assert f"starting mode {triage[0].chosen.label}" in block.inner_text()
    assert page.locator("#facts tr", has_text="steps").inner_text().split() == ["steps", str(steps)]
    assert page.locator(".step").count() == steps
    tools = {page.locator(".call").nth(i).get_attribute("data-tool") for i in range(page.locator(".call").count())}
    assert tools == {"run_tests", "view", "str_replace", "submit"}
    assert "solved" in page.locator("#facts").inner_text()
    patch = page.locator("#patch")
    assert FIX in patch.inner_text() and "from final patch" in patch.inner_text()
    added = patch.locator(".file[data-path='calc/stats.py'] .line.add")
    assert added.count() == 1 and FIX in added.inner_text()
    assert added.locator("span.k").inner_text() == "return"  # highlighted as Python: a keyword
    assert page.locator("#cost-chart circle.point").count() == calls
    assert page.locator("#prompt-chart .column").count() == calls
    # an observation longer than a few lines is collapsed, and opens on a click
    obs = page.locator(".call[data-tool='run_tests'] details").first
    assert not obs.evaluate("d => d.open")
    obs.locator("summary").click()
    assert obs.evaluate("d => d.open")


def test_secrets_in_a_run_are_redacted_on_its_page(run_copy, tmp_path):
    secret = "ghp_" + "1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
    traj = run_copy / "trajectory.jsonl"
    lines = traj.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "tool")
    event = json.loads(lines[at])  # a tool observation, written raw as an old or foreign writer would
    event["content"] += f"\ntoken = {secret}\n"
    lines[at] = json.dumps(event)
    traj.write_text("\n".join(lines) + "\n")
    (run_copy / "patch.diff").write_text(f"+GITHUB_TOKEN={secret}\n")
    html = Path(_view(run_copy, _env(tmp_path))["path"]).read_text()
    assert secret not in html
    assert "[REDACTED" in html


def test_user_text_and_unknown_event_kinds_are_shown(run_copy):
    from agent.records import UserNote, _Event
    from agent.webview.runpage import render_run, run_view

    class Later(_Event):  # a kind this view was not written for (a later tome adds one)
        type: str = "later_kind"
        verdict: str

    events = list(Trajectory.load(run_copy / "trajectory.jsonl", repair=False).events)
    events.insert(2, UserNote(content="please keep the old signature", source="user"))
    events.insert(3, Later(verdict="looks like a one-line fix"))
    html = render_run(run_view(events))
    assert '<span class="who">you</span><div class="text">please keep the old signature</div>' in html
    assert 'data-type="later_kind"' in html and "looks like a one-line fix" in html


def test_a_missing_run_is_a_usage_error_with_a_json_result(tmp_path):
    proc = tome(["view", "no-such-run", "--json"], _env(tmp_path))
    assert proc.returncode == 2
    result = json.loads(proc.stdout.splitlines()[-1])["result"]
    assert result["status"] == "error" and result["error"] == "config" and "no-such-run" in result["reason"]


def test_a_port_it_cannot_listen_on_is_a_usage_error(run_copy, tmp_path):
    proc = tome(["view", "--serve", str(run_copy), "--port", "70000", "--json"], _env(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot serve on 127.0.0.1:70000" in json.loads(proc.stdout.splitlines()[-1])["result"]["reason"]


# --------------------------------------------------------------------------------------------
# The live page
# --------------------------------------------------------------------------------------------


@pytest.fixture
def served(run_copy, tmp_path) -> Iterator[tuple[str, subprocess.Popen]]:
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "view", "--serve", str(run_copy), "--json"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    first = json.loads(proc.stdout.readline())
    assert first["event"]["type"] == "serving"
    yield first["event"]["url"], proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _one_more_step(run_dir: Path) -> None:
    """Escalate and append a model call, as the loop would (through Trajectory.append)."""
    traj = Trajectory.load(run_dir / "trajectory.jsonl", repair=False)
    last = traj.events[-1]
    traj.append(ModeChanged(t=last.t + 1, step=last.step, old=Mode.NON_THINK, new=Mode.HIGH,
                            reason="the reviewer asked for a closer look"))
    traj.append(ModelCalled(t=last.t + 1, step=last.step, mode=Mode.HIGH, response=ModelResponse(
        message=AssistantMessage(content="One more look at the edge cases."), finish_reason="stop",
        usage=Usage(prompt_tokens=5000, completion_tokens=40, cache_hit_tokens=4800, cache_miss_tokens=200),
        cost=0.001)))


@needs_browser
def test_the_live_page_updates_when_an_event_is_appended(served, run_copy, page, tmp_path):
    url, proc = served
    assert url.startswith("http://127.0.0.1:")
    page.goto(url)
    assert page.locator(".step").count() == 5
    page.locator(".call[data-tool='view'] details").first.locator("summary").click()
    _one_more_step(run_copy)
    page.locator("#step-6").wait_for(timeout=60_000)  # a locator: the page's CSP forbids eval'd predicates
    assert page.locator("#cost-chart circle.point").count() == 7  # the triage attempt and 6 steps
    assert "One more look at the edge cases." in page.locator("#step-6").inner_text()
    assert page.locator(".call[data-tool='view'] details").first.evaluate("d => d.open")  # kept open
    assert "Think High" in page.locator("#facts").inner_text()  # the new mode is listed
    # the run goes on after its end (resumed): its saved patch is not final any more, the workspace's is
    patch = page.locator("#patch").inner_text()
    assert "from the workspace now" in patch and FIX in patch
    page.screenshot(path=str(tmp_path / "live-page.png"), full_page=True)
    assert {u.split("/")[2] for u in page.requests} == {url.split("/")[2]}  # only its own server
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(out.splitlines()[-1])["result"] == {"status": "ok", "exit_code": 0, "url": url}


@needs_browser
def test_a_change_before_the_pages_first_poll_is_not_missed(run_copy, page):
    from agent.webview.pages import RunPage
    from agent.webview.server import LiveServer

    with LiveServer(RunPage(run_copy)) as server:
        before = RunPage(run_copy)
        stale = before.html(version=before.version())  # the page as served just before the run moved on
        _one_more_step(run_copy)
        page.route(server.url, lambda route: route.fulfill(status=200, content_type="text/html", body=stale),
                   times=1)
        assert stale.count('<div class="step" id=') == 5 and 'id="step-6"' not in stale
        page.goto(server.url)  # the stale page; its first poll may come before we could look
        page.locator("#step-6").wait_for(timeout=60_000)


def test_the_live_server_is_read_only_and_answers_only_to_its_loopback_name(served):
    url, _ = served
    with urllib.request.urlopen(url + "version") as r:  # noqa: S310  (our own loopback server)
        assert r.status == 200 and r.read()
    forged = urllib.request.Request(url, headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(forged)  # noqa: S310
    assert e.value.code == 403  # a DNS-rebinding page names its own host
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"))  # noqa: S310
    assert e.value.code == 501  # http.server answers methods it has no do_<METHOD> for with 501
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "../trajectory.jsonl")  # noqa: S310
    assert e.value.code == 404


# --------------------------------------------------------------------------------------------
# An evaluation's page
# --------------------------------------------------------------------------------------------


class RecordedRunSource(GoldSource):
    """Gold for one instance, empty for the other; both name a recorded run as theirs."""

    trajectory: str
    empty_for: str

    def __call__(self, instance, workdir):
        patch = "" if instance.instance_id == self.empty_for else instance.patch
        return Prediction(instance_id=instance.instance_id, model_name_or_path="recorded", model_patch=patch,
                          cost=0.002, mode="non-think", trajectory=self.trajectory)


@pytest.fixture
def eval_dir(demo_run, tmp_path) -> Path:
    inst, cfg = synthetic_setup(tmp_path)
    other = make_synthetic(cfg.repos_dir, instance_id="example__calc-2")
    run_dir = tmp_path / "tome-eval" / "recorded"
    source = RecordedRunSource(trajectory=str(demo_run / "trajectory.jsonl"), empty_for=other.instance_id)
    scores = run_tasks([inst, other], source, config=cfg, run=RunConfig(run_dir=run_dir, workers=1))
    write_report(run_dir / "report.json", build_report(scores, run_id="recorded", model="recorded"))
    return run_dir


@needs_browser
def test_the_eval_page_lists_every_instance_with_its_run_and_test_log(eval_dir, page, tmp_path):
    official = tmp_path / "official.json"
    official.write_text(json.dumps({"resolved_ids": ["example__calc-1", "example__calc-2"]}))
    result = _view(eval_dir, _env(tmp_path), "--official", str(official))
    html = Path(result["path"])
    assert html == eval_dir / "report.html"
    assert result["pages"] == [str(html), str(eval_dir / "example__calc-1" / "run.html"),
                               str(eval_dir / "example__calc-2" / "run.html")]
    page.goto(html.as_uri())
    page.screenshot(path=str(tmp_path / "eval-page.png"), full_page=True)
    assert page.requests == [html.as_uri()]
    rows = page.locator("tr.instance")
    assert [rows.nth(i).get_attribute("data-id") for i in range(rows.count())] == ["example__calc-1",
                                                                                    "example__calc-2"]
    assert "resolved" in rows.nth(0).inner_text() and "unresolved" in rows.nth(1).inner_text()
    assert page.locator("#rate-repository .row").count() == 1
    assert page.locator("#rate-difficulty .row").count() == 1 and page.locator("#rate-mode .row").count() == 1
    assert page.locator("#cost-chart").count() == 1 and page.locator("#time-chart").count() == 1
    assert page.locator("#agreement-total").inner_text().startswith("1/2 verdicts agree")
    log = rows.nth(1).locator("a", has_text="test_output.txt")
    assert "test_add" in (eval_dir / log.get_attribute("href")).read_text()
    rows.nth(0).locator("a", has_text="run").click()
    page.wait_for_load_state()
    assert page.url.endswith("example__calc-1/run.html")
    assert page.locator(".step").count() == 5 and FIX in page.locator("#patch").inner_text()
    assert all(u.startswith("file://") for u in page.requests)


def solve_with_a_recorded_run(task: Task, settings, *, repo: Path) -> Result:
    """Stands in for the loop: fixes the bug and names a trajectory as its run."""
    init = repo / "calc" / "__init__.py"
    init.write_text(init.read_text().replace("a - b", "a + b"))
    patch = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return Result(run_id="r1", status="solved", exit_code=0, reason="tests pass", patch=patch, mode=Mode.HIGH,
                  trajectory=str(repo.parent / "runs" / "r1" / "trajectory.jsonl"))


def test_an_agent_prediction_names_the_run_that_made_it(tmp_path):
    inst, cfg = synthetic_setup(tmp_path)
    source = AgentSource(name="deepseek-v4-flash", solver=f"{__name__}:solve_with_a_recorded_run")
    [score] = run_tasks([inst], source, config=cfg, run=RunConfig(run_dir=tmp_path / "run", workers=1))
    assert score.status == "resolved", score.error
    saved = Prediction.model_validate_json((tmp_path / "run" / inst.instance_id / "prediction.json").read_text())
    assert saved.trajectory is not None and saved.trajectory.endswith("runs/r1/trajectory.jsonl")


# --------------------------------------------------------------------------------------------
# tome solve --view
# --------------------------------------------------------------------------------------------


def test_solve_view_serves_the_run_live_while_it_goes(scripted, repo, tmp_path):
    import threading

    from agent.testing.server import ScriptedToolCall, Turn
    from loop_helpers import FIX_NEW, FIX_OLD, PLAN, TEST_CMD

    url: dict[str, str] = {}
    known = threading.Event()
    seen: list[str] = []

    def second_turn(_body: dict) -> Turn:
        """Runs in the scripted server while the run waits for it: read the live page then."""
        assert known.wait(120)
        with urllib.request.urlopen(url["url"]) as r:  # noqa: S310  (the run's own loopback page)
            seen.append(r.read().decode())
        return Turn(tool_calls=[ScriptedToolCall(name="str_replace", arguments={
            "path": "stats.py", "old_str": FIX_OLD, "new_str": FIX_NEW})])

    server = scripted([
        Turn(content=PLAN, tool_calls=[ScriptedToolCall(name="view", arguments={"path": "stats.py"})]),
        second_turn,
        Turn(tool_calls=[ScriptedToolCall(name="submit", arguments={"summary": "median averages the middle two"})]),
    ])
    env = _env(tmp_path) | {"DEEPSEEK_API_KEY": "sk-view-test-0000", "TOME_SAFETY_SANDBOX": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "solve", "median is wrong for even counts",
                             "--repo", str(repo), "--base-url", server.base_url, "--mode", "non-think",
                             "--test-command", TEST_CMD, "--json", "--view"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    err = []
    for line in proc.stderr:
        err.append(line)
        if line.startswith("view: http://127.0.0.1:"):
            url["url"] = line.split()[1]
            known.set()
            break
    out, rest = proc.communicate(timeout=180)
    assert proc.returncode == 0, "".join(err) + rest
    assert [json.loads(line) for line in out.splitlines()][-1]["result"]["status"] == "solved"  # stdout: JSON only
    [page_then] = seen
    assert 'id="step-1"' in page_then and 'data-tool="view"' in page_then and 'id="step-2"' not in page_then


# --------------------------------------------------------------------------------------------
# The patch, per file
# --------------------------------------------------------------------------------------------


def test_a_patch_is_split_per_file_and_each_line_keeps_its_mark(tmp_path):
    from agent.webview.diff import file_html, split_files
    from loop_helpers import git

    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "m.py").write_text('X = """one\n\ntwo"""\n\n\ndef f():\n    return 1\n')
    (repo / "notes.unknownext").write_text("a <b>\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    (repo / "m.py").write_text('X = """one\n\nthree"""\n\n\ndef f():\n    return 2\n')
    (repo / "notes.unknownext").write_text("a <c>\n")
    files = split_files(git(repo, "diff"))
    assert [path for path, _ in files] == ["m.py", "notes.unknownext"]
    py = file_html(*files[0])
    assert py.count('class="line add"') == 2 and py.count('class="line del"') == 2
    assert '<span class="line add">+    <span class="k">return</span>' in py  # Python, highlighted
    assert '<span class="line del">-<span class="s2">two"""</span>' in py  # still inside the string
    plain = file_html(*files[1])
    assert '<span class="line add">+a &lt;c&gt;</span>' in plain  # no lexer: escaped as it is


def test_the_live_eval_page_serves_its_instances_pages_and_logs_only(eval_dir):
    from agent.webview.pages import EvalPage
    from agent.webview.server import LiveServer

    def get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url) as r:  # noqa: S310  (our own loopback server)
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    with LiveServer(EvalPage(eval_dir)) as server:
        status, page = get(server.url)
        assert status == 200 and 'href="./example__calc-1/run.html"' in page and "<script>" in page
        status, run_page = get(server.url + "example__calc-1/run.html")
        assert status == 200 and run_page.count('class="step"') == 5
        status, log = get(server.url + "example__calc-2/test_output.txt")
        assert status == 200 and "test_add" in log
        for path in ("example__calc-1/score.json", "example__calc-1/../report.json", "nope/test_output.txt",
                     "example__calc-1/%2e%2e/%2e%2e/etc/passwd"):
            assert get(server.url + path)[0] == 404, path


def test_an_odd_instance_id_links_as_a_relative_path_not_a_script(tmp_path):
    from agent.records import Score
    from agent.webview.evalpage import EvalView, InstanceFiles, render_eval

    odd = Score(instance_id="javascript:alert(1)//", repo="a/b", status="resolved")
    report = build_report([odd], run_id="r", model="m")
    html = render_eval(EvalView(eval_dir=tmp_path, report=report,
                                files={odd.instance_id: InstanceFiles(trajectory=tmp_path / "t.jsonl",
                                                                      logs=("test_output.txt",))}))
    assert 'href="./javascript%3Aalert%281%29%2F%2F/run.html"' in html
    assert 'href="javascript' not in html
