"""The Ray executor on a local Ray instance (skipped when the `ray` extra is absent)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'tome-agent[ray]'")

from agent.evaluation.run import RunConfig, run_tasks
from agent.evaluation.score import ScoreConfig
from agent.evaluation.sources import GoldSource
from agent.evaluation.synthetic import make_synthetic, synthetic_spec_table


class KillingSource(GoldSource):
    """Gold, except that it kills its Ray worker process for one instance."""

    victim: str

    def __call__(self, instance, workdir):
        if instance.instance_id == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(instance, workdir)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_executor_on_a_local_instance(tmp_path: Path):
    from ray import cloudpickle  # Ray pickles with its own copy

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import tests/
    repos = tmp_path / "repos"
    good = make_synthetic(repos)
    broken = make_synthetic(repos, instance_id="example__calc-2").model_copy(update={"patch": "not a diff\n"})
    victim = make_synthetic(repos, instance_id="example__calc-3")
    cfg = ScoreConfig(repos_dir=repos, env_cache=tmp_path / "envs", work_dir=tmp_path / "work",
                      specs=synthetic_spec_table())
    run = RunConfig(run_dir=tmp_path / "run", workers=2, executor="ray")
    scores = run_tasks([good, broken, victim], KillingSource(victim=victim.instance_id), config=cfg, run=run)
    by_id = {s.instance_id: s for s in scores}
    assert by_id[good.instance_id].status == "resolved", by_id[good.instance_id].error
    assert by_id[broken.instance_id].status == "error"
    assert by_id[broken.instance_id].error.startswith("model patch does not apply")
    assert by_id[victim.instance_id].status == "error"
    assert by_id[victim.instance_id].error.startswith("worker crashed (WorkerCrashedError")
    assert (tmp_path / "run" / good.instance_id / "score.json").is_file()
    assert not ray.is_initialized()  # the run started its own local Ray and shut it down
