"""Isolated, parallel Docker environments from Python: `orch.up(...)` brings up a copy of a compose stack with its own
names, networks, subnets and host ports, and returns an [`Environment`] to reach its services.

    import orch

    with orch.up(dir="examples/netra") as env:
        dsn = f"postgresql://netra:netra@{env.host}:{env.port('postgres', 5432)}/netra_test"
        ...

The module drives the `orch` binary installed with it (or `$ORCH_BINARY`) through its JSON output and exit codes.
An environment made here belongs to this Python process: `down()` removes it, and so does orch's watcher when the
process ends without it — even by `kill -9`. The pytest plugin (`orch_env` fixture) lives in `orch.pytest_plugin`.
"""

from __future__ import annotations

from ._binary import find_binary
from .environment import Environment, ExecResult, attach, from_orch_run, pool_start, pool_stop, up
from .errors import (
    Busy,
    CommandTimeout,
    EngineError,
    InternalError,
    Interrupted,
    InvalidInput,
    NotFound,
    OrchError,
    PluginError,
    ServiceFailed,
    UsageError,
)
from .manager import DockerManager, gc

__all__ = [
    "Busy",
    "CommandTimeout",
    "DockerManager",
    "EngineError",
    "Environment",
    "ExecResult",
    "InternalError",
    "Interrupted",
    "InvalidInput",
    "NotFound",
    "OrchError",
    "PluginError",
    "ServiceFailed",
    "UsageError",
    "attach",
    "find_binary",
    "from_orch_run",
    "gc",
    "pool_start",
    "pool_stop",
    "up",
]
