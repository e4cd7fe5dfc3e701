"""@tool schemas, Toolbox validation of every kind of model mistake, result bounding and spilling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from _tools_fixtures import make_ctx
from pydantic import ValidationError

from tools.base import Tool, Toolbox, ToolContext, ToolError, tool


@tool
def greet(
    ctx: ToolContext, name: str, times: int = 1, style: Literal["plain", "loud"] = "plain"
) -> str:
    """Greet someone.

    Args:
        name: Who to greet.
        times: How many times.
        style: How to say it.
    """
    if name == "nobody":
        raise ToolError("there is nobody to greet; give a real name.", kind="bad_name")
    text = f"hello {name}"
    return " ".join([text.upper() if style == "loud" else text] * times)


@tool(name="dump")
def dump_lines(ctx: ToolContext, n: int, width: int = 10) -> str:
    """Print n numbered lines."""
    return "".join(f"{i:06d} " + "x" * width + "\n" for i in range(n))


@tool
def buggy(ctx: ToolContext) -> str:
    """Our own bug."""
    raise KeyError("internal")


class CharCounter:
    """One token per character: makes budgets in tests exact."""

    def count(self, text: str) -> int:
        return len(text)


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    root = tmp_path / "ws"
    root.mkdir()
    return Toolbox(
        [greet, dump_lines, buggy], make_ctx(root, tmp_path / "state"), tokenizer=CharCounter()
    )


def test_schema_is_in_deepseeks_strict_subset():
    # api-docs.deepseek.com/guides/tool_calls, strict mode: its schema subset has no null type,
    # and strict needs every property required, so a tool with optional parameters is not strict.
    s = greet.schema()
    assert s["type"] == "function"
    f = s["function"]
    assert f["name"] == "greet" and f["description"] == "Greet someone." and f["strict"] is False
    params = f["parameters"]
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["name"]
    assert params["properties"]["name"] == {"type": "string", "description": "Who to greet."}
    times = params["properties"]["times"]
    assert times["type"] == "integer" and "anyOf" not in times
    assert "(default: 1)" in times["description"]
    style = params["properties"]["style"]
    assert style["enum"] == ["plain", "loud"]
    assert '"null"' not in json.dumps(s)
    assert "title" not in json.dumps(s) and '"default"' not in json.dumps(s)
    assert dump_lines.name == "dump"
    assert dump_lines.schema()["function"]["parameters"]["properties"]["n"]["type"] == "integer"


def test_tool_needs_ctx_and_hints():
    def no_ctx(x: int) -> str:
        return ""

    def no_hint(ctx, x) -> str:  # type: ignore[no-untyped-def]
        return ""

    with pytest.raises(TypeError):
        Tool(no_ctx)
    with pytest.raises(TypeError):
        Tool(no_hint)


def test_direct_call_validates(tmp_path: Path):
    ctx = make_ctx(tmp_path, tmp_path / "s")
    assert greet(ctx, name="a", times=2) == "hello a hello a"
    with pytest.raises(ValidationError):
        greet(ctx, name=3)


def test_run_ok_and_nulls_mean_defaults(box: Toolbox):
    r = box.run("c1", "greet", json.dumps({"name": "ann", "times": None, "style": None}))
    assert r.ok and r.content == "hello ann" and r.call_id == "c1" and r.error_kind is None
    r = box.run("c2", "greet", '{"name": "bo", "times": 2, "style": "loud"}')
    assert r.content == "HELLO BO HELLO BO"


def test_quoted_integer_is_accepted(box: Toolbox):
    assert box.run("c", "greet", '{"name": "x", "times": "2"}').content == "hello x hello x"


@pytest.mark.parametrize(
    "arguments, kind, needles",
    [
        ('{"name": "x",', "invalid_json", ["not valid JSON", "name (string)"]),
        ("[1, 2]", "invalid_json", ["must be a JSON object"]),
        ("{}", "invalid_arguments", ["missing required argument `name`", "Call greet again"]),
        ('{"name": 5}', "invalid_arguments", ["argument `name`", "expected string", "got 5"]),
        ('{"name": "x", "times": "many"}', "invalid_arguments", ["argument `times`", '"many"']),
        (
            '{"name": "x", "style": "quiet"}',
            "invalid_arguments",
            ["argument `style`", '"plain" | "loud"'],
        ),
        ('{"name": "x", "colour": "red"}', "invalid_arguments", ["unexpected argument `colour`"]),
        ('{"name": "nobody"}', "bad_name", ["Error: there is nobody to greet"]),
    ],
)
def test_model_mistakes_become_error_results(box: Toolbox, arguments, kind, needles):
    r = box.run("c", "greet", arguments)
    assert not r.ok and r.error_kind == kind and r.name == "greet"
    for n in needles:
        assert n in r.content


def test_empty_arguments_mean_no_arguments(box: Toolbox):
    r = box.run("c", "greet", "")
    assert r.error_kind == "invalid_arguments" and "missing required argument `name`" in r.content


def test_double_encoded_arguments_are_repaired(box: Toolbox):
    r = box.run("c", "greet", json.dumps(json.dumps({"name": "z"})))
    assert r.ok and r.content == "hello z"


def test_unknown_tool(box: Toolbox):
    r = box.run("c", "greeting", '{"name": "x"}')
    assert not r.ok and r.error_kind == "unknown_tool"
    assert "greet, dump, buggy" in r.content


def test_case_insensitive_name_is_repaired_and_logged(box: Toolbox, caplog):
    with caplog.at_level("INFO", logger="tome.tools"):
        r = box.run("c", "GREET", '{"name": "x"}')
    assert r.ok and r.name == "greet" and r.repaired_from == "GREET"
    assert "repaired tool name" in caplog.text
    assert box.ctx.notes == ["repaired tool name 'GREET' -> 'greet'"]


def test_our_bugs_propagate(box: Toolbox):
    with pytest.raises(KeyError):
        box.run("c", "buggy", "{}")


@tool
def touch(ctx: ToolContext, path: str, where: Literal["workspace", "state"] = "workspace") -> str:
    """Open a file for writing, in the workspace (the model's choice) or in tome's own state dir."""
    base = ctx.workspace.root if where == "workspace" else ctx.state_dir
    with open(base / path, "w"):  # noqa: PTH123 - the OSError is the point
        return "ok"


@pytest.mark.parametrize(
    ("arguments", "kind", "needle"),
    [
        # RecursionError, ValueError (Python's 4,300-digit limit), a lone surrogate, deep nesting
        ('{"name": ' + "[" * 50_000 + "]" * 50_000 + "}", "invalid_json", "nested too deeply"),
        ('{"name": "x", "times": ' + "7" * 5000 + "}", "invalid_arguments", "5,000 digits"),
        ('{"name": "x", "times": ' + "7" * 19 + "}", "invalid_arguments", "at most 18 digits"),
        ('{"name": "\\ud800 and \\udfff"}', "invalid_arguments", "lone UTF-16 surrogate (\\ud800) in `name`"),
        ('{"name": ' + "[" * 40 + "]" * 40 + "}", "invalid_arguments", "nested more than 32 levels"),
    ],
    ids=["recursion", "5000-digits", "beyond-64-bits", "surrogate", "deep"],
)
def test_unusable_argument_text_is_the_models_mistake(box: Toolbox, arguments: str, kind: str, needle: str):
    r = box.run("c", "greet", arguments)
    assert not r.ok and r.error_kind == kind and needle in r.content, r.content
    assert "Send one JSON object with: name (string)" in r.content


def test_valid_surrogate_pairs_are_characters(box: Toolbox):
    assert box.run("c", "greet", '{"name": "\\ud83d\\ude00"}').content == "hello \U0001f600"


def test_os_errors_on_the_models_paths_are_observations(tmp_path: Path):
    root, state = tmp_path / "ws", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    box = Toolbox([touch], make_ctx(root, state), tokenizer=CharCounter())
    r = box.run("c", "touch", json.dumps({"path": "n" * 300}))  # Linux NAME_MAX is 255 bytes
    assert not r.ok and r.error_kind == "os_error" and "ENAMETOOLONG" in r.content
    assert "(300 characters)" in r.content and "at most 255 bytes" in r.content
    r = box.run("c", "touch", json.dumps({"path": "missing/dir/f.txt"}))
    assert not r.ok and "ENOENT" in r.content and "find_files" in r.content
    # the same error on a path of tome's own (outside the workspace) is our bug: it raises
    with pytest.raises(OSError, match="File name too long"):
        box.run("c", "touch", json.dumps({"path": "n" * 300, "where": "state"}))


def test_duplicate_tool_names_refused(tmp_path: Path):
    with pytest.raises(ValueError):
        Toolbox([greet, greet], make_ctx(tmp_path, tmp_path / "s"))


def test_schemas_in_order(box: Toolbox):
    assert [s["function"]["name"] for s in box.schemas()] == ["greet", "dump", "buggy"]


def test_small_result_is_not_spilled(box: Toolbox):
    r = box.run("c", "dump", '{"n": 3}')
    assert not r.truncated and r.spilled_to is None
    assert not box.ctx.spill_dir.exists()


def test_big_result_keeps_head_and_tail_and_spills(box: Toolbox):
    box.result_token_budget = 2_000
    r = box.run("call/7", "dump", '{"n": 5000}')
    assert r.ok and r.truncated and r.spilled_to
    full = Path(r.spilled_to).read_text()
    assert full == dump_lines.fn(box.ctx, 5000)
    assert Path(r.spilled_to).parent == box.ctx.spill_dir
    assert len(r.content) <= 2_000
    lines = r.content.splitlines()
    assert lines[0].startswith("000000 ") and lines[-1].startswith("004999 ")
    note = next(l for l in lines if l.startswith("[..."))
    assert "of 5,000 cut" in note and r.spilled_to in note and "view_range" in note
    # The lines kept are exactly the head and tail of the full text.
    kept = [l for l in lines if not l.startswith("[...")]
    assert all(l in full for l in kept)


def test_one_huge_line_is_cut_by_characters(box: Toolbox):
    box.result_token_budget = 500
    r = box.run("c", "dump", '{"n": 1, "width": 100000}')
    assert r.truncated and len(r.content) <= 500 + 400
    assert "characters" in r.content and r.content.startswith("000000 xxx")


def test_error_results_are_bounded_too(tmp_path: Path):
    @tool
    def loud_fail(ctx: ToolContext) -> str:
        """Fails with a long message."""
        raise ToolError("line\n" * 10_000)

    b = Toolbox(
        [loud_fail],
        make_ctx(tmp_path, tmp_path / "s"),
        result_token_budget=300,
        tokenizer=CharCounter(),
    )
    r = b.run("c", "loud_fail", "{}")
    assert not r.ok and r.truncated and r.spilled_to and len(r.content) < 700


def test_default_counter_is_used_without_tokenizer(tmp_path: Path):
    b = Toolbox([dump_lines], make_ctx(tmp_path, tmp_path / "s"), result_token_budget=100)
    r = b.run("c", "dump", '{"n": 1000}')
    assert r.truncated and b.counter.count(r.content) <= 100 + 80


def test_submit_sets_the_context(tmp_path: Path):
    from tools.submit import submit

    b = Toolbox([submit], make_ctx(tmp_path, tmp_path / "s"))
    r = b.run("c", "submit", '{"summary": "  "}')
    assert not r.ok and "summary is empty" in r.content and b.ctx.submitted is None
    r = b.run("c", "submit", '{"summary": "Fixed the parser; tests pass."}')
    assert r.ok and b.ctx.submitted == "Fixed the parser; tests pass."
    assert not b.run("c", "submit", '{"summary": "again"}').ok
    assert b.ctx.submitted == "Fixed the parser; tests pass."


def test_importing_tools_has_no_side_effects(tmp_path: Path):
    import subprocess
    import sys

    code = (
        "import sys, tools; before = set(sys.modules); "
        "assert 'tools.base' not in sys.modules, 'eager import'; "
        "from tools import EDIT_TOOLS, GIT_TOOLS, SEARCH_TOOLS, PATCH_TOOLS, SUBMIT_TOOLS; "
        "print(len(EDIT_TOOLS + GIT_TOOLS + SEARCH_TOOLS + PATCH_TOOLS + SUBMIT_TOOLS))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "14"
    assert list(tmp_path.iterdir()) == []


def test_every_core_tool_has_a_schema_in_the_strict_subset():
    from tools import EDIT_TOOLS, GIT_TOOLS, PATCH_TOOLS, SEARCH_TOOLS, SUBMIT_TOOLS

    for t in EDIT_TOOLS + PATCH_TOOLS + SEARCH_TOOLS + GIT_TOOLS + SUBMIT_TOOLS:
        f = t.schema()["function"]
        params = f["parameters"]
        assert f["description"] and f["strict"] is (params["required"] == list(params["properties"])), t.name
        assert params["additionalProperties"] is False and '"null"' not in json.dumps(params), t.name
        assert set(params["required"]) == set(params["properties"]) - set(t.defaults), t.name
        for name, prop in params["properties"].items():
            assert prop.get("description"), f"{t.name}.{name} has no description"


def test_default_tools_are_unique_and_strict():
    from tools import default_tools

    tools_ = default_tools(browser=False)
    names = [t.name for t in tools_]
    assert len(names) == len(set(names))
    assert {"view", "str_replace", "apply_patch", "grep", "bash", "git_diff", "submit"} <= set(
        names
    )
    assert "render_url" not in names
    for t in tools_:
        params = t.schema()["function"]["parameters"]
        assert params["additionalProperties"] is False
        assert set(params["required"]) == set(params["properties"]) - set(t.defaults)
