"""The package is layered: imports point down the layers, never up, never round in a cycle, and
never hide inside a function (outside the command line).

Read from the source with `ast`, nothing imported, so an import on a rare code path counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "resnetkit"

# Bottom to top, declared once. A subpackage may import its own modules and those of the layers
# below it; subpackages on one line are siblings and import nothing of each other.
LAYERS = (
    ("core",),  # file io and hashes, the cache folder, option fields
    ("models", "data"),  # networks as data; datasets and loaders
    ("weights",),  # weight files, checkpoints, pretrained catalogue and cache, create_model
    ("explain", "deploy"),  # Grad-CAM and reports; export, predict, inference
    ("training",),  # config, the loop, evaluation, runtime, run folder
    ("experiments",),  # the papers' experiments, built on training
    ("cli",),  # argument parsing and printing only
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

# Imports of resnetkit modules inside a function body outside cli/, as (module, imported
# module), each with the reason it exists. The list may only shrink. (cli/, the top of the
# stack, is exempt: a command may import what only it uses when it runs.)
IN_FUNCTION_EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """True if `name` (e.g. resnetkit.weights.checkpoint) is a module or package of ours."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def package_of(name: str) -> str | None:
    """The subpackage a module belongs to (`weights` for resnetkit.weights.io); None for the
    package root and the top-level modules (the old paths, kept as aliases)."""
    parts = name.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None


def imported(node: ast.Import | ast.ImportFrom, name: str, path: Path) -> Iterator[str]:
    """The resnetkit modules an import statement in module `name` refers to."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "resnetkit":
                yield alias.name
        return
    if node.level:
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if target.split(".")[0] != "resnetkit":
        return
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        yield submodule if is_module(submodule) else target


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(imported resnetkit module, inside a function?) for every import in the file."""
    name = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in imported(child, name, path):
                    yield target, in_function
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, inside)

    yield from visit(tree, False)


def package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in modules().items():
        source = package_of(name)
        if source is None:
            continue
        for target, _ in imports(path):
            package = package_of(target)
            if package is not None and package != source:
                edges.setdefault(source, set()).add(package)
    return edges


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(RANK)


def test_imports_point_down_the_layers():
    wrong = []
    for name, path in modules().items():
        source = package_of(name)
        if source is None:
            continue  # the package root (the public API) and the old paths import anything
        for target, _ in imports(path):
            package = package_of(target)
            if package is None:
                wrong.append(f"{name} imports {target}, an old path or the package root")
            elif package != source and RANK[package] >= RANK[source]:
                wrong.append(f"{name} ({source}) imports {target} ({package}): not a layer below")
    assert wrong == []


def test_no_cycle_between_subpackages():
    edges = package_edges()
    done: set[str] = set()

    def cycle_from(package: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if package in path:
            return (*path[path.index(package) :], package)
        if package in done:
            return None
        for target in sorted(edges.get(package, ())):
            found = cycle_from(target, (*path, package))
            if found:
                return found
        done.add(package)
        return None

    for package in sorted(RANK):
        cycle = cycle_from(package, ())
        assert cycle is None, " -> ".join(cycle)


def test_no_package_import_inside_a_function_outside_the_cli():
    hidden = {
        (name, target)
        for name, path in modules().items()
        if package_of(name) != "cli"
        for target, in_function in imports(path)
        if in_function
    }
    assert hidden == set(IN_FUNCTION_EXCEPTIONS)


def test_the_checks_see_relative_imports_and_the_modules_they_name():
    # The checks above are only as good as the import reading: pin it on known lines.
    found = {target for target, _ in imports(PACKAGE / "training" / "train.py")}
    assert {"resnetkit.weights.checkpoint", "resnetkit.training.config"} <= found
    assert "resnetkit.explain.run_report" in found
    cli_imports = set(imports(PACKAGE / "cli" / "commands.py"))
    assert ("resnetkit.training.train", True) in cli_imports
    assert package_edges()["training"] >= {"core", "data", "models", "weights", "explain"}
