"""Wire facts seen from the loop: the pre-call cost estimate after a mode change, the live view's
"queued" state. DeepSeek's docs: api-docs.deepseek.com/guides/kv_cache, quick_start/rate_limit."""

from __future__ import annotations

import dataclasses

import pytest
from loop_helpers import call, make_repo, settings_for

from agent.loop import LimitReached
from agent.profiles import get_profile
from agent.records import Delta, Mode, ModelCalled, Task
from agent.solve import start_run
from agent.testing.server import Turn


def _one_step_then_cap(scripted, model_for, tmp_path, new_mode: Mode):
    """Run one Think High step, then cap the money at 90% of a full miss of that prompt."""
    repo = make_repo(tmp_path)
    server = scripted([Turn(reasoning_content="look", tool_calls=[call("view", path="stats.py")]),
                       Turn(reasoning_content="again", tool_calls=[call("view", path="stats.py")])])
    settings = settings_for(server, tmp_path, mode="high")
    run = start_run(Task(statement="median is wrong"), settings, repo=repo, model=model_for(server))
    agent = run.agent
    agent.step()
    first = next(iter(agent.traj.of_type(ModelCalled))).response
    full_miss = first.usage.prompt_tokens * agent.profile.prices_at().cache_miss / 1e6
    agent.limits = dataclasses.replace(agent.limits, max_cost=agent.cost + 0.9 * full_miss)
    agent.set_mode(new_mode, "test")
    return server, agent


def test_the_estimate_counts_the_cached_prefix_when_the_mode_keeps_it(scripted, model_for, tmp_path):
    server, agent = _one_step_then_cap(scripted, model_for, tmp_path, Mode.HIGH)
    agent.step()  # the cached prefix makes the second call cheap enough
    assert len(server.chat_requests) == 2


def test_the_estimate_after_escalating_to_max_assumes_a_full_miss(scripted, model_for, tmp_path):
    # Think Max's prompt starts with its effort marker, so nothing of the High prefix is cached.
    server, agent = _one_step_then_cap(scripted, model_for, tmp_path, Mode.MAX)
    with pytest.raises(LimitReached, match="cost cap"):
        agent.step()
    assert len(server.chat_requests) == 1


def test_only_a_switch_into_or_out_of_max_changes_the_prefix():
    pro = get_profile("deepseek-v4-pro")
    assert pro.same_prefix(Mode.NON_THINK, Mode.HIGH) and pro.same_prefix(Mode.LOW, Mode.HIGH)
    assert not pro.same_prefix(Mode.HIGH, Mode.MAX) and not pro.same_prefix(Mode.MAX, Mode.NON_THINK)
    assert pro.same_prefix(Mode.MAX, Mode.MAX)


def test_the_live_view_shows_queued_while_only_keepalives_arrive():
    from io import StringIO

    from rich.console import Console

    from agent.view import LiveView

    view = LiveView(Console(file=StringIO(), width=200))
    view.on_delta(Delta(kind="queued", text=": keep-alive"))
    assert "queued" in view._activity()
    view.on_delta(Delta(kind="content", text="hello"))
    assert view._activity() == "streaming 5 chars"
