"""Patch sources: the one seam from an instance to a prediction.

A source is a picklable callable `(instance, workdir) -> Prediction`. `workdir` is a clean
checkout at the base commit when the source says it needs one (the agent), else None. Gold,
empty, a predictions file of any other system, and the agent are the four kinds.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError
from agent.records import EvalInstance, Prediction, Result

__all__ = [
    "AgentSource",
    "EmptySource",
    "GoldSource",
    "PatchSource",
    "PredictionsSource",
    "load_predictions",
    "source_for",
]


@runtime_checkable
class PatchSource(Protocol):
    """Gives the patch for one instance; `name` becomes model_name_or_path."""

    name: str
    needs_checkout: bool

    def __call__(self, instance: EvalInstance, workdir: Path | None) -> Prediction: ...


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    needs_checkout: bool = False


class GoldSource(_Source):
    """The instance's own patch (validates the harness: must resolve)."""

    name: str = "gold"

    def __call__(self, instance: EvalInstance, workdir: Path | None) -> Prediction:
        """The gold patch."""
        return Prediction(instance_id=instance.instance_id, model_name_or_path=self.name,
                          model_patch=instance.patch)


class EmptySource(_Source):
    """No change at all (validates the harness: must not resolve)."""

    name: str = "empty"

    def __call__(self, instance: EvalInstance, workdir: Path | None) -> Prediction:
        """An empty patch."""
        return Prediction(instance_id=instance.instance_id, model_name_or_path=self.name)


def load_predictions(path: Path) -> dict[str, Prediction]:
    """SWE-bench predictions: JSONL rows, a JSON list, or a JSON dict keyed by instance_id."""
    if not path.is_file():
        raise ConfigError(f"no predictions file at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = json.loads(text)
        rows = list(data.values()) if isinstance(data, dict) and "instance_id" not in data else (
            data if isinstance(data, list) else [data])
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    out: dict[str, Prediction] = {}
    for row in rows:
        try:
            out[row["instance_id"]] = Prediction(
                instance_id=row["instance_id"],
                model_name_or_path=str(row.get("model_name_or_path") or path.stem),
                model_patch=row.get("model_patch") or "",
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}: a row lacks instance_id ({e})") from None
    return out


class PredictionsSource(_Source):
    """Patches from another system's predictions file."""

    path: Path
    predictions: dict[str, Prediction] = Field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> PredictionsSource:
        """Read the file once; instances it lacks get an empty patch."""
        return cls(path=path, predictions=load_predictions(path))

    @property
    def name(self) -> str:
        """model_name_or_path of the file's first row (else the file's stem)."""
        first = next(iter(self.predictions.values()), None)
        return first.model_name_or_path if first else self.path.stem

    def __call__(self, instance: EvalInstance, workdir: Path | None) -> Prediction:
        """The file's prediction for this instance."""
        return self.predictions.get(instance.instance_id) or Prediction(
            instance_id=instance.instance_id, model_name_or_path=self.name)


class AgentSource(_Source):
    """Runs tome's loop (`agent.run.solve`) in a clean checkout and takes its patch."""

    name: str
    needs_checkout: bool = True
    settings_cli: dict[str, Any] = Field(default_factory=dict,
                                         description="Command-line settings layer (model, mode, caps).")

    solver: str = Field(default="agent.run:solve",
                        description="module:function taking (task, settings, repo=...) -> Result.")

    def check_available(self) -> None:
        """ConfigError unless the solver's module can be imported."""
        module = self.solver.partition(":")[0]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--model NAME runs the agent, but {module} (the loop) is not in this "
                              "build; use --model gold|empty or --predictions FILE")

    def __call__(self, instance: EvalInstance, workdir: Path | None) -> Prediction:
        """Solve the instance's task with the agent and return its patch, cost, tokens and mode."""
        self.check_available()
        from agent.settings import load_settings

        module, _, func = self.solver.partition(":")
        solve = getattr(importlib.import_module(module), func or "solve", None)
        if solve is None:
            raise ConfigError(f"{module} has no {func or 'solve'}(task, settings, repo=...)")
        if workdir is None:
            raise ConfigError("the agent needs a checkout to work in")
        settings = load_settings(workdir, cli={"model": self.name, **self.settings_cli}).settings
        t0 = time.monotonic()
        result: Result = solve(instance.to_task(), settings, repo=workdir)
        return Prediction(
            instance_id=instance.instance_id, model_name_or_path=self.name, model_patch=result.patch,
            cost=result.cost, usage=result.usage, mode=result.mode.value, elapsed=time.monotonic() - t0,
            trajectory=result.trajectory or None,
        )


def source_for(model: str | None, *, predictions: Path | None = None,
               settings_cli: dict[str, Any] | None = None) -> PatchSource:
    """The source a command line names: gold, empty, a predictions file, or a model for the agent."""
    if predictions is not None:
        return PredictionsSource.from_file(predictions)
    if model in (None, "gold"):
        return GoldSource()
    if model == "empty":
        return EmptySource()
    source = AgentSource(name=model, settings_cli=settings_cli or {})
    source.check_available()
    return source
