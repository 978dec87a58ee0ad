"""The public API is exactly ``__all__``: complete, sorted, documented.

Like trio's and httpx's ``__all__`` tests: every name in ``__all__`` exists, every public
name the package defines is in ``__all__``, and every exception class is part of the
one hierarchy under :class:`TTSStreamError` and exported.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import pkgutil
import re
import types
from typing import Any

import pytest

import trio_tts_stream
from trio_tts_stream import TTSStreamError

PACKAGE = "trio_tts_stream"
# Importing these runs code (``python -m``) rather than defining any.
NOT_IMPORTABLE = {f"{PACKAGE}.__main__"}


@functools.cache
def all_modules() -> list[types.ModuleType]:
    """The package and every module below it, imported."""
    modules = [trio_tts_stream]
    for info in pkgutil.walk_packages(trio_tts_stream.__path__, prefix=f"{PACKAGE}."):
        if info.name not in NOT_IMPORTABLE:
            modules.append(importlib.import_module(info.name))
    return modules


def public_packages() -> list[types.ModuleType]:
    """The package and its public subpackages that declare ``__all__``."""
    return [
        m
        for m in all_modules()
        if not any(part.startswith("_") for part in m.__name__.split(".")) and hasattr(m, "__all__")
    ]


def isort_key(name: str) -> tuple[int, list[int | str]]:
    """Ruff's RUF022 "isort-style" order: CONSTANTS, then Classes, then the rest, each
    in natural order."""
    if len(name) > 1 and name.isupper():
        category = 0
    elif name[:1].isupper():
        category = 1
    else:
        category = 2
    return category, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def defined_in_package(module: types.ModuleType, name: str, value: Any) -> bool:
    """Whether ``module.name`` is something this package defines (not an import of a
    foreign object such as ``annotations`` from ``__future__``)."""
    if inspect.ismodule(value):
        return False
    if inspect.isclass(value) or inspect.isfunction(value):
        return str(getattr(value, "__module__", "")).startswith(PACKAGE)
    # Constants and aliases: defined if some module of ours exports this very object.
    return name == "__version__" or any(
        other is not module
        and name in getattr(other, "__all__", ())
        and getattr(other, name, None) is value
        for other in all_modules()
    )


PUBLIC = public_packages()


def module_id(module: types.ModuleType) -> str:
    return module.__name__


def test_the_public_packages_are_found() -> None:
    names = {m.__name__ for m in PUBLIC}
    assert PACKAGE in names
    assert f"{PACKAGE}.testing" in names


@pytest.mark.parametrize("module", PUBLIC, ids=module_id)
def test_all_names_exist(module: types.ModuleType) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module", PUBLIC, ids=module_id)
def test_all_is_sorted_and_unique(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert all(isinstance(name, str) for name in names)
    assert len(names) == len(set(names))
    assert names == sorted(names, key=isort_key)


@pytest.mark.parametrize("module", PUBLIC, ids=module_id)
def test_all_is_complete(module: types.ModuleType) -> None:
    exported = set(module.__all__)
    unlisted = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and defined_in_package(module, name, value)
        and name not in exported
    ]
    assert unlisted == []


@pytest.mark.parametrize("module", all_modules(), ids=module_id)
def test_every_module_declares_a_valid_all(module: types.ModuleType) -> None:
    assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert len(module.__all__) == len(set(module.__all__))


def test_version() -> None:
    assert "__version__" in trio_tts_stream.__all__
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", trio_tts_stream.__version__)


# -- docstrings --------------------------------------------------------------------------


def own_docstring(obj: Any) -> str:
    """``obj``'s own docstring, ignoring the ones dataclass and enum make up."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not isinstance(doc, str):
        return ""
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):  # @dataclass
        return ""
    if doc == "An enumeration.":  # enum.Enum on Python 3.10
        return ""
    return doc.strip()


def exported_objects() -> list[tuple[str, Any]]:
    # Type aliases (``Block = NDArray[float32]``) are documented where they are defined;
    # Python 3.10's inspect.isclass() says True for such generic aliases.
    return [
        (f"{m.__name__}.{name}", getattr(m, name))
        for m in PUBLIC
        for name in m.__all__
        if (inspect.isclass(getattr(m, name)) or inspect.isfunction(getattr(m, name)))
        and not isinstance(getattr(m, name), types.GenericAlias)
    ]


EXPORTED = exported_objects()


@pytest.mark.parametrize(("name", "obj"), EXPORTED, ids=[n for n, _ in EXPORTED])
def test_every_public_class_and_function_has_a_docstring(name: str, obj: Any) -> None:
    assert own_docstring(obj), f"{name} has no docstring"


def public_members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties of ``cls`` defined in this package (inherited
    from private bases included)."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith(PACKAGE):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            func = func.fget if isinstance(func, property) else func
            if inspect.isfunction(func):
                members[name] = value
    return sorted(members.items())


CLASSES = [
    (name, obj)
    for name, obj in EXPORTED
    if inspect.isclass(obj)
    and not issubclass(obj, (BaseException, enum.Enum))
    and public_members(obj)
]


@pytest.mark.parametrize(("name", "cls"), CLASSES, ids=[n for n, _ in CLASSES])
def test_public_methods_have_docstrings(name: str, cls: type) -> None:
    undocumented = [
        member
        for member, value in public_members(cls)
        if not inspect.getdoc(getattr(cls, member) if not isinstance(value, property) else value)
    ]
    assert undocumented == [], f"{name}: undocumented public members"


# -- exceptions --------------------------------------------------------------------------


def exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in all_modules():
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[k] for k in sorted(found)]


EXCEPTIONS = exception_classes()


def test_the_hierarchy_is_found() -> None:
    names = {e.__name__ for e in EXCEPTIONS}
    assert {"TTSStreamError", "ConfigError", "DecodeError", "HTTPStatusError"} <= names


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: e.__name__)
def test_every_exception_is_a_library_error_and_exported(exc: type[BaseException]) -> None:
    assert issubclass(exc, TTSStreamError)
    assert exc.__name__ in trio_tts_stream.__all__
    assert getattr(trio_tts_stream, exc.__name__) is exc
    assert own_docstring(exc)


def test_every_exported_exception_is_in_the_hierarchy() -> None:
    exported = [
        getattr(trio_tts_stream, name)
        for name in trio_tts_stream.__all__
        if inspect.isclass(getattr(trio_tts_stream, name))
        and issubclass(getattr(trio_tts_stream, name), BaseException)
    ]
    assert set(exported) == set(EXCEPTIONS)


def test_exceptions_carry_no_report_by_default() -> None:
    for exc in EXCEPTIONS:
        assert exc.__dict__.get("report", None) is None
    assert trio_tts_stream.DecodeError("x").report is None
