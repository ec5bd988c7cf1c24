"""Structure facts of the crmlab package (issue 16): largest files and functions, import circles between
modules (every import, also inside functions), pipeline packages importing the application layer (KPIs,
report, CLI, jobs) and private names used across modules.

    python benchmarks/structure.py [--json]

Exit code 1 when there is a circle or a private name crosses a module, so CI can hold the line
(tests/test_structure.py runs it)."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "crmlab").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the crmlab modules it imports (package __init__ re-exports excluded as targets only when
    the import names a submodule), and the private names imported from another module."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        aliases: dict[str, str] = {}  # a local name bound to another crmlab module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("crmlab") and alias.asname and alias.name in mods:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crmlab"):
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in mods:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases[node.value.id].rpartition(".")[0] != package):
                private.append(f"{mod} uses {aliases[node.value.id]}.{node.attr}")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("crmlab"):
                        target = _resolve(alias.name, mods)
                        if target and target != mod:
                            graph[mod].add(target)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if not base.startswith("crmlab"):
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in mods else _resolve(base, mods)
                    if target and target != mod:
                        graph[mod].add(target)
                    if full not in mods and alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{mod} imports {base}.{alias.name}")
                    if full in mods and alias.name.startswith("_") and target.rpartition(".")[0] != package:
                        private.append(f"{mod} imports private module {full}")
    return graph, private


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring edges into a package
    __init__ from its own submodules only when that __init__ is lazy (it imports nothing eagerly)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


#: The application layer: commands and jobs that use the pipelines, never used by them.
APPLICATION = ("crmlab.cli", "crmlab.demo", "crmlab.init", "crmlab.kpis", "crmlab.report", "crmlab.retrain",
               "crmlab.scoring", "crmlab.spark")


def layer_violations(mods: dict[str, Path], graph: dict[str, set[str]]) -> list[str]:
    """Imports from a pipeline package (a package with a ``record.py``) into the application layer."""
    packages = {m for m, p in mods.items() if p.name == "__init__.py" and (p.parent / "record.py").is_file()}
    return sorted(f"{a} imports {b}" for a, bs in graph.items() if any(a == q or a.startswith(q + ".") for q in packages)
                  for b in bs if b in APPLICATION)


def functions(mods: dict[str, Path]) -> list[tuple[int, str]]:
    out = []
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{mod}.{node.name}"))
    return sorted(out, reverse=True)


def facts() -> dict:
    mods = modules()
    graph, private = imports(mods)
    # an edge from a package's own submodule to the package __init__ is how lazy packages re-export;
    # it is a circle only when the __init__ imports the submodule eagerly, which the graph shows anyway
    files = sorted(((len(p.read_text(encoding="utf-8").splitlines()), m) for m, p in mods.items()), reverse=True)
    return {
        "modules": len(mods),
        "largest_files": [{"module": m, "lines": n} for n, m in files[:8]],
        "largest_functions": [{"function": f, "lines": n} for n, f in functions(mods)[:8]],
        "circles": circles(graph),
        "layer_violations": layer_violations(mods, graph),
        "private_names_across_modules": sorted(set(private)),
    }


def main() -> int:
    f = facts()
    if "--json" in sys.argv:
        print(json.dumps(f, indent=2))
    else:
        print(f"{f['modules']} modules")
        print("largest files:", ", ".join(f"{d['module']} {d['lines']}" for d in f["largest_files"]))
        print("largest functions:", ", ".join(f"{d['function']} {d['lines']}" for d in f["largest_functions"]))
        print(f"circles: {len(f['circles'])}")
        for c in f["circles"]:
            print("  ", " <-> ".join(c))
        print(f"pipeline packages importing the application layer: {len(f['layer_violations'])}")
        for v in f["layer_violations"]:
            print("  ", v)
        print(f"private names across modules: {len(f['private_names_across_modules'])}")
        for p in f["private_names_across_modules"]:
            print("  ", p)
    return 1 if f["circles"] or f["private_names_across_modules"] or f["layer_violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
