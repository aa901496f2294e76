#!/usr/bin/env python3
"""check-layers.py -- the C core's includes keep to its layers.

core/ is in folders, one per layer, lowest first (core/ARCHITECTURE.md):

    base < loop < http < upstream < lua < server

A file may include headers of its own layer and of the layers below it,
never of a layer above: a lower layer reaches a higher one only through a
hook the higher one installs. This script reads every `#include "..."`
under core/ and exits 1, naming the file, the line and the include, when

  - a file is not in a layer folder, or a layer folder is not in LAYERS;
  - an include does not name a file under core/ (core-relative, like
    "http/upstream.h", or beside the including file);
  - an include runs up the layers;
  - a private header (name_int.h) is included from another folder;
  - includes make a cycle: among files, among modules (a module is
    name.c with name.h and name_int.h: "http/http_conn" includes
    "upstream/upstream.h" and upstream.c includes http_conn.h is one),
    or among layers.

Usage: scripts/check-layers.py [core-dir]     (Python 3 standard library)
"""
import os
import re
import sys

# The layer order, lowest first: the one place it is written down.
LAYERS = ["base", "loop", "http", "upstream", "lua", "server"]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), "..", "core"))
    rank = {name: i for i, name in enumerate(LAYERS)}
    errors = []
    files = {}   # core-relative path -> [(line number, include as written, resolved path)]

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.endswith((".c", ".h")):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), root)
            parts = rel.split(os.sep)
            if len(parts) != 2 or parts[0] not in rank:
                errors.append(f"core/{rel}: not in a layer folder ({', '.join(LAYERS)})")
                continue
            files[rel] = []

    for rel in files:
        here = os.path.dirname(rel)
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                beside = os.path.normpath(os.path.join(here, inc))
                if os.path.isfile(os.path.join(root, inc)) and "/" in inc:
                    target = os.path.normpath(inc)
                elif os.path.isfile(os.path.join(root, beside)):
                    target = beside
                else:
                    errors.append(f"core/{rel}:{n}: #include \"{inc}\": no such file under core/")
                    continue
                if target not in files:
                    errors.append(f"core/{rel}:{n}: #include \"{inc}\": not in a layer folder")
                    continue
                files[rel].append((n, inc, target))

    for rel, incs in files.items():
        layer = rel.split(os.sep)[0]
        for n, inc, target in incs:
            tlayer = target.split(os.sep)[0]
            if rank[tlayer] > rank[layer]:
                errors.append(f"core/{rel}:{n}: #include \"{inc}\": {layer} may not include "
                              f"{tlayer} (a layer above it)")
            if target.endswith("_int.h") and tlayer != layer:
                errors.append(f"core/{rel}:{n}: #include \"{inc}\": a private header of "
                              f"{tlayer}/")

    errors += cycles({rel: [t for _, _, t in incs] for rel, incs in files.items()}, "files")
    module_graph = {}
    for rel, incs in files.items():
        deps = module_graph.setdefault(module(rel), set())
        deps.update(module(t) for _, _, t in incs if module(t) != module(rel))
    errors += cycles({k: sorted(v) for k, v in module_graph.items()}, "modules")
    layer_graph = {name: set() for name in LAYERS}
    for rel, incs in files.items():
        for _, _, target in incs:
            a, b = rel.split(os.sep)[0], target.split(os.sep)[0]
            if a != b:
                layer_graph[a].add(b)
    errors += cycles({k: sorted(v) for k, v in layer_graph.items()}, "layers")

    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check-layers: {len(errors)} problem(s); the layers, lowest first: "
              f"{' < '.join(LAYERS)}", file=sys.stderr)
        return 1
    n = sum(len(v) for v in files.values())
    print(f"check-layers: {len(files)} files, {n} includes, layers {' < '.join(LAYERS)}: ok")
    return 0


def module(rel):
    """core/upstream/upstream_int.h -> upstream/upstream"""
    stem = os.path.splitext(rel)[0]
    return stem[:-len("_int")] if stem.endswith("_int") else stem


def cycles(graph, what):
    """Every cycle found by a depth-first walk, as "a -> b -> a"."""
    found, state, stack = [], {}, []

    def walk(v):
        state[v] = 1
        stack.append(v)
        for w in graph.get(v, ()):
            if state.get(w) == 1:
                loop = stack[stack.index(w):] + [w]
                found.append(f"include cycle among {what}: " +
                             " -> ".join(f"core/{x}" if what != "layers" else x for x in loop))
            elif w not in state:
                walk(w)
        stack.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            walk(v)
    return found


if __name__ == "__main__":
    sys.exit(main())
