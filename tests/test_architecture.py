"""The package's shape: every module imports, there is no import cycle, imports run one way between the
layers (docs/design.md), and imports inside functions are only the command line's lazy ones."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import featdepth

PACKAGE = Path(featdepth.__file__).parent

#: The layers, lowest first: a module may import its own layer and the layers below it.
LAYERS: dict[str, int] = {
    "utils": 0, "config": 0,
    "geometry": 1, "losses": 1, "models": 1, "data": 1,
    "inference": 2,
    "evaluation": 3,
    "training": 4,
    "tasks": 5, "experiments": 5,
    "cli": 6, "app": 6,
}


def _modules() -> list[str]:
    names = []
    for m in pkgutil.walk_packages(featdepth.__path__, "featdepth."):
        if not m.name.endswith("__main__"):
            names.append(m.name)
    return names


def _source(module: str) -> Path:
    rel = module.split(".")[1:]
    path = PACKAGE.joinpath(*rel)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(module: str) -> list[tuple[str, bool, int]]:
    """``(imported featdepth module, inside a function?, line)`` for every import statement of ``module``."""
    tree = ast.parse(_source(module).read_text())
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("featdepth"):
                for alias in child.names:
                    target = f"{child.module}.{alias.name}"
                    out.append((target if _is_module(target) else child.module, in_function, child.lineno))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("featdepth"):
                        out.append((alias.name, in_function, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return out


def _is_module(name: str) -> bool:
    rel = name.split(".")[1:]
    path = PACKAGE.joinpath(*rel) if rel else PACKAGE
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycle():
    graph = {m: sorted({t for t, _, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in MODULES:
        if m not in state:
            dfs(m)


def test_imports_run_one_way_between_layers():
    bad = []
    for m in MODULES:
        lm = _layer(m)
        if lm is None:
            continue
        for target, _, line in _imports(m):
            lt = _layer(target)
            if lt is not None and lt > lm:
                bad.append(f"{m}:{line} imports {target} (layer {lt} above {lm})")
    assert not bad, "\n".join(bad)


def test_imports_inside_functions_only_where_lazy_on_purpose():
    """Only the command line (to keep `featdepth --help` fast) and the package root (``featdepth.load``)
    import featdepth modules inside functions; every other dependency is visible at the top of the file."""
    bad = []
    for m in MODULES:
        if m.startswith("featdepth.cli"):
            continue
        bad += [f"{m}:{line} imports {t} inside a function" for t, inside, line in _imports(m) if inside]
    assert not bad, "\n".join(bad)


def test_cli_lazy_imports_say_why():
    missing = []
    for m in MODULES:
        if not m.startswith("featdepth.cli"):
            continue
        lines = _source(m).read_text().splitlines()
        for _, inside, line in _imports(m):
            if inside and "# lazy" not in lines[line - 1]:
                missing.append(f"{m}:{line}")
    assert not missing, "lazy imports without a reason: " + ", ".join(missing)


def test_app_lazy_imports_are_its_optional_dependencies():
    """featdepth.app imports featdepth at the top of its files; inside functions it imports only its optional
    dependencies (gradio, trimesh: the `app` extra, so that the package imports without them), each line
    saying why with a `# lazy` comment."""
    allowed = {"gradio", "trimesh"}
    bad = []
    for path in sorted((PACKAGE / "app").glob("*.py")):
        lines = path.read_text().splitlines()
        for func in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                if any(n.split(".")[0] not in allowed for n in names) or "# lazy" not in lines[node.lineno - 1]:
                    bad.append(f"{path.name}:{node.lineno} imports {', '.join(names)} inside a function")
    assert not bad, "\n".join(bad)


def test_trainer_loop_is_thin():
    assert len((PACKAGE / "training" / "trainer.py").read_text().splitlines()) <= 300


def test_no_reference_to_a_document_outside_the_repository():
    root = PACKAGE.parent
    offenders = []
    files = (list(PACKAGE.rglob("*.py")) + list((root / "docs").glob("*.md")) + [root / "README.md"]
             + [p for p in (root / "benchmarks").rglob("*") if p.suffix in (".py", ".md", ".sh")])
    for path in files:
        text = path.read_text(encoding="utf-8")
        if any(s in text for s in ("spec §", "featdepth_spec", "shared/docs", "reference_figures.md")):
            offenders.append(str(path.relative_to(root)))
    assert not offenders, offenders
    method = (root / "docs" / "method.md").read_text(encoding="utf-8")
    for path in PACKAGE.rglob("*.py"):
        for ref in set(__import__("re").findall(r"docs/method\.md (§[0-9][0-9.a-z]*)", path.read_text())):
            section = ref.rstrip(".")
            assert f"# {section[1:]} " in method or f"# {section[1:]}\n" in method or f"{section[1:]} " in method, \
                f"{path.name} cites {section}, which docs/method.md does not have"
