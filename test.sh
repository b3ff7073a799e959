#!/usr/bin/env bash
# Every test tier, on a fresh Debian machine as on a developer's: installs what the tests need, then checks format and
# lints, then runs `cargo test --workspace` (unit and fake-engine tests, goldens, bounded fuzz cases, plugin sandbox,
# real-engine lifecycle, examples, registry), then installs the Python package with pip into a virtual environment
# and runs its tests (the API, the pytest plugin, netra's suite under pytest -n 4). Timed runs (benchmarks, long
# fuzzing) live in bench/.
set -euo pipefail
cd "$(dirname "$0")"

# docker-compose: the export test validates with it; busybox-static: the tiny test image; debootstrap: the examples'
# Debian base image (there is no registry to pull from); docker-registry: the OCI registry the plugin-sharing tests
# push to; openssl: the CA and certificate of the TLS registry test.
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# ip and nsenter: the two-node swarm test runs a second dockerd in a network namespace of its own.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
# pgrep: the fault tier finds the containerd of the dockerd it kills.
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
# python3 with venv and pip: the Python package's tests.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The built-in plugins are wasm32-wasip2 components; fmt and clippy are part of the check.
rustup target add wasm32-wasip2
rustup component add rustfmt clippy

# Real-engine tests need the daemon.
docker info --format 'Docker engine {{.ServerVersion}}, API {{.ClientInfo.Version}}' || { echo "the Docker engine is not running" >&2; exit 1; }

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"
# The plugin SDK is a publishable crate: it packages (and builds from the package) and its docs build cleanly.
cargo package --quiet --allow-dirty -p orch-plugin-api-macros -p orch-plugin-api
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps -p orch-plugin-api

# The Python package as a user installs it: pip builds it with maturin (the dev profile here, reusing the build above;
# users get a release build), into a virtual environment with the test suites' clients from PyPI.
python3 -m venv target/python
MATURIN_PEP517_ARGS="--profile dev" target/python/bin/pip install --quiet --disable-pip-version-check . pytest pytest-xdist "psycopg[binary]" redis
PATH="$PWD/target/python/bin:$PATH" target/python/bin/python -m pytest python/tests -v
