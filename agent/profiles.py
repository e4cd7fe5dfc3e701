"""Model profiles: every provider and model fact tome relies on, as data.

A provider is a base URL and a row of this table, never a subclass. Prices change: they live
here, dated, and can be overridden from settings.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError
from agent.records import Mode, Usage

__all__ = [
    "Prices", "ModelProfile", "PROFILES", "ALIASES", "GENERIC", "RETIRED", "get_profile", "is_known",
    "canonical", "DEEPSEEK_EFFORTS", "DEEPSEEK_PEAK_HOURS_UTC", "PEAK_HOURS_NOTE",
]


class Prices(BaseModel):
    """USD per 1M tokens."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    cache_hit: float
    cache_miss: float
    output: float


# DeepSeek bills weekday peak hours (UTC) at double the off-peak rate (pricing page, 2026-10).
# Chinese statutory holidays are off-peak although they fall on weekdays; tome does not carry
# the holiday calendar, so on those days its estimates are high (api-docs.deepseek.com/quick_start/pricing).
DEEPSEEK_PEAK_HOURS_UTC: tuple[tuple[int, int], ...] = ((1, 4), (6, 10))
PEAK_HOURS_NOTE = (
    "peak prices apply on weekdays at the peak hours, except on Chinese statutory holidays "
    "(tome counts those days as peak, so its estimate is high then)"
)

# reasoning_effort values the API accepts, and the effort each maps to
# (api-docs.deepseek.com/guides/thinking_mode, "Thinking Mode Toggle and Effort Control").
DEEPSEEK_EFFORTS: dict[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "high",
    "high": "high",
    "xhigh": "high",
    "max": "max",
    "ultra": "max",
}


class ModelProfile(BaseModel):
    """What tome needs to know about one model: window, limits, prices, accepted fields."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str = Field(description="Model name sent in requests.")
    provider: str = Field(description="Provider label for display and the key variable.")
    base_url: str = Field(description="OpenAI-compatible base URL.")
    api_key_env: str = Field(description="Environment variable holding the key.")
    context_window: int = Field(description="Prompt plus output tokens the model accepts.")
    max_output: int = Field(description="Largest max_tokens the model accepts.")
    tokenizer: str = Field(description="Tokenizer name for agent.tokens.get_tokenizer.")
    prices: Prices = Field(description="Off-peak (or only) prices.")
    peak_prices: Prices | None = Field(default=None, description="Prices in peak hours, if any.")
    peak_hours_utc: tuple[tuple[int, int], ...] = Field(
        default=(), description="[start, end) UTC hours on weekdays when peak prices apply."
    )
    mode_fields: dict[Mode, dict[str, Any]] = Field(
        default_factory=dict,
        description="Request fields per mode; a mode missing here is not supported.",
    )
    accepts: frozenset[str] = Field(
        default=frozenset({"temperature", "tools", "stream_options"}),
        description="Optional request fields this endpoint accepts.",
    )
    min_context_for: dict[Mode, int] = Field(
        default_factory=dict, description="Context a mode wants available (Think Max: 384K)."
    )
    requires_reasoning_echo: bool = Field(
        default=False,
        description="Assistant turns with tool calls must be sent back with reasoning_content.",
    )
    reasoning_efforts: dict[str, str] = Field(
        default_factory=dict,
        description="reasoning_effort values the endpoint accepts, each with the effort it maps to.",
    )
    output_caps: dict[Mode, int] = Field(
        default_factory=dict,
        description="max_tokens to request per mode (clamped to max_output); the mode table's when unset.",
    )
    prefix_modes: frozenset[Mode] = Field(
        default=frozenset(),
        description="Modes whose prompts start differently (an effort marker before everything), "
        "so a switch into or out of one misses the whole prefix cache.",
    )
    strict_url_suffix: str | None = Field(
        default=None,
        description="Tools are sent with `strict` only where the base URL ends with this path "
        "('' = everywhere); None: the endpoint does not enforce strict, so the flag is dropped.",
    )

    def request_fields(self, mode: Mode) -> dict[str, Any]:
        """The request fields (including extra_body) that select `mode`."""
        if mode not in self.mode_fields:
            supported = ", ".join(m.value for m in self.mode_fields) or "none"
            raise ConfigError(f"model {self.name} has no mode {mode.value!r} (supported: {supported})")
        return dict(self.mode_fields[mode])

    def enforces_strict(self, base_url: str) -> bool:
        """Whether `strict` tool schemas are enforced at `base_url` (DeepSeek: only under /beta)."""
        suffix = self.strict_url_suffix
        return suffix is not None and base_url.rstrip("/").endswith(suffix.rstrip("/"))

    def same_prefix(self, a: Mode, b: Mode) -> bool:
        """Whether requests in modes `a` and `b` can share a cached prompt prefix."""
        return a == b or (a not in self.prefix_modes and b not in self.prefix_modes)

    def prices_at(self, when: datetime | None = None) -> Prices:
        """The prices in force at `when` (UTC now by default)."""
        if self.peak_prices is None or not self.peak_hours_utc:
            return self.prices
        when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
        is_peak = when.weekday() < 5 and any(a <= when.hour < b for a, b in self.peak_hours_utc)
        return self.peak_prices if is_peak else self.prices

    def cost(self, usage: Usage, when: datetime | None = None) -> float:
        """USD for one request's usage; uncached prompt tokens count as cache misses."""
        p = self.prices_at(when)
        hit = usage.cache_hit_tokens
        miss = usage.cache_miss_tokens or max(usage.prompt_tokens - hit, 0)
        return (hit * p.cache_hit + miss * p.cache_miss + usage.completion_tokens * p.output) / 1e6


