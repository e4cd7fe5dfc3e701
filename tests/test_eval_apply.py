"""The official patch-apply chain, the applied-diff log, known failures, and partial clones.

Real git repositories in tmp_path and real `git apply` / `patch` subprocesses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli import main
from agent.tokens import get_tokenizer
from agent.evaluation.score import ScoreConfig, apply_patch, prepare_checkout, score_prediction
from agent.evaluation.synthetic import make_synthetic, synthetic_setup, synthetic_spec_table
from agent.records import EvalInstance, Prediction, TestStatus


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def _lines(repo: Path, edit: dict[int, str] | None = None) -> None:
    lines = [f"line {i}" for i in range(1, 13)]
    for i, text in (edit or {}).items():
        lines[i - 1] = text
    (repo / "f.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def drifted(tmp_path: Path) -> tuple[Path, str]:
    """A repo at v2 and a patch written against v1, whose context v2 changed (line 3)."""
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q")
    _lines(repo)
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-qm", "v1")
    _lines(repo, {5: "line FIVE"})
    patch = _git(repo, "diff")
    _lines(repo, {3: "line THREE"})
    _git(repo, "commit", "-qam", "v2")
    return repo, patch


def test_a_patch_against_an_older_blob_is_placed_by_git_apply_3way(drifted, tmp_path):
    repo, patch = drifted
    used = apply_patch(repo, patch, name="model", log=tmp_path / "setup.log")
    assert used == "git apply --verbose --3way"
    assert "line THREE" in (repo / "f.txt").read_text() and "line FIVE" in (repo / "f.txt").read_text()


def test_a_patch_only_fuzz_can_place_goes_to_patch_after_a_clean_reset(drifted, tmp_path):
    repo, patch = drifted
    no_blob = "\n".join(line for line in patch.splitlines() if not line.startswith("index ")) + "\n"
    used = apply_patch(repo, no_blob, name="model", log=tmp_path / "setup.log")
    assert used == "patch --batch --forward --fuzz=5 -p1 -i"
    assert "line FIVE" in (repo / "f.txt").read_text()
    assert not (repo / "f.txt.rej").exists()  # --reject's leftovers were cleaned before patch ran
    log = (tmp_path / "setup.log").read_text()
    assert log.index("--reject") < log.rindex("git clean -fd") < log.index("patch --batch")


def test_an_already_applied_patch_counts_as_applied(drifted, tmp_path):
    repo, patch = drifted
    _lines(repo, {3: "line THREE", 5: "line FIVE"})
    _git(repo, "commit", "-qam", "v3")
    fresh = "".join(line for line in _git(repo, "diff", "HEAD~1", "HEAD").splitlines(keepends=True)
                    if not line.startswith("index "))  # no blob ids: --3way cannot merge it in
    assert apply_patch(repo, fresh, name="model", log=tmp_path / "setup.log") == "already applied"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[EvalInstance, ScoreConfig]:
    return synthetic_setup(tmp_path)


def test_the_patch_diff_log_includes_new_files(setup, tmp_path):
    inst, cfg = setup
    new_file = ("diff --git a/calc/extra.py b/calc/extra.py\nnew file mode 100644\n--- /dev/null\n"
                "+++ b/calc/extra.py\n@@ -0,0 +1 @@\n+EXTRA = 1\n")
    pred = Prediction(instance_id=inst.instance_id, model_name_or_path="m", model_patch=inst.patch + new_file)
    score = score_prediction(inst, pred, config=cfg, log_dir=tmp_path / "log")
    assert score.status == "resolved" and score.applied_with == "git apply --verbose"
    diff = (tmp_path / "log" / "patch.diff").read_text()
    assert "+EXTRA = 1" in diff and "+    return a + b" in diff and "def test_add" in diff


def _with_broken_p2p(inst: EvalInstance) -> EvalInstance:
    return inst.model_copy(update={"pass_to_pass": [*inst.pass_to_pass, "tests/test_calc.py::test_env_only"]})


def test_a_known_failure_is_excluded_and_reported(setup, tmp_path, capsys):
    inst, _ = setup
    tasks = tmp_path / "tasks.jsonl"
    row = _with_broken_p2p(inst).model_dump()
    row["FAIL_TO_PASS"], row["PASS_TO_PASS"] = row.pop("fail_to_pass"), row.pop("pass_to_pass")
    tasks.write_text(json.dumps(row) + "\n")
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps({inst.repo: {"*": synthetic_spec_table()[inst.repo]["*"].model_dump()}}))
    known = tmp_path / "known.json"
    known.write_text(json.dumps({inst.instance_id: {"reason": "fails on this Python only",
                                                     "tests": ["tests/test_calc.py::test_env_only"]}}))
    common = [str(tasks), "--model", "gold", "--repos-dir", str(tmp_path / "repos"), "--env-cache",
              str(tmp_path / "envs"), "--output-dir", str(tmp_path / "out"), "--env-specs", str(specs)]
    assert main(["eval", *common, "--run-id", "plain"]) == 0
    plain = json.loads((tmp_path / "out" / "plain" / "report.json").read_text())
    assert plain["resolved_instances"] == 0 and plain["excluded_tests"] == {}

    assert main(["eval", *common, "--run-id", "known", "--known-failures", str(known)]) == 0
    report = json.loads((tmp_path / "out" / "known" / "report.json").read_text())
    assert report["resolved_ids"] == [inst.instance_id]
    assert report["excluded_tests"] == {inst.instance_id: {"tests/test_calc.py::test_env_only":
                                                           "fails on this Python only"}}
    assert "tests/test_calc.py::test_env_only" not in report["scores"][0]["pass_to_pass"]
    assert "excluded example__calc-1: 1 known failure(s)" in capsys.readouterr().out


def _partial_clone(src: Path, dest: Path) -> None:
    _git(src, "config", "uploadpack.allowFilter", "true")
    subprocess.run(["git", "clone", "-q", "--bare", "--filter=blob:none", f"file://{src}", str(dest)],
                   check=True, capture_output=True)


def test_a_partial_clone_packs_and_scores(tmp_path):
    from agent.pack import build_pack

    inst = make_synthetic(tmp_path / "src")
    _partial_clone(tmp_path / "src" / "example__calc", tmp_path / "repos" / "example__calc")
    cfg = ScoreConfig(repos_dir=tmp_path / "repos", env_cache=tmp_path / "envs", work_dir=tmp_path / "work",
                      specs=synthetic_spec_table())
    for source, status in [(inst.patch, "resolved"), ("", "unresolved")]:
        pred = Prediction(instance_id=inst.instance_id, model_name_or_path="m", model_patch=source)
        score = score_prediction(inst, pred, config=cfg, log_dir=tmp_path / f"log{len(source)}")
        assert score.status == status, score.error
    assert score.fail_to_pass == {"tests/test_calc.py::test_add": TestStatus.FAILED}
    co = prepare_checkout(inst, cfg, tmp_path / "agent-wt")
    pack = build_pack(co.path, task=inst.problem_statement, tokenizer=get_tokenizer("cl100k_base"),
                      budget=100_000, cache_dir=tmp_path / "cache", environ={})
    assert "calc/__init__.py" in pack.document and "return a - b" in pack.document


def test_a_blob_nothing_can_supply_is_a_clear_error_naming_the_file(tmp_path):
    inst = make_synthetic(tmp_path / "src")
    _partial_clone(tmp_path / "src" / "example__calc", tmp_path / "repos" / "example__calc")
    shutil.rmtree(tmp_path / "src")  # the promisor remote is gone
    cfg = ScoreConfig(repos_dir=tmp_path / "repos", env_cache=tmp_path / "envs", work_dir=tmp_path / "work",
                      specs=synthetic_spec_table())
    gold = Prediction(instance_id=inst.instance_id, model_name_or_path="gold", model_patch=inst.patch)
    score = score_prediction(inst, gold, config=cfg, log_dir=tmp_path / "log")
    assert score.status == "error"
    assert "calc/__init__.py" in score.error and "lacks" in score.error
    empty = Prediction(instance_id=inst.instance_id, model_name_or_path="empty")
    score = score_prediction(inst, empty, config=cfg, log_dir=tmp_path / "log2")
    assert score.status == "error" and "the repository cache lacks" in score.error


def test_a_model_patch_our_diff_parser_rejects_is_still_applied_by_the_chain(setup, tmp_path):
    inst, cfg = setup
    odd = "\n" + inst.patch.replace("@@ -1,", "@@ -9,") + "diff --git a/x.png b/x.png\nBinary files differ\n"
    pred = Prediction(instance_id=inst.instance_id, model_name_or_path="m", model_patch=odd)
    score = score_prediction(inst, pred, config=cfg, log_dir=tmp_path / "log")
    assert score.status == "resolved", score.error
    assert score.applied_with == "git apply --verbose"
