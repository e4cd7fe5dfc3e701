"""Per-repository environment specs as data: pins per (repo, version), install, how to run tests.

The table follows ../shared/swe/RUNNABLE.md (what was checked to work on Python 3.11 here) and
SWE-bench's own per-version specs (swebench/harness/constants/python.py @ b8d5332, the last
revision with the table) and per-instance environment.yml files (@ 7a21e05). Audited against
them: sympy (mpmath==1.3.0), astropy (all 25 pins), pytest 7.x/8.x (all pins), django (none
beyond tests/requirements/py3.txt) match; flask 2.0/2.3 and pylint 2.14/2.15 now match. Left
as it is, for Python 3.11: build tools (setuptools<70, wheel, setuptools_scm<8, cython<3). Not
specified: requests (RUNNABLE.md: neither instance tried runs here). Commands run with the
environment's `bin/` first on PATH.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from unidiff import PatchSet

from agent.errors import ConfigError

__all__ = ["SPECS", "EnvSpec", "env_spec", "load_spec_file", "register_spec", "test_command", "test_files"]

Runner = Literal["pytest", "django", "sympy"]

_TEST_ENV = {
    "PYTHONWARNINGS": "ignore::UserWarning,ignore::SyntaxWarning,ignore::DeprecationWarning",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}


class EnvSpec(BaseModel):
    """How to build one (repo, version) environment and run a task's tests in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runner: Runner = Field(description="Which test runner, hence command line and log parser.")
    pins: list[str] = Field(default_factory=list, description="Requirements installed first.")
    install: list[str] = Field(
        default_factory=lambda: ["python -m pip install --no-build-isolation -e ."],
        description="Commands run once in the environment's own checkout (at the setup commit).",
    )
    requirements: list[str] = Field(
        default_factory=list,
        description="Requirement files of the checkout installed best effort (per line if whole fails).",
    )
    task_install: list[str] = Field(
        default_factory=list,
        description="Commands run in each task's checkout before its tests (e.g. a C build); "
        "the environment is locked for the task while they and the tests run.",
    )
    pythonpath: list[str] = Field(
        default_factory=lambda: ["."],
        description="Checkout-relative dirs put first on PYTHONPATH so tests import the task's code.",
    )
    restore: list[str] = Field(
        default_factory=list,
        description="Commands that restore files whose blobs the repository cache lacks.",
    )
    test_env: dict[str, str] = Field(default_factory=lambda: dict(_TEST_ENV))
    ccache: bool = Field(
        default=False,
        description="Compile C extensions through ccache when it is installed (per-task builds).",
    )
    system_site_packages: bool = Field(
        default=False, description="Let the venv see this interpreter's packages (tests, quick trials).")
    use_current_interpreter: bool = Field(
        default=False,
        description="Run with this interpreter, no venv and no install (synthetic tasks, tests).",
    )
    timeout: float = Field(default=1800.0, description="Seconds for one task's test run.")

    def digest(self) -> str:
        """Stable hash of everything that shapes the built environment."""
        parts = [sys.version, *self.pins, "|", *self.install, "|", *self.requirements]
        if self.system_site_packages:
            parts.append("|system-site-packages")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


_BUILD = ["setuptools<70", "wheel"]
_PYTEST_RUN = "pytest"

_ASTROPY_PINS = [
    "setuptools==68.0.0", "wheel", "setuptools_scm<8", "cython<3", "extension-helpers<1.1",
    "attrs==23.1.0", "exceptiongroup==1.1.3", "execnet==2.0.2", "hypothesis==6.82.6",
    "iniconfig==2.0.0", "numpy==1.25.2", "packaging==23.1", "pluggy==1.3.0", "psutil==5.9.5",
    "pyerfa==2.0.0.3", "pytest-arraydiff==0.5.0", "pytest-astropy-header==0.2.2",
    "pytest-astropy==0.10.0", "pytest-cov==4.1.0", "pytest-doctestplus==1.0.0",
    "pytest-filter-subpackage==0.1.2", "pytest-mock==3.11.1", "pytest-openfiles==0.5.0",
    "pytest-remotedata==0.4.0", "pytest-xdist==3.3.1", "pytest==7.4.0", "PyYAML==6.0.1",
    "sortedcontainers==2.4.0", "tomli==2.0.1", "astropy-iers-data",
]
# The repository snapshot lacks blobs >= 4 MiB; the IERS table ships in astropy-iers-data.
_ASTROPY_RESTORE = [(
    "python -c \"import pathlib, shutil, astropy_iers_data as d; "
    "dst = pathlib.Path('astropy/utils/iers/data/eopc04.1962-now'); "
    "dst.exists() or shutil.copy(pathlib.Path(d.__file__).parent / 'data' / dst.name, dst)\""
)]
# Official pins: SPECS_FLASK (constants/python.py @ b8d5332); blinker, python-dotenv and pytest
# come from flask's requirements/dev.txt there, pinned here to versions that work on 3.11.
_FLASK_23 = ["Werkzeug==2.3.7", "Jinja2==3.1.2", "itsdangerous==2.1.2", "click==8.1.3",
             "MarkupSafe==2.1.1", "blinker==1.6.2", "python-dotenv", "pytest==7.4.4"]
_FLASK_20 = ["Werkzeug==2.3.7", "Jinja2==3.0.1", "itsdangerous==2.1.2", "click==8.0.1",
             "MarkupSafe==2.1.3", "python-dotenv", "pytest==7.4.4"]
