"""Writes v2.json: a version 2 signature vector (docs/signatures.md), computed with Python's
json and hashlib, independently of the Rust code. Salts are fixed here; gateways draw them at
random. Run: python3 make_v2.py"""
import datetime
import hashlib
import json

FIXED = ["id", "originator", "created", "supersedes", "validFrom", "validUntil", "tlp",
         "protection", "noReshare", "releasableTo"]
TIMESTAMPS = ["created", "validFrom", "validUntil"]

indicator = {
    "id": "0196f1a2-0000-7000-8000-000000000001",
    "originator": "GH",
    "created": "2026-09-21T14:13:20Z",
    "validFrom": "2026-09-21T14:13:20.250+00:00",
    "validUntil": "2027-03-21T16:13:20.5+02:00",
    "supersedes": "0196f1a2-0000-7000-8000-000000000000",
    "severity": "SEVERITY_HIGH",
    "confidence": 50,
    "tlp": "TLP_GREEN",
    "noReshare": True,
    "releasableTo": ["NG", "SN/police"],
    "tags": ["tema", "rifles"],
    "narrative": "Seen at Tema \u2014 \"SEA LION\", cr\u00e9dit\tnoted\u0001",
    "source": {"description": "informant 7", "reliability": "B", "credibility": 2},
    "publisher": "GH/customs",
    "vessel": {"imo": "9234561", "name": "SEA LION", "imoCheckDigitOverride": True},
}


def canonical(value):
    """RFC 8785 for this data: ASCII member names, integers, strings, booleans."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_timestamp(text):
    """The proto3 JSON mapping's form: UTC, Z, 0, 3, 6 or 9 fractional digits."""
    at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(datetime.timezone.utc)
    micros = at.microsecond
    fraction = "" if micros == 0 else (f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}")
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


fixed = {}
fields = {}


def flatten(path, value):
    if isinstance(value, dict):
        for name, inner in value.items():
            flatten(f"{path}.{name}", inner)
    else:
        fields[path] = value


for name, value in indicator.items():
    if name in FIXED:
        fixed[name] = canonical_timestamp(value) if name in TIMESTAMPS else value
    else:
        flatten(name, value)

out = []
commitments = {}
for path in sorted(fields):
    salt = hashlib.sha256(b"cordon test vector salt " + path.encode()).digest()[:16]
    preimage = b"cordon.v1.Indicator field 2\n" + canonical([salt.hex(), path, fields[path]])
    digest = hashlib.sha256(preimage).hexdigest()
    commitments[path] = digest
    out.append({"path": path, "salt": salt.hex(), "value": fields[path],
                "preimage": preimage.decode(), "digest": digest})
signing = b"cordon.v1.Indicator signature 2\n" + canonical({"commitments": commitments, "fixed": fixed})
document = {
    "comment": "Version 2 signature vector (docs/signatures.md), written by make_v2.py with "
               "Python's json and hashlib, independently of the Rust code. Salts are fixed "
               "here; gateways draw them at random.",
    "indicator": indicator,
    "fields": out,
    "signingInput": signing.decode(),
    "signingInputSha256": hashlib.sha256(signing).hexdigest(),
}
with open("v2.json", "w") as file:
    file.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