_DEEPSEEK_MODES: dict[Mode, dict[str, Any]] = {
    Mode.NON_THINK: {"extra_body": {"thinking": {"type": "disabled"}}},
    Mode.LOW: {"extra_body": {"thinking": {"type": "enabled"}}, "reasoning_effort": "low"},
    Mode.HIGH: {"extra_body": {"thinking": {"type": "enabled"}}, "reasoning_effort": "high"},
    Mode.MAX: {"extra_body": {"thinking": {"type": "enabled"}}, "reasoning_effort": "max"},
}

# max_tokens per mode. The API allows 384K of output (pricing page); Think Max asks 256K, as
# DeepSeek's own harness does: a reasoning turn cut at the cap is a whole turn lost, and 256K
# is twice the old 128K that a long Max turn could reach, while the 128K not reserved stays
# with the pack (the cap is reserved out of the window before packing).
_DEEPSEEK_OUTPUT_CAPS: dict[Mode, int] = {
    Mode.NON_THINK: 16_384,
    Mode.LOW: 32_768,
    Mode.HIGH: 65_536,
    Mode.MAX: 262_144,
}


# The table below is built without validation, so that importing it builds no schema (every
# tome command imports it; the schemas cost more than the rest of the import). A test
# validates every entry.
def _prices(cache_hit: float, cache_miss: float, output: float) -> Prices:
    return Prices.model_construct(cache_hit=cache_hit, cache_miss=cache_miss, output=output)


def _profile(**fields: Any) -> ModelProfile:
    return ModelProfile.model_construct(**fields)


def _deepseek(name: str, off_peak: Prices) -> ModelProfile:
    return _profile(
        name=name,
        provider="deepseek",
        base_url="https://api.deepseek.com",
        api_key_env="DEEPSEEK_API_KEY",
        context_window=1_048_576,
        max_output=384_000,
        tokenizer="deepseek-v4",
        prices=off_peak,
        peak_prices=_prices(off_peak.cache_hit * 2, off_peak.cache_miss * 2, off_peak.output * 2),
        peak_hours_utc=DEEPSEEK_PEAK_HOURS_UTC,
        mode_fields=_DEEPSEEK_MODES,
        accepts=frozenset({"tools", "stream_options", "reasoning_effort", "thinking"}),
        min_context_for={Mode.MAX: 384_000},
        requires_reasoning_echo=True,
        reasoning_efforts=DEEPSEEK_EFFORTS,
        output_caps=_DEEPSEEK_OUTPUT_CAPS,
        # The open-weights V4 encoder puts the Max effort marker at the very start of the prompt
        # (belief from the issue; settled by the encoder in deepseek-ai/DeepSeek-V4-Pro on HF).
        prefix_modes=frozenset({Mode.MAX}),
        # Strict function calling is a beta of https://api.deepseek.com/beta (guides/tool_calls).
        strict_url_suffix="/beta",
    )


