"""No function in the package is longer than a screen (issue 13): 60 lines, decorators and
docstring included, read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "resnetkit"
MAX_LINES = 60


def long_functions() -> dict[tuple[str, str], int]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - first + 1
                if length > MAX_LINES:
                    found[(path.relative_to(PACKAGE).as_posix(), node.name)] = length
    return found


def test_no_function_is_longer_than_60_lines():
    too_long = long_functions()
    assert not too_long, f"split these (module, function): lines: {too_long}"
