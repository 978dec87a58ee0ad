"""The shape of the package: no import cycles, the pure core imports no I/O, and the API
reference documents exactly what ``__all__`` exports.

The import graph is read from the source with :mod:`ast` (module-level imports only:
an import inside a function is deliberate laziness, and ``if TYPE_CHECKING:`` blocks are
not run), so a cycle is found even when the import order happens to work today.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import trio_tts_stream

PACKAGE = "trio_tts_stream"
ROOT = Path(trio_tts_stream.__file__).parent
DOCS = Path(__file__).parent.parent / "docs"

#: Modules that decide and never do I/O: they may not import trio, httpx, sounddevice
#: or any part of the package's shell (see docs/design.rst).
PURE = (
    "_state",
    "_detect",
    "_sse",
    "_stall",
    "_stream_decoder",
    "_ringbuffer",
    "_resume",
    "_retry",
    "_adaptive",
    "_jitter",
    "_timestretch",
    "_g711",
    "_metrics",
    "_plot",
    "_format",
    "_vocabulary",
    "_resample",
    "_wav",
    "_segment",
    "_textfilter",
)
IO_MODULES = ("trio", "httpx", "httpcore", "sounddevice", "h11")
SHELL = (
    "_download",
    "_player",
    "_http",
    "_sinks",
    "_sinkbase",
    "_clocked",
    "_framesink",
    "_portaudio",
    "_cli",
    "_speaker",
    "_cache",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported (module body, ``try``/``if`` included)."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not is_type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that importing ``name`` imports directly."""
    return imported_modules_from(ast.parse(path.read_text(), str(path)), name, path, known)


def imported_modules_from(tree: ast.Module, name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in top_level_imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # ``from .pkg import sub`` imports the submodule ``pkg.sub``; ``from . import
            # sub`` in a package's own module needs nothing else of the package.
            subs = [f"{base}.{alias.name}" for alias in node.names]
            own_parent = name.startswith(f"{base}.")
            targets = subs if own_parent and all(t in known for t in subs) else [base, *subs]
        # Only the modules named: importing ``a.b.c`` also runs ``a/__init__.py`` first,
        # but counting that would make every module "import" the whole package.
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported_modules(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path that starts and ends at the same module."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for succ in sorted(graph[node]):
            if colour[succ] == grey:
                return [*stack[stack.index(succ) :], succ]
            if colour[succ] == white and (cycle := visit(succ)):
                return cycle
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # Spot checks that the reader resolves relative imports: if these fail, the cycle
    # test below proves nothing.
    assert f"{PACKAGE}._stream_decoder" in graph[f"{PACKAGE}._download"]
    assert f"{PACKAGE}._http" in graph[f"{PACKAGE}._download"]
    assert f"{PACKAGE}._download" in graph[f"{PACKAGE}._player"]
    # The package's exports load on first use (PEP 562, for the CLI's fast start): its
    # __init__ imports nothing of ours when imported.
    assert graph[PACKAGE] == set()
    assert len(graph) > 30


def test_a_module_importing_from_its_own_package_is_a_cycle() -> None:
    # ``from . import X`` with X defined in the package's __init__ is one; with X a
    # sibling module it is not.
    known = {"p", "p.a", "p.b"}
    tree = ast.parse("from . import b\nfrom . import thing\n")
    source = Path("/dev/null")
    assert imported_modules_from(tree, "p.a", source, known) == {"p", "p.b"}


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_there_are_no_import_cycles() -> None:
    assert find_cycle(import_graph()) is None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        node = pending.pop()
        for succ in graph[node]:
            if succ not in seen:
                seen.add(succ)
                pending.append(succ)
    return seen


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_imports_no_io(module: str) -> None:
    name = f"{PACKAGE}.{module}"
    graph = import_graph()
    inside = reachable(graph, name) | {name}
    shell = {f"{PACKAGE}.{m}" for m in SHELL}
    assert not inside & shell, f"{name} imports the shell: {sorted(inside & shell)}"
    for mod in inside:
        tree = ast.parse(modules()[mod].read_text())
        for node in top_level_imports(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if not node.level
                else []
            )
            for imported in names:
                assert imported.split(".")[0] not in IO_MODULES, f"{mod} imports {imported}"


# -- the API reference documents exactly __all__ -----------------------------------------

DIRECTIVE = re.compile(r"^\.\. auto(?:class|function|exception|data)::\s+(\S+)", re.M)


def documented() -> set[str]:
    names: set[str] = set()
    for page in DOCS.glob("*.rst"):
        names |= set(DIRECTIVE.findall(page.read_text()))
    return names


def public_objects(package: str) -> set[str]:
    module = importlib.import_module(package)
    return {f"{package}.{name}" for name in module.__all__ if name != "__version__"}


def public_path(path: str) -> str:
    """``trio_tts_stream._format.Block`` documents ``trio_tts_stream.Block`` when that is
    the same object (aliases are documented where their docstring comment is)."""
    module, _, name = path.rpartition(".")
    if not module.startswith(f"{PACKAGE}._"):
        return path
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return path
    return f"{PACKAGE}.{name}" if getattr(trio_tts_stream, name, None) is obj else path


def test_private_paths_count_for_their_export() -> None:
    assert public_path(f"{PACKAGE}._format.Block") == f"{PACKAGE}.Block"
    assert public_path(f"{PACKAGE}._state.TRANSITIONS") == f"{PACKAGE}._state.TRANSITIONS"


def test_the_reference_documents_every_export() -> None:
    missing = public_objects(PACKAGE) - {public_path(d) for d in documented()}
    assert not missing, f"in __all__ but not in docs/*.rst: {sorted(missing)}"


def test_the_reference_documents_nothing_that_is_not_exported() -> None:
    # A public path (no underscore part) must name an export of its package; private
    # paths (``trio_tts_stream._format.Block``) document an alias where it is defined.
    public_paths = {
        d
        for d in documented()
        if d.startswith(PACKAGE) and not any(p.startswith("_") for p in d.split("."))
    }
    stale = set()
    for path in public_paths:
        package, _, name = path.rpartition(".")
        if name not in getattr(importlib.import_module(package), "__all__", ()):
            stale.add(path)
    assert not stale, f"documented but not exported: {sorted(stale)}"
