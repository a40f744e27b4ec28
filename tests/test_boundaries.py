"""Layer boundaries and import cycles, read from the source (every import statement, with its
line) and checked again by importing the modules in a fresh interpreter (which also sees an
import made through another module).

The layers: engine/'s top level (requests, validation, limits, errors, settings, samplers,
prompt_syntax, images, the service and its queue, the CLI), ``engine.store`` and
``engine.metadata`` are the torch-free contract that ui/ and api/ build on; ``engine.generate``
owns torch, diffusers and transformers; ``engine.downloads`` sits on the store.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN_PACKAGES = ("engine", "api", "ui", "locales")
OWN_FILES = ("app.py", "app_settings.py")
HEAVY = ("torch", "diffusers", "transformers")
# Beside the contract, the only engine modules ui/ and api/ may name: the download job types.
UI_MAY_ALSO_IMPORT = ("engine.downloads.sources", "engine.downloads.jobs")
# engine.__main__ runs the CLI when imported: it is checked from its source only.
NOT_IMPORTABLE = ("engine.__main__",)


@dataclass(frozen=True)
class Import:
    name: str  # the module imported, "a.b.c"; for ``from a.b import c`` a.b.c when that is a module
    line: int
    at_import_time: bool  # False inside a function: it runs only when the function does


def _own_modules() -> dict[str, Path]:
    paths = [path for package in OWN_PACKAGES for path in (ROOT / package).rglob("*.py")]
    paths += [ROOT / name for name in OWN_FILES]
    modules = {}
    for path in paths:
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


class _ImportReader(ast.NodeVisitor):
    def __init__(self, modules: dict[str, Path]) -> None:
        self.modules = modules
        self.found: list[Import] = []
        self.function_depth = 0

    def _inside_function(self, node: ast.AST) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _inside_function

    def visit_If(self, node: ast.If) -> None:
        """``if TYPE_CHECKING:`` imports are for the type checker: they never run, so they
        count like an import inside a function (the ui/api rule still sees them)."""
        test = node.test
        name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
        if name != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self.function_depth += 1
        for statement in node.body:
            self.visit(statement)
        self.function_depth -= 1
        for statement in node.orelse:
            self.visit(statement)

    def _add(self, name: str, node: ast.stmt) -> None:
        self.found.append(Import(name, node.lineno, self.function_depth == 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        assert node.level == 0, f"line {node.lineno}: relative import"
        for alias in node.names:
            submodule = f"{node.module}.{alias.name}"
            self._add(submodule if submodule in self.modules else str(node.module), node)


def _imports(path: Path, modules: dict[str, Path]) -> list[Import]:
    reader = _ImportReader(modules)
    reader.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return reader.found


def _is(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _in_contract(module: str) -> bool:
    """engine/'s top level (every module there, so a torch module cannot be added beside them
    unnoticed), the store and the image metadata."""
    top_level = module.startswith("engine") and module.count(".") <= 1
    return top_level or _is(module, ("engine.store", "engine.metadata"))


def _forbidden(module: str, found: Import) -> str | None:
    """Why ``module`` may not make this import, or None when it may."""
    name = found.name
    if _is(module, ("engine",)) and _is(name, ("gradio",)):
        return "engine/ never imports gradio"
    if _is(module, ("ui", "api")):
        if _is(name, HEAVY):
            return "ui/ and api/ never import torch, diffusers or transformers"
        if _is(name, ("engine",)) and not (_in_contract(name) or _is(name, UI_MAY_ALSO_IMPORT)):
            return ("ui/ and api/ import only the engine's contract (its top level, engine.store,"
                    " engine.metadata) and the download job types, never engine.generate or"
                    " engine.demo")
    if _is(module, ("engine.store",)) and _is(
            name, ("engine.downloads", "engine.generate", "engine.demo")):
        return "the store never imports the downloads, the generator or the demo"
    if module == "engine.service" and _is(name, HEAVY):
        return "the service never imports torch: the backend (engine.generate) owns it"
    if _in_contract(module) and found.at_import_time and _is(name, HEAVY):
        return "the contract imports torch, diffusers and transformers only inside a function"
    return None


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    return set(output.split())


def _importing(modules) -> str:
    return "import " + ", ".join(sorted(m for m in modules if m not in NOT_IMPORTABLE))


def test_layers_import_only_what_they_may():
    """ui/ and api/ never import engine.generate (nor torch, diffusers, transformers, not even
    inside a function); of the engine they import only the contract and the download job types.
    The contract (engine/'s top level, engine.store, engine.metadata) imports none of torch,
    diffusers, transformers or gradio when it is imported (the service loads the generator on
    first use); the service never imports torch, even inside a function; the store never
    imports the downloads. Nothing in engine/ imports gradio."""
    modules = _own_modules()
    broken = [f"{path.relative_to(ROOT)}:{found.line} imports {found.name}: {why}"
              for module, path in sorted(modules.items())
              for found in _imports(path, modules)
              if (why := _forbidden(module, found))]
    assert broken == []

    contract = {m for m in modules if _in_contract(m)}
    loaded = _modules_after(_importing(contract) + ", locales")
    heavy = sorted(m for m in loaded if _is(m, HEAVY + ("gradio", "controlnet_aux")))
    assert heavy == [], f"importing the contract loads {heavy[:5]}"

    front_ends = {m for m in modules if _is(m, ("ui", "api", "app_settings"))}
    loaded = _modules_after(_importing(front_ends))
    never = sorted(m for m in loaded if _is(m, HEAVY + ("controlnet_aux", "engine.generate")))
    assert "gradio" in loaded and never == [], f"importing ui/ and api/ loads {never[:5]}"

    # Everything in engine/ at once: torch does load (so the checks above would have seen it),
    # gradio does not.
    loaded = _modules_after(_importing(m for m in modules if _is(m, ("engine",))))
    assert "torch" in loaded and "gradio" not in loaded


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [(start, iter(sorted(graph[start])))]
        while stack:
            node, pending = stack[-1]
            following = next(pending, None)
            if following is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif following in on_path:
                return path[path.index(following):] + [following]
            elif following not in done:
                stack.append((following, iter(sorted(graph[following]))))
                path.append(following)
                on_path.add(following)
    return None


def test_no_import_cycles():
    """Among the app's own modules, imports inside functions included: a cycle that works only
    because one side imports late is still two modules that need each other."""
    modules = _own_modules()
    graph = {module: {found.name for found in _imports(path, modules)
                      if found.name in modules and found.name != module}
             for module, path in modules.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
