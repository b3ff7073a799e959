"""Session-wide clients for the environment orch gives this pytest process (one per xdist worker)."""

import json
import os
import subprocess
import time

import psycopg
import pytest
import redis

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def stack(orch_envs):
    """This worker's environment. With ORCH_SUITE_RECORD set, records when it was asked for and when it was ready."""
    asked = time.time()
    env = orch_envs.get()
    ready = time.time()
    record = os.environ.get("ORCH_SUITE_RECORD")
    if record:
        # A member claimed from a warm pool (`--orch-pool`) has a deed on the engine.
        deed = subprocess.run(["docker", "volume", "inspect", f"{env.project}__{env.id}__orch-claimed"], capture_output=True)
        fields = {"worker": WORKER, "pid": os.getpid(), "env": env.id, "project": env.project, "asked": asked, "ready": ready, "pooled": deed.returncode == 0}
        # Written whole and renamed, so a reader polling the folder never sees half a record.
        path = os.path.join(record, f"{WORKER}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(fields, f)
        os.replace(path + ".tmp", path)
    return env


@pytest.fixture(scope="session")
def pg(stack):
    conn = psycopg.connect(
        host=stack.host, port=stack.port("postgres", 5432), user="netra", password="netra", dbname="netra_test", autocommit=True, connect_timeout=10
    )
    conn.execute("create table if not exists marks (worker text not null, n int not null)")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def cache(stack):
    client = redis.Redis(host=stack.host, port=stack.port("redis", 6379), socket_timeout=10)
    yield client
    client.close()
