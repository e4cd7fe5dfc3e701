"""tome eval on synthetic instances: real git repos in tmp_path, real pytest subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from agent.cli import main
from agent.errors import ConfigError
from agent.evaluation.envs import env_key
from agent.evaluation.envspecs import EnvSpec, register_spec
from agent.evaluation.report import build_report, report_table, write_predictions
from agent.evaluation.run import RunConfig, run_tasks
from agent.evaluation.score import ScoreConfig, score_prediction
from agent.evaluation.sources import (
    AgentSource,
    EmptySource,
    GoldSource,
    PredictionsSource,
)
from agent.evaluation.synthetic import make_synthetic, synthetic_setup, synthetic_spec_table
from agent.evaluation.tasks import load_instances
from agent.evaluation.workspace import checkout, find_repo
from agent.records import (
    EvalInstance,
    Mode,
    Prediction,
    Result,
    Task,
    TestStatus,
    Usage,
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[EvalInstance, ScoreConfig]:
    return synthetic_setup(tmp_path)


@pytest.mark.parametrize(("source", "status", "add"), [
    (GoldSource(), "resolved", TestStatus.PASSED),
    (EmptySource(), "unresolved", TestStatus.FAILED),
])
def test_gold_resolves_and_empty_does_not(setup, tmp_path, source, status, add):
    inst, cfg = setup
    score = score_prediction(inst, source(inst, None), config=cfg, log_dir=tmp_path / "log")
    assert score.status == status, score.error
    assert score.fail_to_pass == {"tests/test_calc.py::test_add": add}
    assert score.pass_to_pass == {"tests/test_calc.py::test_neg": TestStatus.PASSED}
    assert score.empty_patch is (source.name == "empty")
    assert "test_add" in (tmp_path / "log" / "test_output.txt").read_text()
    assert not (tmp_path / "work" / inst.instance_id).exists()  # the checkout is removed again


def test_broken_patch_is_an_error_with_a_clear_message(setup, tmp_path):
    inst, cfg = setup
    broken = inst.patch.replace("-    return a - b", "-    return a * b")  # context that is not there
    score = score_prediction(inst, Prediction(instance_id=inst.instance_id, model_name_or_path="x",
                                              model_patch=broken), config=cfg, log_dir=tmp_path / "log")
    assert score.status == "error"
    assert score.error.startswith("model patch does not apply")
    assert "calc/__init__.py" in score.error


def test_predictions_file_round_trip(setup, tmp_path):
    inst, cfg = setup
    preds = tmp_path / "preds.jsonl"
    write_predictions(preds, [Prediction(instance_id=inst.instance_id, model_name_or_path="other-system",
                                         model_patch=inst.patch)])
    row = json.loads(preds.read_text())
    assert set(row) == {"instance_id", "model_name_or_path", "model_patch"}
    source = PredictionsSource.from_file(preds)
    assert source.name == "other-system"
    score = score_prediction(inst, source(inst, None), config=cfg, log_dir=tmp_path / "log")
    assert score.resolved


def _run(insts, source, cfg, run_dir, workers=2, **kw):
    return run_tasks(insts, source, config=cfg, run=RunConfig(run_dir=run_dir, workers=workers, **kw))


class CountingSource(GoldSource):
    """Gold, but leaves a file per call so a test can count calls across processes."""

    calls_dir: Path

    def __call__(self, instance, workdir):
        (self.calls_dir / f"{instance.instance_id}.{os.getpid()}").touch()
        return super().__call__(instance, workdir)


def test_rerun_skips_finished_tasks(setup, tmp_path):
    inst, cfg = setup
    calls = tmp_path / "calls"
    calls.mkdir()
    source = CountingSource(calls_dir=calls)
    first = _run([inst], source, cfg, tmp_path / "run")
    assert [s.status for s in first] == ["resolved"]
    assert len(list(calls.iterdir())) == 1
    second = _run([inst], source, cfg, tmp_path / "run")
    assert second == first
    assert len(list(calls.iterdir())) == 1  # not asked again


class KillingSource(GoldSource):
    """Kills its own process for one instance: what a segfaulting agent looks like."""

    victim: str

    def __call__(self, instance, workdir):
        if instance.instance_id == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(instance, workdir)


def test_a_crashed_worker_marks_only_its_task_as_error(setup, tmp_path):
    inst, cfg = setup
    other = make_synthetic(cfg.repos_dir, instance_id="example__calc-2")
    scores = _run([inst, other], KillingSource(victim=inst.instance_id), cfg, tmp_path / "run")
    by_id = {s.instance_id: s for s in scores}
    assert by_id[inst.instance_id].status == "error"
    assert "worker crashed (killed by SIGKILL)" in by_id[inst.instance_id].error
    assert by_id[other.instance_id].status == "resolved"
    report = build_report(scores, run_id="r", model="gold")
    assert report.error_ids == [inst.instance_id] and report.resolved_ids == [other.instance_id]
    calls = tmp_path / "calls"
    calls.mkdir()
    again = _run([inst, other], CountingSource(calls_dir=calls), cfg, tmp_path / "run", retry_errors=True)
    assert [s.status for s in again] == ["resolved", "resolved"]
    assert [p.name.split(".")[0] for p in calls.iterdir()] == [inst.instance_id]  # only the errored one


class SlowSource(GoldSource):
    def __call__(self, instance, workdir):
        import time

        time.sleep(60)
        return super().__call__(instance, workdir)


def test_task_timeout_is_an_error_of_that_task(setup, tmp_path):
    inst, cfg = setup
    [score] = _run([inst], SlowSource(), cfg, tmp_path / "run", task_timeout=1.0)
    assert score.status == "error" and "timed out after 1s" in score.error


def test_cli_gold_then_rerun(setup, tmp_path, capsys):
    inst, cfg = setup
    tasks = tmp_path / "tasks.jsonl"
    row = inst.model_dump()
    row["FAIL_TO_PASS"] = json.dumps(row.pop("fail_to_pass"))  # upstream's string encoding
    row["PASS_TO_PASS"] = row.pop("pass_to_pass")
    tasks.write_text(json.dumps(row) + "\n")
    specs = tmp_path / "specs.json"
    spec = synthetic_spec_table()["example/calc"]["*"]
    specs.write_text(json.dumps({"example/calc": {"*": spec.model_dump()}}))
    argv = ["eval", str(tasks), "--model", "gold", "--repos-dir", str(cfg.repos_dir),
            "--env-cache", str(cfg.env_cache), "--output-dir", str(tmp_path / "out"),
            "--env-specs", str(specs), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resolved_ids"] == [inst.instance_id] and report["error_ids"] == []
    run_dir = tmp_path / "out" / "gold-tasks"
    assert json.loads((run_dir / "predictions.jsonl").read_text())["model_patch"] == inst.patch
    assert json.loads((run_dir / "report.json").read_text())["scores"][0]["status"] == "resolved"
    assert main(argv) == 0  # resumed: nothing left to run, same report
    assert json.loads(capsys.readouterr().out)["resolved_ids"] == [inst.instance_id]


def test_cli_needs_a_patch_source(setup, tmp_path, capsys):
    tasks = tmp_path / "t.jsonl"
    tasks.write_text(json.dumps(setup[0].model_dump() | {"FAIL_TO_PASS": ["x"]}) + "\n")
    assert main(["eval", str(tasks)]) == 2
    assert "--model gold|empty|NAME or --predictions FILE" in capsys.readouterr().err


def test_agent_source_without_the_loop_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="no_such_loop"):
        AgentSource(name="deepseek-v4-flash", solver="no_such_loop:solve").check_available()


def scripted_solve(task: Task, settings, *, repo: Path) -> Result:
    """Stands in for the loop: checks what it was given, fixes the bug, reports cost and tokens."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout
    assert head.strip() == task.base_commit and "add(2, 3)" in task.statement
    assert settings.model == "deepseek-v4-flash"
    init = repo / "calc" / "__init__.py"
    init.write_text(init.read_text().replace("a - b", "a + b"))
    patch = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return Result(run_id="r1", status="solved", exit_code=0, reason="tests pass", patch=patch,
                  mode=Mode.HIGH, cost=0.0123,
                  usage=Usage(prompt_tokens=1000, completion_tokens=200, cache_hit_tokens=800,
                              cache_miss_tokens=200))


