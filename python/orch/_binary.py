"""Finding and running the `orch` binary. Everything the Python side learns from orch comes from here: documented
JSON on stdout and documented exit codes, never human text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .errors import OrchError, error_for


def find_binary() -> str:
    """The `orch` executable: `$ORCH_BINARY`, else the one installed with this package, else the first on PATH."""
    explicit = os.environ.get("ORCH_BINARY")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FileNotFoundError(f"ORCH_BINARY={explicit} is not an executable file")
        return explicit
    exe = "orch.exe" if sys.platform == "win32" else "orch"
    # Where pip put the binary of this very install (a venv's bin/, the user scheme's, the system's).
    candidates = [sysconfig.get_path("scripts")]
    if sys.version_info >= (3, 10):
        candidates.append(sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")))
    candidates.append(str(Path(sys.executable).parent))
    for folder in candidates:
        path = os.path.join(folder, exe) if folder else ""
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(exe)
    if found:
        return found
    raise FileNotFoundError("the orch binary was not found: install the orch package (pip install orch) or set ORCH_BINARY")


#: How long a command may run when the call names no timeout of its own (seconds). No orch command a test makes
#: should take this long; one that does (a stalled engine, a wedged command) raises `CommandTimeout` instead of
#: hanging the test session.
DEFAULT_TIMEOUT = 300.0


def run(
    args: Sequence[str],
    *,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    check: bool = True,
    merge_stderr: bool = False,
) -> subprocess.CompletedProcess:
    """Runs `orch ARGS`; a non-zero exit raises the [`OrchError`] subclass for its code (with `check`), and a
    command still running after `timeout` seconds is killed and raises [`CommandTimeout`]."""
    cmd = [find_binary(), *args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            timeout=timeout,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except subprocess.TimeoutExpired as e:
        from .errors import CommandTimeout

        raise CommandTimeout(args, timeout or 0.0) from e
    if check and proc.returncode != 0:
        raise error_for(proc.returncode, args, proc.stdout if merge_stderr else proc.stderr)
    return proc


def run_json(args: Sequence[str], **kwargs: Any) -> Any:
    """Runs a command that prints JSON (`--format json`) and returns the parsed value."""
    proc = run(args, **kwargs)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise OrchError(1, args, f"orch printed output that is not JSON ({e}): {proc.stdout[:200]!r}") from e
