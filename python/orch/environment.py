"""One environment: bring it up (`up`), find a running one (`attach`, `from_orch_run`), and reach its services."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _binary

PathLike = Union[str, "os.PathLike[str]"]


#: Seconds an `up` may take on top of its readiness timeout (image builds), before the call gives up on it.
UP_BUILD_ALLOWANCE = 900.0


def _service(name: str) -> str:
    """A service name as a command-line argument: one that starts with `-` would read as an option."""
    if not name or name.startswith("-"):
        raise ValueError(f"invalid service name {name!r}: compose service names start with a letter or digit")
    return name


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a service's container did: its exit code and its output (stdout and stderr together)."""

    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _settings_args(settings: Optional[Mapping[str, Any]]) -> List[str]:
    """`{"port-ranges": {"host-ip": "127.0.0.1"}}` or `{"port-ranges.host-ip": "127.0.0.1"}` → `--plugin-setting`s.
    Values are passed as JSON, so numbers, lists and tables keep their type."""
    out: List[str] = []
    for name, value in (settings or {}).items():
        if "." in name:
            out += ["--plugin-setting", f"{name}={json.dumps(value)}"]
        elif isinstance(value, Mapping):
            for key, v in value.items():
                out += ["--plugin-setting", f"{name}.{key}={json.dumps(v)}"]
        else:
            raise ValueError(f"plugin setting {name!r}: give a table of that plugin's settings, or NAME.KEY as the key")
    return out


def _duration(seconds: float) -> str:
    return f"{max(1, int(round(seconds)))}s"