_FLASH = _prices(cache_hit=0.003, cache_miss=0.15, output=0.60)

PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in [
        _deepseek("deepseek-v4-pro", _prices(cache_hit=0.022, cache_miss=0.66, output=1.98)),
        _deepseek("deepseek-flash", _FLASH),
        # Legacy name, served by the same Flash model at Flash prices.
        _deepseek("deepseek-v4-flash", _FLASH),
        _profile(
            name="gpt-4.1",
            provider="openai",
            base_url="https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
            context_window=1_047_576,
            max_output=32_768,
            tokenizer="o200k_base",
            prices=_prices(cache_hit=0.50, cache_miss=2.00, output=8.00),
            mode_fields={Mode.NON_THINK: {}},
            strict_url_suffix="",
        ),
        _profile(
            name="gpt-4-turbo",
            provider="openai",
            base_url="https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
            context_window=128_000,
            max_output=4_096,
            tokenizer="cl100k_base",
            prices=_prices(cache_hit=10.0, cache_miss=10.0, output=30.0),
            mode_fields={Mode.NON_THINK: {}},
        ),
    ]
}

# Any other OpenAI-compatible endpoint: conservative, overridable defaults.
GENERIC = _profile(
    name="openai-compatible",
    provider="openai-compatible",
    base_url="http://127.0.0.1:8000/v1",
    api_key_env="OPENAI_API_KEY",
    context_window=32_768,
    max_output=4_096,
    tokenizer="cl100k_base",
    prices=_prices(cache_hit=0.0, cache_miss=0.0, output=0.0),
    mode_fields={Mode.NON_THINK: {}},
)


# Names an endpoint no longer serves, and what to use instead: both were served by V4 Flash,
# without and with thinking, until 2026-07-24 15:59 UTC (api-docs.deepseek.com/news/news260424).
RETIRED: dict[str, str] = {
    "deepseek-chat": "DeepSeek retired deepseek-chat on 2026-07-24: use --model deepseek-flash --mode non-think "
    "(or deepseek-v4-pro)",
    "deepseek-reasoner": "DeepSeek retired deepseek-reasoner on 2026-07-24: use --model deepseek-flash --mode high "
    "(or deepseek-v4-pro)",
}


# Short names a user may type; each maps to a profile above.
ALIASES: dict[str, str] = {
    "pro": "deepseek-v4-pro",
    "v4-pro": "deepseek-v4-pro",
    "flash": "deepseek-flash",
    "v4-flash": "deepseek-flash",
}


def canonical(name: str) -> str:
    """The profile name behind `name` (an alias or a profile name); other names unchanged."""
    return ALIASES.get(name.strip().lower(), name.strip())


def is_known(name: str) -> bool:
    """Whether `name` (or its alias) is a built-in profile."""
    return canonical(name) in PROFILES


def _unknown(name: str) -> ConfigError:
    import difflib

    names = [*PROFILES, *ALIASES]
    close = difflib.get_close_matches(name.strip().lower(), names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(
        f"unknown model {name!r}.{hint} Known: {', '.join(PROFILES)} (aliases: "
        f"{', '.join(f'{a}={p}' for a, p in ALIASES.items())}); tome models lists them. For another "
        "OpenAI-compatible endpoint give --base-url too (a generic profile then applies)."
    )


def get_profile(name: str, **overrides: Any) -> ModelProfile:
    """The profile for `name` (or its alias). An unknown name is a ConfigError naming the closest
    known one, unless a `base_url` override says where it is served: then the generic profile
    applies under that name."""
    if name in RETIRED:
        raise ConfigError(f"model {name!r} is retired: {RETIRED[name]}")
    base = PROFILES.get(canonical(name))
    if base is None:
        if overrides.get("base_url") is None:
            raise _unknown(name)
        base = GENERIC.model_copy(update={"name": name})
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(ModelProfile.model_fields)
    if unknown:
        raise ConfigError(f"unknown profile override(s): {', '.join(sorted(unknown))}")
    return base.model_copy(update=clean) if clean else base
