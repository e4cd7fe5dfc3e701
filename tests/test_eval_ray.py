"""The Ray executor on a local Ray instance (skipped when the `ray` extra is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'tome-agent[ray]'")

from agent.evaluation.run import RunConfig, run_tasks  # noqa: E402
from agent.evaluation.score import ScoreConfig  # noqa: E402
from agent.evaluation.sources import GoldSource  # noqa: E402
from agent.evaluation.synthetic import make_synthetic, synthetic_spec_table  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_executor_scores_on_a_local_instance(tmp_path: Path):
    gold = make_synthetic(tmp_path / "repos")
    other = make_synthetic(tmp_path / "repos", instance_id="example__calc-2")
    broken = other.model_copy(update={"patch": "not a diff at all\n"})
    cfg = ScoreConfig(repos_dir=tmp_path / "repos", env_cache=tmp_path / "envs",
                      work_dir=tmp_path / "work", specs=synthetic_spec_table())
    run = RunConfig(run_dir=tmp_path / "run", workers=2, executor="ray")
    scores = run_tasks([gold, broken], GoldSource(), config=cfg, run=run)
    by_id = {s.instance_id: s for s in scores}
    assert by_id[gold.instance_id].status == "resolved", by_id[gold.instance_id].error
    assert by_id[broken.instance_id].status == "error"
    assert "does not apply" in by_id[broken.instance_id].error
    assert (tmp_path / "run" / gold.instance_id / "score.json").is_file()
    assert not ray.is_initialized()  # the run started its own local Ray and shut it down


class KillingSource(GoldSource):
    """Kills the Ray worker process for one instance."""

    victim: str

    def __call__(self, instance, workdir):
        import os
        import signal

        if instance.instance_id == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(instance, workdir)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_worker_crash_marks_only_its_task(tmp_path: Path):
    import sys

    from ray import cloudpickle  # Ray pickles with its own copy

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import tests/
    one = make_synthetic(tmp_path / "repos")
    two = make_synthetic(tmp_path / "repos", instance_id="example__calc-2")
    cfg = ScoreConfig(repos_dir=tmp_path / "repos", env_cache=tmp_path / "envs",
                      work_dir=tmp_path / "work", specs=synthetic_spec_table())
    run = RunConfig(run_dir=tmp_path / "run", workers=2, executor="ray")
    scores = run_tasks([one, two], KillingSource(victim=one.instance_id), config=cfg, run=run)
    by_id = {s.instance_id: s for s in scores}
    assert by_id[one.instance_id].status == "error" and "worker crashed" in by_id[one.instance_id].error
    assert by_id[two.instance_id].status == "resolved"
