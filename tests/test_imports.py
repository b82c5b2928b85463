"""Imports inside ``fairseq_poolingformer`` run one way: no cycle anywhere, and in the converter
only from the command line to the readers to the core, with no private name crossing a module.

Read from the source with ``ast`` (nothing is imported). What counts as module A importing
module M (both in the package; a package stands for its ``__init__``):

- every ``import`` statement anywhere in A's file: at module level, inside a function, a ``try``
  or an ``if TYPE_CHECKING`` block. A lazy import hides a cycle from Python's import machinery,
  not from a reader (``convert.py`` and ``hf/`` imported each other that way);
- ``import a.b.c`` imports ``a.b.c``, not the packages ``a`` and ``a.b`` that Python
  initialises before it. Those implicit parent imports are not counted: every module would
  otherwise import the root ``__init__``, and each package ``__init__`` that imports its
  submodules (as the root's registration imports do) would be in a cycle with them;
- ``from a.b import x`` imports the submodule ``a.b.x`` when there is one, else ``a.b``
  (``x`` is then a name defined by ``a/b/__init__.py``);
- relative imports are resolved against A's package (A itself when A is an ``__init__``).

So a package ``__init__`` that imports its submodules is the edge ``pkg -> pkg.sub``, and a
submodule that imports its own package explicitly (``import pkg``, or ``from pkg import name``
with ``name`` not a submodule) closes a cycle with it: that one is counted, since the submodule
then reads names of a half-initialised module. Imports by string (``importlib.import_module``)
are not seen.

A private name crosses a module boundary when A imports ``_name`` from a package module
(``from m import _name``) or reads ``m._name`` through a name its imports bound to a package
module (aliases are tracked per file, not per scope); dunders (``__version__``) are public.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "fairseq_poolingformer"
CONVERT = f"{PACKAGE}.convert"
# the converter's layers, top-down; a module may import its own layer's modules and those below
CONVERT_LAYERS = ((CONVERT, f"{CONVERT}.cli", f"{CONVERT}.__main__"), (f"{CONVERT}.readers",), (f"{CONVERT}.core",))


# ----------------------------------------------------------------------------- reading imports


def package_modules(root: Path, package: str) -> Dict[str, Path]:
    """Every module of the package in directory ``root``: dotted name -> file (``pkg.sub`` for
    ``pkg/sub/__init__.py``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package] + parts)] = path
    return modules


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The module a (possibly relative) ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_imports(module: str, path: Path, modules: Dict[str, Path],
                   package: str) -> Iterator[Tuple[int, str, Optional[str], str]]:
    """(line, imported module, name read from it or None, local binding) for each import of a
    ``package`` module in ``module``'s file (see the module docstring for what counts). A module
    that does not exist is reported as imported too (the caller checks)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    # `import a.b` binds `a` (the root); `import a.b as m` binds m to a.b
                    yield node.lineno, alias.name, None, alias.asname or alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path)
            if source != package and not source.startswith(package + "."):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    yield node.lineno, submodule, None, alias.asname or alias.name
                else:
                    yield node.lineno, source, alias.name, alias.asname or alias.name


def import_graph(modules: Dict[str, Path], package: str) -> Tuple[Dict[str, Set[str]], List[str]]:
    """The import graph of the package (module -> modules it imports) and the imports of
    package modules that do not exist (``file:line: name``)."""
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    unknown = []
    for name, path in modules.items():
        for line, target, _, _ in module_imports(name, path, modules, package):
            if target in modules:
                graph[name].add(target)
            else:
                unknown.append(f"{path}:{line}: {target}")
    return graph, unknown


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """A cycle of ``graph`` as the path ``[a, b, ..., a]``, or None. Depth-first in sorted order,
    so the same graph always reports the same cycle."""
    done: Set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        children = [iter(sorted(graph.get(start, ())))]
        while children:
            child = next(children[-1], None)
            if child is None:  # every edge of path[-1] explored
                done.add(path[-1])
                on_path.discard(path.pop())
                children.pop()
            elif child in on_path:
                return path[path.index(child):] + [child]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                children.append(iter(sorted(graph.get(child, ()))))
    return None


def private_names_read(module: str, path: Path, modules: Dict[str, Path], package: str) -> List[str]:
    """``file:line: module._name`` for each private name of another package module that
    ``module`` imports or reads as an attribute of an imported module."""
    found, bound = [], {}
    for line, target, name, binding in module_imports(module, path, modules, package):
        if name is not None and name.startswith("_") and not name.startswith("__"):
            found.append(f"{path}:{line}: {target}.{name}")
        if name is None:
            bound[binding] = package if "." in target and binding == target.split(".")[0] else target
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in bound:
            owner = ".".join([bound[value.id]] + chain)
            if owner in modules and owner != module:
                found.append(f"{path}:{node.lineno}: {owner}.{node.attr}")
    return found


def layer_of(module: str) -> Optional[int]:
    """The converter layer (0 command line, 1 readers, 2 core) of a ``convert`` module."""
    for rank, prefixes in enumerate(CONVERT_LAYERS):
        if any(module == p or (rank and module.startswith(p + ".")) for p in prefixes):
            return rank
    return None


@pytest.fixture(scope="module")
def package():
    modules = package_modules(REPO / PACKAGE, PACKAGE)
    graph, unknown = import_graph(modules, PACKAGE)
    return modules, graph, unknown


# ----------------------------------------------------------------------------- the package


def test_no_import_cycle_in_the_package(package):
    modules, graph, _ = package
    assert f"{CONVERT}.core.weights" in modules and len(modules) > 30  # the walk sees the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_import_names_an_existing_module(package):
    """Also in tests/, benchmarks/ and the old ``preprocess`` names: an import left on a moved
    module (``fairseq_poolingformer.hf``) fails here even when it sits in an untested function."""
    modules, _, unknown = package
    for directory in ("tests", "benchmarks", "preprocess", "recipes"):
        for path in sorted((REPO / directory).rglob("*.py")):
            unknown += [f"{path}:{line}: {target}" for line, target, _, _ in
                        module_imports(path.stem, path, modules, PACKAGE) if target not in modules]
    assert not unknown, "imports of modules that do not exist:\n" + "\n".join(unknown)


def test_convert_layers_import_downwards(package):
    """convert: cli (and __main__) -> readers -> core, never upwards; every module is in a layer."""
    modules, graph, _ = package
    ours = [m for m in modules if m == CONVERT or m.startswith(CONVERT + ".")]
    assert {f"{CONVERT}.cli", f"{CONVERT}.readers.release", f"{CONVERT}.readers.hf.source",
            f"{CONVERT}.core.source"} <= set(ours)
    assert [m for m in ours if layer_of(m) is None] == [], "modules outside cli / readers / core"
    upward = [f"{m} -> {t}" for m in ours for t in sorted(graph[m]) if t in ours and layer_of(t) < layer_of(m)]
    assert not upward, "imports against cli -> readers -> core:\n" + "\n".join(upward)
    assert f"{CONVERT}.core.bart" in graph[f"{CONVERT}.cli"]  # the rule is checked on real edges
    assert f"{CONVERT}.core.ledger" in graph[f"{CONVERT}.readers.hf.bart"]


def test_no_private_name_crosses_a_convert_module(package):
    modules, _, _ = package
    found = [hit for m, path in modules.items() if m.startswith(CONVERT)
             for hit in private_names_read(m, path, modules, PACKAGE)]
    assert not found, "private names read from another module:\n" + "\n".join(found)


INFERENCE, QA, SUMMARIZATION, PREPROCESS = (f"{PACKAGE}.{name}" for name in
                                            ("inference", "qa", "summarization", "preprocess"))


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_qa_and_summarization_sit_on_inference(package):
    """The tools that use a trained model: ``qa`` and ``summarization`` never import each other;
    both build on ``inference``, which imports neither: only itself, ``preprocess`` and ``compat``
    (the fixes to the stack)."""
    modules, graph, _ = package
    tools = (QA, SUMMARIZATION)
    crossing = [f"{m} -> {t}" for m in graph for t in sorted(graph[m])
                for a, b in (tools, tools[::-1]) if _in(m, a) and _in(t, b)]
    assert not crossing, "qa and summarization import each other:\n" + "\n".join(crossing)
    upward = [f"{m} -> {t}" for m in graph if _in(m, INFERENCE) for t in sorted(graph[m])
              if not any(_in(t, floor) for floor in (INFERENCE, PREPROCESS, f"{PACKAGE}.compat"))]
    assert not upward, "inference imports above its floor:\n" + "\n".join(upward)
    for tool in tools:  # the rule is checked on real edges
        assert any(_in(t, INFERENCE) for m in graph if _in(m, tool) for t in graph[m]), tool
    assert {f"{QA}.reader", f"{SUMMARIZATION}.hub", f"{INFERENCE}.files"} <= set(modules)


def test_preprocess_imports_only_preprocess(package):
    """Data flows one way: ``preprocess`` (raw data -> binarized) reaches nothing downstream of
    it (models, tasks, the tools); what it shares with them (``MAX_UNK_RATE``) lives in it."""
    _, graph, _ = package
    outside = [f"{m} -> {t}" for m in graph if _in(m, PREPROCESS) for t in sorted(graph[m]) if not _in(t, PREPROCESS)]
    assert not outside, "preprocess imports outside itself:\n" + "\n".join(outside)
    assert f"{PREPROCESS}.common" in graph[f"{PREPROCESS}.qa_windows"]


# ----------------------------------------------------------------------------- the checks themselves


def test_find_cycle_on_small_graphs():
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None  # a diamond
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"y"}}) == ["y", "z", "y"]  # reached from outside
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b"}}) is None  # an edge to a node without an entry


def _write_package(root: Path, files: Dict[str, str]) -> Dict[str, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return package_modules(root / "pkg", "pkg")


def test_import_rules_on_a_package_without_cycle(tmp_path):
    modules = _write_package(tmp_path, {
        "pkg/__init__.py": "from . import a  # registration import\nimport os\n",
        "pkg/a.py": "import pkg.sub.b\nfrom .sub import c as see\nfrom pkg.sub.b import helper\n",
        "pkg/sub/__init__.py": "SPEC = 1\n",
        "pkg/sub/b.py": "from ..sub import SPEC\ndef f():\n    from . import c\n",
        "pkg/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n",
        "pkg/d.py": "import pkg.nothere\nfrom pkg.sub import missing_name\n",
    })
    graph, unknown = import_graph(modules, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b", "pkg.sub.c"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg.sub", "pkg.sub.c"}, "pkg.sub.c": {"pkg.d"}, "pkg.d": {"pkg.sub"}}
    assert find_cycle(graph) is None  # pkg.a's implicit import of `pkg` (its parent) is not an edge
    assert unknown == [f"{modules['pkg.d']}:1: pkg.nothere"]


def test_cycles_through_a_parent_package_and_a_lazy_import_are_found(tmp_path):
    modules = _write_package(tmp_path, {
        "pkg/__init__.py": "from .child import thing\n",
        "pkg/child.py": "thing = 1\ndef f():\n    from pkg import VERSION\n",  # a name of the parent
        "pkg/x.py": "def f():\n    import pkg.y\n",
        "pkg/y.py": "from . import x\n",
    })
    graph, _ = import_graph(modules, "pkg")
    assert find_cycle(graph) == ["pkg", "pkg.child", "pkg"]
    graph["pkg.child"].clear()
    assert find_cycle(graph) == ["pkg.x", "pkg.y", "pkg.x"]


def test_private_names_and_layers_are_seen(tmp_path):
    modules = _write_package(tmp_path, {
        "pkg/__init__.py": "__version__ = '1'\n",
        "pkg/core.py": "def _staging(): pass\n_x = 1\n",
        "pkg/reader.py": """\
            from pkg import core
            import pkg.core as c
            import pkg.core
            from pkg.core import _x
            from pkg import __version__
            core._staging(); c._staging(); pkg.core._staging(); core.ok; _local = 1; _local.__class__
            """,
    })
    hits = private_names_read("pkg.reader", modules["pkg.reader"], modules, "pkg")
    path = modules["pkg.reader"]
    assert sorted(hits) == sorted([f"{path}:4: pkg.core._x"] + [f"{path}:6: pkg.core._staging"] * 3)
    assert [layer_of(f"{CONVERT}{m}") for m in ("", ".__main__", ".cli", ".readers", ".readers.hf.bart",
                                                ".core", ".core.weights", ".other", ".core_like")] == \
        [0, 0, 0, 1, 1, 2, 2, None, None]
