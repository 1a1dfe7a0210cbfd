"""Optional dependencies, and the one line a user sees when the one they need is not installed.

A plain ``pip install edge-inspect`` is the ONNX runtime on a CPU with the sim camera; GenTL
cameras, the OpenVINO engine and the training side are extras, so that a line PC carries only
what it runs. When a config, a bundle or a command needs an extra that is missing, the user must
get one line naming what to install (``pip install 'edge-inspect[camera]'``) and exit 2, not a
30-line ``ModuleNotFoundError`` traceback that systemd turns into a restart loop. This module is
the one table of which import belongs to which extra (``setup.py`` lists the packages; a test
keeps the two in step) and the function that turns a missing import into that line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

DISTRIBUTION = "edge-inspect"
EXIT_MISSING = 2
# extra -> the top-level modules it brings (as imported), in the order they are checked.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "broker": ("paho", "confluent_kafka"),
    "camera": ("harvesters", "genicam"),
    "openvino": ("openvino",),
    "plc": ("pymodbus", "asyncua"),
    "report": ("matplotlib",),
    "train": ("torch", "torchvision", "timm", "onnx", "onnxscript", "nncf"),
    "view": ("aiohttp",),
}


class MissingExtra(Exception):
    """An optional dependency is not installed; the message is the one line to show (exit 2)."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(f"{what} needs the '{extra}' extra (module {module} is not installed): "
                         f"pip install '{DISTRIBUTION}[{extra}]'")


def extra_of(module: str) -> str | None:
    """The extra that brings top-level ``module`` (``torch.nn`` -> train), None for a base dependency."""
    top = module.split(".")[0]
    return next((extra for extra, modules in EXTRA_MODULES.items() if top in modules), None)


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``; :class:`MissingExtra` naming ``extra`` when it (or one of its imports) is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(what, extra, exc.name or module) from None


def explain(exc: ModuleNotFoundError, what: str) -> MissingExtra | None:
    """The :class:`MissingExtra` for an import error of an extra's module; None when it is not one (a bug)."""
    name = exc.name or ""
    extra = extra_of(name)
    return MissingExtra(what, extra, name) if extra is not None else None


@contextmanager
def exit_if_missing(tool: str, what: str) -> Iterator[None]:
    """Around a command's body: an extra's missing module ends it with one line and exit 2, not a traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = explain(exc, what)
        if missing is None:
            raise
        print(f"{tool}: error: {missing}", file=sys.stderr)
        raise SystemExit(EXIT_MISSING) from None
