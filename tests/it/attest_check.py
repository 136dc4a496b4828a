"""Third-party checks of an mlart attestation envelope (a Sigstore bundle v0.3 holding a DSSE
envelope), run by tests/it/attest.rs with the test venv's Python:

    python attest_check.py ENVELOPE.json PUBLIC.pem KIND

- securesystemslib verifies the DSSE signature with the public key (its own PAE and ECDSA),
  finding it by the signature's keyid, which must be the key's id computed here (the SHA-256
  of its DER SubjectPublicKeyInfo, RFC 6962's key hash);
- in-toto-attestation's Statement model parses and validates the statement;
- provenance: the predicate parses strictly into the SLSA Provenance v1 proto, and every
  resolved dependency is a valid ResourceDescriptor;
- sbom: cyclonedx-python-lib's strict JSON validator accepts the BOM as CycloneDX 1.6.
Prints "ok" or raises.
"""
import hashlib
import json
import sys

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

bundle_path, pem_path, kind = sys.argv[1:4]
bundle = json.load(open(bundle_path))
env = Envelope.from_dict(bundle["dsseEnvelope"])
pub = load_pem_public_key(open(pem_path, "rb").read())
# The trusted key's id, computed from the key alone: securesystemslib only tries a key on a
# signature whose keyid is that key's, so a wrong or empty keyid fails here.
der = pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
key = SSlibKey.from_crypto(pub, keyid=hashlib.sha256(der).hexdigest(), scheme="ecdsa-sha2-nistp256")
env.verify([key], 1)  # raises VerificationError

st_pb = json_format.Parse(env.payload, statement_pb2.Statement())
st = Statement.copy_from_pb(st_pb)
st.validate()
doc = json.loads(env.payload)

if kind == "provenance":
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

    assert doc["predicateType"] == "https://slsa.dev/provenance/v1", doc["predicateType"]
    prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    assert prov.build_definition.build_type, "buildType"
    assert prov.run_details.builder.id, "builder.id"
    for rd in prov.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(rd).validate()
elif kind == "sbom":
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert doc["predicateType"] == "https://cyclonedx.org/bom", doc["predicateType"]
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc["predicate"]))
    if errors is not None:
        raise SystemExit(f"CycloneDX 1.6 strict validation failed: {errors!r}")
else:
    raise SystemExit(f"unknown kind {kind}")
print("ok")
