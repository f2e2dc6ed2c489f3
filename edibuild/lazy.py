"""Import heavy modules on first use, so planning and no-op runs do not pay for them."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """Stands for a module until an attribute is used; then imports it (thread-safe).

    importlib's LazyLoader is not safe when two threads touch the module at once on
    Python 3.11 (one may see it half-initialised: seen with `doit -n 2`); a plain import
    under the import system's own lock is.
    """

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)


def lazy_import(name: str) -> ModuleType:
    """Return module `name`, imported only when one of its attributes is first used.

    The LXD client (edibuild.lxd.client) alone costs a third of a second to import; a
    no-op `doit image:NAME` needs none of the LXD or Ansible code.
    """
    if name in sys.modules:
        return sys.modules[name]
    return LazyModule(name)
