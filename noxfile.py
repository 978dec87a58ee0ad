"""Development sessions: ``nox`` runs tests (Python 3.10-3.13), lint, typing and docs.

``nox -s bench -- ARGS`` runs the benchmarks. CI runs ``nox -db uv`` (see ``.ci/run``).
Interpreters come from ``PATH``; where pyenv is installed, its CPython 3.10-3.13 builds are
put first on ``PATH`` so that nox finds them even when they are not pyenv's active versions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
TYPING_PYTHON = "3.11"
TEST_DEPS = ["pytest>=8", "pytest-trio", "trustme", "hypothesis"]

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typing", "docs"]
nox.options.error_on_external_run = True


def _pyenv_bin_dirs(versions: list[str]) -> list[str]:
    """``bin`` directories of the newest installed pyenv CPython for each ``X.Y``."""
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = None
    if not root:
        root = os.path.expanduser("~/.pyenv")
    installed = Path(root, "versions")
    if not installed.is_dir():
        return []
    best: dict[str, tuple[int, Path]] = {}
    for entry in installed.iterdir():
        match = re.fullmatch(r"(\d+\.\d+)\.(\d+)", entry.name)  # plain CPython releases only
        if match and match[1] in versions and (entry / "bin" / f"python{match[1]}").exists():
            patch = int(match[2])
            if match[1] not in best or patch > best[match[1]][0]:
                best[match[1]] = (patch, entry / "bin")
    return [str(best[v][1]) for v in versions if v in best]


_extra_path = _pyenv_bin_dirs(PYTHONS)
if _extra_path:
    os.environ["PATH"] = os.pathsep.join([*_extra_path, os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after ``--``)."""
    session.install(".[formats,espeak,plot]", *TEST_DEPS)
    # success_codes defaults to [0]: pytest's 5 ("no tests collected") fails the session.
    session.run("pytest", *session.posargs)


@nox.session(python=TYPING_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=TYPING_PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict on the package, tests, benchmarks (pyproject's files) and this file."""
    # mypy checks as Python 3.10 (pyproject), where trio and the package use the
    # exceptiongroup backport; newer interpreters do not install it on their own.
    session.install(".[formats,espeak,plot]", *TEST_DEPS, "mypy", "nox", "exceptiongroup")
    session.run("mypy", "--strict", *session.posargs)
    session.run("mypy", "--strict", "noxfile.py")


@nox.session(python=TYPING_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs with warnings as errors."""
    requirements = Path("docs/requirements.txt")
    if requirements.exists():
        session.install("-r", str(requirements))
    else:
        session.install("sphinx")
    session.install(".[formats,espeak]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


BENCH_DATA = Path("docs/_bench_data")
"""The bench session's results (committed): the charts are drawn from them."""
BENCH_CHARTS = Path("docs/_static/bench")
"""The charts in docs/benchmarks.rst (committed)."""


def _json_arg(args: list[str]) -> Path | None:
    """The path of a ``--json PATH`` (or ``--json=PATH``) among run.py's arguments."""
    for i, arg in enumerate(args):
        if arg == "--json" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--json="):
            return Path(arg.removeprefix("--json="))
    return None


@nox.session(python=TYPING_PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (``nox -s bench -- ARGS`` passes ARGS to benchmarks/run.py),
    then the speaker's (benchmarks/speaker.py, at the PulseAudio monitor), exact vs
    adaptive playout (benchmarks/playout.py, at the monitor), the segmenters' and
    time stretchers' comparisons (benchmarks/segmenters.py, benchmarks/stretchers.py) and
    many concurrent streams in one process (benchmarks/load.py); last, the charts
    (benchmarks/charts.py).

    Each script's results go to docs/_bench_data/ as JSON (run.py's to ``--json PATH``
    if given) and the charts to docs/_static/bench/, both committed. A partial run
    (``--quick`` or ``--only``) writes both to the session's tmp directory instead, so
    that it cannot replace the committed numbers."""
    session.install(
        ".[formats,espeak,plot]", *TEST_DEPS, "pysbd", "sentencex", "audiotsm", "pytsmod"
    )
    args = list(session.posargs)
    partial = any(a == "--quick" or a.startswith("--only") for a in args)
    data = Path(session.create_tmp()) / "bench_data" if partial else BENCH_DATA
    charts = data / "charts" if partial else BENCH_CHARTS
    run_json = _json_arg(args)
    if run_json is None:
        run_json = data / "run.json"
        args = ["--json", str(run_json), *args]
    session.run("python", "benchmarks/run.py", *args)
    session.run("python", "benchmarks/speaker.py", "--json", str(data / "speaker.json"))
    session.run("python", "benchmarks/playout.py", "--json", str(data / "playout.json"))
    session.run("python", "benchmarks/segmenters.py")
    session.run("python", "benchmarks/stretchers.py")
    session.run("python", "benchmarks/load.py")
    session.run("python", "benchmarks/startup.py")
    session.run("python", "benchmarks/device_faults.py")
    session.run(
        "python",
        "benchmarks/charts.py",
        "--data",
        str(data),
        "--run-json",
        str(run_json),
        "--out",
        str(charts),
    )
