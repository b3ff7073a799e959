"""orch's documented exit codes as exceptions. Every failure of the binary raises an [`OrchError`] (or the subclass for
its exit code) carrying the exit code and orch's own message."""

from __future__ import annotations

from typing import Dict, Sequence, Type


class OrchError(Exception):
    """A failed orch command: `exit_code` is orch's documented exit code, `message` what orch said (from its first
    `error:` line to the end — the lines after it name the key, setting or service at fault and what to do — or all
    of its standard error when there is none), `args_used` the command line."""

    #: The exit code this class stands for (`None`: any code without a class of its own).
    code = None

    def __init__(self, exit_code: int, args_used: Sequence[str], output: str):
        self.exit_code = exit_code
        self.args_used = list(args_used)
        self.output = output or ""
        lines = self.output.splitlines()
        first = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
        self.message = "\n".join(lines[first:]).strip() if first is not None else self.output.strip()
        super().__init__(f"orch {' '.join(self.args_used[:1])} failed (exit {exit_code}): {self.message}")


class InternalError(OrchError):
    """1: a file or process orch needed could not be read, written or started, or an internal error."""

    code = 1


class UsageError(OrchError):
    """2: unknown option or invalid value on the command line."""

    code = 2


class InvalidInput(OrchError):
    """3: invalid compose file, env file, orch.toml, plugin settings, or an invalid plan."""

    code = 3


class PluginError(OrchError):
    """4: a policy plugin failed, or could not be fetched, built or verified."""

    code = 4


class EngineError(OrchError):
    """5: the Docker engine could not be reached or failed."""

    code = 5


class ServiceFailed(OrchError):
    """6: a service failed to come up (exited, unhealthy, timed out, missing image, failed build, in the way)."""

    code = 6


class Busy(OrchError):
    """7: a named environment or the allocation lock was not released in time, or no capacity."""

    code = 7


class NotFound(OrchError):
    """9: the environment or service does not exist (or does not publish that port), or a named one exists."""

    code = 9


class Interrupted(OrchError):
    """130: interrupted; what the run created was removed."""

    code = 130


_BY_CODE: Dict[int, Type[OrchError]] = {
    c.code: c for c in (InternalError, UsageError, InvalidInput, PluginError, EngineError, ServiceFailed, Busy, NotFound, Interrupted)
}


def error_for(exit_code: int, args_used: Sequence[str], output: str) -> OrchError:
    """The exception for an exit code."""
    return _BY_CODE.get(exit_code, OrchError)(exit_code, args_used, output)


class CommandTimeout(OrchError):
    """An orch command that did not finish within the call's timeout (it was killed); `exit_code` is -1."""

    def __init__(self, args_used: Sequence[str], timeout: float):
        super().__init__(-1, args_used, f"error: orch {' '.join(list(args_used)[:1])} did not finish within {timeout:g} s and was stopped")
