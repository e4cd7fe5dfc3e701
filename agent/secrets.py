"""Find and redact secrets in text: API keys, tokens, private keys, credentials.

One compiled rule table, each rule guarded by cheap literal needles so that text without any
needle costs a few substring searches, not a regex pass. Findings name the rule, the path and
the line, never the value. Packing runs every file through this (its path says whether it is a
config file); everything else that leaves the machine (each request body, each tool result and
its spill file, each trajectory event and so each `--json` line) passes `redact_outgoing`, which
judges text of unknown origin with every rule.

    scanner = SecretScanner()            # rules + secret-looking environment values, once
    findings = scanner.scan(text, path="config/.env.prod")
    clean, findings = scanner.redact(text)
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import ahocorasick_rs

from agent.records import SecretFinding

__all__ = [
    "RULES",
    "SECRET_PATHS",
    "SecretRule",
    "SecretScanner",
    "is_secret_path",
    "redact",
    "redact_outgoing",
    "redaction",
    "scan",
]


@dataclass(frozen=True)
class SecretRule:
    """A key format: literal needles that must occur, a regex, and the group holding the value."""

    name: str
    needles: tuple[str, ...]
    pattern: re.Pattern[str]
    group: int = 0
    config_only: bool = False
    min_entropy: float = 0.0


def _rule(
    name: str,
    needles: Iterable[str],
    pattern: str,
    *,
    group: int = 0,
    config_only: bool = False,
    min_entropy: float = 0.0,
    flags: int = 0,
) -> SecretRule:
    return SecretRule(name, tuple(needles), re.compile(pattern, flags), group, config_only, min_entropy)


_SECRET_WORDS = (
    r"secret|token|passw(?:or)?d|passwd|pwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|auth[_-]?key|credentials?|client[_-]?secret|signing[_-]?key|encryption[_-]?key"
)

# Letter by letter (`[Tt][Oo]...`), not (?i): re then scans a megabyte of code about three times faster.
_ANY_CASE_SECRET_WORDS = re.sub(r"[a-z]", lambda m: f"[{m[0].upper()}{m[0]}]", _SECRET_WORDS)

# Order matters where formats overlap: the first rule to claim a span names it.
RULES: tuple[SecretRule, ...] = (
    _rule(
        "private-key",
        ["-----BEGIN"],
        r"-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----|[\s\S]*\Z)",
    ),
    _rule("anthropic-api-key", ["sk-ant-"], r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    _rule(
        "openai-api-key",
        ["sk-proj-", "sk-svcacct-", "sk-admin-", "T3BlbkFJ"],
        r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b",
    ),
    _rule("deepseek-api-key", ["sk-"], r"\bsk-[0-9a-f]{32}\b"),
    _rule("openai-api-key", ["sk-"], r"\bsk-[A-Za-z0-9]{40,}\b"),
    _rule("aws-access-key-id", ["AKIA", "ASIA", "ABIA", "ACCA"], r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    _rule(
        "aws-secret-access-key",
        ["aws_secret", "AWS_SECRET", "aws-secret", "AwsSecret", "awsSecret", "SecretAccessKey"],
        r"(?i)(?:aws_?secret_?access_?key|aws-secret-access-key|secretaccesskey)[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        group=1,
    ),
    _rule(
        "github-token",
        ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    ),
    _rule("gitlab-token", ["glpat-", "gldt-", "glrt-", "glptt-"], r"\b(?:glpat|gldt|glrt|glptt)-[A-Za-z0-9_-]{20,}"),
    _rule("slack-token", ["xox"], r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    _rule("slack-webhook", ["hooks.slack.com"], r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{20,}"),
    _rule(
        "stripe-key",
        ["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    ),
    _rule("google-api-key", ["AIza"], r"\bAIza[0-9A-Za-z_-]{35}\b"),
    _rule("google-oauth-secret", ["GOCSPX-"], r"\bGOCSPX-[A-Za-z0-9_-]{20,}"),
    _rule(
        "jwt",
        ["eyJ"],
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    _rule(
        "url-credentials",
        ["://"],
        r"://[^\s:/@'\"`<>()\[\]{}]{1,64}:([^\s/@'\"`<>()\[\]{}]{3,128})@[A-Za-z0-9_.-]",
        group=1,
        min_entropy=2.5,
    ),
    # Generic `name = value` in dotenv / ini / yaml / toml / properties / json config files,
    # wherever the line starts: tools show lines behind prefixes (`   12\t` from view and
    # `cat -n`, `+`/`-` from diffs, `path:12:` from grep, `export `, `{"db": {"password": ...`).
    # The secret word must end a word of the name (`token`, `API_TOKEN`, `tokenSecret`; not
    # `tokens`, `tokenizer`, `secretary`); `_plausible` then rejects code and names as values.
    _rule(
        "generic-secret-assignment",
        (),
        rf"(?:{_ANY_CASE_SECRET_WORDS})(?![a-z])[A-Za-z0-9_.-]*[\"']?"
        r"[ \t]*[:=][ \t]*[\"']?((?:[^\s\"'#,;\\]|\\[^nrt\"'\s]){8,})",
        group=1,
        config_only=True,
        min_entropy=3.0,
    ),
)

# Files that are secrets by name: excluded whole, whatever they contain.
SECRET_PATHS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.ppk",
    "*.asc",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".aws/",
    ".ssh/",
    ".gnupg/",
    ".docker/config.json",
    ".kube/config",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".htpasswd",
    "credentials",
    "credentials.json",
    "credentials.yml",
    "credentials.yaml",
    "client_secret*.json",
    "service-account*.json",
    "secrets.yml",
    "secrets.yaml",
    "secrets.json",
    "secrets.toml",
    "*.tfvars",
    "*.tfstate",
    "*.tfstate.backup",
)

_CONFIG_SUFFIXES = frozenset(
    {".env", ".ini", ".cfg", ".conf", ".toml", ".yaml", ".yml", ".properties", ".json", ".envrc"}
)
_PLACEHOLDERS = frozenset(
    ["password", "passwd", "pass", "pwd", "secret", "token", "changeme", "change_me", "example", "sample", "test", "testing", "dummy", "fake", "foo", "bar", "baz", "xxx", "none", "null", "true", "false", "user", "username", "admin", "root", "guest", "your", "placeholder", "redacted"]
)
_ENV_NAME = re.compile(r"(?i)key|token|secret|passw|pwd|credential|auth|cookie|session")
_ENV_MIN_LEN = 8
# Names the pattern above catches that hold where things are, never a secret: the shell's
# working directories (POSIX sh: PWD, OLDPWD), the X authority file, the ssh agent's socket and
# the login session's facts. Redacting them hid the repository's own path in every message.
_ENV_NOT_SECRETS = frozenset({
    "PWD", "OLDPWD", "XAUTHORITY", "SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "DESKTOP_SESSION",
    "XDG_SESSION_ID", "XDG_SESSION_TYPE", "XDG_SESSION_CLASS", "XDG_SESSION_DESKTOP",
})


def _compile_paths(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], frozenset[str], tuple[str, ...]]:
    names = [p for p in patterns if "/" not in p]
    dirs = frozenset(p.rstrip("/") for p in patterns if p.endswith("/"))
    suffixes = tuple("/" + p for p in patterns if "/" in p and not p.endswith("/"))
    return re.compile("|".join(f"(?:{fnmatch.translate(n)})" for n in names)), dirs, suffixes


_PATHS = _compile_paths(SECRET_PATHS)


def is_secret_path(path: str) -> str | None:
    """Why `path` (posix, relative) is a secret file by name (a denylist pattern), or None."""
    names, dirs, suffixes = _PATHS
    parts = path.split("/")
    base = parts[-1]
    if names.match(base):
        return next(p for p in SECRET_PATHS if "/" not in p and fnmatch.fnmatchcase(base, p))
    for part in parts[:-1]:
        if part in dirs:
            return part + "/"
    full = "/" + path
    for suffix in suffixes:
        if full.endswith(suffix):
            return suffix[1:]
    return None


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


# Values that are code or names, not secrets: `settings.SECRET_KEY`, `os.environ[`, `get_token()`,
# `Optional[str]`, `TokenOpt`, `OPENAI_API_KEY`, `demo-key-not-secret`, `urn:ietf:params:oauth`.
# A name is letters-only pieces (digit-only pieces allowed) between separators; a random value
# almost never is one (a 32-character base64 value is letters-only with odds of about 1 in 770).
_CODE_LIKE = re.compile(
    r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*[(\[].*"  # a call or an index
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+[()\[\]{}]*"  # an attribute
    r"|[_\-:./~]*[A-Za-z]+(?:[_\-:./]+(?:[A-Za-z]+|\d+))*[_\-:./]*[()\[\]{}]*",  # a name
    re.DOTALL,
)
_MARK = "[REDACTED:"


def _plausible(value: str, min_entropy: float) -> bool:
    low = value.lower().strip("<>{}[]()$%*")
    if not low or low in _PLACEHOLDERS or value[0] in "$<{%*[(" or len(set(value)) < 4:
        return False
    if value.startswith(_MARK) or _CODE_LIKE.fullmatch(value):
        return False
    if any(p in low for p in ("example", "placeholder", "changeme", "your_", "your-", "xxxx")):
        return False
    return _entropy(value) >= min_entropy


def redaction(rule: str) -> str:
    """The text that replaces a secret value found by `rule`."""
    return f"{_MARK}{rule}]"


def _is_config(path: str | None) -> bool:
    if path is None:
        return True  # unknown provenance (tool output): treat assignments as config
    name = path.rsplit("/", 1)[-1].lower()
    if name.startswith(".env") or name.endswith(".env"):
        return True
    dot = name.rfind(".")
    return dot >= 0 and name[dot:] in _CONFIG_SUFFIXES


_MEMO_CHARS = 256  # shorter texts cost less to scan than to look up


def _line_numbers(text: str, spans: list[tuple[int, int, str]]) -> Iterator[int]:
    """The 1-based line of each span's start (spans in order): one pass, not a count per span."""
    line, pos = 1, 0
    for start, _, _ in spans:
        line += text.count("\n", pos, start)
        pos = start
        yield line


