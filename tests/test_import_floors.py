"""The import floors of mailapp/, from the ground up: shared leaves (config, models, errors, extensions,
ids, addresses ...), then the send engine (`mailapp/sending/`), then each area's domain modules
(services and their leaves), then the web and task layer (routes, forms, the API, tasks, CLI). A module
imports from its own floor or lower ones, never higher; the send engine imports nothing from a blueprint
package; and the module graph has no cycle. Imports inside functions count: a lazy import hides a cycle
from the interpreter, not from the design."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_free

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailapp"

BLUEPRINT_PACKAGES = frozenset(
    {
        "audit", "auth", "campaigns", "dashboard", "deliverability", "devinbox", "domains", "inbound",
        "layouts", "relays", "reports", "segments", "signup", "subscribers", "tracking", "users", "webhooks",
        "api",
    }
)
GROUND, SENDING, DOMAIN, WEB = 0, 1, 2, 3
FLOOR_NAMES = {GROUND: "ground", SENDING: "sending", DOMAIN: "domain", WEB: "web and tasks"}
# The modules directly under mailapp/, each placed by hand: a new one must be given a floor here.
TOP_LEVEL_FLOORS = {
    "mailapp": WEB,  # create_app wires everything together
    "mailapp.addresses": GROUND,
    "mailapp.celery_app": GROUND,
    "mailapp.cli": WEB,
    "mailapp.csv_cells": GROUND,
    "mailapp.db_setup": GROUND,
    "mailapp.errors": GROUND,
    "mailapp.extensions": GROUND,
    "mailapp.foreground": GROUND,
    "mailapp.forms": WEB,
    "mailapp.ids": GROUND,
    "mailapp.json_nesting": GROUND,
    "mailapp.secret_box": GROUND,
    "mailapp.segment_rules": GROUND,
    "mailapp.sqla_broker": GROUND,
    "mailapp.timezones": GROUND,
    "mailapp.web": WEB,
    "mailapp.web_extensions": GROUND,
    "mailapp.wording": GROUND,
}
# Inside an area, these module names belong to the web and task layer; everything else is domain.
WEB_LAYER_MODULES = frozenset({"routes", "forms", "tasks", "cli"})
# WSGI middleware in front of the tracking routes: it reuses their headers.
WEB_LAYER_EXTRAS = frozenset({"mailapp.tracking.fast_pixel"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int:
    parts = module.split(".")
    if module in TOP_LEVEL_FLOORS:
        return TOP_LEVEL_FLOORS[module]
    area = parts[1]
    if area == "models":
        return GROUND
    if area == "sending":
        return WEB if module == "mailapp.sending.tasks" else SENDING
    if area in BLUEPRINT_PACKAGES:
        if area == "api" or parts[-1] in WEB_LAYER_MODULES or module in WEB_LAYER_EXTRAS:
            return WEB
        return DOMAIN
    raise AssertionError(f"{module} is on no floor: place it in TOP_LEVEL_FLOORS of {__file__}")


def names_imported_in(path: Path) -> list[list[str]]:
    """Every import in a file, anywhere in it (top level, functions, TYPE_CHECKING): `[name]` for
    `import name`, `[module, name]` for `from module import name`."""
    names: list[list[str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [[node.module, alias.name] for alias in node.names]
    return names


def names_imported_by_file(paths: list[Path]) -> dict[str, list[list[str]]]:
    """`names_imported_in` for each file, parsed in a fresh interpreter. CPython 3.11's ast.parse can
    fail with "AST constructor recursion depth mismatch" in a process where an earlier deep parse went
    wrong (the test suite's own tools parse source too), which would fail these checks for no fault of
    the code they read."""
    script = (
        "import json, sys; from pathlib import Path; from tests.test_import_floors import names_imported_in;"
        " print(json.dumps({p: names_imported_in(Path(p)) for p in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(result.stdout)


def resolve_imports(imports: list[list[str]], known: dict[str, Path]) -> set[str]:
    """The mailapp modules these imports load."""

    def nearest_known(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    # `from mailapp.sending import engine` imports the module engine, not a name of the package.
    names = [
        f"{parts[0]}.{parts[1]}" if len(parts) == 2 and f"{parts[0]}.{parts[1]}" in known else parts[0]
        for parts in imports
    ]
    return {
        target for name in names if name.split(".")[0] == "mailapp" and (target := nearest_known(name))
    }


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The mailapp modules a file imports anywhere in it."""
    return resolve_imports(names_imported_by_file([path])[str(path)], known)


@cache
def import_graph() -> dict[str, set[str]]:
    known = all_modules()
    names = names_imported_by_file(list(known.values()))
    return {module: resolve_imports(names[str(path)], known) - {module} for module, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        pending = [iter(sorted(graph[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            if following in on_path:
                return [*path[path.index(following):], following]
            if following not in done:
                path.append(following)
                on_path.add(following)
                pending.append(iter(sorted(graph[following])))
    return None


def test_importing_the_send_engine_loads_no_blueprint_package_and_no_form_or_login_code() -> None:
    """In a fresh interpreter, as a Celery worker would load it."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, mailapp.sending.engine; print('\\n'.join(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()
    assert "mailapp.sending.engine" in loaded
    from_blueprints = [
        module for module in loaded
        if module.startswith("mailapp.") and module.split(".")[1] in BLUEPRINT_PACKAGES
    ]
    assert from_blueprints == []
    web_only = {"flask_login", "flask_wtf", "wtforms"}
    assert [module for module in loaded if module.split(".")[0] in web_only] == []


def test_the_send_engine_imports_nothing_from_a_blueprint_package() -> None:
    graph = import_graph()
    offending = {
        module: sorted(target for target in targets if target.split(".")[1] in BLUEPRINT_PACKAGES)
        for module, targets in graph.items()
        if module.startswith("mailapp.sending")
    }
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_no_module_imports_one_on_a_higher_floor() -> None:
    upward = sorted(
        f"{module} ({FLOOR_NAMES[floor_of(module)]}) imports {target} ({FLOOR_NAMES[floor_of(target)]})"
        for module, targets in import_graph().items()
        for target in targets
        if floor_of(target) > floor_of(module)
    )
    assert upward == []


def test_the_module_import_graph_has_no_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    """The checks above can fail: a graph with a cycle is reported, one without is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from mailapp.tracking import services\n    return services\n")
    assert imported_modules(module, all_modules()) == {"mailapp.tracking.services"}
