"""Property: whatever the repository and budget, the rendered pack never exceeds the budget."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.pack import build_pack
from agent.tokens import get_tokenizer

_ALPHABET = st.sampled_from(list("abc xyz_(){}:\n\t=+-*/<>'\"`#éß中😀0123456789") + ["def ", "class ", "\n\n", "    ", "</file>"])
_TEXT = st.lists(_ALPHABET, min_size=0, max_size=120).map("".join)
_NAME = st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}\.(py|md|txt|js)", fullmatch=True)
_REPO = st.dictionaries(_NAME, _TEXT, min_size=1, max_size=12)


def _materialise(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # a name that is both a file and a folder: keep the first
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)


@pytest.mark.parametrize("fmt", ["xml", "markdown"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_REPO, budget=st.integers(min_value=1, max_value=3_000), task=st.none() | _TEXT, data=st.data())
def test_pack_and_relevant_block_never_exceed_the_budget(fmt: str, files: dict[str, str], budget: int, task: str | None, data) -> None:
    tok = get_tokenizer("cl100k_base")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        _materialise(root, files)
        try:
            pack = build_pack(root, task=task, budget=budget, tokenizer=tok, format=fmt,
                              cache_dir=Path(tmp) / "cache", environ={})
        except ConfigError as e:
            assert "too small for even the tree" in str(e)
            return
        real = tok.count(pack.document)
        assert real == pack.totals.tokens
        # What `tome pack -o` writes (the document, then the relevant-files block) is bounded too.
        written = tok.count(pack.document + pack.relevant)
        assert written == pack.totals.tokens + pack.relevant_tokens <= budget
        assert all(i.tokens > 0 for i in pack.items if i.level != "path")


@pytest.mark.slow
def test_document_count_is_exact_with_the_deepseek_tokenizer(tmp_path: Path) -> None:
    tok = get_tokenizer("deepseek-v4")
    root = tmp_path / "repo"
    root.mkdir()
    _materialise(root, {
        "a.py": "x = 1  \n\n\n",
        "b/c.md": "# 标题\n\n```\ncode\n```",
        "d.txt": "<｜begin▁of▁sentence｜> special text 12345678\r\n",
        "e.js": "const s = `</file>`;   ",
    })
    for fmt in ("xml", "markdown"):
        pack = build_pack(root, task="标题 code", budget=10_000, tokenizer=tok, format=fmt,
                          cache_dir=tmp_path / "cache", environ={})
        assert tok.count(pack.document) == pack.totals.tokens
        pieces = [i.tokens for i in pack.items]
        assert sum(pieces) + pack.totals.tree_tokens < pack.totals.tokens
