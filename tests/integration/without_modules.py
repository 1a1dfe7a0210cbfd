"""``python without_modules.py MODULES ENTRY [ARGS...]``: run a console entry point as if MODULES were not installed.

What an edge-only install sees (no torch, no Harvesters, no OpenVINO) without building one per
test: a finder first on ``sys.meta_path`` refuses each named top-level module (and its
submodules) exactly as a missing distribution does, with ``ModuleNotFoundError``. MODULES is a
comma-separated list; ENTRY is ``package.module:function`` as in ``setup.py``'s console scripts.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class Uninstalled:
    """A meta-path finder that makes some top-level modules look uninstalled."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if __name__ == "__main__":
    modules, entry, *args = sys.argv[1:]
    sys.meta_path.insert(0, Uninstalled(set(modules.split(","))))
    module_name, function = entry.split(":")
    sys.argv = [module_name, *args]
    getattr(importlib.import_module(module_name), function)()
