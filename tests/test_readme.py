"""Every ```python block of README.md runs as written.

Each block runs in a fresh namespace, as a reader would paste it, so every block is
self-contained; the functions named `test_*` that a block defines are then called (the testing-kit
example). A block right below a line `<!-- readme-test: replace (OLD => NEW) -->` runs with OLD
replaced by NEW (the founding example trains one epoch instead of ten, then must reach 90 %
test accuracy). Shell blocks are not run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(
    r"^(?:<!-- readme-test: replace \((?P<old>.*?) => (?P<new>.*?)\) -->\n)?"
    r"```python\n(?P<code>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def _blocks() -> list[Any]:
    text = README.read_text(encoding="utf-8")
    params = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1  # the block's first line of code
        code = match["code"]
        if match["old"]:
            if match["old"] not in code:
                raise ValueError(f"README.md:{line}: {match['old']!r} is not in the block below")
            code = code.replace(match["old"], match["new"])
        params.append(pytest.param(line, code, id=f"README.md:{line}"))
    return params


BLOCKS = _blocks()


def test_the_readme_has_python_examples() -> None:
    """A guard on the pattern above: the README's examples are found."""
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize(("line", "code"), BLOCKS)
def test_readme_example_runs(line: int, code: str) -> None:
    namespace: dict[str, Any] = {"__name__": f"readme_line_{line}"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            value()
    if "accuracy" in namespace:  # the founding example: one epoch of the MLP already gets there
        assert namespace["accuracy"] > 0.9
