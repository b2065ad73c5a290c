#!/usr/bin/env bash
# The full test suite (README command 2). Installs what the tests need, then
# runs them: the AWS tests need moto (real IAM wire protocol) in Python.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import moto.server, boto3, flask_cors' >/dev/null 2>&1; then
    echo "installing moto[server] for the AWS tests" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' 'boto3>=1.34'
fi

# The moto fixture checks itself first (protocol, back-dating, fault proxy).
"$PYTHON" tests/aws/check_fixture.py
cargo test --workspace --locked
