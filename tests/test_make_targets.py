"""The test tiers the README promises: `make test` leaves out the fault injection (minutes), `make
test-all` runs everything. Checked on what make would run (`make -n`) and on the
tests pytest then selects, so a Makefile edit that slows the everyday tier down fails here."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

pytestmark = pytest.mark.backend_free

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_arguments(target: str) -> list[str]:
    """The arguments `make TARGET` passes to pytest, read from make's dry run."""
    # Not the variables of a `make test PYTEST_ARGS=...` this suite may be running under.
    inherited = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS"}
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    dry_run = subprocess.run(
        ["make", "-n", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout
    [command] = [line for line in dry_run.splitlines() if "bin/pytest" in line]
    return shlex.split(command)[1:]


# The folders whose tests the tiers below are about: collecting only these keeps each check a few
# seconds instead of a collection of the whole suite.
TIER_FOLDERS = ("tests/faults", "tests/e2e", "tests/recipe")


def collected(arguments: list[str]) -> list[str]:
    """Node ids pytest selects with these arguments in TIER_FOLDERS (collection only, nothing runs)."""
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", *arguments, *TIER_FOLDERS, "--collect-only", "-q",
            "-p", "no:cacheprovider",
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


def marker_expression(arguments: list[str]) -> str:
    return arguments[arguments.index("-m") + 1] if "-m" in arguments else ""


def selects(expression: str, marker: str) -> bool:
    return not expression or Expression.compile(expression).evaluate(lambda name: name == marker)


def test_make_test_leaves_out_the_fault_injection_and_keeps_the_rest() -> None:
    arguments = pytest_arguments("test")
    expression = marker_expression(arguments)
    assert not selects(expression, "faults")
    # The API fuzz stays in: CI must run it on both backends, and `make test` is CI's embedded pass.
    for everyday in ("e2e", "browser", "postgres", "fuzz"):
        assert selects(expression, everyday), f"`make test` leaves out the {everyday} tests"
    node_ids = collected(arguments)
    assert not [node for node in node_ids if node.startswith("tests/faults/")]
    assert any(node.startswith("tests/e2e/") for node in node_ids)
    assert any(node.startswith("tests/recipe/") for node in node_ids)


def test_make_test_all_runs_every_test() -> None:
    arguments = pytest_arguments("test-all")
    assert marker_expression(arguments) == ""
    node_ids = collected(arguments)
    assert any(node.startswith("tests/faults/") for node in node_ids)
    assert any(node.startswith("tests/e2e/") for node in node_ids)
