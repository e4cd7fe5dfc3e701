"""task → pack → mode → loop → patch → score, in one test: the eval harness runs the real agent
loop (real SDK over HTTP to the scripted server) on a synthetic SWE-style instance and scores
its patch with the instance's hidden tests."""

from __future__ import annotations

from pathlib import Path

from agent.evaluation.score import ScoreConfig, score_prediction
from agent.evaluation.sources import AgentSource
from agent.evaluation.synthetic import make_synthetic, synthetic_spec_table
from agent.evaluation.workspace import checkout, find_repo
from agent.testing.server import ScriptedToolCall, Turn


def call(name: str, **arguments) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, arguments=arguments)


def test_agent_patch_is_scored_like_any_other(scripted, tmp_path: Path):
    inst = make_synthetic(tmp_path / "repos")
    cfg = ScoreConfig(repos_dir=tmp_path / "repos", env_cache=tmp_path / "envs",
                      work_dir=tmp_path / "work", specs=synthetic_spec_table())
    test_cmd = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q tests"  # plugins cost a second a run
    server = scripted([
        Turn(content="Goal: add() adds.\nFiles: calc/__init__.py\nVerify: " + test_cmd,
             tool_calls=[call("view", path="calc/__init__.py")]),
        Turn(tool_calls=[call("str_replace", path="calc/__init__.py", old_str="return a - b", new_str="return a + b")]),
        Turn(tool_calls=[call("run_tests", command=test_cmd)]),
        Turn(tool_calls=[call("submit", summary="add() returns the sum")]),
    ])
    source = AgentSource(name="deepseek-v4-pro", settings_cli={
        "base_url": server.base_url, "api_key": "sk-eval-agent", "mode": "non-think",
        "state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache"),
        "safety.sandbox": "off", "safety.approval": "deny",
    })
    workdir = tmp_path / "agent-work"
    checkout(find_repo(cfg.repos_dir, inst.repo), inst.base_commit, workdir)
    prediction = source(inst, workdir)
    server.assert_done()
    assert "+    return a + b" in prediction.model_patch
    assert prediction.cost > 0 and prediction.usage.prompt_tokens > 0 and prediction.mode == "non-think"
    score = score_prediction(inst, prediction, config=cfg, log_dir=tmp_path / "log")
    assert score.status == "resolved", score.error
