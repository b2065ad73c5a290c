#!/usr/bin/env python3
"""Validate a JSON document against a JSON Schema, the draft taken from the
schema's own `$schema` (SARIF 2.1.0: draft-04; OCSF: 2020-12).

usage: validate_json.py SCHEMA INSTANCE [--each]

--each: INSTANCE is an array and every element is validated on its own (an
OCSF export is an array of events). Prints each error with its JSON path and
exits 1 if there is any; prints "valid N document(s)" and exits 0 otherwise.
Used by the Rust tests (tests/report.rs); tests/run.sh installs `jsonschema`.
"""
import json
import sys

from jsonschema.validators import validator_for


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    with open(sys.argv[2], encoding="utf-8") as f:
        doc = json.load(f)
    cls = validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    docs = doc if "--each" in sys.argv[3:] else [doc]
    errors = 0
    for i, d in enumerate(docs):
        for e in validator.iter_errors(d):
            errors += 1
            path = "/".join(str(p) for p in e.absolute_path)
            print(f"document {i}: /{path}: {e.message[:400]}")
    if errors:
        print(f"{errors} error(s)")
        return 1
    print(f"valid {len(docs)} document(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
