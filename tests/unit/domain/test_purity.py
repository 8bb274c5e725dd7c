"""The domain package does no I/O: importing it pulls in no stream, broker, database or HTTP
library, and its source imports only the standard library, pydantic and itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOMAIN = ROOT / "domain"
SOURCES = sorted(DOMAIN.rglob("*.py"))

FORBIDDEN = frozenset({
    "faust", "mode", "aiokafka", "kafka", "pulsar", "psycopg", "psycopg_pool", "psycopg2",
    "rocksdict", "aiohttp",
})
# No clock, randomness, concurrency or OS access either: `now` is an argument.
NOT_PURE = frozenset({"time", "datetime", "random", "secrets", "asyncio", "socket", "os",
                      "threading", "subprocess"})
ALLOWED_THIRD_PARTY = frozenset({"pydantic", "domain"})


def loaded_after(code: str) -> set[str]:
    """Top-level names in sys.modules after running `code` in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


_FACTS = """
import ast, json, sys
tree = ast.parse(sys.stdin.read())
names = set()
for node in ast.walk(tree):
    if isinstance(node, ast.Import):
        names |= {alias.name.split(".")[0] for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names.add(node.module.split(".")[0])
called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
print(json.dumps({"imports": sorted(names), "called": sorted(called), "attributes": sorted(attributes)}))
"""


def source_facts(source: str) -> dict[str, set[str]]:
    """Imports, called names and attributes of `source`, parsed in a fresh interpreter:
    CPython 3.11's AST constructor can fail ("recursion depth mismatch") in a process where
    an earlier test hit a RecursionError (the deeply nested JSON inputs)."""
    out = subprocess.run([sys.executable, "-c", _FACTS], input=source, capture_output=True,
                         text=True, timeout=60, check=True)
    return {k: set(v) for k, v in json.loads(out.stdout).items()}


def imported_names(source: str) -> set[str]:
    """Top-level modules named by the absolute import statements in `source`."""
    return source_facts(source)["imports"]


def test_the_domain_has_source_files() -> None:
    assert {p.name for p in SOURCES} >= {"__init__.py", "messages.py", "state.py",
                                         "definition.py", "transition.py", "ids.py"}


def test_importing_the_domain_loads_no_infrastructure() -> None:
    modules = loaded_after("import domain, domain.ids, domain.transition")
    assert "domain" in modules and "pydantic" in modules
    assert not modules & FORBIDDEN


def test_the_subprocess_check_would_see_a_forbidden_import() -> None:
    # A control: the same check notices a broker client when one is imported.
    assert "aiokafka" in loaded_after("import domain, aiokafka") & FORBIDDEN


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_source_imports_only_stdlib_pydantic_and_domain(path: Path) -> None:
    names = imported_names(path.read_text())
    assert not names & FORBIDDEN
    assert not names & NOT_PURE
    third_party = names - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= ALLOWED_THIRD_PARTY


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_source_has_no_dynamic_imports_or_random_ids(path: Path) -> None:
    facts = source_facts(path.read_text())
    assert "__import__" not in facts["called"]
    assert "importlib" not in facts["imports"]
    assert not facts["attributes"] & {"uuid1", "uuid4", "import_module"}


def test_the_scanner_sees_every_import_form() -> None:
    source = ("import faust\nimport os.path as p\nfrom aiokafka.errors import KafkaError\n"
              "from . import sibling\nfrom pydantic import BaseModel\n")
    assert imported_names(source) == {"faust", "os", "aiokafka", "pydantic"}
