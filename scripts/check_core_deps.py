#!/usr/bin/env python3
"""Fails when the core's top-level modules import each other in a cycle (make lint).

A module's dependencies are the `crate::<module>` paths its files name (tests excluded: a test
may use anything). Prints the cycle it finds."""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "filters/core/src"
ALIASES = {"openai": "api/openai"}


# Folders whose children are modules of their own (api/openai and api/anthropic are two APIs).
GROUPS = {"api"}


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    if rel.parts[0] in GROUPS and len(rel.parts) > 1 and rel.parts[1] != "mod":
        return f"{rel.parts[0]}/{rel.parts[1]}"
    return rel.parts[0]


def main() -> int:
    deps: dict[str, set[str]] = {}
    for f in SRC.rglob("*.rs"):
        m = module_of(f)
        if m == "lib":
            continue
        text = f.read_text()
        cut = text.find("#[cfg(test)]")
        text = text if cut < 0 else text[:cut]
        used = set(re.findall(r"\bcrate::([a-z_]+)", text))
        used |= {f"api/{m}" for m in re.findall(r"\bcrate::api::([a-z_]+)", text)}
        used.discard("api")
        # `use crate::{a, b::c}` groups.
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            used |= {p.strip().split("::")[0] for p in group.split(",") if p.strip()}
        # A child module's `super::` is its own group; re-exports at the crate root name their
        # module (crate::openai is api::openai).
        used = {ALIASES.get(u, u) for u in used}
        deps.setdefault(m, set()).update(u for u in used if u != m)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(deps.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d in deps and not state.get(d):
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(deps):
        if not state.get(m):
            cycle = visit(m)
            if cycle:
                print("lint: core modules import each other in a cycle: " + " -> ".join(cycle))
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
