#!/usr/bin/env bash
# The full test suite (README command 2). Installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
