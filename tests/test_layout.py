"""The package layout's promises: the recommender imports no UI library, study/ and recommender/ have no import
cycle (module- or function-level), no study/ file outgrows one sitting, and the README's module tables match."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("study", "recommender", "webapp")
UI_LIBRARIES = ("streamlit", "altair", "fpdf")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports anywhere in it (``from a.b import c`` counts a.b, and a.b.c if a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def test_the_recommender_imports_no_ui_library():
    for path in (ROOT / "recommender").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(name.split(".")[0] in UI_LIBRARIES for name in names), path


def test_no_import_cycles_in_study_or_recommender():
    modules = _modules()
    graph = {name: {m for m in _imports(path, modules) if m != name}
             for name, path in modules.items() if name.split(".")[0] in ("study", "recommender")}
    # A package's __init__ importing its own submodules is how registries fill; the reverse edge would be a cycle.
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_no_study_file_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "study").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_the_readme_module_tables_match_the_tree():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:study|webapp|recommender)/[\w/]+\.(?:py|toml))`", readme))
    named |= {f"recommender/{m}" for m in re.findall(r"^\| `(\w+\.py)`", readme, flags=re.M)}
    for path in list((ROOT / "study").glob("*.py")) + list((ROOT / "recommender").glob("*.py")):
        relative = str(path.relative_to(ROOT))
        if path.name != "__init__.py":
            assert relative in named or f"`{path.name}`" in readme, f"{relative} is missing from README.md"
    for relative in named:
        assert (ROOT / relative).exists(), f"README.md names {relative}, which does not exist"
