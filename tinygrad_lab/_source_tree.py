"""`tinygrad_lab.kernels` from a source checkout that is not installed.

The kernels live in the checkout's top-level `kernels/` folder, which an install maps under the
package (pyproject's package-dir; an editable install through setuptools' import finder). When
that finder is missing (the checkout on sys.path, or a pip that installed for another
interpreter) this one maps the same name to the same folder, so scripts such as
`benchmarks/gpu_check.py` still run. Never `import kernels`: that is another project's name.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

NAME = "tinygrad_lab.kernels"


class _KernelsFinder(importlib.abc.MetaPathFinder):
    """Finds exactly `tinygrad_lab.kernels`, in `folder`; its submodules follow its __path__."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname != NAME:
            return None
        return importlib.util.spec_from_file_location(
            NAME, self.folder / "__init__.py", submodule_search_locations=[str(self.folder)])


def mount_kernels() -> None:
    """Add the finder when the package's own kernels cannot be found and a checkout's can."""
    package = Path(__file__).resolve().parent
    folder = package.parent / "kernels"
    if NAME in sys.modules or (package / "kernels").is_dir():
        return  # imported already, or an installed wheel (kernels inside the package)
    if not (folder / "__init__.py").is_file() or not (package.parent / "pyproject.toml").is_file():
        return  # not a checkout
    if any(isinstance(f, _KernelsFinder) for f in sys.meta_path):
        return
    if importlib.util.find_spec(NAME) is None:
        sys.meta_path.append(_KernelsFinder(folder))
