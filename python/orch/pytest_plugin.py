"""The pytest plugin (entry point `pytest11`): an `orch_env` fixture that gives tests an isolated orch environment.

Configuration, in `pytest.ini`/`pyproject.toml` (`[tool.pytest.ini_options]`) — every key optional:

    orch_dir      = the project folder (holds orch.toml / compose.yaml), relative to the ini file [default: rootdir]
    orch_files    = compose files, relative to orch_dir       [default: orch.toml's, else compose.yaml]
    orch_plugins  = policy plugins, applied in order            [default: orch.toml's]
    orch_env_kind = test | dev | ci | prod                      [default: orch.toml's, else test]
    orch_settings = NAME.KEY=VALUE lines (VALUE is JSON if it parses)
    orch_scope    = session | module | function                 [default: session]
    orch_timeout  = seconds to wait for readiness               [default: 180]
    orch_log_lines = lines of each service's log attached to a failing test's report [default: 200; 0: none]

A test (or module, via `pytestmark`) can ask for another environment with the marker
`@pytest.mark.orch(files=[...], plugins=[...], env_kind=..., settings={...}, dir=..., scope=..., log_services=[...])`;
tests with equal configuration share one environment within its scope.

Each pytest process makes its own environments, so under pytest-xdist every worker gets its own, created concurrently.
Under `orch run -- pytest …` (`$ORCH_ENV` set) the fixture attaches to the environment orch run made instead. An
environment belongs to the pytest process that made it: removed when its scope ends, and by orch's watcher if pytest
is killed (even with SIGKILL). `--orch-keep-on-failure` keeps the environments of failing tests and prints how to
remove them.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from .environment import Environment, attach, pool_start, pool_stop, up
from .errors import OrchError

_SCOPES = ("session", "module", "function")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orch", "isolated Docker environments (orch)")
    group.addoption(
        "--orch-keep-on-failure",
        action="store_true",
        default=False,
        help="keep the orch environments of failing tests (and print how to remove them) instead of removing them",
    )
    group.addoption(
        "--orch-pool",
        default=None,
        metavar="N",
        help="start a warm pool of N environments (auto: one per xdist worker) for the session; orch_env claims from it",
    )
    parser.addini("orch_pool", "warm pool size for the session (auto: one per xdist worker; empty or 0: no pool)", default="")
    parser.addini("orch_dir", "orch project folder (orch.toml / compose files), relative to the ini file", default=None)
    parser.addini("orch_files", "compose files for orch_env", type="args", default=[])
    parser.addini("orch_plugins", "policy plugins for orch_env, applied in order", type="args", default=[])
    parser.addini("orch_env_kind", "orch environment kind: test, dev, ci or prod", default=None)
    parser.addini("orch_settings", "plugin settings NAME.KEY=VALUE, one a line", type="linelist", default=[])
    parser.addini("orch_scope", "how long an orch_env environment lives: session, module or function", default="session")
    parser.addini("orch_timeout", "seconds orch_env waits for services to be ready", default="180")
    parser.addini("orch_log_lines", "log lines per service attached to a failing test's report (0: none)", default="200")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "orch(files=None, plugins=None, env_kind=None, settings=None, dir=None, scope=None, log_services=None): "
        "the orch environment the orch_env fixture gives this test",
    )
    config.stash[_POOL] = _Pool(config)


@dataclass(frozen=True)
class _Spec:
    """One environment's configuration: tests with equal specs (in one scope) share an environment."""

    dir: str
    files: Tuple[str, ...]
    plugins: Tuple[str, ...]
    env_kind: Optional[str]
    settings: Tuple[Tuple[str, str], ...]
    scope: str
    timeout: float
    log_services: Optional[Tuple[str, ...]] = field(default=None, compare=False)
    from_pool: bool = field(default=False, compare=False)

    def up(self) -> Environment:
        return up(
            files=self.files,
            plugins=self.plugins,
            env_kind=self.env_kind,
            settings={k: json.loads(v) for k, v in self.settings},
            dir=self.dir,
            timeout=self.timeout,
            owner_pid=_owner_pid(),
            from_pool=self.from_pool,
        )


