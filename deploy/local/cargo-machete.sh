#!/usr/bin/env bash
# `cargo machete`: no crate declares a dependency it does not use (the generated contract code's
# own are listed in presence-proto's Cargo.toml). cargo-machete is pinned and installed from
# crates.io into .local/tools on the first run; it reads the source tree, offline.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CARGO_MACHETE_VERSION=0.9.2
TOOLS="$ROOT/.local/tools"
BIN="$TOOLS/bin/cargo-machete"
if ! "$BIN" --version 2>/dev/null | grep -q "$CARGO_MACHETE_VERSION"; then
  cargo install --quiet --locked --root "$TOOLS" "cargo-machete@$CARGO_MACHETE_VERSION"
fi
exec "$BIN" --skip-target-dir
