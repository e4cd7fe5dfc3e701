"""The live self-check (`tome doctor --live`): against the scripted server always, against the real
DeepSeek API when DEEPSEEK_API_KEY is set (pytest -m live), so a CI with the secret proves the
wire facts tome relies on (api-docs.deepseek.com: thinking_mode, tool_calls, kv_cache)."""

from __future__ import annotations

import json
import os

import pytest
from test_doctor import doctor

from agent.doctor import LIVE_MAX_TOKENS, live_cost_bound, live_exchange
from agent.model import OpenAIModel
from agent.profiles import get_profile
from agent.records import Mode
from agent.testing.server import ScriptedToolCall, Turn

PRO = get_profile("deepseek-v4-pro")


def _exchange_turns(modes) -> list[Turn]:
    turns = []
    for mode in modes:
        turns += [Turn(reasoning_content=f"{mode.value}: call echo", tool_calls=[ScriptedToolCall(name="echo", arguments={"text": "tome"})]),
                  Turn(reasoning_content="it echoed", content="done")]
    return turns


def test_the_live_exchange_against_the_scripted_server(scripted, model_for):
    modes = list(PRO.mode_fields)
    server = scripted(_exchange_turns(modes))
    model = model_for(server)
    rows = [live_exchange(model, mode) for mode in modes]
    server.assert_done()
    assert [r.mode for r in rows] == [m.value for m in modes] and all(r.accepted for r in rows), rows
    assert [r.reasoning_returned for r in rows] == [m is not Mode.NON_THINK for m in modes]
    assert all(r.cache_fields and r.cost > 0 for r in rows)
    # Each second turn sent the first one's reasoning back (DeepSeek's rule for tool-call turns).
    seconds = server.chat_requests[1::2]
    for mode, req in zip(modes, seconds):
        echoed = [m for m in req.body["messages"] if m["role"] == "assistant"][0]
        assert echoed["reasoning_content"] and req.body["max_tokens"] == LIVE_MAX_TOKENS, mode


def test_a_mode_that_calls_no_tool_fails_its_row(scripted, model_for):
    server = scripted([Turn(content="I will not call tools.")])
    row = live_exchange(model_for(server), Mode.HIGH)
    assert not row.accepted and "no tool call" in row.detail


def test_the_cost_bound_is_a_few_cents():
    assert 0 < live_cost_bound(PRO) < 0.10


def test_doctor_live_asks_first_and_runs_with_yes(tmp_path, scripted):
    key = "sk-doctor-live-7"
    modes = list(PRO.mode_fields)
    server = scripted(_exchange_turns(modes), api_key=key)
    env = {"DEEPSEEK_API_KEY": key, "TOME_BASE_URL": server.base_url}
    refused = doctor(tmp_path, "--live", **env)  # stdin is not a terminal: no prompt, no spending
    assert refused.returncode == 2 and "pass --yes" in refused.stderr and "at most $" in refused.stderr
    assert server.chat_requests == []
    result = doctor(tmp_path, "--live", "--yes", "--json", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert all(checks[f"live {m.value}"]["ok"] for m in modes), checks
    assert key not in result.stdout + result.stderr
    server.assert_done()


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("DEEPSEEK_API_KEY"), reason="DEEPSEEK_API_KEY is not set: no live API check")
@pytest.mark.timeout(900)
def test_live_exchange_per_mode():
    profile = get_profile(os.environ.get("TOME_LIVE_MODEL", "deepseek-v4-pro"))
    model = OpenAIModel(profile, api_key=os.environ["DEEPSEEK_API_KEY"], time_limit=600)
    rows = [live_exchange(model, mode) for mode in profile.mode_fields]
    assert all(r.accepted for r in rows), [r.model_dump() for r in rows]
    assert all(r.cache_fields for r in rows)
    assert sum(r.cost for r in rows) <= live_cost_bound(profile)


def test_prices_are_shown_with_the_holiday_caveat():
    from agent.doctor import prices_detail

    text = prices_detail(PRO)
    assert "$0.66 miss" in text and "01-04, 06-10 UTC" in text and "Chinese statutory holidays" in text
    assert "holidays" not in prices_detail(get_profile("gpt-4.1"))
