"""Settings, layered once: defaults, user file, project file, environment, command line.

The project file (`tome.toml` in the repository) is written by whoever wrote the repository, so
each field declares who may set it (`Trust`, data on the field): most fields (endpoint, key, model,
state and cache places, the search provider, client behaviour) only the user's file, the
environment or the command line; a few task-level ones (mode) also the project; budgets and safety
limits the project may only tighten. A project value it may not set is ignored with a warning.
A field that declares nothing is user-only, so a new field is safe until someone opens it up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic.fields import FieldInfo

from agent.errors import ConfigError
from agent.profiles import ModelProfile, get_profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "HookCommand",
    "HookSettings",
    "LoadedSettings",
    "McpServer",
    "McpSettings",
    "SafetySettings",
    "Settings",
    "Trust",
    "field_trust",
    "load_settings",
    "user_config_path",
]

APP = "tome"


def user_config_path() -> Path:
    """`~/.config/tome/config.toml`, honouring XDG_CONFIG_HOME."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP / "config.toml"


def _user_dir(kind: str) -> Path:
    import platformdirs

    fn = {"cache": platformdirs.user_cache_dir, "state": platformdirs.user_state_dir}[kind]
    return Path(fn(APP, appauthor=False))


class Trust(str, Enum):
    """Who may set a settings field."""

    USER = "user"  # user config, environment, command line: never a project file
    PROJECT = "project"  # a project's tome.toml as well
    TIGHTEN = "tighten"  # a project's tome.toml only to make it stricter


def _trust(level: Trust, *, order: list[Any] | None = None) -> dict[str, Any]:
    """A field's trust declaration; `order` lists a choice's values from strictest to widest."""
    return {"trust": level.value, **({"order": order} if order else {})}


def _cap(description: str) -> Any:
    """A limit that a project file may lower but not raise or remove (None: unset)."""
    return Field(default=None, description=description, json_schema_extra=_trust(Trust.TIGHTEN))


