#!/usr/bin/env bash
# Prepares everything the examples need that orch cannot build from a compose file alone: the Debian base image
# (debootstrap + docker import, no registry) and the stand-in app binary. orch builds the per-service images
# (postgres, redis, app and its small variant) itself from their `build:` sections. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/build-base.sh"
cargo build --release -q -p orch-example-app --manifest-path "$here/../../Cargo.toml"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$here/../../Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
install -m 0755 "$target/release/app" "$here/app/app"
# The same program linked statically, for the small image variant (app/alpine.Dockerfile).
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p orch-example-app --target "$host" --manifest-path "$here/../../Cargo.toml"
install -m 0755 "$target/$host/release/app" "$here/app/app-static"
echo "example images ready"
