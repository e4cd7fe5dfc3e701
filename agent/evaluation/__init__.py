"""SWE-bench-style evaluation: tasks, workspaces, environments, scoring, parallel runs, reports.

The one seam is a patch source: a callable from an `EvalInstance` (and a checkout to work in)
to a `Prediction`. Gold, empty, a predictions file and the agent are all patch sources.
"""

from __future__ import annotations

__all__: list[str] = []
