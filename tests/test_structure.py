"""The package's shape: the lessons' library (`helpers`) apart from the course's tooling (`helpers.course`),
an import graph without cycles, no private name used outside its module, every dependency used, and a linter
that passes. Read from the source (every import, the ones inside functions included), not from what happens
to be imported at run time."""
import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "helpers"


def modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports(name: str, file: Path) -> tuple[set[str], list[str]]:
    """The helpers modules `name` imports (anywhere in it), and the private names of other modules it uses."""
    mods = modules()
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets, private, aliases = set(), [], {}
    tree = ast.parse(file.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rsplit(".", 1)[0]
                base = f"{anchor}.{node.module}" if node.module else anchor
            if not base.startswith("helpers"):
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in mods:          # `from . import data`: a module
                    targets.add(f"{base}.{alias.name}")
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
                else:                                      # `from .data import load`: a name of a module
                    targets.add(base)
                    if alias.name.startswith("_"):
                        private.append(f"{base}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helpers"):
                    targets.add(alias.name)
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            private.append(f"{aliases[node.value.id]}.{node.attr}")
    return targets - {name}, private


GRAPH = {name: imports(name, file) for name, file in modules().items()}


def test_the_tooling_is_a_layer_of_its_own_that_the_lessons_library_never_imports():
    tooling = {m for m in GRAPH if m.startswith("helpers.course")}
    assert {"helpers.course.cli", "helpers.course.budget", "helpers.course.grading", "helpers.course.results"} <= tooling
    upward = {m: sorted(t & tooling) for m, (t, _) in GRAPH.items() if m not in tooling and t & tooling}
    assert not upward, f"modules of the lessons' library import the course's tooling: {upward}"


def test_the_import_graph_has_no_cycle():
    def reaches(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in GRAPH.get(todo.pop(), (set(),))[0]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    cycles = sorted({tuple(sorted((a, b))) for a, (targets, _) in GRAPH.items() for b in targets
                     if b in GRAPH and a in reaches(b)})
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_is_used_outside_its_module():
    crossing = {m: p for m, (_, p) in GRAPH.items() if p}
    assert not crossing, f"private names used across modules (make them public, or move the code): {crossing}"


def test_the_checker_sees_a_cycle_and_a_private_name(tmp_path, monkeypatch):
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    (tmp_path / "helpers" / "a.py").write_text("def f():\n    from . import b\n    return b._g()\n")
    (tmp_path / "helpers" / "b.py").write_text("from .a import f\n\ndef _g():\n    return f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "helpers")
    found = {name: imports(name, file) for name, file in modules().items()}
    assert found["helpers.a"] == ({"helpers.b"}, ["helpers.b._g"]) and found["helpers.b"][0] == {"helpers.a"}


def _import_name(requirement: str) -> str:
    name = re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()
    return {"pillow": "PIL", "scikit-learn": "sklearn", "grad-cam": "pytorch_grad_cam"}.get(name, name.replace("-", "_"))


def test_every_dependency_of_the_student_install_is_imported_by_the_course():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sources = "\n".join(f.read_text() for f in PACKAGE.rglob("*.py"))
    sources += "\n".join(f.read_text() for f in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    unused = [r for r in project["dependencies"]
              if not re.search(rf"(import|from) {_import_name(r)}\b", sources.replace('\\n', '\n'))]
    assert not unused, f"dependencies nothing imports (drop them from pyproject.toml and environment.yml): {unused}"


def test_the_linter_passes():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)   # ruff: the test extra
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


def test_the_layer_table_names_tests_that_exist():
    from conftest import EXECUTE_A_NOTEBOOK, LAYERS
    for module, functions in EXECUTE_A_NOTEBOOK.items():
        source = (ROOT / "tests" / f"{module}.py").read_text()
        assert all(re.search(rf"^def {name}\(", source, re.M) for name in functions), module
    assert all((ROOT / "tests" / f"{m}.py").exists() for modules in LAYERS.values() for m in modules)
