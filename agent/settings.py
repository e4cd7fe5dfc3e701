"""Settings, layered once: defaults, user file, project file, environment, command line.

The project file (`tome.toml` in the repository) is written by whoever wrote the repository, so
it may tighten safety settings but never widen them: a widening value is ignored with a warning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from agent.errors import ConfigError
from agent.profiles import ModelProfile, get_profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Settings", "SafetySettings", "load_settings", "user_config_path", "LoadedSettings"]

APP = "tome"


def user_config_path() -> Path:
    """`~/.config/tome/config.toml`, honouring XDG_CONFIG_HOME."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP / "config.toml"


def _user_dir(kind: str) -> Path:
    import platformdirs

    fn = {"cache": platformdirs.user_cache_dir, "state": platformdirs.user_state_dir}[kind]
    return Path(fn(APP, appauthor=False))


class SafetySettings(BaseModel):
    """What the agent may do outside plain file edits; a project file can only tighten these."""

    model_config = ConfigDict(extra="forbid")

    sandbox: Literal["require", "auto", "off"] = Field(
        default="auto",
        description="Run the shell under bubblewrap: require it, use it when installed, or never.",
    )
    network: bool = Field(default=False, description="Let shell commands reach the network.")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Private or loopback hosts the web tools may fetch despite the SSRF guard.",
    )
    approval: Literal["deny", "ask", "allow"] = Field(
        default="ask",
        description="Destructive commands: refuse, ask the user (interactive only), or allow.",
    )
    env_passthrough: list[str] = Field(
        default_factory=list,
        description="Extra environment variables the shell inherits (secrets are withheld otherwise).",
    )


_WIDTH_ORDER: dict[str, list[Any]] = {
    "sandbox": ["require", "auto", "off"],
    "network": [False, True],
    "approval": ["deny", "ask", "allow"],
}


def _widens(field: str, old: Any, new: Any) -> bool:
    if field in _WIDTH_ORDER:
        order = _WIDTH_ORDER[field]
        return order.index(new) > order.index(old)
    return not set(new) <= set(old)  # list fields: adding entries widens


class Settings(BaseModel):
    """Every knob tome has; each field says what it does."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field(default="deepseek-v4-pro", description="Model name; picks the profile.")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint; the profile's URL when unset."
    )
    api_key: SecretStr | None = Field(
        default=None, description="API key; read from the profile's key variable when unset."
    )
    context_window: int | None = Field(
        default=None, description="Override the profile's context window (tokens)."
    )
    max_output: int | None = Field(
        default=None, description="Override the profile's largest output (tokens)."
    )
    mode: Literal["auto", "non-think", "low", "high", "max"] = Field(
        default="auto", description="Reasoning mode, or auto to choose from the task."
    )
    stream: bool = Field(default=True, description="Stream model output for live display.")
    request_timeout: float | None = Field(
        default=None,
        description="Seconds one model call may take in all, retries included; none by default, so "
        "a turn still producing tokens is never cut (max_time bounds the run).",
    )
    idle_timeout: float = Field(
        default=660.0,
        description="Seconds an answer may go without a byte (keep-alives count) before it is retried; "
        "above DeepSeek's 10-minute queue, during which it sends keep-alives.",
    )
    max_retries: int = Field(default=6, description="Retries of one model call on transient errors.")
    retry_cap: float = Field(
        default=60.0,
        description="Longest backoff wait of tome's own, in seconds; a server's Retry-After is waited "
        "out in full when max_time allows it.",
    )
    pack_budget: int | None = Field(
        default=None, description="Tokens for the repository pack; window minus reserve when unset."
    )
    max_steps: int | None = Field(default=None, description="Stop after this many model calls.")
    max_cost: float | None = Field(default=None, description="Stop before spending more USD than this.")
    max_time: float | None = Field(default=None, description="Stop after this many wall seconds.")
    max_tokens: int | None = Field(
        default=None, description="Stop before the run's prompt plus output tokens pass this."
    )
    state_dir: Path = Field(
        default_factory=lambda: _user_dir("state"),
        description="Where runs (trajectories, spilled outputs) are kept.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: _user_dir("cache"),
        description="Where token-count caches and repository caches are kept.",
    )
    safety: SafetySettings = Field(
        default_factory=SafetySettings, description="Sandbox, network and approval limits."
    )
    web_search: str | None = Field(
        default=None,
        description="Web search provider: a SearXNG URL, or 'brave' / 'tavily' "
        "(key from BRAVE_API_KEY / TAVILY_API_KEY); web search is off when unset.",
    )

    def profile(self) -> ModelProfile:
        """The model profile with this settings' overrides applied."""
        return get_profile(
            self.model,
            base_url=self.base_url,
            context_window=self.context_window,
            max_output=self.max_output,
        )

    def resolved_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key from settings, else from the profile's key variable (DEEPSEEK_API_KEY, ...)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        env = os.environ if environ is None else environ
        return env.get(self.profile().api_key_env) or None


