"""The library's layers as packages: core < design < jobs < report < perf, and core's domains as
packages: data < models < defenses < attacks < training, above core's shared modules.

Each package may import itself and the packages below it, never one above (`mixup_inference/__init__.py`,
the public API, may import anything; `core/__init__.py` loads the attack kinds so that they register). Read from the source with `ast`, so imports inside functions
count too: a function-level import hides a cycle from Python, not from this test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mixup_inference"
LAYERS = ("core", "design", "jobs", "report", "perf")
DOMAINS = ("data", "models", "defenses", "attacks", "training")  # core's subpackages, lowest first
SHARED = ("checks", "metrics", "utils")  # core's modules every domain may import


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of the module a `from ... import` statement reads from."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, tuple[str, ...]]]:
    """(imported module, names taken from it) for every import of `module` inside the package."""
    path = MODULES[module]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names if alias.name.startswith("mixup_inference")]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            if not target.startswith("mixup_inference"):
                continue
            for alias in node.names:  # `from package import module` imports that module
                sub = f"{target}.{alias.name}"
                found.append((sub, ()) if sub in MODULES else (target, (alias.name,)))
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer_package():
    loose = [name for name in MODULES if name != "mixup_inference" and layer(name) is None]
    assert loose == [], f"modules outside {LAYERS}: {loose}"


@pytest.mark.parametrize("module", [name for name in MODULES if name != "mixup_inference"])
def test_no_module_imports_a_higher_layer(module):
    upward = [target for target, _ in imports(module) if target != "mixup_inference" and layer(target) > layer(module)]
    assert upward == [], f"{module} ({LAYERS[layer(module)]}) imports a higher layer: {upward}"


def domain(module: str) -> int | None:
    """The rank of a core module's domain; -1 for core's shared modules; None outside core's domains."""
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "core":
        return None
    return DOMAINS.index(parts[2]) if parts[2] in DOMAINS else -1 if parts[2] in SHARED else None


def test_core_shows_its_domains():
    """Every core module lives in a domain package, or is one of the few shared ones."""
    loose = [name for name in MODULES if layer(name) == 0 and name != "mixup_inference.core" and domain(name) is None]
    assert loose == [], f"core modules outside {DOMAINS} and {SHARED}: {loose}"


@pytest.mark.parametrize("module", [name for name in MODULES if domain(name) is not None
                                    and name != "mixup_inference.core"])
def test_no_core_domain_imports_a_later_one(module):
    later = [target for target, _ in imports(module) if domain(target) is not None and domain(target) > domain(module)]
    assert later == [], f"{module} ({DOMAINS[domain(module)] if domain(module) >= 0 else 'shared'}) imports a later domain: {later}"


@pytest.mark.parametrize("module", list(MODULES))
def test_no_module_imports_private_names_of_another(module):
    private = [f"{target}.{name}" for target, names in imports(module) for name in names
               if name.startswith("_") and target != module]
    assert private == [], f"{module} imports private names: {private}"


def test_no_import_cycles():
    graph = {name: {target for target, _ in imports(name) if target in MODULES and target != name}
             for name in MODULES if name != "mixup_inference"}
    for name in graph:
        graph[name].discard("mixup_inference")
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(nxt_name := node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[nxt_name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], f"import cycles: {cycles}"


def test_the_layer_checks_can_fail(tmp_path):
    """The walker sees a function-level import of a higher layer (what a cycle would hide behind)."""
    source = "def f():\n    from ...report.aggregate import result_row\n"
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert _resolve("mixup_inference.core.attacks.pgd", PACKAGE / "core" / "attacks" / "pgd.py", node) == \
        "mixup_inference.report.aggregate"
    assert layer("mixup_inference.report.aggregate") > layer("mixup_inference.core.attacks.pgd")
    assert domain("mixup_inference.core.training.loop") > domain("mixup_inference.core.attacks.pgd") > \
        domain("mixup_inference.core.utils")


SCRIPTS = sorted((PACKAGE.parents[1] / "workflow" / "scripts").glob("*.py"))
#: What README "Layout" says a workflow script may use of core: its I/O helpers.
CORE_HELPERS = ("mixup_inference.core.utils", "mixup_inference.core.models.downloads")


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_workflow_scripts_call_the_layers_above_core(script):
    """Each script opens the job log and calls jobs, report or perf (with design's lists); of core only
    the I/O helpers, as README "Layout" says."""
    used = {node.module for node in ast.walk(ast.parse(script.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mixup_inference")}
    assert "mixup_inference.jobs.joblog" in used
    other = sorted(module for module in used if layer(module) is None or (layer(module) == 0 and module not in CORE_HELPERS))
    assert other == [], f"{script.name} imports {other}: call a job, report or perf function instead"
