"""The package's import structure: files, floors (longest import chain), circles and rule breaks.

Reads ``src/universalner`` with ``ast`` (nothing is imported), every ``import`` counted, the lazy ones
inside functions included (a lazy import still ties two files together), but not those under
``if TYPE_CHECKING:``, which never run. Importing ``a.b.c`` runs
``a/__init__`` and ``a/b/__init__`` first, so those count as imported too (except the importer's own
packages). ``tests/test_structure.py`` holds the rules below to zero; this prints the figures:

    python benchmarks/structure.py            # figures and any rule breaks
    python benchmarks/structure.py --graph    # also each file's floor and what it imports

Figures: ``files`` (modules), ``floors`` (the longest chain of imports, circles counted as one room;
``longest chain``: through a circle, file by file),
``circles`` (groups of files that import each other). Rules: no circle; no import from a lower layer up
to a higher one (``LAYERS``); an engine imports no other engine and no job; ``weights/`` imports no
engine; no module imports another module's private (``_name``) name.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "universalner"
SRC = Path(__file__).resolve().parent.parent / "src"

# layers, lowest first: a module may import its own layer or a lower one. The first matching prefix wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("weights", ("universalner.weights",)),
    ("engines", ("universalner.engines",)),
    ("model", ("universalner.model", "universalner.confidence")),  # confidence reads an engine's Generation
    (
        "faces",
        (
            "universalner.__main__",
            "universalner.spacy_component",
            "universalner.evaluate",
            "universalner.tune",
            "universalner.distill",
        ),
    ),
]
JOBS = ("universalner.tune", "universalner.evaluate", "universalner.distill")


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    out = {}
    for f in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_package(name: str, mods: dict[str, Path]) -> bool:
    return mods[name].name == "__init__.py"


def imports(mods: dict[str, Path]) -> dict[str, list[tuple[str, list[str], int]]]:
    """module -> [(imported module, names taken from it, line)], intra-package only."""
    out: dict[str, list[tuple[str, list[str], int]]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        pkg = name if _is_package(name, mods) else name.rpartition(".")[0]
        found: list[tuple[str, list[str], int]] = []
        skip = set()  # imports under `if TYPE_CHECKING:` never run
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for b in node.body for n in ast.walk(b))
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == PACKAGE or a.name.startswith(PACKAGE + "."):
                        found.append((_deepest(a.name, mods), [], node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                    continue
                plain = []
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in mods:  # `from . import lora`: the submodule itself
                        found.append((sub, [], node.lineno))
                    else:
                        plain.append(a.name)
                if plain:
                    found.append((_deepest(target, mods), plain, node.lineno))
        out[name] = found
    return out


def _deepest(dotted: str, mods: dict[str, Path]) -> str:
    parts = dotted.split(".")
    while parts and ".".join(parts) not in mods:
        parts.pop()
    return ".".join(parts)


def graph(mods: dict[str, Path], imps) -> dict[str, set[str]]:
    """module -> modules it makes Python run (the named one and its packages above the importer's)."""
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, found in imps.items():
        mine = {".".join(m.split(".")[:k]) for k in range(1, m.count(".") + 2)}
        for target, _, _ in found:
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                t = ".".join(parts[:k])
                if t in mods and t not in mine and t != m:
                    g[m].add(t)
    return g


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def floors(g: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor: 1 + the highest floor it imports (a circle is one room)."""
    room = {m: m for m in g}
    for group in circles(g):
        for m in group:
            room[m] = group[0]
    rg: dict[str, set[str]] = {r: set() for r in set(room.values())}
    for m, ts in g.items():
        for t in ts:
            if room[t] != room[m]:
                rg[room[m]].add(room[t])
    memo: dict[str, int] = {}

    def depth(r: str) -> int:
        if r not in memo:
            memo[r] = 1 + max((depth(t) for t in rg[r]), default=0)
        return memo[r]

    return {m: depth(room[m]) for m in g}


def longest_chain(g: dict[str, set[str]]) -> int:
    """The longest chain of imports that visits no file twice (through a circle, not around it); the
    same as the floors where there is no circle."""
    if not circles(g):
        return max(floors(g).values())

    def dfs(v: str, seen: set[str]) -> int:
        best = 1
        for w in g[v]:
            if w not in seen:
                seen.add(w)
                best = max(best, 1 + dfs(w, seen))
                seen.discard(w)
        return best

    return max(dfs(v, {v}) for v in g)


def layer(m: str) -> int:
    """The layer of a module: 0 for the shared rooms, then LAYERS in order."""
    for i, (_, prefixes) in enumerate(LAYERS, start=1):
        if any(m == p or m.startswith(p + ".") for p in prefixes):
            return i
    return 0


def breaks(mods: dict[str, Path], imps, src: Path = SRC) -> list[str]:
    """Every import that breaks a rule, as 'file:line: what'."""
    out = []
    for m, found in imps.items():
        where = f"{mods[m].relative_to(src)}"
        for target, names, line in found:
            if target == m or not target:
                continue
            if layer(target) > layer(m) and m != PACKAGE:
                out.append(f"{where}:{line}: imports {target}, a higher layer")
            if m.startswith("universalner.engines."):
                other = target.startswith("universalner.engines.") and target not in (
                    "universalner.engines.base",
                )
                if other:
                    out.append(f"{where}:{line}: an engine imports another engine, {target}")
                if any(target == j or target.startswith(j + ".") for j in JOBS):
                    out.append(f"{where}:{line}: an engine imports a job, {target}")
            if m.startswith("universalner.weights") and target.startswith("universalner.engines"):
                out.append(f"{where}:{line}: weights/ imports an engine, {target}")
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    out.append(f"{where}:{line}: imports the private name {n} of {target}")
    return out


def report(src: Path = SRC) -> dict:
    mods = modules(src)
    imps = imports(mods)
    g = graph(mods, imps)
    fl = floors(g)
    return {
        "files": len(mods),
        "floors": max(fl.values()),
        "chain": longest_chain(g),
        "circles": circles(g),
        "breaks": breaks(mods, imps, src),
        "graph": g,
        "floor_of": fl,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", action="store_true", help="also each file's floor and imports")
    ap.add_argument("--src", type=Path, default=SRC, help="the src folder (default: this checkout's)")
    a = ap.parse_args(argv)
    r = report(a.src)
    print(
        f"files {r['files']}  floors {r['floors']} (longest chain {r['chain']})  circles {len(r['circles'])}  rule breaks {len(r['breaks'])}"
    )
    for c in r["circles"]:
        print("circle:", " -> ".join(c))
    for b in r["breaks"]:
        print("break:", b)
    if a.graph:
        for m in sorted(r["graph"], key=lambda m: (r["floor_of"][m], m)):
            print(f"{r['floor_of'][m]:3d} {m}: {', '.join(sorted(r['graph'][m]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