class LoadedSettings(BaseModel):
    """Settings plus where they came from and what was ignored."""

    settings: Settings
    sources: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    fields = Settings.model_fields
    for key, value in environ.items():
        if not key.startswith("TOME_"):
            continue
        name = key[5:].lower()
        if name.startswith("safety_") and name[7:] in SafetySettings.model_fields:
            sub = name[7:]
            ann = SafetySettings.model_fields[sub].annotation
            layer.setdefault("safety", {})[sub] = value.split(",") if ann == list[str] else value
        elif name in fields:
            layer[name] = value
    # Providers' own variables, below TOME_* in precedence.
    if "OPENAI_BASE_URL" in environ and "base_url" not in layer:
        layer["base_url"] = environ["OPENAI_BASE_URL"]
    return layer


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _validate(data: dict[str, Any], where: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def load_settings(
    project_dir: Path | None = None,
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    user_file: Path | None = None,
) -> LoadedSettings:
    """Layer defaults, user file, project `tome.toml`, environment and CLI values, in that order."""
    env = os.environ if environ is None else environ
    sources: list[str] = ["defaults"]
    warnings: list[str] = []
    data: dict[str, Any] = {}

    user_path = user_file if user_file is not None else user_config_path()
    if user_path.is_file():
        data = _merge(data, _read_toml(user_path))
        _validate(data, str(user_path))
        sources.append(str(user_path))

    project_path = (project_dir or Path.cwd()) / "tome.toml"
    if project_path.is_file():
        layer = _read_toml(project_path)
        current = _validate(data, "settings").safety
        safety = dict(layer.pop("safety", {}) or {})
        for field in list(safety):
            if field not in SafetySettings.model_fields:
                continue  # validation below names it
            new = SafetySettings.model_validate({**current.model_dump(), field: safety[field]})
            if _widens(field, getattr(current, field), getattr(new, field)):
                warnings.append(
                    f"{project_path}: ignored safety.{field} = {safety.pop(field)!r}: "
                    "a project file may tighten safety settings, never widen them"
                )
        if "api_key" in layer:
            layer.pop("api_key")
            warnings.append(f"{project_path}: ignored api_key: keys never come from a repository")
        if safety:
            layer["safety"] = safety
        data = _merge(data, layer)
        _validate(data, str(project_path))
        sources.append(str(project_path))

    env_layer = _env_layer(env)
    if env_layer:
        data = _merge(data, env_layer)
        _validate(data, "environment")
        sources.append("environment")

    if cli:
        cli_layer: dict[str, Any] = {}
        for k, v in cli.items():
            if v is None:
                continue
            if k.startswith("safety."):
                cli_layer.setdefault("safety", {})[k[7:]] = v
            else:
                cli_layer[k] = v
        if cli_layer:
            data = _merge(data, cli_layer)
            sources.append("command line")

    return LoadedSettings(settings=_validate(data, "settings"), sources=sources, warnings=warnings)
