"""The triage turn (issue 19): a short Non-think call over the run's prefix rates the task and
picks the starting mode; over the scripted server with the real SDK, real git and real tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agent.modes import FALLBACK_RULE
from agent.records import Mode, ModelCalled, Task, Triaged
from agent.run import RunSpec, finish_run, resume_run, start_run
from agent.testing.server import Fault, Turn
from agent.triage import TRIAGE_PROMPT
from loop_helpers import TEST_CMD, fixing_turns, git, run_once, settings_for
from test_cli_solve import env_for, lines_of, tome

SHORT_TASK = "median is wrong for even counts"  # under the fallback's cut: Non-think


def verdict(rating: str, files: tuple[str, ...] = ("stats.py",)) -> Turn:
    """A triage answer as a model would give it."""
    return Turn(content=json.dumps({"rating": rating, "files": list(files), "check": TEST_CMD}))


def auto(server, tmp_path, **over):
    return settings_for(server, tmp_path, mode="auto", **over)


def triaged(run) -> list[Triaged]:
    return list(run.trajectory.of_type(Triaged))


def test_the_triage_rating_sets_the_mode_and_the_work_turn_extends_the_triage_request(
        scripted, model_for, repo, tmp_path):
    server = scripted([verdict("15 min - 1 hour"), *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for, mode="auto")
    server.assert_done()
    assert result.status == "solved" and result.modes == [Mode.HIGH] and result.steps == 4
    assert result.triage is not None and result.triage.files == ["stats.py"]
    [event] = triaged(run)
    assert event.mode is Mode.NON_THINK and event.chosen is Mode.HIGH
    assert event.reason == "triage rated it 15 min - 1 hour"
    first, work = server.chat_requests[0].body, server.chat_requests[1].body
    assert first["thinking"] == {"type": "disabled"} and first["max_tokens"] <= 1_024
    assert first["messages"][-1] == {"role": "user", "content": TRIAGE_PROMPT}
    assert work["thinking"] == {"type": "enabled"} and work["reasoning_effort"] == "high"
    # Byte for byte: the work request is the triage request, its answer, then the handover.
    n = len(first["messages"])
    assert work["messages"][:n] == first["messages"] and work["tools"] == first["tools"]
    assert work["messages"][n] == {"role": "assistant", "content": server.script.turns[0].content}
    assert "Think High" in work["messages"][n + 1]["content"]
    assert result.cost == pytest.approx(sum(e.response.cost for e in run.trajectory.events
                                            if isinstance(e, (ModelCalled, Triaged))))


def test_a_malformed_answer_is_asked_again_once_then_the_fallback_decides(scripted, model_for, repo, tmp_path):
    server = scripted([Turn(content="It looks easy to me."), Turn(content='{"rating": "soon", "files": []}'),
                       *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for, mode="auto")
    server.assert_done()
    first, second = triaged(run)
    assert first.problem == "no JSON object in the answer" and first.chosen is None
    assert second.request.startswith("That answer could not be used (no JSON object in the answer)")
    assert second.problem is not None and second.problem.startswith("rating:")
    fallback = run.trajectory.started.mode
    assert fallback is Mode.NON_THINK and second.chosen is fallback and "fallback" in second.reason
    assert f"< {FALLBACK_RULE.high_from:,}" in second.reason
    assert result.status == "solved" and result.modes == [Mode.NON_THINK] and result.triage is None
    # the retry continues the same conversation: it extends the first request and its answer
    retry = server.chat_requests[1]
    assert retry.body["messages"][:len(server.chat_requests[0].body["messages"])] == \
        server.chat_requests[0].body["messages"]
    assert retry.usage["prompt_cache_hit_tokens"] / retry.usage["prompt_tokens"] > 0.95


def test_a_retry_that_answers_well_sets_the_mode(scripted, model_for, repo, tmp_path):
    server = scripted([Turn(content='```json\n{"rating": "<15 min", "files": ["stats.py"]}\n```'),
                       verdict("1-4 hours"), *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for, mode="auto")
    server.assert_done()
    assert [e.chosen for e in triaged(run)] == [None, Mode.MAX]
    assert result.modes == [Mode.MAX] and result.triage.rating == "1-4 hours"
    assert server.chat_requests[2].body["reasoning_effort"] == "max"


@pytest.mark.parametrize("over", [{"mode": "high"}, {"mode": "auto", "triage": False}], ids=["explicit", "off"])
def test_an_explicit_mode_or_triage_off_sends_no_triage_request(scripted, model_for, repo, tmp_path, over):
    server = scripted(fixing_turns())
    run, result = run_once(server, repo, tmp_path, model_for, **over)
    server.assert_done()
    assert not triaged(run) and not run.trajectory.started.triage and result.triage is None
    assert len(SHORT_TASK) < FALLBACK_RULE.high_from
    assert result.modes == [Mode.HIGH if over["mode"] == "high" else Mode.NON_THINK]
    assert all(TRIAGE_PROMPT not in r.raw for r in server.chat_requests)


def test_the_triage_cost_counts_inside_max_cost(scripted, model_for, repo, tmp_path):
    probe = scripted([verdict("<15 min fix"), fixing_turns()[0]])
    probe_run, _ = run_once(probe, repo, tmp_path / "probe", model_for, mode="auto", max_steps=1)
    triage_cost = triaged(probe_run)[0].response.cost
    assert triage_cost > 0
    # A cap the triage fits under but the first work call would pass: the run stops after triage.
    git(repo, "checkout", "-q", "--", ".")
    server = scripted([verdict("<15 min fix")])
    run, result = run_once(server, repo, tmp_path / "capped", model_for, mode="auto",
                           max_cost=triage_cost * 1.2)
    server.assert_done()
    assert result.status == "limit" and "cost cap" in result.reason
    assert f"${triage_cost:.4f} spent" in result.reason
    assert result.cost == pytest.approx(triage_cost) and result.cost <= triage_cost * 1.2 and result.steps == 0
    # A cap under the triage's own estimate: nothing is sent at all.
    tiny = scripted([])
    _, none = run_once(tiny, repo, tmp_path / "tiny", model_for, mode="auto", max_cost=triage_cost / 10)
    assert none.status == "limit" and none.cost == 0 and not tiny.chat_requests


def test_the_request_after_triage_hits_the_cache_over_the_whole_pack(scripted, model_for, repo, tmp_path):
    body = "\n".join(f"def helper_{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(2500))
    (repo / "helpers.py").write_text(body)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "helpers")
    server = scripted([verdict("<15 min fix"), *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for, mode="auto")
    assert result.status == "solved"
    triage_request, first_work = server.chat_requests[0].usage, server.chat_requests[1].usage
    pack = run.trajectory.started.pack_tokens
    assert pack > 20_000 and triage_request["prompt_cache_hit_tokens"] == 0
    # DeepSeek stores a unit at the end of each request's output (api-docs.deepseek.com/guides/
    # kv_cache): the work request extends the triage exchange, so its hit is all of it.
    assert first_work["prompt_cache_hit_tokens"] > triage_request["prompt_tokens"] > pack
    assert first_work["prompt_cache_hit_tokens"] / first_work["prompt_tokens"] >= 0.99


def test_an_interrupt_between_triage_attempts_resumes_with_the_retry(scripted, model_for, repo, tmp_path):
    server = scripted([Turn(content="no idea"), verdict("<15 min fix"), *fixing_turns()])
    settings = auto(server, tmp_path)
    model = model_for(server, idle_timeout=10.0, timeout=60.0)
    run = start_run(RunSpec(task=Task(statement=SHORT_TASK, test_command=TEST_CMD), settings=settings,
                            repo=repo, model=model))

    def stop_after_first_attempt(event):
        if isinstance(event, Triaged):
            raise KeyboardInterrupt

    run.trajectory.subscribe(stop_after_first_attempt)
    assert run.agent.run().status == "interrupted"
    resumed = resume_run(run.run_dir, settings, model=model)
    result = finish_run(resumed, resumed.agent.run())
    server.assert_done()
    first, second = triaged(resumed)
    assert second.request.startswith("That answer could not be used") and second.chosen is Mode.NON_THINK
    assert result.status == "solved" and result.triage.rating == "<15 min fix"


@pytest.mark.slow
def test_a_run_killed_during_triage_resumes_and_triages_once(scripted, repo, tmp_path):
    # The first attempt stalls (no byte at all) and the process is killed under it, as a crash.
    stalled = verdict("15 min - 1 hour").model_copy(update={"faults": [Fault(kind="stall", seconds=0)]})
    server = scripted([stalled, *fixing_turns()])
    env = env_for(tmp_path)
    args = ["solve", SHORT_TASK, "--repo", str(repo), "--base-url", server.base_url, "--json",
            "--test-command", TEST_CMD]
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", *args], env=env, cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not server.chat_requests:
        time.sleep(0.1)
    assert server.chat_requests, "the run never sent its triage request"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    [trajectory] = (tmp_path / "state" / "runs").glob("*/trajectory.jsonl")
    written = [json.loads(line)["type"] for line in trajectory.read_text().splitlines()]
    assert written == ["run_started"]  # killed before any answer: nothing else on record
    resumed = tome(["resume", trajectory.parent.name, "--json"], env=env, cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    out = lines_of(resumed.stdout)
    triage_events = [e["event"] for e in out[:-1] if e["event"]["type"] == "triage"]
    assert len(triage_events) == 1 and triage_events[0]["chosen"] == "high"
    assert out[-1]["result"]["status"] == "solved" and out[-1]["result"]["modes"] == ["high"]
    assert out[-1]["result"]["triage"]["rating"] == "15 min - 1 hour"
    assert [r.body["messages"][-1]["content"] for r in server.chat_requests[:2]] == [TRIAGE_PROMPT] * 2
    server.assert_done()


def test_the_live_view_and_the_result_table_show_the_rating_files_and_cost(scripted, model_for, repo, tmp_path):
    from io import StringIO

    from rich.console import Console

    from agent.run import RunHooks
    from agent.view import LiveView, result_table

    server = scripted([verdict("15 min - 1 hour", ("stats.py", "tests/test_stats.py")), *fixing_turns()])
    out = StringIO()
    view = LiveView(Console(file=out, width=200))
    run = start_run(RunSpec(task=Task(statement=SHORT_TASK, test_command=TEST_CMD), settings=auto(server, tmp_path),
                            repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0),
                            hooks=RunHooks(on_event=view.on_event, on_delta=view.on_delta)))
    result = finish_run(run, run.agent.run())
    text = out.getvalue()
    assert "a triage turn decides (fallback Non-think" in text
    assert "triage 15 min - 1 hour; files: stats.py, tests/test_stats.py" in text
    assert "mode Think High: triage rated it 15 min - 1 hour" in text
    assert view.cost == pytest.approx(result.cost) and view.mode == "Think High"
    table = StringIO()
    Console(file=table, width=200).print(result_table(result))
    assert "15 min - 1 hour; stats.py, tests/test_stats.py" in table.getvalue()


def test_a_tool_call_instead_of_an_answer_is_malformed_and_the_retry_is_a_valid_request(
        scripted, model_for, repo, tmp_path):
    from loop_helpers import call

    server = scripted([Turn(content="Let me look first.", tool_calls=[call("view", path="stats.py")]),
                       verdict("<15 min fix"), *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for, mode="auto")
    server.assert_done()
    assert triaged(run)[0].problem == "it called a tool instead of answering"
    # The call is not run and not sent back: the server 400s an unanswered tool call.
    assert all(r.status == 200 for r in server.chat_requests)
    assert "tool_calls" not in server.chat_requests[1].body["messages"][-2]
    assert result.status == "solved" and result.modes == [Mode.NON_THINK]
