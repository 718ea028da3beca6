"""CI check (.ci/run): the module graph of the library in src/ has no cycle.

Nodes are the files of src/ (main.rs is the binary, a crate of its own, and
is left out). An edge goes from a file to the module a `crate::` or `super::`
path in it names, in a `use` (groups expanded) or inline; `mod` declarations
are not edges. Edges from a module to its own ancestors (a child using what
its parent defines) are left out unless `-a` is given. Prints each cycle and
exits 1 if there is one; `-t` also prints each top-level module's imports.

Usage: python3 .ci/modgraph.py src [-a] [-t]
"""
import os
import re
import sys

root = sys.argv[1]
strict = "-a" in sys.argv

# Module path (a tuple of names; () for lib.rs) -> its file.
modules = {}
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        if not name.endswith(".rs") or os.path.relpath(path, root) == "main.rs":
            continue
        parts = os.path.relpath(path, root)[:-3].split(os.sep)
        if parts[-1] == "mod" or parts == ["lib"]:
            parts = parts[:-1]
        modules[tuple(parts)] = path


def resolve(names):
    """The longest prefix of `names` that is a module (an item resolves to
    the module that holds it)."""
    for end in range(len(names), -1, -1):
        if tuple(names[:end]) in modules:
            return tuple(names[:end])
    return ()


def target(module, path):
    """The module a `crate::…` or `super::…` path written in `module` names."""
    segments = [s for s in path.split("::") if s and s != "self"]
    if segments[0] == "crate":
        return resolve(segments[1:])
    base = list(module)
    while segments and segments[0] == "super":
        base, segments = base[:-1], segments[1:]
    return resolve(base + segments)


def expand(use):
    """`a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`."""
    if "{" not in use:
        return [use]
    start = use.index("{")
    prefix, inner = use[:start], use[start + 1 : use.rindex("}")]
    parts, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [p for part in parts if part for p in expand(prefix + part)]


USE = re.compile(r"\buse\s+((?:crate|super)\b[^;]*);", re.S)
INLINE = re.compile(r"(?<![\w:])((?:crate|super)(?:::(?:super|\w+))+)")

edges = {module: set() for module in modules}
for module, file in modules.items():
    text = re.sub(r"//[^\n]*", "", open(file).read())
    paths = [p for use in USE.findall(text) for p in expand(re.sub(r"\s+", "", use))]
    paths += INLINE.findall(USE.sub("", text))
    for path in paths:
        found = target(module, path)
        if found != module:
            edges[module].add(found)
if not strict:
    for module in edges:
        edges[module] = {t for t in edges[module] if t != module[: len(t)]}

# Tarjan's strongly connected components: a component of two or more is a cycle.
sys.setrecursionlimit(10000)
index, low, stack, on_stack, cycles = {}, {}, [], set(), []


def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for other in edges[node]:
        if other not in index:
            visit(other)
            low[node] = min(low[node], low[other])
        elif other in on_stack:
            low[node] = min(low[node], index[other])
    if low[node] == index[node]:
        component = []
        while True:
            other = stack.pop()
            on_stack.discard(other)
            component.append(other)
            if other == node:
                break
        if len(component) > 1:
            cycles.append(component)


for node in list(edges):
    if node not in index:
        visit(node)


def name(module):
    return "::".join(module) or "crate"


for component in cycles:
    print("CYCLE:", ", ".join(name(m) for m in component))
    for a in component:
        for b in edges[a] & set(component):
            print("   ", name(a), "->", name(b))
if "-t" in sys.argv:
    top = {}
    for module, targets in edges.items():
        for t in targets:
            a, b = name(module[:1]), name(t[:1])
            if a != b:
                top.setdefault(a, set()).add(b)
    for a in sorted(top):
        print(a, "->", " ".join(sorted(top[a])))
print("cycles:", len(cycles))
sys.exit(1 if cycles else 0)
