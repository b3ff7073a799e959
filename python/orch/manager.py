"""Seed 001's `UnifiedDockerManager` surface over orch, so a test runner written against it switches with few edits:

    manager = orch.DockerManager(dir="examples/netra")
    env_name, ports = manager.acquire_environment()
    manager.wait_for_services(timeout=60)
    report = manager.get_health_report()
    manager.release_environment(env_name)

Each method is a thin alias of the [`Environment`] API; conflict resolution, port allocation and orphan cleanup are
orch's own, so the retry loops and error-text parsing of the old manager have no counterpart here.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from . import _binary
from .environment import Environment, up

_READY = ("HEALTHY", "RUNNING")


def gc(dry_run: bool = False, project: Optional[str] = None) -> List[str]:
    """Removes orphaned orch environments (`orch gc`): those whose owner died before they were complete, or whose
    lease expired. Returns orch's report lines. Never touches anything orch did not label."""
    args = ["gc"] + (["--dry-run"] if dry_run else []) + (["-p", project] if project else [])
    return [line for line in _binary.run(args).stdout.splitlines() if line.strip()]


class DockerManager:
    """Acquire, inspect and release environments by the names seed 001's runner uses. Keyword arguments are those of
    [`orch.up`](orch.up) and apply to every environment this manager acquires."""

    def __init__(self, **up_args: Any):
        self.up_args = up_args
        self.environments: Dict[str, Environment] = {}

    def _env(self, env_name: Optional[str]) -> Environment:
        if env_name is None:
            if len(self.environments) != 1:
                raise ValueError(f"name the environment: this manager holds {sorted(self.environments) or 'none'}")
            return next(iter(self.environments.values()))
        return self.environments[env_name]

    def acquire_environment(self, env_name: Optional[str] = None, timeout: Optional[float] = None) -> Tuple[str, Dict[str, int]]:
        """Brings up an environment and returns its id and `{service: host port}` (each service's first published port).
        `timeout` (seconds) overrides the manager's own `timeout=`, else 180."""
        args = dict(self.up_args)
        if timeout is not None:
            args["timeout"] = timeout
        if env_name is not None:
            args["env"] = env_name
        env = up(**args)
        self.environments[env.id] = env
        ports: Dict[str, int] = {}
        for s in env.info.get("services", []):
            if s.get("ports"):
                ports[s["service"]] = int(s["ports"][0][2])
        return env.id, ports

    def environment(self, env_name: Optional[str] = None) -> Environment:
        """The [`Environment`] behind a name, for everything the aliases do not cover."""
        return self._env(env_name)

    def wait_for_services(self, timeout: float = 60, services: Optional[List[str]] = None, env_name: Optional[str] = None) -> bool:
        """Waits until the services (default: all) are healthy or running; False when `timeout` seconds pass first.
        `acquire_environment` already waited for readiness, so this matters after restarts."""
        env = self._env(env_name)
        deadline = time.monotonic() + timeout
        while True:
            health = env.health()
            wanted = {k: v for k, v in health.items() if services is None or k in services}
            if wanted and all(v in _READY for v in wanted.values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def get_health_report(self, env_name: Optional[str] = None) -> Dict[str, Any]:
        """`{"environment", "project", "healthy": bool, "services": {name: state}}`."""
        env = self._env(env_name)
        health = env.health()
        return {"environment": env.id, "project": env.project, "healthy": all(v in _READY for v in health.values()), "services": health}

    def restart_service(self, service: str, env_name: Optional[str] = None, timeout: float = 120) -> None:
        self._env(env_name).restart(service, timeout=timeout)

    def release_environment(self, env_name: Optional[str] = None) -> None:
        env = self._env(env_name)
        env.down()
        self.environments.pop(env.id, None)

    def release_all(self) -> None:
        for name in list(self.environments):
            self.release_environment(name)

    def cleanup_orphaned_containers(self) -> List[str]:
        """`orch gc`: orphaned orch environments only — never containers orch did not create."""
        return gc()
