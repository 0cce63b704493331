"""Import rules from docs/ARCHITECTURE.md, checked on the source (ast, no imports run).

* ``pipeline/`` and ``components/`` never import tensorflow or apache_beam at module
  level (imports inside functions, e.g. component bodies, are fine).
* ``beam_jobs/`` imports from ``trainer`` only features, storage, artifacts and
  preprocessing (anywhere in the module).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "apache_beam")
BEAM_MAY_USE = {
    "trainer.contracts.events",
    "trainer.contracts.features",
    "trainer.contracts.storage",
    "trainer.contracts.artifacts",
    "trainer.preprocessing",
}


def _modules(package: str) -> list[pathlib.Path]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def _imported(node: ast.AST) -> list[str]:
    """Full dotted names an import statement brings in (``from a import b`` -> a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def _top_level_imports(tree: ast.Module) -> list[str]:
    """Imports run on import: module body and its if/try/with blocks, not functions."""
    names: list[str] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        names.extend(_imported(node))
        if isinstance(node, ast.If | ast.Try | ast.With):
            stack.extend(ast.iter_child_nodes(node))
    return names


def _is_under(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


@pytest.mark.parametrize("package", ["pipeline", "components"])
def test_orchestration_does_not_import_tensorflow_or_beam_at_module_level(
    package,
) -> None:
    bad = [
        f"{path.relative_to(REPO)}: {name}"
        for path in _modules(package)
        for name in _top_level_imports(ast.parse(path.read_text()))
        if any(_is_under(name, heavy) for heavy in HEAVY)
    ]
    assert not bad, (
        "move these imports into the functions that need them:\n" + "\n".join(bad)
    )


def test_beam_jobs_import_only_the_shared_trainer_modules() -> None:
    bad = []
    for path in _modules("beam_jobs"):
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _imported(node):
                if _is_under(name, "trainer") and not any(
                    _is_under(name, ok) for ok in BEAM_MAY_USE
                ):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert not bad, (
        "beam_jobs may use only "
        + ", ".join(sorted(BEAM_MAY_USE))
        + ":\n"
        + ("\n".join(bad))
    )


def test_the_checks_catch_violations() -> None:
    tree = ast.parse(
        "import tensorflow as tf\n"
        "try:\n    from apache_beam import io\nexcept ImportError:\n    pass\n"
        "def f():\n    import tensorflow\n"
    )
    assert sorted(_top_level_imports(tree)) == ["apache_beam.io", "tensorflow"]
    (node,) = ast.parse("from trainer import task").body
    assert _imported(node) == ["trainer.task"]
    assert not any(_is_under("trainer.task", ok) for ok in BEAM_MAY_USE)
    assert any(_is_under("trainer.contracts.features", ok) for ok in BEAM_MAY_USE)