def _pool_size(config: pytest.Config) -> Optional[int]:
    """The session's warm pool size (`--orch-pool`, else the `orch_pool` ini value), `None` for no pool."""
    value = str(config.getoption("orch_pool", None) or config.getini("orch_pool") or "").strip()
    if value in ("", "0"):
        return None
    if value == "auto":
        workers = config.getoption("numprocesses", None)
        return workers if isinstance(workers, int) and workers > 0 else (os.cpu_count() or 1)
    try:
        size = int(value)
    except ValueError:
        raise pytest.UsageError(f"orch_pool: {value!r} is not a number or auto") from None
    return size if size > 0 else None


def _owner_pid() -> int:
    """The process an environment belongs to: the pytest run. An xdist worker's environments belong to the main
    pytest process (the worker's parent), so that killing pytest removes them even if a worker lingers."""
    if os.environ.get("PYTEST_XDIST_WORKER") and os.getppid() > 1:
        return os.getppid()
    return os.getpid()


def _setting_lines(lines: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or "." not in key:
            raise pytest.UsageError(f"orch_settings: {line!r} is not NAME.KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def _spec(config: pytest.Config, marker: Optional[pytest.Mark]) -> _Spec:
    kw: Dict[str, Any] = dict(marker.kwargs) if marker else {}
    unknown = set(kw) - {"files", "plugins", "env_kind", "settings", "dir", "scope", "log_services", "timeout"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.orch: unknown argument(s) {sorted(unknown)}")
    base = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
    ini_dir = config.getini("orch_dir")
    folder = base / kw["dir"] if kw.get("dir") else (base / ini_dir if ini_dir else Path(config.rootpath))
    settings = _setting_lines(config.getini("orch_settings"))
    for name, value in (kw.get("settings") or {}).items():
        if isinstance(value, dict) and "." not in name:
            settings.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            settings[name] = value
    scope = kw.get("scope") or config.getini("orch_scope") or "session"
    if scope not in _SCOPES:
        raise pytest.UsageError(f"orch scope {scope!r}: use one of {', '.join(_SCOPES)}")
    logs = kw.get("log_services")
    return _Spec(
        dir=str(folder.resolve()),
        files=tuple(str(f) for f in (kw.get("files") or config.getini("orch_files"))),
        plugins=tuple(kw.get("plugins") or config.getini("orch_plugins")),
        env_kind=kw.get("env_kind") or config.getini("orch_env_kind") or None,
        settings=tuple(sorted((k, json.dumps(v)) for k, v in settings.items())),
        scope=scope,
        timeout=float(kw.get("timeout") or config.getini("orch_timeout")),
        log_services=tuple(logs) if logs else None,
        from_pool=_pool_size(config) is not None,
    )


class _Pool:
    """The environments of this pytest process, by (spec, scope key)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.envs: Dict[Tuple[_Spec, str], Environment] = {}
        self.failed: Dict[str, Environment] = {}
        self.lock = threading.Lock()
        self.external: Optional[Environment] = None

    def get(self, spec: _Spec, scope_key: str) -> Environment:
        # `orch run -- pytest`: the environment orch run made (and will remove) serves every test.
        if os.environ.get("ORCH_ENV"):
            if self.external is None:
                self.external = attach(os.environ["ORCH_ENV"], os.environ.get("ORCH_PROJECT"))
            return self.external
        key = (spec, scope_key)
        with self.lock:
            env = self.envs.get(key)
            if env is None:
                env = spec.up()
                self.envs[key] = env
            return env

    def release(self, spec: _Spec, scope_key: str) -> None:
        env = self.envs.pop((spec, scope_key), None)
        if env is not None and env.id not in self.failed:
            env.down()

    def release_all(self) -> None:
        for key in list(self.envs):
            self.release(*key)

    def keep_failed(self, reporter: Any) -> None:
        for env in self.failed.values():
            if env.owned:
                env.keep()
            reporter.write_line(f"orch: kept environment {env.id} of a failing test; remove it with `orch down --env {env.id} -p {env.project} --volumes`")


_POOL = pytest.StashKey[_Pool]()
_STARTED_POOL = pytest.StashKey[_Spec]()
_USED = pytest.StashKey[List[Tuple[Environment, _Spec]]]()


class OrchEnvironments:
    """The `orch_envs` fixture: session-lifetime environments for fixtures of a wider scope than a test."""

    def __init__(self, config: pytest.Config):
        self._config = config

    def get(self, **marker_kwargs: Any) -> Environment:
        """The session's environment for the ini configuration with `marker_kwargs` on top (the arguments of
        `@pytest.mark.orch`); the same one `orch_env` gives tests with that configuration."""
        mark = pytest.mark.orch(**marker_kwargs).mark if marker_kwargs else None
        spec = _spec(self._config, mark)
        return self._config.stash[_POOL].get(spec, "")


@pytest.fixture(scope="session")
def orch_envs(pytestconfig: pytest.Config) -> OrchEnvironments:
    """Session-lifetime orch environments for session- or module-scoped fixtures: `orch_envs.get()` (the ini
    configuration) or `orch_envs.get(files=[...], ...)`."""
    return OrchEnvironments(pytestconfig)


@pytest.fixture
def orch_env(request: pytest.FixtureRequest) -> Environment:
    """An isolated orch environment for this test: shared by the tests of its scope (session by default) that ask for
    the same configuration. See the module documentation for configuration."""
    pool = request.config.stash[_POOL]
    spec = _spec(request.config, request.node.get_closest_marker("orch"))
    if spec.scope == "session":
        scope_key, owner = "", request.session
    elif spec.scope == "module":
        module = request.node.getparent(pytest.Module)
        scope_key, owner = module.nodeid if module else "", module or request.session
    else:
        scope_key, owner = request.node.nodeid, request.node
    try:
        env = pool.get(spec, scope_key)
    except OrchError as e:
        pytest.fail(f"orch could not bring up the environment for {request.node.nodeid}: {e}", pytrace=False)
    request.node.stash.setdefault(_USED, []).append((env, spec))
    if env is not pool.external and spec.scope != "session":
        owner.addfinalizer(lambda: pool.release(spec, scope_key))
    return env


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    used = item.stash.get(_USED, [])
    lines = int(item.config.getini("orch_log_lines") or 0)
    pool = item.config.stash[_POOL]
    for env, spec in used:
        if item.config.getoption("orch_keep_on_failure") and env is not pool.external:
            pool.failed[env.id] = env
            # In the report too: under xdist a worker's own terminal output never reaches the user.
            report.sections.append(("orch", f"environment {env.id} is kept (--orch-keep-on-failure): `orch down --env {env.id} -p {env.project} --volumes` removes it"))
        if lines <= 0:
            continue
        try:
            services = spec.log_services or tuple(sorted(env.health()))
            for service in services:
                text = env.logs(service, tail=lines)
                report.sections.append((f"orch logs: {service} ({env.id}, last {lines} lines)", text))
        except OrchError as e:
            report.sections.append((f"orch logs ({env.id})", f"could not read the logs: {e}"))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """With a pool size, the controlling pytest process (not an xdist worker, and not under `orch run`) starts the
    warm pool of the default environment and waits until it is full, before any worker starts."""
    config = session.config
    size = _pool_size(config)
    if size is None or os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("ORCH_ENV"):
        return
    spec = _spec(config, None)
    settings = {k: json.loads(v) for k, v in spec.settings}
    pool_start(size, spec.files, spec.plugins, spec.env_kind, settings, dir=spec.dir, timeout=max(spec.timeout, 600))
    config.stash[_STARTED_POOL] = spec


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = session.config.stash.get(_STARTED_POOL, None)
    if started is not None:
        try:
            pool_stop(started.files, dir=started.dir)
        except OrchError as e:
            print(f"orch: could not stop the warm pool: {e}")
    pool = session.config.stash.get(_POOL, None)
    if pool is None:
        return
    if pool.failed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        pool.keep_failed(reporter or _Printer())
    pool.release_all()


class _Printer:
    def write_line(self, line: str) -> None:
        print(line)
