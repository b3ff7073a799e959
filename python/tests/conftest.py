"""Helpers shared by the package's tests: the netra example's folder, the engine's view of orch resources."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NETRA = ROOT / "examples" / "netra"


def resources(env_id: str) -> int:
    """Containers, networks and volumes the engine holds for an orch environment id."""
    total = 0
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        out = subprocess.run(["docker", *kind, "--filter", f"label=orch.env={env_id}"], capture_output=True, text=True, check=True).stdout
        total += len(out.split())
    return total


def down(env_id: str, project: str = "netra") -> None:
    subprocess.run(["orch", "down", "--env", env_id, "-p", project, "--volumes"], capture_output=True)


@pytest.fixture
def netra() -> Path:
    return NETRA
