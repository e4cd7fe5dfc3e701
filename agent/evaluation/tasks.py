"""Read SWE-bench JSONL (or JSON) rows into typed `EvalInstance` records."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.records import EvalInstance

__all__ = ["instance_from_row", "load_instances"]


def _test_list(value: Any) -> list[str]:
    # Upstream files store the lists as JSON-encoded strings; ../shared/swe stores real lists.
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value]


def instance_from_row(row: dict[str, Any]) -> EvalInstance:
    """One SWE-bench row (either list encoding) as an `EvalInstance`."""
    try:
        return EvalInstance(
            instance_id=row["instance_id"],
            repo=row["repo"],
            base_commit=row["base_commit"],
            problem_statement=row.get("problem_statement") or "",
            hints_text=row.get("hints_text") or "",
            version=str(row.get("version") or ""),
            environment_setup_commit=row.get("environment_setup_commit") or None,
            patch=row.get("patch") or "",
            test_patch=row.get("test_patch") or "",
            fail_to_pass=_test_list(row.get("FAIL_TO_PASS", row.get("fail_to_pass"))),
            pass_to_pass=_test_list(row.get("PASS_TO_PASS", row.get("pass_to_pass"))),
            difficulty=row.get("difficulty") or None,
        )
    except KeyError as e:
        raise ConfigError(f"task row lacks the field {e.args[0]!r}") from None


def _decoded(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None


def _rows(path: Path, text: str) -> list[dict]:
    """The rows of a .json list or a .jsonl file; a broken line is named as FILE:LINE."""
    if path.suffix == ".json":
        rows = _decoded(text, str(path))
        if not isinstance(rows, list):
            raise ConfigError(f"{path}: expected a JSON list of task rows")
        return rows
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            row = _decoded(line, f"{path}:{number}")
            if not isinstance(row, dict):
                raise ConfigError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def load_instances(path: Path, *, instance_ids: Iterable[str] | None = None) -> list[EvalInstance]:
    """Instances from a .jsonl (one row a line) or .json (a list) file, in file order.

    Rows without a test_patch or FAIL_TO_PASS (incomplete Verified rows) cannot be scored and
    raise a ConfigError naming them.
    """
    if not path.is_file():
        raise ConfigError(f"no task file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    rows = _rows(path, text)
    wanted = set(instance_ids) if instance_ids else None
    out = [instance_from_row(r) for r in rows if wanted is None or r.get("instance_id") in wanted]
    if wanted is not None:
        unknown = wanted - {i.instance_id for i in out}
        if unknown:
            raise ConfigError(f"not in {path}: {', '.join(sorted(unknown))}")
    incomplete = [i.instance_id for i in out if not i.test_patch or not i.fail_to_pass]
    if incomplete:
        raise ConfigError(
            f"{len(incomplete)} rows have no test_patch or FAIL_TO_PASS and cannot be scored, "
            f"e.g. {incomplete[:3]}"
        )
    return out
