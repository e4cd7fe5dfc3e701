"""The loop end to end: real git repos, real tools and subprocesses, the real SDK over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loop_helpers import FIX_NEW, PLAN, TEST_CMD, call, fixing_turns, git, make_repo, run_once, settings_for

from agent.loop import Agent
from agent.records import (
    CheckRun,
    Compacted,
    Mode,
    ModeChanged,
    ModelCalled,
    RunEnded,
    Task,
    ToolFinished,
    ToolStarted,
)
from agent.run import RunSpec, finish_run, resume_run, start_run
from agent.testing.server import Fault, Turn
from agent.trajectory import INTERRUPTED_TOOL


def test_multi_step_solve_edits_checks_and_submits(scripted, model_for, repo, tmp_path):
    server = scripted(fixing_turns())
    run, result = run_once(server, repo, tmp_path, model_for)
    server.assert_done()
    assert result.status == "solved" and result.exit_code == 0
    assert result.check is not None and result.check.passed and result.check.command == TEST_CMD
    assert "(ordered[mid - 1] + ordered[mid]) / 2" in result.patch
    assert result.plan is not None and result.plan.startswith("Goal:")
    assert result.steps == 4 and result.cost > 0
    # every tool_call_id got exactly one tool message
    started = [e.call_id for e in run.trajectory.events if isinstance(e, ToolStarted)]
    finished = [e.call_id for e in run.trajectory.events if isinstance(e, ToolFinished)]
    assert sorted(started) == sorted(finished) and len(set(finished)) == len(finished) == 4
    # the trajectory on disk is the same run
    lines = Path(result.trajectory).read_text().splitlines()
    assert json.loads(lines[0])["type"] == "run_started" and json.loads(lines[-1])["type"] == "run_ended"


def test_reasoning_content_round_trips_in_thinking_mode(scripted, model_for, repo, tmp_path):
    server = scripted(fixing_turns())
    _, result = run_once(server, repo, tmp_path, model_for, mode="high")
    assert result.status == "solved"
    bodies = [r.body for r in server.chat_requests]
    assert all(b["reasoning_effort"] == "high" for b in bodies)
    last = bodies[-1]["messages"]
    echoed = [m for m in last if m["role"] == "assistant" and m.get("tool_calls")]
    assert len(echoed) == 3 and all(m.get("reasoning_content") for m in echoed)


def test_failed_check_escalates_and_replans(scripted, model_for, repo, tmp_path):
    turns = [
        Turn(content=PLAN, tool_calls=[call("submit", summary="nothing to do")]),
        Turn(content="Goal: really fix it.\nFiles: stats.py\nVerify: " + TEST_CMD, reasoning_content="replan",
             tool_calls=[call("view", path="stats.py")]),
        *fixing_turns()[1:],
    ]
    server = scripted(turns)
    run, result = run_once(server, repo, tmp_path, model_for)
    server.assert_done()
    checks = [e.check for e in run.trajectory.events if isinstance(e, CheckRun)]
    assert [c.passed for c in checks] == [False, True]
    changes = [e for e in run.trajectory.events if isinstance(e, ModeChanged)]
    assert [(c.old, c.new) for c in changes] == [(Mode.NON_THINK, Mode.HIGH)]
    assert result.modes == [Mode.NON_THINK, Mode.HIGH] and result.status == "solved"
    bodies = [r.body for r in server.chat_requests]
    assert bodies[0]["thinking"] == {"type": "disabled"} and "reasoning_effort" not in bodies[0]
    assert bodies[1]["thinking"] == {"type": "enabled"} and bodies[1]["reasoning_effort"] == "high"
    assert "revised plan" in bodies[1]["messages"][-1]["content"]
    assert result.plan.startswith("Goal: really fix it.")


@pytest.mark.parametrize(
    ("limit", "value", "requests"),
    [("max_steps", 2, 2), ("max_cost", 1e-9, 0), ("max_tokens", 10, 0), ("max_time", 0.0, 0)],
)
def test_limits_stop_before_the_call_that_would_pass_them(scripted, model_for, repo, tmp_path, limit, value, requests):
    server = scripted(fixing_turns())
    run, result = run_once(server, repo, tmp_path, model_for, **{limit: value})
    assert result.status == "limit" and result.exit_code == 3
    assert len(server.chat_requests) == requests
    assert isinstance(run.trajectory.events[-1], RunEnded)


def test_text_only_turns_stop_the_run_as_malformed(scripted, model_for, repo, tmp_path):
    server = scripted([Turn(content="I think it is fixed.")] * 3)
    _, result = run_once(server, repo, tmp_path, model_for)
    server.assert_done()
    assert result.status == "error" and result.exit_code == 4 and "in a row" in result.reason


def test_malformed_arguments_are_observations_not_crashes(scripted, model_for, repo, tmp_path):
    bad = Turn(tool_calls=[call("view", path="stats.py")], faults=[Fault(kind="malformed_args")])
    server = scripted([bad, *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for)
    first = next(e for e in run.trajectory.events if isinstance(e, ToolFinished))
    assert not first.ok and "not valid JSON" in first.content
    assert result.status == "solved"


def test_length_cut_turn_never_runs_its_tool_call(scripted, model_for, repo, tmp_path):
    cut = Turn(tool_calls=[call("create", path="half.py", file_text="x = ")], finish_reason="length")
    server = scripted([cut, *fixing_turns()])
    run, result = run_once(server, repo, tmp_path, model_for)
    assert not (repo / "half.py").exists()
    first = next(e for e in run.trajectory.events if isinstance(e, ToolFinished))
    assert not first.ok and "max_tokens" in first.content
    assert result.status == "solved"


def test_repeated_failing_call_is_a_loop(scripted, model_for, repo, tmp_path):
    same = Turn(tool_calls=[call("view", path="missing.py")])
    server = scripted([same, same, same])
    run, result = run_once(server, repo, tmp_path, model_for)
    server.assert_done()
    assert result.status == "limit" and "repeated 3 times" in result.reason
    second = [e for e in run.trajectory.events if isinstance(e, ToolFinished)][1]
    assert "one more identical failing call stops the run" in second.content


def test_interrupt_then_resume_continues_the_same_run(scripted, model_for, repo, tmp_path):
    server = scripted(fixing_turns())
    settings = settings_for(server, tmp_path)
    run = start_run(RunSpec(task=Task(statement="median is wrong", test_command=TEST_CMD), settings=settings,
                            repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0)))

    def stop_at_third_tool(event):
        if isinstance(event, ToolStarted) and event.name == "run_tests":
            raise KeyboardInterrupt

    run.trajectory.subscribe(stop_at_third_tool)
    outcome = run.agent.run()
    assert outcome.status == "interrupted" and outcome.exit_code == 130
    # a torn line from a crash mid-write is ignored on resume
    with open(run.trajectory.path, "a") as f:
        f.write('{"type": "tool", "call_id": "x", "na')
    resumed = resume_run(run.run_dir, settings, model=model_for(server, idle_timeout=10.0, timeout=60.0))
    events = resumed.trajectory.events
    interrupted = [e for e in events if isinstance(e, ToolFinished) and e.name == "run_tests"]
    assert len(interrupted) == 1 and interrupted[0].content == INTERRUPTED_TOOL
    # the model gets the two remaining turns; the submit is checked for real
    server.script.turns.insert(3, Turn(tool_calls=[call("run_tests", command=TEST_CMD)]))
    result = finish_run(resumed, resumed.agent.run())
    server.assert_done()
    assert result.status == "solved" and result.steps == 5


def test_cache_hits_cover_the_prompt_after_the_first_request(scripted, model_for, repo, tmp_path):
    # a repository big enough that one step's growth is under 1% of the prompt
    body = "\n".join(f"def helper_{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(2500))
    (repo / "helpers.py").write_text(body)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "helpers")
    server = scripted(fixing_turns() + fixing_turns()[:1])
    _, result = run_once(server, repo, tmp_path, model_for)
    usages = [r.usage for r in server.chat_requests[:4]]
    assert usages[0]["prompt_tokens"] > 20_000
    for u in usages[1:]:
        assert u["prompt_cache_hit_tokens"] / u["prompt_tokens"] >= 0.99, u
    # a second task on the same commit shares the pack prefix with the first
    git(repo, "checkout", "-q", "--", ".")
    run2, second = run_once(server, repo, tmp_path / "second", model_for, max_steps=1,
                            task=Task(statement="another task entirely", test_command=TEST_CMD))
    server.assert_done()
    assert second.status == "limit"
    first_of_second = server.chat_requests[4].usage
    assert first_of_second["prompt_cache_hit_tokens"] >= 0.9 * run2.trajectory.started.pack_tokens


def test_history_overflow_compacts_once_and_continues(scripted, model_for, repo, tmp_path):
    big = "\n".join(f"line {i}: " + "lorem ipsum dolor sit amet " * 4 for i in range(400))
    (repo / "notes.txt").write_text(big)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "notes")
    views = [Turn(tool_calls=[call("view", path="notes.txt", view_range=[a, a + 39])]) for a in range(1, 400, 40)]
    server = scripted([*views, *fixing_turns()[1:]])
    _, result = run_once(server, repo, tmp_path, model_for, context_window=24_000, pack_budget=4_000)
    events = [json.loads(line) for line in Path(result.trajectory).read_text().splitlines()]
    compactions = [e for e in events if e["type"] == "compaction"]
    assert len(compactions) >= 1 and compactions[0]["after_tokens"] < compactions[0]["before_tokens"]
    assert result.status == "solved"
    assert not [r for r in server.chat_requests if r.status == 400]  # never a context-length 400


def test_agent_state_is_derived_from_the_trajectory(scripted, model_for, repo, tmp_path):
    server = scripted(fixing_turns())
    run, result = run_once(server, repo, tmp_path, model_for)
    assert isinstance(run.agent, Agent)
    calls = [e for e in run.trajectory.events if isinstance(e, ModelCalled)]
    assert run.agent.steps == len(calls) == result.steps
    assert run.agent.cost == pytest.approx(result.cost)
    assert not [e for e in run.trajectory.events if isinstance(e, Compacted)]


def test_secrets_never_reach_the_trajectory(scripted, model_for, repo, tmp_path):
    key = "sk-proj-" + "Zq7" * 16
    (repo / "settings.py").write_text(f'OPENAI_API_KEY = "{key}"\nDEBUG = True\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "settings")
    server = scripted([
        Turn(content=PLAN, tool_calls=[call("view", path="settings.py")]),
        Turn(tool_calls=[call("bash", command="cat settings.py; grep -r OPENAI .")]),
        *fixing_turns()[1:],
    ])
    run, result = run_once(server, repo, tmp_path, model_for)
    assert result.status == "solved"
    for path in run.run_dir.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
    assert all(key not in r.raw for r in server.chat_requests)


def test_worktree_run_leaves_the_users_checkout_alone(scripted, model_for, repo, tmp_path):
    server = scripted(fixing_turns())
    settings = settings_for(server, tmp_path)
    run = start_run(RunSpec(task=Task(statement="median is wrong", test_command=TEST_CMD), settings=settings,
                            repo=repo, model=model_for(server, idle_timeout=10.0, timeout=60.0), worktree=True))
    result = finish_run(run, run.agent.run())
    assert result.status == "solved" and run.repo != repo
    assert FIX_NEW in (run.repo / "stats.py").read_text()
    assert FIX_NEW not in (repo / "stats.py").read_text() and not git(repo, "status", "--porcelain")
    assert f"tome/{run.run_id}" in git(repo, "branch", "--list", "tome/*")


def test_a_mode_that_used_its_share_of_the_cost_cap_hands_over(scripted, model_for, repo, tmp_path):
    from agent.modes import MODE_TABLE

    probe = scripted(fixing_turns())
    first, _ = run_once(probe, make_repo(tmp_path / "probe"), tmp_path / "probe", model_for)
    profile = settings_for(probe, tmp_path).profile()
    opening = profile.cost(next(e for e in first.trajectory.events if isinstance(e, ModelCalled)).response.usage)
    cap = opening / 0.3  # the first call alone spends Non-think's fifth, and more
    server = scripted(fixing_turns())
    run, result = run_once(server, repo, tmp_path, model_for, max_cost=cap)
    assert result.status == "solved"
    changes = [e for e in run.trajectory.events if isinstance(e, ModeChanged)]
    assert changes and (changes[0].old, changes[0].new) == (Mode.NON_THINK, Mode.HIGH)
    assert "share of the cost cap" in changes[0].reason
    assert server.chat_requests[1].body["thinking"] == {"type": "enabled"}
    # Every call ran in a mode still inside its share; every change came once the share was spent.
    spent = 0.0
    for e in run.trajectory.events:
        if isinstance(e, ModelCalled):
            spec = MODE_TABLE[e.mode]
            assert spec.next is None or spent < spec.cost_share * cap
            spent += profile.cost(e.response.usage)
        elif isinstance(e, ModeChanged):
            assert spent >= MODE_TABLE[e.old].cost_share * cap