class Environment:
    """A running orch environment. Made by [`up`] it belongs to this process (removed by `down()`, by leaving a
    `with` block, or by orch's watcher when the process ends); found by [`attach`] it is left as it is unless
    `down()` is called."""

    def __init__(
        self, project: str, env_id: str, info: Optional[Dict[str, Any]] = None, *, owned: bool = False, cwd: Optional[str] = None, engine: Optional[str] = None
    ):
        self.project = project
        self.engine = engine
        self.id = env_id
        self.info: Dict[str, Any] = info or {}
        self.owned = owned
        self._cwd = cwd
        self._gone = False

    # -- identity ---------------------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Environment(project={self.project!r}, id={self.id!r})"

    @property
    def host(self) -> str:
        """The address the services' host ports are published on."""
        return self.info.get("host") or "127.0.0.1"

    def _select(self) -> List[str]:
        return ["--env", self.id, "-p", self.project, *(["--engine", self.engine] if self.engine else [])]

    def _run(self, args: Sequence[str], **kwargs: Any):
        return _binary.run(args, cwd=self._cwd, **kwargs)

    def _json(self, args: Sequence[str], **kwargs: Any) -> Any:
        return _binary.run_json(args, cwd=self._cwd, **kwargs)

    # -- reaching services -----------------------------------------------------------------------------------------

    def _published(self, service: str, container_port: int) -> Dict[str, Any]:
        return self._json(["port", *self._select(), "--format", "json", "--", _service(service), str(container_port)])

    def port(self, service: str, container_port: int) -> int:
        """The host port that reaches `container_port` of `service`."""
        return int(self._published(service, container_port)["port"])

    def address(self, service: str, container_port: int) -> str:
        """`host:port` for `container_port` of `service`."""
        answer = self._published(service, container_port)
        return f"{answer['host']}:{answer['port']}"

    def url(self, service: str, container_port: int, scheme: str = "http", path: str = "") -> str:
        """`scheme://host:port/path` for `container_port` of `service`."""
        if path and not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{self.address(service, container_port)}{path}"

    def env(self) -> Dict[str, str]:
        """The connection variables a test process needs (e.g. `POSTGRES_HOST`, `POSTGRES_PORT`), as `orch env` prints them."""
        return dict(self._json(["env", *self._select(), "--format", "json"]))

    def services(self) -> List[Dict[str, Any]]:
        """Every service's container, state and ports (the JSON of `orch ps`)."""
        return list(self._json(["ps", *self._select(), "--format", "json"]))

    def health(self) -> Dict[str, str]:
        """Each service's state now: HEALTHY, UNHEALTHY, STARTING, RUNNING, EXITED(code) or STOPPED."""
        return {s["service"]: s["state"] for s in self._json(["health", *self._select(), "--format", "json"])}

    def logs(self, service: str, tail: Optional[int] = None) -> str:
        """A service's output so far (stdout and stderr), or its last `tail` lines."""
        args = ["logs", *self._select()]
        if tail is not None:
            args += ["--tail", str(tail)]
        return self._run([*args, "--", _service(service)], merge_stderr=True).stdout

    def exec(self, service: str, cmd: Union[str, Sequence[str]]) -> ExecResult:
        """Runs `cmd` in the service's container (a string goes through `sh -c`) and returns its exit code and output;
        a command that fails is a result, not an exception."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        answer = self._json(["exec", *self._select(), "--format", "json", _service(service), "--", *argv])
        return ExecResult(int(answer["exit_code"]), answer["output"])

    def restart(self, service: str, timeout: float = 120) -> None:
        """Restarts a service and waits until it is ready again."""
        self._run(["restart", *self._select(), "--timeout", _duration(timeout), "--", _service(service)], timeout=timeout + 60)

    # -- lifetime --------------------------------------------------------------------------------------------------

    def keep(self, ttl: Optional[float] = None) -> None:
        """Keeps the environment after this process ends (until `orch down`, or for `ttl` seconds)."""
        args = ["keep", *self._select()]
        if ttl is not None:
            args += ["--ttl", _duration(ttl)]
        self._run(args)
        self.owned = False

    def down(self, volumes: bool = True) -> None:
        """Removes the environment: containers, networks and (by default) volumes. Removing it twice is harmless."""
        if self._gone:
            return
        self._run(["down", *self._select(), *(["--volumes"] if volumes else [])])
        self._gone = True

    def __enter__(self) -> "Environment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()


def up(
    files: Optional[Iterable[PathLike]] = None,
    plugins: Optional[Iterable[str]] = None,
    env_kind: Optional[str] = None,
    settings: Optional[Mapping[str, Any]] = None,
    *,
    dir: Optional[PathLike] = None,
    project: Optional[str] = None,
    env: Optional[str] = None,
    profiles: Optional[Iterable[str]] = None,
    env_files: Optional[Iterable[PathLike]] = None,
    config: Optional[PathLike] = None,
    timeout: float = 180,
    keep: bool = False,
    owner_pid: Optional[int] = None,
    engine: Optional[str] = None,
    from_pool: bool = False,
    extra_args: Sequence[str] = (),
) -> Environment:
    """Brings up an isolated environment and waits until its services are ready.

    Arguments mirror `orch up`: compose `files` (default: `orch.toml`'s, else compose.yaml in `dir`), `plugins` (built-in
    names, `.wasm` paths or `oci://` references, applied in order; default: `orch.toml`'s), `env_kind` (test, dev, ci,
    prod), `settings` (`{"port-ranges": {"host-ip": "127.0.0.1"}}`), `dir` (the project folder, where `orch.toml` is
    looked up; default: the current directory), `project` and `env` names, `timeout` in seconds, `engine` (`local` or
    `swarm`; default: `$ORCH_ENGINE`, else `orch.toml`'s, else local).

    The environment belongs to this process (or to process `owner_pid`): `down()` removes it, and orch's watcher does
    when that process ends without it. With `keep=True` it stays until `orch down`. With `from_pool=True` a ready
    member of the project's warm pool (`pool_start`) is claimed when there is one of the current plan, else a fresh
    environment is brought up.
    """
    args = ["up", "--format", "json", "--timeout", _duration(timeout)] + _project_args(files, plugins, env_kind, settings)
    if project:
        args += ["-p", project]
    if env:
        args += ["--env", env]
    for p in profiles or ():
        args += ["--profile", p]
    for f in env_files or ():
        args += ["--env-file", os.fspath(f)]
    if config:
        args += ["--config", os.fspath(config)]
    if engine:
        args += ["--engine", engine]
    if not keep:
        args += ["--owner-pid", str(owner_pid or os.getpid())]
    if from_pool:
        args += ["--from-pool"]
    args += list(extra_args)
    cwd = os.fspath(Path(dir).resolve()) if dir is not None else None
    # orch's own --timeout covers waiting for readiness; building images comes on top of it.
    info = _binary.run_json(args, cwd=cwd, timeout=timeout + UP_BUILD_ALLOWANCE)
    return Environment(info["project"], info["env"], info, owned=not keep, cwd=cwd, engine=engine)


def _project_args(files: Optional[Iterable[PathLike]], plugins: Optional[Iterable[str]], env_kind: Optional[str], settings: Optional[Mapping[str, Any]]) -> List[str]:
    args: List[str] = []
    for f in files or ():
        args += ["-f", os.fspath(f)]
    for p in plugins or ():
        args += ["--plugin", p]
    if env_kind:
        args += ["--env-kind", env_kind]
    return args + _settings_args(settings)


def pool_start(
    size: Optional[int] = None,
    files: Optional[Iterable[PathLike]] = None,
    plugins: Optional[Iterable[str]] = None,
    env_kind: Optional[str] = None,
    settings: Optional[Mapping[str, Any]] = None,
    *,
    dir: Optional[PathLike] = None,
    wait: bool = True,
    timeout: float = 600,
) -> None:
    """Starts the project's warm-pool keeper (`orch pool start`), holding `size` ready environments (default:
    orch.toml's `[pool] size`, else 2); with `wait`, returns once the pool is full. `up(from_pool=True)` claims from it."""
    args = ["pool", "start", "--timeout", _duration(timeout)] + _project_args(files, plugins, env_kind, settings)
    if size is not None:
        args += ["--size", str(size)]
    if wait:
        args += ["--wait"]
    cwd = os.fspath(Path(dir).resolve()) if dir is not None else None
    _binary.run(args, cwd=cwd, timeout=timeout + UP_BUILD_ALLOWANCE)


def pool_stop(files: Optional[Iterable[PathLike]] = None, *, dir: Optional[PathLike] = None) -> None:
    """Stops the project's warm-pool keeper (`orch pool stop`); it removes every member not handed out."""
    args = ["pool", "stop"] + _project_args(files, None, None, None)
    cwd = os.fspath(Path(dir).resolve()) if dir is not None else None
    _binary.run(args, cwd=cwd, timeout=600)


def attach(env: str, project: Optional[str] = None, *, dir: Optional[PathLike] = None) -> Environment:
    """A running environment by id (and project, when ids could be ambiguous). Not owned: leaving a `with` block or
    `down()` still removes it, but nothing else does."""
    cwd = os.fspath(Path(dir).resolve()) if dir is not None else None
    args = ["ps", "--env", env, "--format", "json"] + (["-p", project] if project else [])
    services = _binary.run_json(args, cwd=cwd)
    if not services:
        from .errors import NotFound

        raise NotFound(9, args, f"error: no environment {env}" + (f" in project {project}" if project else ""))
    return Environment(services[0]["project"], env, {"services": services}, owned=False, cwd=cwd)


def from_orch_run() -> Optional[Environment]:
    """The environment `orch run -- …` made for this process (from `$ORCH_ENV` and `$ORCH_PROJECT`), if any."""
    env_id = os.environ.get("ORCH_ENV")
    if not env_id:
        return None
    return attach(env_id, os.environ.get("ORCH_PROJECT"))
