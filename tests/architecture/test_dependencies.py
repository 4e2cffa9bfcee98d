"""The walls between the components, as the architecture states them.

- ``agent`` imports nothing of the server: it is installed alone on devices.
- ``southbound`` imports of the controller only the data model (``store``), the
  Device status document (``kube.status``), the status-write budget shared with the
  controller's resync (``kube.budget``), the process's collector policy and its
  pause metric (``gc_policy``) and, for type hints only, the settings.
- ``controller`` imports the southbound in one place: the all-in-one ``serve``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(folder: str) -> Iterator[tuple[str, str, bool]]:
    """(module file, imported module, only for type checking) for every import."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text())
        type_only: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_only |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    yield str(path.relative_to(ROOT)), name, id(node) in type_only
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield str(path.relative_to(ROOT)), alias.name, id(node) in type_only


def test_the_agent_imports_nothing_of_the_server() -> None:
    wrong = [
        (where, module)
        for where, module, _ in imports("agent")
        if module.startswith(("edgefleet.controller", "edgefleet.southbound"))
    ]
    assert wrong == []


def test_the_southbound_uses_only_the_data_model_of_the_controller() -> None:
    allowed = {
        "edgefleet.controller.kube.status",
        "edgefleet.controller.kube.budget",
        "edgefleet.controller.gc_policy",
    }
    wrong = [
        (where, module)
        for where, module, type_only in imports("southbound")
        if module.startswith("edgefleet.controller")
        and not module.startswith("edgefleet.controller.store")
        and module.rpartition(".")[0] not in allowed
        and module not in allowed
        and not (type_only and module.startswith("edgefleet.controller.settings"))
    ]
    assert wrong == []


def test_the_controller_reaches_the_southbound_only_from_serve() -> None:
    importers = {
        where
        for where, module, _ in imports("controller")
        if module.startswith("edgefleet.southbound")
    }
    assert importers == {"controller/serve.py"}


def test_what_the_southbound_imports_of_kube_stays_light() -> None:
    """The status document, the budget and the collector policy: the southbound
    imports them, so they must not pull in kopf or the Kubernetes client."""
    for name in (
        "controller/kube/status.py",
        "controller/kube/budget.py",
        "controller/gc_policy.py",
    ):
        modules = {module for where, module, _ in imports("controller") if where == name}
        assert modules, name
        assert all(not m.startswith(("kopf", "kubernetes", "edgefleet")) for m in modules), name