def test_the_agent_seam_carries_patch_cost_tokens_and_mode_into_the_report(setup, tmp_path):
    inst, cfg = setup
    source = AgentSource(name="deepseek-v4-flash", solver=f"{__name__}:scripted_solve")
    [score] = _run([inst], source, cfg, tmp_path / "run")
    assert score.status == "resolved", score.error
    assert (score.cost, score.mode, score.usage.cache_hit_tokens) == (0.0123, "high", 800)
    assert not (cfg.work_dir / f"{inst.instance_id}.solve").exists()  # the agent's checkout is gone
    report = build_report([score], run_id="r", model="deepseek-v4-flash")
    console = Console(width=200, record=True)
    console.print(report_table(report))
    text = console.export_text()
    mode_row = next(line for line in text.splitlines() if "│ mode" in line)
    assert "high" in mode_row and "0.01" in mode_row and "1,200" in mode_row and "80%" in mode_row


def test_load_instances_both_encodings_and_task(tmp_path):
    rows = [
        {"instance_id": "a__b-1", "repo": "a/b", "base_commit": "c1", "version": 1.2,
         "problem_statement": "it breaks", "patch": "p", "test_patch": "t",
         "FAIL_TO_PASS": '["t1"]', "PASS_TO_PASS": "[]", "difficulty": "1-4 hours", "extra": 1},
        {"instance_id": "a__b-2", "repo": "a/b", "base_commit": "c2", "patch": "p", "test_patch": "t",
         "FAIL_TO_PASS": ["t2"], "PASS_TO_PASS": ["t3"]},
    ]
    f = tmp_path / "x.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    one, two = load_instances(f)
    assert one.fail_to_pass == ["t1"] and one.version == "1.2" and two.pass_to_pass == ["t3"]
    task = one.to_task()
    assert task.statement == "it breaks" and task.fail_to_pass == ["t1"] and task.difficulty == "1-4 hours"
    assert [i.instance_id for i in load_instances(f, instance_ids=["a__b-2"])] == ["a__b-2"]
    with pytest.raises(ConfigError, match="a__b-9"):
        load_instances(f, instance_ids=["a__b-9"])
    rows[1]["test_patch"] = ""
    f.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ConfigError, match="cannot be scored"):
        load_instances(f)


