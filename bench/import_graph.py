"""Module-to-module imports inside videopolicy, and the edges that point against the layering.

The package's layers, in the order data flows (a module may import its own layer and the layers before it):

    0 core      config, store, normalize, runtime, util, ray_auth, local_cluster, the package root
    1 data      demo files, clip pipeline
    2 models    video U-Net, action head, baselines
    3 train     Ray Train stages             3 sim    suites, simulators, the bridge
    4 evaluate  ledger, workers, policy server, stats
    5 sweep     planner, executor
    6 report    tables, HTML                 6 tracking  MLflow runs, outbox

Layers that share a number are siblings and do not import each other. An edge from a lower layer to a
higher one, or between siblings, is a back-edge. Imports inside functions count the same as top-level
ones (a deferred import hides a cycle, it does not remove it). Cycles between modules are listed too.
Reads the source with `ast` (imports nothing of the package, needs no torch):

    python bench/import_graph.py            # summary: back-edges and cycles
    python bench/import_graph.py --edges    # every edge as well
    python bench/import_graph.py --package /tmp/wt_before/platform/videopolicy   # another checkout's tree
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "videopolicy"

LAYERS = {
    "data": 1,
    "models": 2,
    "train": 3,
    "sim": 3,
    "evaluate": 4,
    "sweep": 5,
    "report": 6,
    "tracking": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[str, int]:
    """('core', 0) for top-level modules, else the sub-package and its layer."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return parts[1], LAYERS.get(parts[1], 0)
    return "core", 0


def imports_of(path: Path, modules: set[str]) -> dict[str, bool]:
    """Imported package modules -> whether some import of it is at module level."""
    me = module_name(path)
    is_pkg = path.name == "__init__.py"
    found: dict[str, bool] = {}
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for stmt in tree.body:  # module-level imports under if/try count as top level too
        if isinstance(stmt, ast.If | ast.Try):
            top_level.update(id(n) for n in ast.walk(stmt))

    def add(target: str, node: ast.AST) -> None:
        while target and target not in modules:  # `from pkg import name`: name may be a function
            target = target.rpartition(".")[0]
        if target and target != me:
            found[target] = found.get(target, False) or id(node) in top_level

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("videopolicy"):
                    add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if is_pkg else me.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("videopolicy"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                add(sub if sub in modules else mod, node)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str] | None = None) -> int:
    global PACKAGE  # module_name() and layer_of() read it
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", action="store_true", help="print every edge, not only the back-edges")
    parser.add_argument("--package", type=Path, default=PACKAGE,
                        help="the videopolicy folder to read (default: this checkout's)")
    args = parser.parse_args(argv)
    PACKAGE = args.package.resolve()

    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph: dict[str, set[str]] = defaultdict(set)
    deferred: dict[tuple[str, str], bool] = {}
    for f in files:
        me = module_name(f)
        for target, top in imports_of(f, modules).items():
            graph[me].add(target)
            deferred[(me, target)] = not top

    edges = sorted((a, b) for a in graph for b in graph[a])
    back = []
    for a, b in edges:
        (pa, la), (pb, lb) = layer_of(a), layer_of(b)
        if pa != pb and (lb > la or (lb == la and pa != "core")):
            back.append((a, b))
    if args.edges:
        print(f"edges ({len(edges)}):")
        for a, b in edges:
            print(f"  {a} -> {b}{'  (in a function)' if deferred[(a, b)] else ''}")
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for a, b in back:
        by_pair[(layer_of(a)[0], layer_of(b)[0])].append((a, b))
    print(f"modules {len(modules)}, edges {len(edges)}, "
          f"in-function {sum(deferred.values())}, back-edges {len(back)}")
    for (pa, pb), pairs in sorted(by_pair.items()):
        print(f"  {pa} -> {pb} ({len(pairs)}):")
        for a, b in pairs:
            print(f"    {a} -> {b}{'  (in a function)' if deferred[(a, b)] else ''}")
    comps = cycles(graph)
    print(f"import cycles between modules: {len(comps)}")
    for comp in comps:
        print("  " + " <-> ".join(comp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
