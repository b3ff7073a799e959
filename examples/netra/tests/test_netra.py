"""netra's services, each test against this worker's own copy: what one worker writes, no other worker sees."""

import os
import time
import urllib.request

import pytest

from conftest import WORKER


@pytest.mark.parametrize("n", range(8))
def test_postgres_is_this_workers_own(pg, n):
    pg.execute("insert into marks (worker, n) values (%s, %s)", (WORKER, n))
    # The example's database is SQL_ASCII (initdb without a locale), so psycopg hands text back as bytes.
    workers = {bytes(row[0]).decode() if not isinstance(row[0], str) else row[0] for row in pg.execute("select distinct worker from marks")}
    assert workers == {WORKER}, f"another worker's rows are in this database: {workers}"


@pytest.mark.parametrize("n", range(8))
def test_redis_is_this_workers_own(cache, n):
    cache.sadd("workers", WORKER)
    cache.incr(f"count:{WORKER}")
    assert cache.smembers("workers") == {WORKER.encode()}


def test_the_fixture_and_the_session_fixtures_share_one_environment(orch_env, stack):
    assert orch_env.id == stack.id


def test_connection_variables_name_the_published_ports(orch_env):
    env = orch_env.env()
    assert env["POSTGRES_HOST"] == "127.0.0.1"
    assert int(env["POSTGRES_PORT_5432"]) == orch_env.port("postgres", 5432)
    assert int(env["REDIS_PORT_6379"]) == orch_env.port("redis", 6379)


def test_backend_answers_over_http(orch_env):
    with urllib.request.urlopen(orch_env.url("backend", 8000, path="/health"), timeout=10) as r:
        assert r.status == 200


def test_health_exec_and_logs(orch_env):
    assert set(orch_env.health().values()) <= {"HEALTHY", "RUNNING"}
    done = orch_env.exec("postgres", ["psql", "-U", "netra", "-d", "netra_test", "-tAc", "select 40 + 2"])
    assert (done.exit_code, done.output.strip().splitlines()[-1]) == (0, "42")
    assert orch_env.exec("redis", "exit 3").exit_code == 3
    assert orch_env.logs("backend", tail=20).strip()


@pytest.mark.skipif(not os.environ.get("ORCH_SUITE_FAIL"), reason="only when the outer tests ask for a failure")
def test_a_failure_carries_the_services_logs(orch_env):
    assert False, "failing on purpose"


@pytest.mark.skipif(not os.environ.get("ORCH_SUITE_HOLD"), reason="only when the outer tests hold the run")
def test_hold_until_killed(stack):
    # The outer test kills pytest with SIGKILL while this waits (with an environment, whichever worker runs it).
    time.sleep(float(os.environ["ORCH_SUITE_HOLD"]))


@pytest.mark.orch(scope="function")
def test_a_marker_gives_a_test_its_own_environment_to_restart_a_service_in(orch_env, stack):
    assert orch_env.id != stack.id
    orch_env.restart("redis")
    assert orch_env.health()["redis"] in ("HEALTHY", "RUNNING")
