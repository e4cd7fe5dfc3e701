"""Repository packing: the repository rendered for the model under an exact token budget.

    from agent.pack import build_pack
    pack = build_pack("path/to/repo", task="fix the crash in ...", budget=200_000)
    prompt = [system, tools, pack.document, pack.relevant, task, ...]

`pack.document` depends only on the repository, the budget and what fits (never on the task's
words when the whole repository fits); `pack.relevant` is the task-specific block.
"""

from __future__ import annotations

from agent.pack.build import PackOptions, build_pack, build_packs, count_repo, default_budget

__all__ = ["PackOptions", "build_pack", "build_packs", "count_repo", "default_budget"]