def test_checkout_leaves_out_blobs_the_cache_lacks(setup, tmp_path):
    inst, cfg = setup
    git_dir = find_repo(cfg.repos_dir, inst.repo)
    sha = subprocess.run(["git", "rev-parse", f"{inst.base_commit}:calc/__init__.py"], cwd=git_dir.parent,
                         capture_output=True, text=True, check=True).stdout.strip()
    (git_dir / "objects" / sha[:2] / sha[2:]).unlink()  # what a snapshot without big files looks like
    co = checkout(git_dir, inst.base_commit, tmp_path / "wt")
    assert co.missing == ["calc/__init__.py"]
    assert (co.path / "tests" / "test_calc.py").is_file() and not (co.path / "calc" / "__init__.py").exists()


def test_checkout_leaves_out_missing_blobs_in_a_snapshot_whose_config_names_no_format_version(setup, tmp_path):
    # A fetched snapshot (like ../.mirror/astropy+astropy/repo) is a bare repository whose config has
    # no core.repositoryformatversion: git then ignores a worktree's config.worktree, so a sparse
    # checkout set there did nothing and `git checkout` died on the missing blob (astropy-14182).
    inst, cfg = setup
    src = find_repo(cfg.repos_dir, inst.repo)
    snapshot = tmp_path / "snapshot"
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(snapshot)], check=True)
    (snapshot / "config").write_text("")
    sha = subprocess.run(["git", "--git-dir", str(snapshot), "rev-parse", f"{inst.base_commit}:calc/__init__.py"],
                         capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", "--git-dir", str(snapshot), "repack", "-adq"], check=True)
    pack = next((snapshot / "objects" / "pack").glob("*.pack"))
    kept = subprocess.run(["git", "--git-dir", str(snapshot), "show-index"], input=pack.with_suffix(".idx").read_bytes(),
                          capture_output=True, check=True).stdout.decode().split()[1::3]
    subprocess.run(["git", "--git-dir", str(snapshot), "pack-objects", "-q", str(snapshot / "objects" / "pack" / "p")],
                   input="".join(f"{o}\n" for o in kept if o != sha).encode(), check=True, capture_output=True)
    for f in [pack, pack.with_suffix(".idx"), *pack.parent.glob(pack.stem + ".rev")]:
        f.unlink()
    assert subprocess.run(["git", "--git-dir", str(snapshot), "cat-file", "-e", sha]).returncode != 0
    co = checkout(snapshot, inst.base_commit, tmp_path / "wt")
    assert co.missing == ["calc/__init__.py"]
    assert (co.path / "tests" / "test_calc.py").is_file() and not (co.path / "calc" / "__init__.py").exists()
    # what scoring does next in the checkout: reset it, diff it; the missing file is passed by
    (co.path / "tests" / "test_calc.py").write_text("changed\n")
    for cmd in (["checkout", "--", "."], ["status", "--porcelain"], ["diff", "--binary"]):
        out = subprocess.run(["git", *cmd], cwd=co.path, capture_output=True, text=True, check=True).stdout
        assert "calc/__init__.py" not in out
    assert (co.path / "tests" / "test_calc.py").read_text() != "changed\n"


@pytest.mark.slow
def test_environment_is_built_once_per_key_and_rebuilt_when_its_spec_changes(setup, tmp_path):
    inst, cfg = setup
    spec = EnvSpec(runner="pytest", install=["python -c \"open('installed.txt', 'w').write('1')\""],
                   system_site_packages=True, test_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    cfg = cfg.model_copy(update={"specs": register_spec(inst.repo, spec)})
    first = score_prediction(inst, GoldSource()(inst, None), config=cfg, log_dir=tmp_path / "a")
    assert first.resolved, first.error
    root = cfg.env_cache / env_key(inst.repo, inst.version)
    assert (root / "venv" / "bin" / "python").exists() and (root / "src" / "installed.txt").is_file()
    assert f"{root}/venv/bin/python -m pytest" in (tmp_path / "a" / "test_output.txt").read_text()
    marker = (root / "ready.json").read_text()
    second = score_prediction(inst, EmptySource()(inst, None), config=cfg, log_dir=tmp_path / "b")
    assert second.status == "unresolved" and (root / "ready.json").read_text() == marker  # reused
    changed = spec.model_copy(update={"install": ["python -c \"print('other')\""]})
    cfg = cfg.model_copy(update={"specs": register_spec(inst.repo, changed)})
    assert score_prediction(inst, GoldSource()(inst, None), config=cfg, log_dir=tmp_path / "c").resolved
    assert (root / "ready.json").read_text() != marker  # rebuilt for the new spec


def test_rescore_judges_finished_tasks_again_from_their_kept_logs(setup, tmp_path):
    inst, cfg = setup
    calls = tmp_path / "calls"
    calls.mkdir()
    [first] = _run([inst], CountingSource(calls_dir=calls), cfg, tmp_path / "run")
    stale = first.model_copy(update={"status": "unresolved", "fail_to_pass": {}})  # an older parser's verdict
    (tmp_path / "run" / inst.instance_id / "score.json").write_text(stale.model_dump_json())
    assert _run([inst], CountingSource(calls_dir=calls), cfg, tmp_path / "run")[0].status == "unresolved"
    [again] = _run([inst], CountingSource(calls_dir=calls), cfg, tmp_path / "run", rescore=True)
    assert again.status == "resolved" and again.fail_to_pass == first.fail_to_pass
    assert len(list(calls.iterdir())) == 1  # judged from the log, nothing ran again


def test_two_runs_in_one_run_dir_are_refused(setup, tmp_path):
    import fcntl

    inst, cfg = setup
    (tmp_path / "run").mkdir()
    with (tmp_path / "run" / "run.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a live run holds
        with pytest.raises(ConfigError, match="another tome eval is running"):
            _run([inst], GoldSource(), cfg, tmp_path / "run")
