"""The package's parts form layers: every import, lazy ones inside functions included, points down.

From the bottom: the top-level helpers (errors, atomic writes, ownership markers, image limits, plots, extras), then
``data`` (raw files, the builder, the export), ``core`` (what training, inference and publishing share: config,
recipes, model presets and loading, preprocessing, metrics, the model card), ``inference``, ``hub`` and ``training``,
and at the top the command line. A Space copies ``inference`` and everything below it, so those parts must stand
without the ones above.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_fmnist"
# Each part may import only itself and the parts listed before it.
LAYERS = ("base", "data", "core", "inference", "hub", "training", "cli")
TOP_LEVEL = {"__init__", "errors", "extras", "atomic", "ownership", "image_limits", "plots"}  # "base", plus cli


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _imports(path: Path) -> set[str]:
    """The hf_fmnist modules that ``path`` imports anywhere in its body, as absolute dotted names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("hf_fmnist"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` imports module x
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hf_fmnist"))
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "dataset_script" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in _imports(path) if m in mods} - {name} for name, path in mods.items()}


def part_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in TOP_LEVEL:
        return "base"
    if parts[1] == "cli":
        return "cli"
    if parts[1] == "metric_modules":
        return "core"  # the `evaluate` wrapper of core.metrics
    return parts[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_finder_resolves_relative_imports():
    graph = import_graph()
    assert "hf_fmnist.data.builder" in graph["hf_fmnist.data.export"]  # from .builder import load_dataset
    assert "hf_fmnist.errors" in graph["hf_fmnist.training.loop"]  # from ..errors import ...
    assert "hf_fmnist.data.card" in graph["hf_fmnist.data.export"]  # from . import card (inside a function)


def test_no_import_cycles_between_modules():
    graph = import_graph()
    assert {"hf_fmnist.data.builder", "hf_fmnist.core.card", "hf_fmnist.training.loop"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_import_points_down():
    """data imports no other part; inference imports neither training nor publishing; and so on up the layers."""
    wrong = []
    for module, targets in import_graph().items():
        if module == "hf_fmnist":  # the lazy public API names the parts it re-exports
            continue
        rank = LAYERS.index(part_of(module))
        wrong += [f"{module} -> {t}" for t in sorted(targets) if LAYERS.index(part_of(t)) > rank]
    assert wrong == []


def test_the_top_of_the_package_stays_small():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL | {"cli"} and len(top) <= 8
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} >= set(LAYERS[1:-1])
