"""design.md §2: data flows one way through the layers, and no module imports its way back (no import cycles).

Read from the source (the AST), so deferred imports inside functions count as well: a cycle hidden in a function
is still one responsibility split across two modules. Imports under ``if TYPE_CHECKING:`` are for annotations only
and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gtls"
#: The configuration layer: what `import gtls` loads, standard library only (design.md §2 "may import").
CONFIGURATION = ("gtls.options", "gtls.deployment", "gtls.resolve", "gtls.errors")
THIRD_PARTY_RUNTIME = ("trio", "OpenSSL", "cryptography")
#: Everything past resolution: configuration never reaches into it.
RUNTIME = ("gtls.context", "gtls._verdicts", "gtls.engine", "gtls.stream", "gtls.server", "gtls.client", "gtls.verify",
           "gtls._offline", "gtls.pki")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs, at module level or inside a function; not those under TYPE_CHECKING."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            for other in node.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _imports(node)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules an import statement loads (``from . import x`` loads the submodule ``x``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        relative = Path(*candidate.split("."))
        if (PACKAGE.parent / relative.with_suffix(".py")).exists() or (PACKAGE.parent / relative).is_dir():
            yield candidate
        else:
            yield base


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        found = graph.setdefault(module, set())
        for node in _imports(ast.parse(path.read_text(), str(path))):
            found.update(_targets(module, path.name == "__init__.py", node))
        found.discard(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), among gtls's own modules. The package
    ``gtls`` itself is left out: every submodule needs its parent imported first, which is not a design choice."""
    internal = {m: {t for t in targets if t in graph and t != "gtls"} for m, targets in graph.items() if m != "gtls"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(internal[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(internal):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    """design.md §2 asks for none. There were two, each hidden in a function: gtls.context's failure path imported
    gtls.verify, which imports gtls.context; gtls.demo imported gtls.testing, which imported gtls.demo."""
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("module", CONFIGURATION)
def test_configuration_imports_no_tls_library_and_nothing_past_resolution(module: str) -> None:
    targets = _graph()[module]
    assert not {t for t in targets if t.split(".")[0] in THIRD_PARTY_RUNTIME}, targets
    assert not {t for t in targets if t.startswith(RUNTIME)}, targets


def test_the_engine_never_imports_trio_or_the_layers_above_it() -> None:
    """design.md §2: the engine is sans-IO (it never waits): bytes in, bytes out, for any trio stream above it."""
    targets = _graph()["gtls.engine"]
    assert not {t for t in targets if t.split(".")[0] == "trio"}, targets
    assert not {t for t in targets if t.startswith(("gtls.stream", "gtls.server", "gtls.client", "gtls.cli"))}


def test_pki_imports_no_runtime_layer() -> None:
    for module, targets in _graph().items():
        if module.startswith("gtls.pki"):
            assert not {t for t in targets if t.split(".")[0] == "trio"}, (module, targets)
            assert not {t for t in targets if t.startswith(RUNTIME[:-1])}, (module, targets)
