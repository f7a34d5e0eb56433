"""Writes this folder: an ML-DSA-65 root, an EC P-256 intermediate it signed, an EC leaf for localhost. Needs
cryptography 47 or later (ML-DSA); the files are committed so that older versions, which cannot make or read an
ML-DSA key, are tested too. Test material only: never trust this root.

    python tests/data/mldsa/make.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).parent
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2126, 1, 1, tzinfo=dt.UTC)


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def certificate(subject: str, issuer: str, key: object, signer: object, *, ca: bool) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
               .not_valid_before(START).not_valid_after(END)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    algorithm = None if isinstance(signer, mldsa.MLDSA65PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)  # type: ignore[arg-type]


def main() -> None:
    root_key = mldsa.MLDSA65PrivateKey.generate()
    inter_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = certificate("gtls test ML-DSA root", "gtls test ML-DSA root", root_key.public_key(), root_key, ca=True)
    inter = certificate("gtls test EC intermediate", "gtls test ML-DSA root", inter_key.public_key(), root_key,
                        ca=True)
    leaf = certificate("localhost", "gtls test EC intermediate", leaf_key.public_key(), inter_key, ca=False)
    pem = serialization.Encoding.PEM
    (HERE / "root.pem").write_bytes(root.public_bytes(pem))
    (HERE / "chain.pem").write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    (HERE / "key.pem").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


if __name__ == "__main__":
    main()