def field_trust(info: FieldInfo) -> Trust:
    """The trust level a field declares; user-only when it declares none."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return Trust(extra.get("trust", Trust.USER.value))


class SafetySettings(BaseModel):
    """What the agent may do outside plain file edits; a project file can only tighten these."""

    model_config = ConfigDict(extra="forbid")

    sandbox: Literal["require", "auto", "off"] = Field(
        default="auto",
        description="Run the shell under bubblewrap: require it, use it when installed, or never.",
        json_schema_extra=_trust(Trust.TIGHTEN, order=["require", "auto", "off"]),
    )
    network: bool = Field(
        default=False,
        description="Let shell commands reach the network.",
        json_schema_extra=_trust(Trust.TIGHTEN, order=[False, True]),
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Private or loopback hosts the web tools may fetch despite the SSRF guard.",
        json_schema_extra=_trust(Trust.TIGHTEN),
    )
    allow_private_search: bool = Field(
        default=False,
        description="Let web search reach its provider on a private or loopback address "
        "(a local SearXNG); only the provider's own host, and only for search requests.",
        json_schema_extra=_trust(Trust.TIGHTEN, order=[False, True]),
    )
    approval: Literal["deny", "ask", "allow"] = Field(
        default="ask",
        description="Destructive commands: refuse, ask the user (interactive only), or allow.",
        json_schema_extra=_trust(Trust.TIGHTEN, order=["deny", "ask", "allow"]),
    )
    env_passthrough: list[str] = Field(
        default_factory=list,
        description="Extra environment variables the shell inherits (secrets are withheld otherwise).",
        json_schema_extra=_trust(Trust.TIGHTEN),
    )
    bwrap: str = Field(
        default="bwrap",
        description="The bubblewrap program, a name looked up on PATH or a path; never from a project file.",
        json_schema_extra=_trust(Trust.USER),
    )


class McpServer(BaseModel):
    """One MCP server the user runs tools from: a stdio command, or a streamable-HTTP URL."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(default=None, description="Program to start (stdio transport).")
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for it (tome's own secrets are withheld)."
    )
    url: str | None = Field(default=None, description="Streamable-HTTP endpoint, instead of a command.")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers sent to `url`.")
    tools: list[str] | None = Field(
        default=None, description="Only these of its tools are offered to the model (all when unset)."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds to connect, list or call a tool.")
    approval: Literal["deny", "ask", "allow"] = Field(
        default="ask",
        description="Calls to its tools: refuse, ask the user (interactive only; headless refuses), "
        "or allow (headless too).",
    )

    def transport(self) -> Literal["stdio", "http"]:
        """Which transport the entry describes (exactly one of command and url is set)."""
        if (self.command is None) == (self.url is None):
            raise ConfigError("an MCP server needs exactly one of `command` (stdio) or `url` (HTTP)")
        return "stdio" if self.command is not None else "http"


class McpSettings(BaseModel):
    """MCP servers: the user defines them; a project may only name those it wants."""

    model_config = ConfigDict(extra="forbid")

    servers: dict[str, McpServer] = Field(
        default_factory=dict, description="Servers by name ([mcp.servers.NAME] in the user config)."
    )
    use: list[str] | None = Field(
        default=None,
        description="Only these of the user's servers are started for this repository (all when unset).",
        json_schema_extra=_trust(Trust.PROJECT),
    )


class HookCommand(BaseModel):
    """A user command run on an event, given the event as JSON on stdin; non-zero exit blocks."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | str = Field(description="argv, or one string run by /bin/sh -c.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds it may take; a timeout blocks.")
    tools: list[str] | None = Field(
        default=None, description="Tool events: only for these tool names (all when unset)."
    )


class HookSettings(BaseModel):
    """Commands run around tool calls, submissions and the end of a run (user config only)."""

    model_config = ConfigDict(extra="forbid")

    before_tool: list[HookCommand] = Field(
        default_factory=list, description="Before a tool runs; non-zero exit blocks it (stdout is the reason)."
    )
    after_tool: list[HookCommand] = Field(
        default_factory=list, description="After a tool ran, with its result; non-zero exit is reported."
    )
    before_submit: list[HookCommand] = Field(
        default_factory=list, description="Before a submission is checked; non-zero exit rejects it."
    )
    run_end: list[HookCommand] = Field(default_factory=list, description="When the run has ended.")


def _widens(info: FieldInfo, old: Any, new: Any) -> bool:
    """Whether `new` is less strict than `old` for a TIGHTEN field."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "order" in extra:
        order = extra["order"]
        return order.index(new) > order.index(old)
    if isinstance(new, list):
        return not set(new) <= set(old)  # adding entries widens
    if new is None or old is None:
        return old is not None  # a cap (None: no cap) widens when removed
    return bool(new > old)  # a cap widens when raised


class Settings(BaseModel):
    """Every knob tome has; each field says what it does and who may set it (user-only by default)."""

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
    mode: str = Field(
        default="auto",
        description="Reasoning mode (a row of agent.modes.MODE_TABLE, or an alias), or auto to choose "
        "from the task.",
        json_schema_extra=_trust(Trust.PROJECT),
    )
    triage: bool = Field(
        default=True,
        description="With mode auto, start with a short triage turn over the cached pack that rates the "
        "task and picks the mode; off, or when it fails, a rule on the statement's length picks it.",
        json_schema_extra=_trust(Trust.PROJECT),
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
    pack_budget: int | None = _cap("Tokens for the repository pack; window minus reserve when unset.")
    pack_index: Literal["background", "here", "off"] = Field(
        default="background",
        description="After a tree's first pack for a task, index it for the tasks to come (counts, "
        "outlines, ranking entries): background (a detached lowest-priority process, for trees of "
        "1,000 files or more; smaller ones at their second task), here (in the pack's own process), "
        "or off.",
    )
    max_steps: int | None = _cap("Stop after this many model calls.")
    max_cost: float | None = _cap("Stop before spending more USD than this.")
    max_time: float | None = _cap("Stop after this many wall seconds.")
    max_tokens: int | None = _cap("Stop before the run's prompt plus output tokens pass this.")
    state_dir: Path = Field(
        default_factory=lambda: _user_dir("state"),
        description="Where runs (trajectories, spilled outputs) are kept.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: _user_dir("cache"),
        description="Where token-count caches and repository caches are kept.",
    )
    safety: SafetySettings = Field(
        default_factory=SafetySettings,
        description="Sandbox, network and approval limits.",
        json_schema_extra=_trust(Trust.TIGHTEN),
    )
    instructions: list[str] = Field(
        default_factory=list,
        description="More instruction files (paths in the repository) sent with AGENTS.md.",
        json_schema_extra=_trust(Trust.PROJECT),
    )
    mcp: McpSettings = Field(
        default_factory=McpSettings,
        description="MCP servers whose tools the model may call (a project may only name them).",
        json_schema_extra=_trust(Trust.PROJECT),
    )
    hooks: HookSettings = Field(
        default_factory=HookSettings, description="User commands run on tool and run events."
    )
    web_search: str | None = Field(
        default=None,
        description="Web search provider: a SearXNG URL, or 'brave' / 'tavily' "
        "(key from BRAVE_API_KEY / TAVILY_API_KEY); web search is off when unset.",
    )

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        from agent.modes import parse_mode

        try:
            mode = parse_mode(value)
        except ConfigError as e:  # as a ValueError, pydantic says which layer set it
            raise ValueError(str(e)) from None
        return "auto" if mode is None else mode.value

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
    origins: dict[str, str] = Field(
        default_factory=dict,
        description="Each setting a layer set (dotted name, e.g. safety.sandbox) and the source "
        "whose value won; unnamed settings are defaults.",
    )


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


def _submodel(info: FieldInfo) -> type[BaseModel] | None:
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _widening(info: FieldInfo, old: Any, value: Any) -> bool:
    try:
        new = TypeAdapter(info.annotation).validate_python(value)
    except ValidationError:
        return False  # kept, so that validation names the problem
    return _widens(info, old, new)


def _screen(
    layer: Mapping[str, Any], model: type[BaseModel], current: BaseModel, prefix: str = ""
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Split a project layer into what it may set, the user-only names, and widening values."""
    kept: dict[str, Any] = {}
    user_only: list[str] = []
    widening: list[str] = []
    for key, value in layer.items():
        info = model.model_fields.get(key)
        if info is None:
            kept[key] = value  # validation names an unknown key
            continue
        name, trust, sub = prefix + key, field_trust(info), _submodel(info)
        if trust is Trust.USER:
            user_only.append(name)
        elif sub is not None and isinstance(value, Mapping):  # each inner field declares its own trust
            inner, more_user, more_widening = _screen(value, sub, getattr(current, key), name + ".")
            user_only += more_user
            widening += more_widening
            if inner:
                kept[key] = inner
        elif trust is Trust.TIGHTEN and _widening(info, getattr(current, key), value):
            widening.append(f"{name} = {value!r}")
        else:
            kept[key] = value
    return kept, user_only, widening


def _project_layer(
    path: Path, current: Settings, user_path: Path
) -> tuple[dict[str, Any], list[str]]:
    """What a project's tome.toml may set, and a warning for each thing it may not."""
    kept, user_only, widening = _screen(_read_toml(path), Settings, current)
    warnings = [
        f"{path}: ignored {w}: a project file may tighten safety settings and budgets, "
        "never widen them"
        for w in widening
    ]
    if user_only:
        warnings.insert(0, (
            f"{path}: ignored {', '.join(user_only)}: a project file may not choose endpoints, keys, "
            "models, the search provider, where state goes or how tome's client behaves; set "
            f"{'it' if len(user_only) == 1 else 'them'} in {user_path}, the environment "
            "(TOME_*) or on the command line"
        ))  # fmt: skip
    return kept, warnings


def _dotted(layer: Mapping[str, Any], prefix: str = "") -> list[str]:
    names: list[str] = []
    for key, value in layer.items():
        if isinstance(value, Mapping):
            names += _dotted(value, f"{prefix}{key}.")
        else:
            names.append(prefix + key)
    return names


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
    origins: dict[str, str] = {}
    data: dict[str, Any] = {}

    def add(layer: Mapping[str, Any], source: str) -> None:
        nonlocal data
        data = _merge(data, layer)
        _validate(data, source)
        sources.append(source)
        origins.update(dict.fromkeys(_dotted(layer), source))

    user_path = user_file if user_file is not None else user_config_path()
    if user_path.is_file():
        add(_read_toml(user_path), str(user_path))

    project_path = (project_dir or Path.cwd()) / "tome.toml"
    if project_path.is_file():
        layer, ignored = _project_layer(project_path, _validate(data, "settings"), user_path)
        warnings += ignored
        add(layer, str(project_path))

    env_layer = _env_layer(env)
    if env_layer:
        add(env_layer, "environment")

    cli_layer: dict[str, Any] = {}
    for k, v in (cli or {}).items():
        if v is None:
            continue
        if k.startswith("safety."):
            cli_layer.setdefault("safety", {})[k[7:]] = v
        else:
            cli_layer[k] = v
    if cli_layer:
        add(cli_layer, "command line")

    settings = _validate(data, "settings")
    warnings.extend(_model_warnings(settings))
    return LoadedSettings(settings=settings, sources=sources, warnings=warnings, origins=origins)


def _model_warnings(settings: Settings) -> list[str]:
    """An unknown model is an error now (naming the closest known one), unless a base URL says
    where it is served: then the generic profile applies, and its small window is said."""
    from agent.profiles import is_known

    profile = settings.profile()  # raises ConfigError for an unknown name without a base URL
    if is_known(settings.model):
        return []
    return [f"model {settings.model!r} is not a known profile: using the generic OpenAI-compatible "
            f"profile ({profile.context_window:,}-token window, {profile.max_output:,} output); set "
            "context_window and max_output in your config if the endpoint allows more"]
