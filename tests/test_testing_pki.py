"""gtls.testing makes what it says, `openssl verify` agrees, and the committed fixtures are sound."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from gtls.testing import CA, CRL, Certified, demo_pki, write_pem
from tests.peers import FIXTURES

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")


# --- helpers ---------------------------------------------------------------------------------------------------------


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def has_ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


def common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def signed_by(cert: x509.Certificate, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bool:
    """Whether ``key``'s public half verifies ``cert``'s signature, whatever the issuer name says."""
    public = key.public_key()
    assert cert.signature_hash_algorithm is not None
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)
        else:
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def near(value: dt.timedelta, expected: dt.timedelta, tolerance: dt.timedelta) -> bool:
    return abs(value - expected) <= tolerance


def openssl_verify(ca_file: Path, leaf: Path, *, untrusted: Path | None = None, crl_files: Sequence[Path] = (),
                   crl_check_all: bool = False, extra: Sequence[str] = ()) -> tuple[int, str]:
    """Run ``openssl verify``; return its exit code and combined output."""
    assert OPENSSL is not None
    args = [OPENSSL, "verify", "-CAfile", str(ca_file)]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    if crl_files:
        args.append("-crl_check_all" if crl_check_all else "-crl_check")
        for crl in crl_files:
            args += ["-CRLfile", str(crl)]
    args += [*extra, str(leaf)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode, out


@pytest.fixture
def root() -> CA:
    return CA.root()


@pytest.fixture
def inter(root: CA) -> CA:
    return root.intermediate("test intermediate")


# --- CAs -------------------------------------------------------------------------------------------------------------


def test_root_is_self_signed_ca_with_key_ids(root: CA) -> None:
    cert = root.cert
    assert cert.issuer == cert.subject
    assert common_names(cert) == ["gtls test root"]
    cert.verify_directly_issued_by(cert)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=None)
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign  # type: ignore[attr-defined]
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest  # type: ignore[attr-defined]
    assert isinstance(root.key, ec.EllipticCurvePrivateKey) and root.key.curve.name == "secp256r1"
    assert root.issuer is None and root.chain == [root]


def test_intermediate_links_to_root(root: CA) -> None:
    inter = root.intermediate("mid", path_length=0)
    cert = inter.cert
    assert cert.issuer == root.cert.subject and common_names(cert) == ["mid"]
    cert.verify_directly_issued_by(root.cert)
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == (  # type: ignore[attr-defined]
        ext(root.cert, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]
    )
    assert ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
    assert inter.issuer is root and inter.chain == [inter, root]


def test_broken_issuer_flags(root: CA) -> None:
    not_ca = root.intermediate("not a ca", ca=False)
    assert ext(not_ca.cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=False, path_length=None)
    no_sign = root.intermediate("no certsign", key_cert_sign=False)
    ku = ext(no_sign.cert, x509.KeyUsage).value
    assert not ku.key_cert_sign and ku.crl_sign  # type: ignore[attr-defined]
    no_crl = root.intermediate("no crlsign", crl_sign=False)
    ku = ext(no_crl.cert, x509.KeyUsage).value
    assert ku.key_cert_sign and not ku.crl_sign  # type: ignore[attr-defined]
    # A non-CA "intermediate" still issues certificates (that is the point of the failure test).
    leaf = not_ca.leaf("under a non-ca")
    leaf.cert.verify_directly_issued_by(not_ca.cert)


def test_ca_validity_defaults_longer_than_leaf(root: CA) -> None:
    leaf = root.leaf("x")
    t = now()
    for cert in (root.cert, leaf.cert):
        assert t - dt.timedelta(hours=2) < cert.not_valid_before_utc <= t
    assert near(leaf.cert.not_valid_after_utc - t, dt.timedelta(days=30), dt.timedelta(minutes=5))
    assert root.cert.not_valid_after_utc - t > dt.timedelta(days=300)


# --- leaves: names, usage, validity ----------------------------------------------------------------------------------


def test_leaf_names_and_sans(inter: CA) -> None:
    leaf = inter.leaf("host.example.test", dns=["host.example.test", "alt.example.test"],
                      ips=["127.0.0.1", ipaddress.ip_address("::1")], emails=["ops@example.test"],
                      uris=["https://example.test/"])
    cert = leaf.cert
    assert cert.issuer == inter.cert.subject
    cert.verify_directly_issued_by(inter.cert)
    assert common_names(cert) == ["host.example.test"]
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    names = san.value
    assert names.get_values_for_type(x509.DNSName) == ["host.example.test", "alt.example.test"]  # type: ignore[attr-defined]
    assert names.get_values_for_type(x509.IPAddress) == [  # type: ignore[attr-defined]
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert names.get_values_for_type(x509.RFC822Name) == ["ops@example.test"]  # type: ignore[attr-defined]
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["https://example.test/"]  # type: ignore[attr-defined]
    assert ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=False, path_length=None)
    assert leaf.chain == [leaf, inter, inter.issuer]


def test_leaf_several_cns_or_none(inter: CA) -> None:
    several = inter.leaf(common_names=["a.test", "b.test"])
    assert common_names(several.cert) == ["a.test", "b.test"]
    assert len(several.cert.subject.rdns) == 2  # one RDN per CN
    assert not has_ext(several.cert, x509.SubjectAlternativeName)

    nameless = inter.leaf(dns=["only-san.test"])
    assert len(nameless.cert.subject) == 0
    assert ext(nameless.cert, x509.SubjectAlternativeName).critical  # RFC 5280: empty subject => critical SAN

    with pytest.raises(ValueError):
        inter.leaf("a", common_names=["b"])


def test_unicode_cn_is_utf8string(inter: CA) -> None:
    leaf = inter.leaf("bücher.example")
    (attr,) = leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert attr.value == "bücher.example"
    assert attr._type == _ASN1Type.UTF8String
    # and it survives a PEM round trip
    again = x509.load_pem_x509_certificate(leaf.cert_pem)
    assert common_names(again) == ["bücher.example"]


@settings(max_examples=25, deadline=None)
@given(cn=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=64)
       .filter(lambda text: len(text.encode()) <= 64))  # cryptography bounds a CN at 64 UTF-8 bytes
def test_any_cn_round_trips(cn: str) -> None:
    ca = CA.root()
    assert common_names(x509.load_pem_x509_certificate(ca.leaf(cn).cert_pem)) == [cn]


@pytest.mark.parametrize(
    ("eku", "expected"),
    [
        (("server", "client"), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        (("server",), [ExtendedKeyUsageOID.SERVER_AUTH]),
        (("client",), [ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (("email",), [ExtendedKeyUsageOID.EMAIL_PROTECTION]),
        (None, None),
    ],
)
def test_leaf_eku(inter: CA, eku: Sequence[str] | None, expected: list[x509.ObjectIdentifier] | None) -> None:
    cert = inter.leaf("x", eku=eku).cert
    if expected is None:
        assert not has_ext(cert, x509.ExtendedKeyUsage)
    else:
        assert list(ext(cert, x509.ExtendedKeyUsage).value) == expected  # type: ignore[call-overload]


def test_leaf_eku_rejects_nonsense(inter: CA) -> None:
    with pytest.raises(ValueError):
        inter.leaf("x", eku=("serverr",))
    with pytest.raises(ValueError):
        inter.leaf("x", eku=())


def test_validity_window_absolute_relative_and_naive(inter: CA) -> None:
    start = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    leaf = inter.leaf("x", not_before=start, not_after=start + dt.timedelta(days=2))
    assert leaf.cert.not_valid_before_utc == start
    assert leaf.cert.not_valid_after_utc == start + dt.timedelta(days=2)

    naive = inter.leaf("x", not_before=dt.datetime(2030, 1, 2), not_after=dt.datetime(2030, 1, 3))
    assert naive.cert.not_valid_before_utc == dt.datetime(2030, 1, 2, tzinfo=dt.UTC)

    expired = inter.leaf("x", not_before=dt.timedelta(days=-10), not_after=dt.timedelta(days=-1))
    assert expired.cert.not_valid_after_utc < now() - dt.timedelta(hours=23)
    assert expired.cert.not_valid_before_utc < expired.cert.not_valid_after_utc


def test_rsa_keys(root: CA) -> None:
    rsa_root = CA.root("rsa root", key_type="rsa")
    leaf = rsa_root.leaf("rsa leaf", key_type="rsa")
    assert isinstance(leaf.key, rsa.RSAPrivateKey) and leaf.key.key_size == 2048
    leaf.cert.verify_directly_issued_by(rsa_root.cert)
    ku = ext(leaf.cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment  # type: ignore[attr-defined]
    # Mixed: an EC leaf under an RSA CA and the other way round.
    rsa_root.leaf("ec under rsa").cert.verify_directly_issued_by(rsa_root.cert)
    root.leaf("rsa under ec", key_type="rsa").cert.verify_directly_issued_by(root.cert)
    with pytest.raises(ValueError):
        CA.root(key_type="dsa")  # type: ignore[arg-type]


def test_serials_random_positive_64_bit(inter: CA) -> None:
    serials = [inter.leaf("x").serial for _ in range(20)]
    assert len(set(serials)) == 20
    assert all(0 < s < 2**64 for s in serials)
    assert inter.leaf("x", serial=1234).serial == 1234


def test_key_ids_can_be_omitted(root: CA) -> None:
    bare = root.intermediate("bare", key_ids=False)
    assert not has_ext(bare.cert, x509.SubjectKeyIdentifier)
    assert not has_ext(bare.cert, x509.AuthorityKeyIdentifier)
    # A child of an SKI-less issuer still gets an AKI matching that issuer's key.
    child = bare.leaf("child")
    expected = x509.AuthorityKeyIdentifier.from_issuer_public_key(bare.key.public_key())
    assert ext(child.cert, x509.AuthorityKeyIdentifier).value == expected


def test_issuer_name_override_keeps_valid_signature(inter: CA) -> None:
    leaf = inter.leaf("x", issuer_name="someone else")
    assert common_names_of(leaf.cert.issuer) == ["someone else"]
    assert signed_by(leaf.cert, inter.key)
    with pytest.raises(ValueError):  # cryptography checks the issuer name first
        leaf.cert.verify_directly_issued_by(inter.cert)


def common_names_of(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_bad_signature_really_fails(key_type: str) -> None:
    ca = CA.root(key_type=key_type)  # type: ignore[arg-type]
    good = ca.leaf("good")
    bad = ca.leaf("bad", bad_signature=True)
    good.cert.verify_directly_issued_by(ca.cert)
    assert bad.cert.issuer == ca.cert.subject  # only the signature is wrong
    with pytest.raises(InvalidSignature):
        bad.cert.verify_directly_issued_by(ca.cert)
    bad_inter = ca.intermediate("bad inter", bad_signature=True)
    with pytest.raises(InvalidSignature):
        bad_inter.cert.verify_directly_issued_by(ca.cert)
    bad_root = CA.root("bad root", bad_signature=True)
    with pytest.raises(InvalidSignature):
        bad_root.cert.verify_directly_issued_by(bad_root.cert)


def test_extensions_replace_or_add(inter: CA) -> None:
    usage = x509.KeyUsage(digital_signature=False, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    leaf = inter.leaf("x", extensions=[x509.Extension(usage.oid, True, usage), x509.OCSPNoCheck()])
    assert ext(leaf.cert, x509.KeyUsage).value == usage
    assert ext(leaf.cert, x509.KeyUsage).critical
    assert has_ext(leaf.cert, x509.OCSPNoCheck)
    assert len([e for e in leaf.cert.extensions if e.oid == usage.oid]) == 1


# --- CRLs ------------------------------------------------------------------------------------------------------------


def test_crl_entries_dates_and_signature(inter: CA) -> None:
    a, b = inter.leaf("a"), inter.leaf("b")
    crl = inter.crl(revoked=[a, 4242], reason=x509.ReasonFlags.key_compromise, crl_number=7)
    c = crl.crl
    assert c.issuer == inter.cert.subject
    assert crl.revoked_serials == {a.serial, 4242}
    assert b.serial not in crl.revoked_serials
    assert c.is_signature_valid(inter.key.public_key())
    t = now()
    assert c.last_update_utc <= t < c.next_update_utc  # type: ignore[operator]
    assert near(c.next_update_utc - t, dt.timedelta(days=7), dt.timedelta(minutes=5))  # type: ignore[operator]
    entry = c.get_revoked_certificate_by_serial_number(a.serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(inter.cert, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]
    )


def test_crl_explicit_dates(root: CA) -> None:
    this = dt.datetime(2020, 5, 1, tzinfo=dt.UTC)
    crl = root.crl(this_update=this, next_update=this + dt.timedelta(days=1)).crl
    assert crl.last_update_utc == this
    assert crl.next_update_utc == this + dt.timedelta(days=1)
    stale = root.crl(this_update=dt.timedelta(days=-3), next_update=dt.timedelta(days=-1)).crl
    assert stale.next_update_utc is not None and stale.next_update_utc < now()


def test_crl_wrong_signer(inter: CA, root: CA) -> None:
    crl = inter.crl(signer=root).crl
    assert crl.issuer == inter.cert.subject
    assert not crl.is_signature_valid(inter.key.public_key())
    assert crl.is_signature_valid(root.key.public_key())


def test_crl_with_a_thousand_entries(inter: CA) -> None:
    leaf = inter.leaf("x")
    crl = inter.crl(revoked=[leaf], count=1000)
    assert len(crl.crl) == 1001
    assert len(crl.revoked_serials) == 1001  # random serials are distinct
    assert leaf.serial in crl.revoked_serials
    assert x509.load_pem_x509_crl(crl.pem).is_signature_valid(inter.key.public_key())


# --- PEM files -------------------------------------------------------------------------------------------------------


def test_write_files(tmp_path: Path, inter: CA) -> None:
    leaf = inter.leaf("x")
    cert_path = leaf.write_cert(tmp_path / "cert.pem")
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()) == leaf.cert

    key_path = tmp_path / "key.pem"
    key_path.write_text("old")
    key_path.chmod(0o644)
    leaf.write_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600  # also when the file existed with a wider mode
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert loaded.public_key() == leaf.key.public_key()
    assert b"BEGIN PRIVATE KEY" in leaf.key_pem
    assert leaf.thumbprint == hashlib.sha1(leaf.cert_der).hexdigest().upper()

    encrypted = leaf.encrypted_key_pem(b"secret")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(encrypted, password=None)
    assert serialization.load_pem_private_key(encrypted, password=b"secret").public_key() == leaf.key.public_key()


def test_write_pem_concatenates_any_blobs(tmp_path: Path, inter: CA) -> None:
    leaf = inter.leaf("x")
    crl = inter.crl()
    root = inter.issuer
    assert root is not None
    path = write_pem(tmp_path / "mixed.pem", leaf, inter.cert_pem, root.cert_pem.decode().rstrip("\n"), crl,
                     mode=0o640)
    data = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert x509.load_pem_x509_certificates(data) == [leaf.cert, inter.cert, root.cert]
    assert x509.load_pem_x509_crl(data[data.index(b"-----BEGIN X509 CRL"):]) == crl.crl
    assert leaf.chain_pem() == leaf.cert_pem + inter.cert_pem
    assert leaf.chain_pem(include_root=True) == leaf.cert_pem + inter.cert_pem + root.cert_pem
    crl_path = crl.write(tmp_path / "crl.pem")
    assert x509.load_pem_x509_crl(crl_path.read_bytes()) == crl.crl


# --- demo_pki --------------------------------------------------------------------------------------------------------


DEMO_FILES = {"root-ca.pem", "intermediate-ca.pem", "server-cert.pem", "server-chain.pem", "server-key.pem",
              "client-cert.pem", "client-chain.pem", "client-key.pem", "ca-bundle.pem", "second-root-ca.pem",
              "crl.pem"}


def certs_in(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def crls_in(path: Path) -> list[x509.CertificateRevocationList]:
    text = path.read_bytes()
    blocks = text.split(b"-----END X509 CRL-----")[:-1]
    return [x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n") for block in blocks]


def test_demo_pki_files(tmp_path: Path) -> None:
    demo = demo_pki(tmp_path / "demo", server_names=("server.test",), client_name="client.test", days=40)
    assert set(demo.files) == DEMO_FILES
    assert {p.name for p in (tmp_path / "demo").iterdir()} == DEMO_FILES
    for key_file in (demo.server_key, demo.client_key):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    (server,) = certs_in(demo.server_cert)
    assert common_names(server) == ["server.test"]
    sans = ext(server, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["server.test", "localhost"]  # type: ignore[attr-defined]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]  # type: ignore[attr-defined]
    assert near(server.not_valid_after_utc - now(), dt.timedelta(days=40), dt.timedelta(hours=1))
    assert certs_in(demo.server_chain) == [server, demo.intermediate.cert]
    assert certs_in(demo.client_chain) == [demo.client.cert, demo.intermediate.cert]
    assert common_names(demo.client.cert) == ["client.test"]
    assert list(ext(demo.client.cert, x509.ExtendedKeyUsage).value) == [  # type: ignore[call-overload]
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certs_in(demo.ca_bundle) == [demo.root.cert, demo.second_root.cert]
    assert demo.second_root.cert.subject != demo.root.cert.subject
    assert serialization.load_pem_private_key(demo.server_key.read_bytes(), None).public_key() == (
        server.public_key())

    root_crl, inter_crl = crls_in(demo.crl)
    assert root_crl.issuer == demo.root.cert.subject and len(root_crl) == 0
    assert inter_crl.issuer == demo.intermediate.cert.subject and len(inter_crl) == 1
    assert inter_crl.get_revoked_certificate_by_serial_number(demo.server.serial) is None
    assert root_crl.is_signature_valid(demo.root.key.public_key())
    assert inter_crl.is_signature_valid(demo.intermediate.key.public_key())


def test_demo_pki_default_names_include_localhost(tmp_path: Path) -> None:
    demo = demo_pki(tmp_path)
    assert common_names(demo.server.cert) == ["localhost"]
    assert ext(demo.server.cert, x509.SubjectAlternativeName).value.get_values_for_type(  # type: ignore[attr-defined]
        x509.DNSName) == ["localhost"]


# --- openssl verify: a real peer agrees ------------------------------------------------------------------------------


@needs_openssl
def test_openssl_accepts_good_chain_and_rejects_revoked(tmp_path: Path) -> None:
    root = CA.root()
    inter = root.intermediate("openssl inter")
    good, revoked = inter.leaf("good.test", dns=["good.test"]), inter.leaf("revoked.test")
    files = {name: tmp_path / f"{name}.pem" for name in ("root", "inter", "good", "revoked", "crls")}
    root.write_cert(files["root"])
    inter.write_cert(files["inter"])
    good.write_cert(files["good"])
    revoked.write_cert(files["revoked"])
    write_pem(files["crls"], root.crl(), inter.crl(revoked=[revoked], count=50))

    code, out = openssl_verify(files["root"], files["good"], untrusted=files["inter"], crl_files=[files["crls"]],
                               crl_check_all=True, extra=["-verify_hostname", "good.test", "-purpose", "sslserver"])
    assert code == 0, out
    code, out = openssl_verify(files["root"], files["revoked"], untrusted=files["inter"], crl_files=[files["crls"]])
    assert code != 0 and "certificate revoked" in out, out
    # Without the intermediate there is no path: the chain really depends on it.
    code, out = openssl_verify(files["root"], files["good"])
    assert code != 0 and "unable to get local issuer certificate" in out, out


@needs_openssl
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda ca: ca.leaf("x", bad_signature=True), "certificate signature failure"),
        (lambda ca: ca.leaf("x", not_after=dt.timedelta(days=-1), not_before=dt.timedelta(days=-2)),
         "certificate has expired"),
        (lambda ca: ca.leaf("x", not_before=dt.timedelta(days=1)), "certificate is not yet valid"),
        (lambda ca: ca.leaf("x", eku=("client",)), "unsuitable certificate purpose"),
        (lambda ca: ca.intermediate("plain", ca=False).leaf("x"), "invalid CA certificate"),
        (lambda ca: ca.leaf("x", issuer_name="stranger"), "unable to get local issuer certificate"),
        (lambda ca: ca.intermediate("a", path_length=0).intermediate("b").leaf("x"), "path length constraint exceeded"),
        (lambda ca: ca.intermediate("no sign", key_cert_sign=False).leaf("x"), "key usage does not include cert"),
    ],
    ids=["bad-signature", "expired", "not-yet-valid", "wrong-eku", "non-ca-issuer", "other-issuer-name",
         "path-length", "no-keycertsign"],
)
def test_openssl_rejects_failure_certificates(tmp_path: Path, make: Callable[[CA], Certified], error: str) -> None:
    root = CA.root()
    made = make(root)
    root.write_cert(tmp_path / "root.pem")
    write_pem(tmp_path / "chain.pem", *[link.cert_pem for link in made.chain[1:-1]])
    made.write_cert(tmp_path / "leaf.pem")
    untrusted = tmp_path / "chain.pem" if len(made.chain) > 2 else None
    code, out = openssl_verify(tmp_path / "root.pem", tmp_path / "leaf.pem", untrusted=untrusted,
                               extra=["-purpose", "sslserver"])
    assert code != 0 and error in out, out


@needs_openssl
@pytest.mark.parametrize(
    ("make_crl", "error"),
    [
        (lambda ca: ca.crl(signer=CA.root("impostor")), "CRL signature failure"),
        (lambda ca: ca.crl(this_update=dt.timedelta(days=-3), next_update=dt.timedelta(days=-1)), "CRL has expired"),
        (lambda ca: ca.crl(this_update=dt.timedelta(days=1)), "CRL is not yet valid"),
        (lambda ca: CA.root("unrelated").crl(), "unable to get certificate CRL"),
    ],
    ids=["wrong-signer", "expired", "not-yet-valid", "other-issuer"],
)
def test_openssl_rejects_bad_crls(tmp_path: Path, make_crl: Callable[[CA], CRL], error: str) -> None:
    root = CA.root()
    root.write_cert(tmp_path / "root.pem")
    root.leaf("x").write_cert(tmp_path / "leaf.pem")
    make_crl(root).write(tmp_path / "crl.pem")
    code, out = openssl_verify(tmp_path / "root.pem", tmp_path / "leaf.pem", crl_files=[tmp_path / "crl.pem"])
    assert code != 0 and error in out, out


@needs_openssl
def test_openssl_rejects_crl_from_issuer_without_crl_sign(tmp_path: Path) -> None:
    root = CA.root(crl_sign=False)
    root.write_cert(tmp_path / "root.pem")
    root.leaf("x").write_cert(tmp_path / "leaf.pem")
    root.crl().write(tmp_path / "crl.pem")
    code, out = openssl_verify(tmp_path / "root.pem", tmp_path / "leaf.pem", crl_files=[tmp_path / "crl.pem"])
    assert code != 0 and "key usage does not include CRL signing" in out, out


# --- the committed fixtures ------------------------------------------------------------------------------------------

GENESYS_COPIES = {
    "ca/certauth.pem": "demo/root-ca.pem",
    "certs/hostcert.pem": "demo/server-chain.pem",
    "certs/privkey.pem": "demo/server-key.pem",
    "certs/servhostcert.pem": "demo/server-chain.pem",
    "certs/servprivkey.pem": "demo/server-key.pem",
    "certs/clthostcert.pem": "demo/client-chain.pem",
    "certs/cltprivkey.pem": "demo/client-key.pem",
    "crl/crllist.pem": "demo/crl.pem",
}


def test_fixtures_layout_and_copies() -> None:
    assert {p.name for p in (FIXTURES / "demo").glob("*.pem")} == DEMO_FILES
    for copy, original in GENESYS_COPIES.items():
        assert (FIXTURES / copy).read_bytes() == (FIXTURES / original).read_bytes(), copy


def test_fixtures_names_keys_and_long_validity() -> None:
    demo = FIXTURES / "demo"
    horizon = now() + dt.timedelta(days=5 * 365 + 2)
    every_cert = [c for name in sorted(DEMO_FILES) if not name.endswith(("-key.pem", "crl.pem"))
                  for c in certs_in(demo / name)]
    for cert in every_cert:
        assert cert.not_valid_after_utc > horizon, cert.subject
        assert cert.not_valid_before_utc < now()
    for crl in crls_in(demo / "crl.pem"):
        assert crl.next_update_utc is not None and crl.next_update_utc > horizon
        assert crl.last_update_utc < now()

    (server,) = certs_in(demo / "server-cert.pem")
    sans = ext(server, x509.SubjectAlternativeName).value
    assert common_names(server) == ["localhost"]
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "server.gtls.test"}  # type: ignore[attr-defined]
    assert common_names(certs_in(demo / "client-cert.pem")[0]) == ["client.gtls.test"]
    for cert_file, key_file in (("server-cert.pem", "server-key.pem"), ("client-cert.pem", "client-key.pem")):
        key = serialization.load_pem_private_key((demo / key_file).read_bytes(), password=None)
        assert key.public_key() == certs_in(demo / cert_file)[0].public_key()


@needs_openssl
@pytest.mark.parametrize(("leaf", "purpose"), [("server-cert.pem", "sslserver"), ("client-cert.pem", "sslclient")])
def test_fixtures_verify_with_openssl(leaf: str, purpose: str) -> None:
    code, out = openssl_verify(FIXTURES / "ca/certauth.pem", FIXTURES / "demo" / leaf,
                               untrusted=FIXTURES / "demo/intermediate-ca.pem",
                               crl_files=[FIXTURES / "crl/crllist.pem"], crl_check_all=True,
                               extra=["-purpose", purpose])
    assert code == 0, out
    # The multi-CA bundle works as a trust file too; the unrelated root alone does not.
    code, out = openssl_verify(FIXTURES / "demo/ca-bundle.pem", FIXTURES / "demo" / leaf,
                               untrusted=FIXTURES / "demo/intermediate-ca.pem")
    assert code == 0, out
    code, out = openssl_verify(FIXTURES / "demo/second-root-ca.pem", FIXTURES / "demo" / leaf,
                               untrusted=FIXTURES / "demo/intermediate-ca.pem")
    assert code != 0, out


async def test_fixtures_work_for_mutual_tls_with_crl_check() -> None:
    """The E2 files in a real handshake: Python's ssl on both sides over 127.0.0.1, client checking the CRL."""
    import ssl

    import trio

    certs = FIXTURES / "certs"
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=FIXTURES / "ca/certauth.pem")
    server_ctx.load_cert_chain(certs / "servhostcert.pem", certs / "servprivkey.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=FIXTURES / "ca/certauth.pem")
    client_ctx.load_verify_locations(FIXTURES / "crl/crllist.pem")
    client_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN
    client_ctx.load_cert_chain(certs / "clthostcert.pem", certs / "cltprivkey.pem")

    seen: dict[str, object] = {}
    with trio.fail_after(10):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        async with listener, trio.open_nursery() as nursery:

            async def serve_one() -> None:
                tcp = await listener.accept()
                server = trio.SSLStream(tcp, server_ctx, server_side=True)
                async with server:
                    await server.do_handshake()
                    seen["client"] = server.getpeercert()
                    await server.send_all(await server.receive_some(100))

            nursery.start_soon(serve_one)
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            client = trio.SSLStream(tcp, client_ctx, server_hostname="server.gtls.test")
            async with client:
                await client.send_all(b"ping")
                assert await client.receive_some(100) == b"ping"
    subject = dict(pair for rdn in seen["client"]["subject"] for pair in rdn)  # type: ignore[index]
    assert subject["commonName"] == "client.gtls.test"
