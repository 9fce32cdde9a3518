"""Validates STIX 2.1 objects with the OASIS stix2-validator (pinned in requirements.txt).

Reads a JSON list of objects (or a bundle) on standard input and writes one JSON line per
object that has errors or warnings: {"id", "errors", "warnings"}. Exits 1 if any object has
one. Arguments: check names to disable (each with its reason in the calling test).
Cordon's tests run it; see stix/tests/validator.rs and integration-tests/tests/taxii.rs.
"""
import json
import sys

from stix2validator import ValidationOptions, validate_instance


def main() -> int:
    document = json.load(sys.stdin)
    objects = document["objects"] if isinstance(document, dict) else document
    options = ValidationOptions(version="2.1", disabled=",".join(sys.argv[1:]))
    failed = 0
    for obj in objects:
        results = validate_instance(obj, options)
        errors = [str(e) for e in results.errors]
        warnings = [str(w) for w in results.warnings]
        if errors or warnings or not results.is_valid:
            failed += 1
            print(json.dumps({"id": obj.get("id"), "errors": errors, "warnings": warnings}))
    print(json.dumps({"checked": len(objects), "failed": failed}), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
