"""README.md's Python blocks run: each is executed as the module it shows, with what it imports, and every method it
calls on an environment is one `orch.Environment` has — so the README cannot drift from the API."""

import ast
import re
import urllib.request
from pathlib import Path

import psycopg
import pytest

import orch

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_every_python_block_runs_and_uses_only_the_real_api():
    blocks = python_blocks()
    assert blocks, "README.md has Python examples"
    for block in blocks:
        namespace = {"pytest": pytest, "psycopg": psycopg, "urllib": urllib, "orch": orch}
        exec(compile(block, "README.md", "exec"), namespace)
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.FunctionDef):
                assert node.name in namespace, f"{node.name} was not defined"
        # Attribute calls on the fixtures' environments (env.port, orch_env.url, …) exist on orch.Environment.
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in {"env", "orch_env"}:
                assert hasattr(orch.Environment, node.attr), f"README uses Environment.{node.attr}, which does not exist"