class SecretScanner:
    """The rule table plus the literal values of secret-looking environment variables."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        rules: tuple[SecretRule, ...] = RULES,
        extra_values: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name, value in env.items():
            value = value.strip()
            if name in _ENV_NOT_SECRETS:
                continue
            if len(value) >= _ENV_MIN_LEN and _ENV_NAME.search(name) and len(set(value)) >= 4:
                values.setdefault(value, f"env:{name}")
        for name, value in (extra_values or {}).items():
            if len(value) >= 4:
                values.setdefault(value, f"value:{name}")
        self.rules = rules
        # Longest first so that a value containing another is redacted whole.
        self._values = sorted(values.items(), key=lambda kv: -len(kv[0]))
        # One Aho-Corasick pass over the UTF-8 bytes says which rules can match at all.
        needles: list[str] = []
        self._needle_rules: list[list[int]] = []
        index: dict[str, int] = {}
        for i, rule in enumerate(rules):
            for n in rule.needles:
                if n not in index:
                    index[n] = len(needles)
                    needles.append(n)
                    self._needle_rules.append([])
                self._needle_rules[index[n]].append(i)
        self._value_base = len(needles)
        needles.extend(v for v, _ in self._values)
        self._automaton = ahocorasick_rs.BytesAhoCorasick([n.encode("utf-8", "surrogatepass") for n in needles])
        self._always = [i for i, r in enumerate(rules) if not r.needles]
        # Texts come back on every request (the pack, every earlier result): each judged once.
        # A request fits the window, so it holds fewer texts this long than this (no thrashing).
        self._clean_long = functools.lru_cache(maxsize=16_384)(self._clean)
        # Says which scanner judged a file clean (caches of clean files key on it); the values
        # go in hashed together, never as they are.
        self.fingerprint = hashlib.sha256(
            "\0".join([*(f"{r.name}\1{r.pattern.pattern}" for r in rules), *(v for v, _ in self._values)]).encode(
                "utf-8", "surrogatepass"
            )
        ).hexdigest()[:16]

    def may_contain(self, data: bytes, *, path: str | None = None) -> bool:
        """False when `data` (UTF-8) certainly holds no secret: no needle, no config rule."""
        if self._always and any(not self.rules[i].config_only or _is_config(path) for i in self._always):
            return True
        return self._automaton.find_matches_as_indexes(data, overlapping=False) != []

    def _spans(self, text: str, path: str | None, data: bytes | None = None) -> list[tuple[int, int, str]]:
        if data is None:
            data = text.encode("utf-8", "surrogatepass")
        hits = {i for i, _, _ in self._automaton.find_matches_as_indexes(data, overlapping=True)}
        spans: list[tuple[int, int, str]] = []
        if not hits and not self._always:
            return spans
        config = _is_config(path)
        candidates = set(self._always)
        for h in hits:
            if h < self._value_base:
                candidates.update(self._needle_rules[h])
        for i in sorted(candidates):
            rule = self.rules[i]
            if rule.config_only and not config:
                continue
            for m in rule.pattern.finditer(text):
                start, end = m.span(rule.group)
                if start < 0 or (rule.min_entropy and not _plausible(m.group(rule.group), rule.min_entropy)):
                    continue
                spans.append((start, end, rule.name))
        for h in hits:
            if h >= self._value_base:
                value, name = self._values[h - self._value_base]
                start = text.find(value)
                while start >= 0:
                    spans.append((start, start + len(value), name))
                    start = text.find(value, start + len(value))
        if not spans:
            return spans
        spans.sort(key=lambda s: (s[0], -s[1]))
        merged: list[tuple[int, int, str]] = []
        for s in spans:
            if merged and s[0] < merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], s[1]), last[2])
            else:
                merged.append(s)
        return merged

    def scan(
        self, text: str, *, path: str | None = None, data: bytes | None = None
    ) -> list[SecretFinding]:
        """Every secret in `text` as (rule, path, line); values are never kept.

        `data`, when given, must be `text` encoded as UTF-8 (saves encoding it again).
        """
        spans = self._spans(text, path, data)
        return [
            SecretFinding(rule=rule, path=path, line=line)
            for (_, _, rule), line in zip(spans, _line_numbers(text, spans))
        ]

    def redact(
        self, text: str, *, path: str | None = None, data: bytes | None = None
    ) -> tuple[str, list[SecretFinding]]:
        """`text` with each secret value replaced by `[REDACTED:rule]`, and the findings."""
        spans = self._spans(text, path, data)
        if not spans:
            return text, []
        out: list[str] = []
        findings: list[SecretFinding] = []
        pos = 0
        for (start, end, rule), line in zip(spans, _line_numbers(text, spans)):
            out.append(text[pos:start])
            out.append(redaction(rule))
            findings.append(SecretFinding(rule=rule, path=path, line=line))
            pos = end
        out.append(text[pos:])
        return "".join(out), findings

    def clean(self, text: str) -> str:
        """`text` (of unknown origin: every rule applies) with its secrets redacted; `text` itself if none."""
        return self._clean_long(text) if len(text) >= _MEMO_CHARS else self._clean(text)

    def _clean(self, text: str) -> str:
        return self.redact(text)[0]


_T = TypeVar("_T")


@functools.lru_cache(maxsize=4)
def _scanner_for(values: tuple[tuple[str, str], ...]) -> SecretScanner:
    return SecretScanner(dict(values))


def redact_outgoing(value: _T) -> _T:
    """The one redaction step for what leaves the machine: every string in `value` redacted.

    `value` is a str or a JSON-like body (dicts and lists; keys are left alone). Text is judged
    as of unknown origin (every rule, config assignments included, after any line prefix) and
    against this process's secret-looking environment values. Unchanged parts come back as the
    same objects, so a caller can tell cheaply whether anything was redacted.
    """
    env = tuple(sorted((k, v) for k, v in os.environ.items() if _ENV_NAME.search(k)))
    return _redact_value(value, _scanner_for(env))


def _redact_value(value: Any, scanner: SecretScanner) -> Any:
    if isinstance(value, str):
        return scanner.clean(value)
    if isinstance(value, dict):
        out = {k: _redact_value(v, scanner) for k, v in value.items()}
        return value if all(out[k] is v for k, v in value.items()) else out
    if isinstance(value, (list, tuple)):
        items = [_redact_value(v, scanner) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    return value


def scan(text: str, *, path: str | None = None) -> list[SecretFinding]:
    """Findings in `text` with the default rules and this process's environment."""
    return SecretScanner().scan(text, path=path)


def redact(text: str, *, path: str | None = None) -> tuple[str, list[SecretFinding]]:
    """`text` with secrets replaced by `[REDACTED:rule]`, and what was found."""
    return SecretScanner().redact(text, path=path)
