"""The layering rules of docs/ARCHITECTURE.md, checked on the source (ast, nothing runs).

Every import statement is seen wherever it sits: module body, ``if`` / ``try`` /
``except`` / ``finally`` / ``with`` blocks, class bodies and functions. An import is
*lazy* when it sits inside a function (it runs only when the function is called);
everything else runs when the module is imported. Each rule is a function of the
repository root, so the tests at the bottom run the same checkers on a tiny planted
tree in ``tmp_path`` and show that each rule fails, naming ``file:line`` and the import.

Rules:

* nothing under ``trainer/`` imports ``beam_jobs``, ``reproduce``, ``pipeline`` or
  ``components``;
* ``beam_jobs/`` imports from ``trainer`` only ``trainer.contracts.*``, plus
  ``trainer.preprocessing`` lazily (diagnostics, inside a function);
* ``pipeline/`` and ``components/`` import no TensorFlow / Beam / tf.Transform at
  module level (component bodies import them lazily);
* nothing imports ``reproduce`` except ``reproduce/`` itself, ``bench/`` and ``tests/``;
* no import circle between files of the packages (lazy imports count too);
* a module over 400 lines needs an entry with a reason in ``LONG_MODULES``; an entry
  whose module shrank to 400 lines or fewer is stale and must go.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "beam_jobs", "pipeline", "components", "reproduce")
HEAVY = ("tensorflow", "apache_beam", "tensorflow_transform")
MAX_LINES = 400

# Modules allowed over MAX_LINES, each with the reason it is one module.
LONG_MODULES: dict[str, str] = {
    "trainer/preprocessing.py": "THE value -> id code: every treatment's lookup in "
    "TF and in NumPy side by side, so that the two cannot drift apart",
    "trainer/layers/compact_embedding.py": "the shared vector-quantization base of "
    "DPQ and MGQE and both layers; splitting it would split one algorithm",
    "trainer/training/optimizers.py": "the one optimizer factory and the row-sparse "
    "LazyAdam/Adagrad implementations it names",
    "trainer/contracts/events.py": "the event schema, its validation and the hour "
    "partitions: one contract shared by the Beam jobs, the trainer and the pipeline",
    "trainer/contracts/features.py": "the feature spec: dataclasses, parsing and the "
    "cross-field checks of every treatment",
    "trainer/serving/export.py": "the serving export: signature, compact tables and "
    "the quantized swap",
    "trainer/serving/sizes.py": "THE size accounting: one formula per compression "
    "kind, each with its paper reference",
    "beam_jobs/frequencies.py": "the frequency PTransforms (counts, top-k "
    "dictionaries, tiers) that the stats job composes",
    "beam_jobs/synthetic.py": "the power-law synthetic stream, its knobs and CLI",
    "beam_jobs/feature_stats.py": "the hourly stats job: read, count, diagnose, "
    "write artifacts",
    "components/lib/registry.py": "the registry client: local store, decisions and "
    "the optional Vertex AI mirror",
    "reproduce/hashing.py": "the hashing reproduction grid, its tables and CLI",
}


@dataclasses.dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the root
    line: int
    name: str  # what is imported, dotted: ``from a import b`` -> ``a.b``
    module: str  # the module named in the statement: ``a`` for ``from a import b``
    lazy: bool  # inside a function: runs only when it is called

    def __str__(self) -> str:
        kind = "lazy import" if self.lazy else "import"
        return f"{self.path}:{self.line}: {kind} {self.name}"


def _module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(
    root: pathlib.Path, path: pathlib.Path, node: ast.ImportFrom
) -> str:
    base = _module_name(root, path).split(".")
    if path.name != "__init__.py":
        base.pop()  # a module's package
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Walker(ast.NodeVisitor):
    """Collects every import statement, noting whether it sits inside a function."""

    def __init__(self, root: pathlib.Path, path: pathlib.Path) -> None:
        self.root, self.path = root, path
        self.rel = path.relative_to(root).as_posix()
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            module = _resolve_relative(self.root, self.path, node)
        for alias in node.names:
            name = module if alias.name == "*" else f"{module}.{alias.name}"
            self._add(node, name.strip("."), module)

    def visit_Call(self, node: ast.Call) -> None:
        """``importlib.import_module("a.b")`` and ``__import__("a.b")`` with a literal."""
        func = node.func
        called = (
            func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        )
        if (
            called in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            self._add(node, node.args[0].value, node.args[0].value)
        self.generic_visit(node)

    def _add(self, node: ast.stmt | ast.expr, name: str, module: str) -> None:
        self.found.append(Import(self.rel, node.lineno, name, module, self.depth > 0))


def imports_in(root: pathlib.Path, path: pathlib.Path) -> list[Import]:
    walker = _Walker(root, path)
    walker.visit(ast.parse(path.read_text(), filename=str(path)))
    return walker.found


def python_files(root: pathlib.Path, package: str) -> list[pathlib.Path]:
    return sorted(p for p in (root / package).rglob("*.py") if p.is_file())


def imports_of(root: pathlib.Path, package: str) -> list[Import]:
    return [imp for p in python_files(root, package) for imp in imports_in(root, p)]


def _under(name: str, roots: tuple[str, ...] | str) -> bool:
    roots = (roots,) if isinstance(roots, str) else roots
    return any(name == r or name.startswith(r + ".") for r in roots)


# ---------------------------------------------------------------- the rules


def trainer_violations(root: pathlib.Path) -> list[str]:
    """Production trainer code imports no Beam job, reproduction or orchestration."""
    banned = ("beam_jobs", "reproduce", "pipeline", "components")
    return [str(i) for i in imports_of(root, "trainer") if _under(i.name, banned)]


def beam_jobs_violations(root: pathlib.Path) -> list[str]:
    """beam_jobs uses only the contracts (and the preprocessing code, lazily)."""
    bad = []
    for imp in imports_of(root, "beam_jobs"):
        if not _under(imp.name, "trainer") or _under(imp.name, "trainer.contracts"):
            continue
        if imp.name == "trainer":
            continue  # a bare ``import trainer`` brings in only the package
        if _under(imp.name, "trainer.preprocessing") and imp.lazy:
            continue
        bad.append(str(imp))
    return bad


def orchestration_violations(root: pathlib.Path) -> list[str]:
    """pipeline/ and components/ import no TF/Beam/tf.Transform at module level."""
    return [
        str(imp)
        for package in ("pipeline", "components")
        for imp in imports_of(root, package)
        if not imp.lazy and _under(imp.name, HEAVY)
    ]


def reproduce_violations(root: pathlib.Path) -> list[str]:
    """Only reproduce/, bench/ and tests/ may import the reproductions."""
    files = [
        p for pkg in PACKAGES if pkg != "reproduce" for p in python_files(root, pkg)
    ]
    files += sorted(root.glob("*.py"))
    return [
        str(imp)
        for path in files
        for imp in imports_in(root, path)
        if _under(imp.name, "reproduce")
    ]


def _file_of(root: pathlib.Path, dotted: str) -> pathlib.Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_graph(
    root: pathlib.Path, packages: tuple[str, ...] = PACKAGES
) -> dict[str, dict[str, Import]]:
    """File -> {imported file: the first import making that edge}, lazy ones too.

    ``from a import b`` is an edge to ``a/b.py`` when b is a module, else to ``a``.
    """
    graph: dict[str, dict[str, Import]] = {}
    for package in packages:
        if not (root / package).is_dir():
            continue
        for path in python_files(root, package):
            edges = graph.setdefault(path.relative_to(root).as_posix(), {})
            for imp in imports_in(root, path):
                if not _under(imp.name, packages):
                    continue
                target = _file_of(root, imp.name) or _file_of(root, imp.module)
                if target is None or target == path:
                    continue
                edges.setdefault(target.relative_to(root).as_posix(), imp)
    return graph


def import_cycles(
    root: pathlib.Path, packages: tuple[str, ...] = PACKAGES
) -> list[str]:
    """One cycle per strongly connected component, each edge as file:line: import."""
    graph = import_graph(root, packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in sorted(components):
        path = _shortest_cycle(graph, set(component), component[0])
        hops = [
            str(graph[a][b]) for a, b in zip(path, path[1:] + path[:1], strict=True)
        ]
        cycles.append(" -> ".join(path + path[:1]) + "\n    " + "\n    ".join(hops))
    return cycles


def _shortest_cycle(
    graph: dict[str, dict[str, Import]], members: set[str], start: str
) -> list[str]:
    """Breadth-first inside one strongly connected component, back to ``start``."""
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w == start:
                trail = [v]
                while parent[trail[-1]] is not None:
                    trail.append(parent[trail[-1]])
                return trail[::-1]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is on no cycle")  # cannot happen in an SCC


def long_module_violations(
    root: pathlib.Path,
    allowed: dict[str, str],
    packages: tuple[str, ...] = PACKAGES,
    limit: int = MAX_LINES,
) -> list[str]:
    """Modules over ``limit`` lines without an entry, and stale entries."""
    lengths = {
        p.relative_to(root).as_posix(): len(p.read_text().splitlines())
        for package in packages
        if (root / package).is_dir()
        for p in python_files(root, package)
    }
    bad = [
        f"{path}: {n} lines > {limit}: split it, or add it to LONG_MODULES with a reason"
        for path, n in sorted(lengths.items())
        if n > limit and path not in allowed
    ]
    bad += [
        f"{path}: stale LONG_MODULES entry ("
        + (f"{lengths[path]} lines" if path in lengths else "no such module")
        + f" <= {limit}): remove it"
        for path in sorted(allowed)
        if lengths.get(path, 0) <= limit
    ]
    return bad


# ---------------------------------------------------------------- on the repository


def _report(problem: str, bad: list[str]) -> str:
    return problem + ":\n" + "\n".join(bad)


def test_trainer_imports_no_beam_job_reproduction_or_orchestration() -> None:
    bad = trainer_violations(REPO)
    assert not bad, _report("trainer/ must not import these", bad)


def test_beam_jobs_import_only_the_contracts_from_the_trainer() -> None:
    bad = beam_jobs_violations(REPO)
    assert not bad, _report(
        "beam_jobs may import trainer.contracts.* (and trainer.preprocessing inside "
        "a function) only",
        bad,
    )


def test_orchestration_imports_no_tensorflow_or_beam_at_module_level() -> None:
    bad = orchestration_violations(REPO)
    assert not bad, _report("move these into the functions that need them", bad)


def test_only_bench_and_tests_import_the_reproductions() -> None:
    bad = reproduce_violations(REPO)
    assert not bad, _report(
        "only reproduce/, bench/ and tests/ may import reproduce", bad
    )


def test_no_import_cycle_between_files() -> None:
    cycles = import_cycles(REPO)
    assert not cycles, _report("import cycles (break each)", cycles)


def test_long_modules_have_a_reason() -> None:
    bad = long_module_violations(REPO, LONG_MODULES)
    assert not bad, _report("module length", bad)


# ---------------------------------------------------------------- each rule can fail


def _plant(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            if parent != pathlib.Path("."):
                (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_walker_sees_imports_in_every_kind_of_block(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "trainer/m.py": (
                "import os\n"  # 1
                "if os.name:\n    import a.b\n"  # 3
                "try:\n    import c\nexcept ImportError:\n    from d import e\n"  # 5, 7
                "finally:\n    import f\n"  # 9
                "with open('x') as h:\n    import g\n"  # 11
                "class K:\n    import h\n"  # 13
                "    def m(self):\n        from . import sib\n"  # 15
                "async def f2():\n    import i\n"  # 17
                "x = lambda: __import__('j')\n"  # 18
                "import importlib\n"
                "importlib.import_module('beam_jobs.events')\n"  # 20
            ),
            "trainer/sib.py": "",
        },
    )
    found = {(i.name, i.line, i.lazy) for i in imports_in(root, root / "trainer/m.py")}
    assert found == {
        ("os", 1, False),
        ("a.b", 3, False),
        ("c", 5, False),
        ("d.e", 7, False),
        ("f", 9, False),
        ("g", 11, False),
        ("h", 13, False),
        ("trainer.sib", 15, True),
        ("i", 17, True),
        ("j", 18, True),
        ("importlib", 19, False),
        ("beam_jobs.events", 20, False),
    }


def test_trainer_rule_names_an_import_hidden_in_an_except_block(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "trainer/data.py": (
                "try:\n    import fast\nexcept ImportError:\n"
                "    from beam_jobs import events\n"
            ),
            "trainer/task.py": "def main():\n    import reproduce.ranking\n",
            "trainer/ok.py": "from trainer.contracts import events\n",
            "trainer/contracts/events.py": "",
        },
    )
    assert trainer_violations(root) == [
        "trainer/data.py:4: import beam_jobs.events",
        "trainer/task.py:2: lazy import reproduce.ranking",
    ]


def test_beam_jobs_rule_allows_lazy_preprocessing_only(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "beam_jobs/job.py": (
                "from trainer.contracts import storage\n"
                "import trainer.contracts.events\n"
                "def diagnose():\n    from trainer import preprocessing\n"
                "from trainer import preprocessing\n"
                "class Job:\n    from trainer.training import loop\n"
            ),
        },
    )
    assert beam_jobs_violations(root) == [
        "beam_jobs/job.py:5: import trainer.preprocessing",
        "beam_jobs/job.py:7: import trainer.training.loop",
    ]


def test_orchestration_rule_names_module_level_heavy_imports(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "pipeline/cli.py": "if True:\n    import tensorflow as tf\n",
            "components/train.py": (
                "def train():\n    import tensorflow\n"
                "try:\n    pass\nexcept Exception:\n    import apache_beam.io\n"
                "class C:\n    from tensorflow_transform import beam\n"
            ),
        },
    )
    assert orchestration_violations(root) == [
        "pipeline/cli.py:2: import tensorflow",
        "components/train.py:6: import apache_beam.io",
        "components/train.py:8: import tensorflow_transform.beam",
    ]


def test_reproduce_rule_allows_only_itself_bench_and_tests(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "reproduce/ranking.py": "from reproduce import run_store\n",
            "reproduce/run_store.py": "",
            "bench/b.py": "import reproduce.ranking\n",
            "tests/t.py": "import reproduce.ranking\n",
            "pipeline/demo.py": "def f():\n    from reproduce.ranking import main\n",
        },
    )
    assert reproduce_violations(root) == [
        "pipeline/demo.py:2: lazy import reproduce.ranking.main"
    ]


def test_cycle_rule_reports_a_two_file_circle_with_its_lines(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "trainer/serving/export.py": "from trainer.serving import checks\n",
            "trainer/serving/checks.py": (
                "def check():\n    from trainer.serving.export import export\n"
            ),
            "trainer/serving/sizes.py": "from trainer.serving import checks\n",
        },
    )
    assert import_cycles(root) == [
        "trainer/serving/checks.py -> trainer/serving/export.py -> "
        "trainer/serving/checks.py\n"
        "    trainer/serving/checks.py:2: lazy import trainer.serving.export.export\n"
        "    trainer/serving/export.py:1: import trainer.serving.checks"
    ]


def test_cycle_rule_finds_a_three_file_circle_across_packages(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "trainer/a.py": "import beam_jobs.b\n",
            "beam_jobs/b.py": "from pipeline.c import x\n",
            "pipeline/c.py": "from trainer import a\nx = 1\n",
        },
    )
    (cycle,) = import_cycles(root)
    assert cycle.splitlines()[0] == (
        "beam_jobs/b.py -> pipeline/c.py -> trainer/a.py -> beam_jobs/b.py"
    )
    assert not import_cycles(_plant(tmp_path / "acyclic", {"trainer/a.py": "x = 1\n"}))


def test_long_module_rule_needs_a_reason_and_reports_stale_entries(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "trainer/big.py": "x = 1\n" * 401,
            "trainer/edge.py": "x = 1\n" * 400,
            "trainer/shrunk.py": "x = 1\n" * 10,
        },
    )
    assert long_module_violations(root, {}) == [
        "trainer/big.py: 401 lines > 400: split it, or add it to LONG_MODULES with a "
        "reason"
    ]
    assert long_module_violations(
        root, {"trainer/big.py": "why", "trainer/shrunk.py": "was long"}
    ) == ["trainer/shrunk.py: stale LONG_MODULES entry (10 lines <= 400): remove it"]


@pytest.mark.parametrize("rel", sorted(LONG_MODULES))
def test_every_long_module_entry_names_a_module_and_a_reason(rel) -> None:
    assert LONG_MODULES[rel].strip(), rel
    assert rel.split("/")[0] in PACKAGES, rel