_PYTEST_70 = ["setuptools_scm<8", "attrs==23.1.0", "iniconfig==2.0.0", "packaging==23.1",
              "pluggy==0.13.1", "py==1.11.0", "tomli==2.0.1"]
_PYTEST_80 = ["setuptools_scm<8", "iniconfig==2.0.0", "packaging==23.1", "pluggy==1.3.0",
              "exceptiongroup==1.1.3", "tomli==2.0.1"]


def _sympy() -> EnvSpec:
    return EnvSpec(runner="sympy", pins=[*_BUILD, "mpmath==1.3.0"])


def _django() -> EnvSpec:
    return EnvSpec(runner="django", pins=_BUILD, requirements=["tests/requirements/py3.txt"])


def _astropy() -> EnvSpec:
    # Compiled extensions live in the checkout, so each task builds its own (like SWE-bench).
    return EnvSpec(
        runner="pytest", pins=_ASTROPY_PINS, install=[],
        task_install=["python -m pip install --no-deps --no-build-isolation -e ."],
        restore=_ASTROPY_RESTORE, ccache=True,
    )


def _pytest(pins: list[str]) -> EnvSpec:
    # setuptools_scm writes src/_pytest/_version.py at install time: install per task.
    return EnvSpec(
        runner="pytest", pins=[*_BUILD, *pins], pythonpath=["src"],
        task_install=["python -m pip install --no-deps --no-build-isolation -e ."],
    )


# The per-instance environment.yml files of pylint 2.14/2.15 (swebench/resources/swebench-og/
# pylint-dev__pylint/{6386,6528,6903,7080,7277}/environment.yml @ 7a21e05) pin these; a newer
# tomlkit than theirs breaks pylint 2.15's config tests ("Can't add a table to a dotted key").
_PYLINT_PINS = ["pytest==7.4.4", "py==1.11.0", "tomlkit==0.13.2", "isort==5.10.1", "dill==0.3.9",
                "platformdirs==4.3.6"]


def _pylint() -> EnvSpec:
    return EnvSpec(runner="pytest", pins=[*_BUILD, *_PYLINT_PINS], requirements=["requirements_test_min.txt"])


# repo -> (version prefix or "*") -> spec; the longest matching prefix wins.
SPECS: dict[str, dict[str, EnvSpec]] = {
    "sympy/sympy": {"*": _sympy()},
    "django/django": {"*": _django()},
    "astropy/astropy": {"*": _astropy()},
    "pytest-dev/pytest": {"7": _pytest(_PYTEST_70), "8": _pytest(_PYTEST_80)},
    "pallets/flask": {
        "2.0": EnvSpec(runner="pytest", pins=[*_BUILD, *_FLASK_20], pythonpath=["src"]),
        "*": EnvSpec(runner="pytest", pins=[*_BUILD, *_FLASK_23], pythonpath=["src"]),
    },
    "pylint-dev/pylint": {"*": _pylint()},
}


def register_spec(repo: str, spec: EnvSpec, *, version: str = "*",
                  table: dict[str, dict[str, EnvSpec]] | None = None) -> dict[str, dict[str, EnvSpec]]:
    """A copy of the table (default SPECS) with `spec` added for (repo, version)."""
    out = {k: dict(v) for k, v in (SPECS if table is None else table).items()}
    out.setdefault(repo, {})[version] = spec
    return out


def load_spec_file(path: Path) -> dict[str, dict[str, EnvSpec]]:
    """The built-in table plus the specs in a JSON file {repo: {version or "*": {fields}}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table = None
        for repo, versions in data.items():
            for version, fields in versions.items():
                table = register_spec(repo, EnvSpec.model_validate(fields), version=version, table=table)
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f"bad env spec file {path}: {e}") from None
    return table if table is not None else {k: dict(v) for k, v in SPECS.items()}


def env_spec(repo: str, version: str, *, table: dict[str, dict[str, EnvSpec]] | None = None) -> EnvSpec:
    """The spec for (repo, version); ConfigError when the repository has none."""
    by_version = (SPECS if table is None else table).get(repo)
    if not by_version:
        raise ConfigError(f"no environment spec for {repo}; known: {', '.join(sorted(SPECS))}")
    keys = [k for k in by_version if k == "*" or version == k or version.startswith(k + ".")
            or (k.isdigit() and version.split(".")[0] == k)]
    if not keys:
        raise ConfigError(f"no environment spec for {repo} {version}")
    return by_version[max(keys, key=lambda k: -1 if k == "*" else len(k))]


def test_files(test_patch: str) -> list[str]:
    """The .py files a test patch touches (added or modified, not deleted), in patch order."""
    out: list[str] = []
    for f in PatchSet(test_patch):
        path = f.target_file.removeprefix("b/")
        if f.is_removed_file or not path.endswith(".py"):
            continue
        if path not in out:
            out.append(path)
    return out


def _django_label(path: str) -> str:
    rel = path.removeprefix("tests/")
    return re.sub(r"\.py$", "", rel).replace("/", ".")


def test_command(spec: EnvSpec, test_patch: str) -> list[str]:
    """argv (after `python`) that runs the tests a test patch touches, in the checkout root."""
    files = test_files(test_patch)
    if spec.runner == "django":
        labels = [_django_label(f) for f in files if f.startswith("tests/")]
        return ["tests/runtests.py", "--settings=test_sqlite", "--parallel", "1",
                "--verbosity", "2", *labels]
    if spec.runner == "sympy":
        return ["bin/test", "-C", "--verbose", *files]
    return ["-m", _PYTEST_RUN, "-rA", "-p", "no:cacheprovider", *files]
