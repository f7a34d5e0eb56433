"""gtls._redact: key material is left out of messages, paths and words stay readable."""

from __future__ import annotations

import base64
import json
import random

import pytest

from gtls._redact import BASE64_SHOWN, PEM_SHOWN, holds_key_material, redact
from gtls.testing import CA

#: Paths and words messages quote, CamelCase and digits included: none may be hidden.
READABLE = [
    "/etc/gtls/server-chain.pem",
    "/srv/certs/ServerCertificate2024/ProductionEastCluster01/LoadBalancerFrontend/cert.pem",
    "/opt/AppData/Certs/Prod2024EastCluster01LoadBalancer/k.pem",
    "C:/Users/JohnDoe/AppData/Roaming/Certs2024/x.pem",
    "/mnt/c/Users/SvcAcctTLS01/OneDrive/CertStoreBackup2023Q4/ca.pem",
    "/var/lib/kubelet/pods/3f2a9c1e4b7d/volumes/kubernetes.io~secret/tls/tls.crt",
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384",
    "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678ABCDEF0123456789ABCDEF01",  # a thumbprint: not a secret
    "applications.statserver.ports.default: level Application: certificate: file not found",
]


@pytest.mark.parametrize("text", READABLE)
def test_paths_and_words_stay_readable(text: str) -> None:
    assert redact(text) == text and not holds_key_material(text)


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_a_key_in_any_shape_is_left_out(key_type: str) -> None:
    pem = CA.root("redact", key_type=key_type).key_pem.decode()
    lines = pem.strip().splitlines()[1:-1]
    shapes = [
        f"file not found: /tmp/{pem}",  # the whole PEM
        repr(f"got {pem}"),  # quoted, newlines escaped
        json.dumps({"address": pem, "after": 1}),  # in JSON
        "value " + pem[: len(pem) // 2],  # cut short: no END line
        "file not found: /tmp/x/" + "".join(lines),  # the body as one string
        "cipher-list: " + ":".join(lines) + " selects no cipher",  # lines joined as a cipher list would
        " ".join(lines),  # lines joined by spaces
    ]
    for text in shapes:
        out = redact(text)
        assert not [line for line in lines if line[:20] in out], (text[:40], out)
        assert PEM_SHOWN in out or BASE64_SHOWN in out
    document = json.loads(redact(shapes[2]))
    assert document == {"address": PEM_SHOWN + "\n", "after": 1}  # JSON stays JSON


def test_random_base64_lines_are_caught_998_times_in_1000() -> None:
    """The documented rate for one line of 64 random base64 characters on its own (seeded: repeatable)."""
    rng = random.Random(20261127)
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(20_000)]
    caught = sum(1 for line in lines if holds_key_material(line))
    assert caught >= 0.997 * len(lines), caught
