"""Solve one task with tome from a script, and act on the typed result.

    DEEPSEEK_API_KEY=... python examples/solve_issue.py path/to/repo "the failing test in tests/test_io.py"

Exit status follows `tome solve`: 0 solved with a passing check, 1 no passing check,
3 a limit was reached, 4 a model error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent import Task, load_settings, solve


def main() -> int:
    repo, statement = Path(sys.argv[1]), sys.argv[2]
    test_command = sys.argv[3] if len(sys.argv) > 3 else None
    # Your config file and TOME_* variables first, then this script's caps on top.
    settings = load_settings(repo).settings.model_copy(update={"max_cost": 2.0, "max_steps": 60})
    result = solve(Task(statement=statement, test_command=test_command), settings, repo=repo)

    print(f"{result.status}: {result.reason}")
    print(f"modes {' -> '.join(m.label for m in result.modes)}, {result.steps} steps, "
          f"${result.cost:.4f}, cache hit {result.cache_hit_ratio:.0%}")
    if result.check is not None:
        print(f"check {'passed' if result.check.passed else 'failed'}: {result.check.command}")
    if result.patch:
        Path("tome.patch").write_text(result.patch)
        print("patch written to tome.patch")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
