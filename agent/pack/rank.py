"""Rank a repository's files for a task, from the statement and the repository alone.

Signals, strongest first: files in stack-trace frames, paths the task names, dotted module paths,
identifiers the task names that the repository defines, then lexical relevance (BM25 over path
and content), then the import-graph neighbours of the top files and the tests beside them.
Every score comes with the reasons that made it, for the manifest and the relevant-files block.

BM25 here counts query terms with one Aho-Corasick pass over the lowercased bytes of the whole
tree (substring matches, so `create` also finds `bulk_create`) and uses byte length as document
length; a token-level index over 36 MB costs seconds, this costs a fraction of one.
"""

from __future__ import annotations

import builtins
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import ahocorasick_rs
import numpy as np

__all__ = ["STOPWORDS", "Ranked", "rank_files", "task_terms"]

STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "aren", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "cannot", "could", "did", "do", "does", "doing", "don", "down", "during", "each", "few", "for", "from", "further", "get", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself", "just", "let", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "same", "shall", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "use", "used", "using", "very", "want", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "self", "none", "true", "false", "def", "class", "return", "import", "from", "pass", "raise", "elif", "else", "try", "except", "finally", "lambda", "yield", "assert", "del", "global", "nonlocal", "print", "one", "two", "new", "like", "way", "make", "see", "seems", "seem", "work", "works", "thing", "things", "still", "even", "however", "though", "example", "following", "currently", "issue", "problem", "bug", "expected", "actual", "behavior", "behaviour", "case", "cases", "instead", "since", "already", "might", "must", "need", "needs", "think", "thanks", "hi", "hello"]
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_FRAME = re.compile(
    r'File "([^"\n]+)", line (\d+)'  # Python
    r"|\bat (?:[^\s()]+ \()?((?:[A-Za-z]:)?[^\s():]+\.[A-Za-z]{1,5}):(\d+)"  # JS/Java-ish
    r"|((?:[\w.-]+/)+[\w.-]+\.[A-Za-z]{1,5}):(\d+)"  # path:line
)
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/-])")
_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`|```.*?```", re.DOTALL)
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+\(?([\w, \t*]+)|import[ \t]+([\w., \t]+))", re.MULTILINE)
_TEST_NAME = re.compile(r"(?:^|/)(?:tests?/|test_[^/]*$|[^/]*_tests?\.[a-z]+$|[^/]*\.test\.[a-z]+$|conftest\.py$)")
_BUILTINS = frozenset(dir(builtins))
_CODE_SUFFIXES = frozenset(
    [".py", ".pyi", ".pyx", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".rb", ".php", ".kt", ".swift", ".scala", ".lua", ".sh", ".pl", ".m", ".r", ".jl", ".ex", ".exs", ".erl", ".clj", ".dart", ".vue", ".svelte"]
)


@dataclass(slots=True)
class Ranked:
    """A file's score for a task and why."""

    path: str
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)

    def add(self, signal: str, score: float, reason: str) -> None:
        """Raise one signal to `score` (signals do not stack with themselves)."""
        if score <= self.signals.get(signal, 0.0):
            return
        self.signals[signal] = score
        self.reasons = [r for r in self.reasons if not r.startswith(signal + ":")] + [f"{signal}: {reason}"]


def task_terms(text: str) -> list[str]:
    """Lowercased query terms of a statement (stopwords and very short words dropped)."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text):
        low = w.lower()
        if low not in STOPWORDS and len(low) >= 3:
            seen.setdefault(low, None)
            if "_" in low.strip("_"):
                for part in low.strip("_").split("_"):
                    if len(part) >= 4 and part not in STOPWORDS:
                        seen.setdefault(part, None)
    return list(seen)


def _kind_factor(path: str) -> float:
    """Code first; tests come in beside their sources; docs and data last."""
    if _TEST_NAME.search(path):
        return 0.5
    dot = path.rfind(".")
    return 1.0 if dot > path.rfind("/") and path[dot:].lower() in _CODE_SUFFIXES else 0.4


def _module_names(paths: Sequence[str]) -> dict[str, list[str]]:
    """Dotted module name (full, and with leading src-like folders dropped) -> paths."""
    out: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        if not p.endswith(".py"):
            continue
        parts = p[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for i in range(len(parts) - 1):
            if i == 0 or parts[i - 1] in ("src", "lib", "python", "source"):
                out[".".join(parts[i:])].append(p)
        if len(parts) == 1:
            out[parts[0]].append(p)
    return out


def _match_path(fragment: str, by_name: dict[str, list[str]]) -> tuple[list[str], bool]:
    """Repo paths that `fragment` (a path as written in a task or a traceback) refers to."""
    frag = fragment.replace("\\", "/").lstrip("./")
    name = frag.rsplit("/", 1)[-1]
    candidates = by_name.get(name, [])
    if not candidates:
        return [], False
    exact = [c for c in candidates if frag == c or frag.endswith("/" + c)]
    if exact:
        return exact, True
    if "/" in frag:
        # Longest shared suffix of path components (site-packages/..., a fork's layout).
        fparts = frag.split("/")
        best, best_len = [], 1
        for c in candidates:
            cparts = c.split("/")
            n = 0
            while n < min(len(cparts), len(fparts)) and cparts[-1 - n] == fparts[-1 - n]:
                n += 1
            if n > best_len:
                best, best_len = [c], n
            elif n == best_len and n > 1:
                best.append(c)
        if best:
            return best, True
    return candidates, False


def _bm25(terms: list[str], paths: Sequence[str], datas: Sequence[bytes]) -> np.ndarray:
    n = len(paths)
    if not terms or n == 0:
        return np.zeros(n)
    needles = [t.encode() for t in terms]
    automaton = ahocorasick_rs.BytesAhoCorasick(needles)
    tf = np.zeros((n, len(terms)), dtype=np.float32)
    width = len(terms)
    for i, data in enumerate(datas):
        hits = [t for t, _, _ in automaton.find_matches_as_indexes(data.lower(), overlapping=True)]
        if hits:
            tf[i] = np.bincount(hits, minlength=width)
        in_path = [t for t, _, _ in automaton.find_matches_as_indexes(paths[i].lower().encode(), overlapping=True)]
        if in_path:
            tf[i] += 5.0 * np.bincount(in_path, minlength=width)  # a path term weighs like several
    lengths = np.array([len(d) / 6.0 + 10.0 for d in datas], dtype=np.float32)
    df = (tf > 0).sum(axis=0)
    idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
    k1, b = 1.2, 0.75
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    scores = (tf * (k1 + 1) / (tf + norm[:, None])) @ idf
    return np.asarray(scores, dtype=np.float64)


def _document_frequency(words: list[str], datas: Sequence[bytes]) -> dict[str, int]:
    """In how many files each (lowercase) word occurs, as a substring, in any case."""
    automaton = ahocorasick_rs.BytesAhoCorasick([w.encode() for w in words])
    df = [0] * len(words)
    for data in datas:
        for k in {k for k, _, _ in automaton.find_matches_as_indexes(data.lower(), overlapping=True)}:
            df[k] += 1
    return dict(zip(words, df))


def _definitions(names: list[str], paths: Sequence[str], datas: Sequence[bytes]) -> dict[str, list[int]]:
    """Which files define each name (def/class/function/struct/... name)."""
    needles: list[bytes] = []
    owner: list[str] = []
    for name in names:
        for kw in (b"def ", b"class ", b"function ", b"func ", b"fn ", b"struct ", b"interface ", b"type "):
            needles.append(kw + name.encode())
            owner.append(name)
    if not needles:
        return {}
    automaton = ahocorasick_rs.BytesAhoCorasick(needles)
    found: dict[str, set[int]] = defaultdict(set)
    for i, data in enumerate(datas):
        for k, _, end in automaton.find_matches_as_indexes(data, overlapping=True):
            nxt = data[end : end + 1]
            if not (nxt.isalnum() or nxt == b"_"):
                found[owner[k]].add(i)
    return {k: sorted(v) for k, v in found.items()}


def _task_identifiers(text: str) -> list[str]:
    """Words in the task that look like code: in backticks, snake_case, CamelCase, or called."""
    code = " ".join(m.group(0) for m in _CODE_SPAN.finditer(text))
    names: dict[str, None] = {}
    for w in _WORD.findall(text):
        if w.lower() in STOPWORDS:
            continue
        inner_upper = any(c.isupper() for c in w[1:]) and any(c.islower() for c in w)
        if "_" in w.strip("_") or inner_upper or w in code or (w[0].isupper() and len(w) > 3):
            names.setdefault(w, None)
    for m in re.finditer(r"\b([A-Za-z_]\w{2,})\(", text):
        names.setdefault(m.group(1), None)
    # Builtins, and names the task's own example code defines, say nothing about the repo.
    own = set(re.findall(r"\b(?:def|class)\s+([A-Za-z_]\w*)", text))
    return [n for n in names if n.lower() not in STOPWORDS and n not in _BUILTINS and n not in own]


def _resolve_imports(path: str, text: str, modules: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    package = path.rsplit("/", 1)[0].replace("/", ".") if "/" in path else ""
    for m in _IMPORT.finditer(text):
        if m.group(3):
            for mod in m.group(3).split(","):
                mod = mod.strip().split(" ")[0]
                while mod:
                    if mod in modules and len(modules[mod]) <= 2:
                        out.update(modules[mod])
                        break
                    mod = mod.rpartition(".")[0]
            continue
        base = m.group(1) or ""
        if base.startswith("."):
            dots = len(base) - len(base.lstrip("."))
            pkg = package.split(".") if package else []
            pkg = pkg[: len(pkg) - (dots - 1)] if dots > 1 else pkg
            base = ".".join([*pkg, base.lstrip(".")]).strip(".")
        for name in [n.strip() for n in (m.group(2) or "").split(",")]:
            for mod in (f"{base}.{name}" if name and name != "*" else base, base):
                if mod in modules and len(modules[mod]) <= 2:
                    out.update(modules[mod])
                    break
    out.discard(path)
    return out


def _test_partners(path: str, all_paths: set[str]) -> list[str]:
    if not path.endswith(".py") or _TEST_NAME.search(path):
        return []
    d, _, name = path.rpartition("/")
    stem = name[:-3]
    found = []
    dirs = d.split("/") if d else []
    for i in range(len(dirs), -1, -1):
        base = "/".join(dirs[:i])
        prefix = base + "/" if base else ""
        rest = "/".join(dirs[i:])
        for cand in (
            f"{prefix}test_{stem}.py",
            f"{prefix}tests/test_{stem}.py",
            f"{prefix}tests/{rest}/test_{stem}.py" if rest else "",
            f"{prefix}testing/test_{stem}.py",
            f"{prefix}{stem}_test.py",
        ):
            if cand and cand in all_paths:
                found.append(cand)
    return found


def rank_files(
    task: str, paths: Sequence[str], datas: Sequence[bytes], *, top_k: int = 5
) -> list[Ranked]:
    """Every path with its score for `task`, best first (ties in path order)."""
    ranked = [Ranked(p) for p in paths]
    index = {p: i for i, p in enumerate(paths)}
    by_name: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_name[p.rsplit("/", 1)[-1]].append(p)

    # 1. Stack-trace frames (later frames are nearer the error).
    frame_spans = set()
    matched: list[tuple[str, str, list[str]]] = []
    for m in _FRAME.finditer(task):
        frag = m.group(1) or m.group(3) or m.group(5)
        line = m.group(2) or m.group(4) or m.group(6)
        frame_spans.add(frag)
        hits, sure = _match_path(frag, by_name)
        if sure and len(hits) <= 3:
            matched.append((frag, line, hits))
    for k, (frag, line, hits) in enumerate(matched):
        # Python prints the innermost frame last: the nearer the error, the more it weighs.
        weight = 80.0 + 40.0 * (k + 1) / len(matched)
        for h in hits:
            ranked[index[h]].add("stack trace", weight, f"frame {frag}:{line}")

    # 2. Paths and file names the task names.
    for m in _PATH.finditer(task):
        frag = m.group(1)
        if frag in frame_spans or frag.count(".") > 3 and "/" not in frag:
            continue
        hits, sure = _match_path(frag, by_name)
        if hits and (sure or len(hits) <= 4):
            w = 80.0 if sure and "/" in frag else 30.0 / len(hits)
            for h in hits:
                ranked[index[h]].add("path named", w, frag)

    # 2b. Distinctive file stems the task uses as words (`sqlmigrate` -> sqlmigrate.py).
    words = {w.lower() for w in _WORD.findall(task) if len(w) >= 5}
    by_stem: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        name = p.rsplit("/", 1)[-1]
        stem = name.rsplit(".", 1)[0].lower()
        if stem in words and stem not in STOPWORDS and stem not in ("__init__", "models", "utils", "views", "tests"):
            by_stem[stem].append(p)
    if by_stem:
        df = _document_frequency(list(by_stem), datas)
        for stem, hits in by_stem.items():
            share = df.get(stem, 0) / max(len(paths), 1)
            weight = 40.0 if df.get(stem, 0) <= 5 or share <= 0.02 else 15.0 if share <= 0.1 else 0.0
            if weight and len(hits) <= 3:
                for h in hits:
                    ranked[index[h]].add("file named", weight / len(hits), stem)

    # 3. Dotted module paths (`django.db.models.query.QuerySet` -> that module).
    modules = _module_names(paths)
    imported = {m.group(1) or m.group(3) for m in _IMPORT.finditer(task)}
    for m in _DOTTED.finditer(task):
        dotted = m.group(1)
        parts = dotted.split(".")
        for cut in range(len(parts), 1, -1):
            mod = ".".join(parts[:cut])
            hit = modules.get(mod)
            if hit and len(hit) <= 2:
                # An import line in example code names a module, but weakly.
                w = 15.0 if dotted in imported else 60.0 if cut == len(parts) else 45.0
                for h in hit:
                    ranked[index[h]].add("module named", w, dotted)
                break

    # 4. Identifiers named in the task that the repository defines.
    identifiers = _task_identifiers(task)
    defs = _definitions(identifiers, paths, datas)
    found: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for name, files in defs.items():
        shaped = "_" in name.strip("_") or any(c.isupper() for c in name[1:])
        if len(files) > (8 if shaped else 2):
            continue
        w = (50.0 if shaped else 20.0) / len(files) ** 0.5
        for i in files:
            found[i].append((w * (0.5 if _TEST_NAME.search(paths[i]) else 1.0), name))
    for i, named in found.items():
        named.sort(key=lambda x: (-x[0], x[1]))
        # Each further name the file defines adds less; three names are worth at most 2x one.
        total = sum(w * 0.5**k for k, (w, _) in enumerate(named[:3]))
        ranked[i].add("defines", total, ", ".join(n for _, n in named[:4]) + " (named in the task)")

    # 5. BM25 over path and content, tilted towards code.
    terms = task_terms(task)
    bm = _bm25(terms, paths, datas)
    if bm.size and bm.max() > 0:
        tilted = bm * np.array([_kind_factor(p) for p in paths])
        top = float(tilted.max())
        for i, s in enumerate(tilted):
            if s > 0:
                ranked[i].add("bm25", 40.0 * float(s) / top, f"{bm[i]:.1f}")
    for r in ranked:
        r.score = sum(r.signals.values())

    # 6. Import-graph neighbours of the top files, and the tests beside them.
    order = sorted(ranked, key=lambda r: (-r.score, r.path))
    leaders = [r for r in order[:top_k] if r.score > 0]
    all_paths = set(paths)
    for lead in leaders:
        i = index[lead.path]
        text = datas[i].decode("utf-8", "replace")
        for nb in sorted(_resolve_imports(lead.path, text, modules)):
            ranked[index[nb]].add("imported by", 0.12 * lead.score, lead.path)
        for t in _test_partners(lead.path, all_paths):
            ranked[index[t]].add("test beside", 0.2 * lead.score, lead.path)
    for r in ranked:
        r.score = round(sum(r.signals.values()), 3)
    return sorted(ranked, key=lambda r: (-r.score, r.path))
