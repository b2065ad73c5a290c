#!/usr/bin/env bash
# The full test suite (README command 2). Installs what the tests need, then
# runs them: the AWS tests need moto (real IAM wire protocol) in Python, the
# store tests a PostgreSQL server (started by the tests themselves), the
# report tests Python's jsonschema and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import moto.server, boto3, flask_cors' >/dev/null 2>&1; then
    echo "installing moto[server] for the AWS tests" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' 'boto3>=1.34'
fi

# The store tests start a real PostgreSQL server from the Debian package.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql for the store tests" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
# The report tests validate OCSF and SARIF against their official schemas
# (vendored in tests/data/) with Python's jsonschema...
if ! "$PYTHON" -c 'import jsonschema.validators' >/dev/null 2>&1; then
    echo "installing jsonschema for the report tests" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check 'jsonschema>=4.18'
fi
# ...and render the HTML report in headless Chromium (Debian's package).
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    echo "installing chromium for the HTML report test" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
export CHROMIUM

# The moto fixture checks itself first (protocol, back-dating, fault proxy).
"$PYTHON" tests/aws/check_fixture.py

# Every crate's unit and integration tests; then one closing line that sums
# them (cargo's last line is a doc-test section, usually empty).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
