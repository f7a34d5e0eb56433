"""TLSStream.getpeercert() gives what Python's ssl gives: gtls._ssl_compat.peercert_dict compared with CPython's own
decoder (``ssl._ssl._test_decode_cert``, the code behind ``SSLSocket.getpeercert()``) on the same certificates, and a
real gtls stream compared with a real ``ssl.SSLSocket`` over 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID, NameOID, ObjectIdentifier

from gtls import _binding, _ssl_compat
from gtls.testing import CA, Certified, write_pem
from tests.peers import _der, _der_items, version_4_certificate

PRIVATE_OID = ObjectIdentifier("1.3.6.1.4.1.55555.7.1")  # an enterprise arc OpenSSL has no name for


def ssl_decodes(tmp_path: Path, certified: Certified) -> dict[str, object]:
    path = write_pem(tmp_path / f"cert-{certified.serial:x}.pem", certified)
    decoded: dict[str, object] = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    return decoded


def assert_same_as_ssl(tmp_path: Path, certified: Certified) -> dict[str, object]:
    expected = ssl_decodes(tmp_path, certified)
    assert _ssl_compat.peercert_dict(certified.cert.public_bytes(serialization.Encoding.DER)) == expected
    return expected


def der(tag: int, contents: bytes) -> bytes:
    size = len(contents)
    if size < 0x80:
        return bytes((tag, size)) + contents
    width = (size.bit_length() + 7) // 8
    return bytes((tag, 0x80 | width)) + size.to_bytes(width, "big") + contents


def utf8(text: str) -> bytes:
    return der(0x0C, text.encode())


def ia5(text: str) -> bytes:
    return der(0x16, text.encode())


def attribute(oid: ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value, kind) if kind is not None else x509.NameAttribute(oid, value)


def many_attributes() -> x509.Name:
    """Attributes outside the usual ten, a private OID, a multi-valued RDN given out of DER order, string types that
    convert differently (BMPString, UniversalString, PrintableString) and a BIT STRING x500UniqueIdentifier."""
    return x509.Name([
        x509.RelativeDistinguishedName([attribute(NameOID.COUNTRY_NAME, "NZ")]),
        x509.RelativeDistinguishedName([attribute(NameOID.ORGANIZATION_NAME, "Compat Ltd")]),
        x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "compat"), attribute(NameOID.TITLE, "boss")]),
        x509.RelativeDistinguishedName([attribute(NameOID.GIVEN_NAME, "Zoë", _ASN1Type.BMPString)]),
        x509.RelativeDistinguishedName([attribute(NameOID.SURNAME, "Ångström", _ASN1Type.UniversalString)]),
        x509.RelativeDistinguishedName([attribute(NameOID.BUSINESS_CATEGORY, "Private Organization")]),
        x509.RelativeDistinguishedName([attribute(NameOID.PSEUDONYM, "the compat one")]),
        x509.RelativeDistinguishedName([attribute(NameOID.INITIALS, "C", _ASN1Type.PrintableString)]),
        x509.RelativeDistinguishedName([attribute(NameOID.JURISDICTION_COUNTRY_NAME, "NZ")]),
        x509.RelativeDistinguishedName([attribute(NameOID.ORGANIZATION_IDENTIFIER, "NTRNZ-123")]),
        x509.RelativeDistinguishedName([attribute(NameOID.DOMAIN_COMPONENT, "test")]),
        x509.RelativeDistinguishedName([attribute(NameOID.EMAIL_ADDRESS, "ops@compat.test")]),
        x509.RelativeDistinguishedName([attribute(PRIVATE_OID, "private value")]),
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x03\xab\xcf", _ASN1Type.BitString)]),
    ])


def other_names() -> list[x509.GeneralName]:
    """Every otherName form OpenSSL spells out, each also with the wrong string type, and one it does not know."""
    forms = [
        ("1.3.6.1.5.5.7.8.5", utf8("xmpp@compat.test"), ia5("xmpp@compat.test")),  # XmppAddr
        ("1.3.6.1.5.5.7.8.7", ia5("_imaps.compat.test"), utf8("_imaps.compat.test")),  # SRVName
        ("1.3.6.1.4.1.311.20.2.3", utf8("upn@compat.test"), ia5("upn@compat.test")),  # Microsoft UPN
        ("1.3.6.1.5.5.7.8.9", utf8("smtp@compat.test"), ia5("smtp@compat.test")),  # SmtpUTF8Mailbox
        ("1.3.6.1.5.5.7.8.8", utf8("compat.test"), ia5("compat.test")),  # NAIRealm
    ]
    names: list[x509.GeneralName] = []
    for oid, right, wrong in forms:
        names += [x509.OtherName(ObjectIdentifier(oid), right), x509.OtherName(ObjectIdentifier(oid), wrong)]
    names.append(x509.OtherName(PRIVATE_OID, utf8("unknown form")))
    xmpp = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
    names.append(x509.OtherName(xmpp, utf8("cut\0here")))  # printed up to the NUL
    names.append(x509.OtherName(xmpp, utf8("one line\nthen another")))  # ssl reads back one line
    return names


def every_san() -> list[x509.GeneralName]:
    return [
        x509.DNSName("localhost"),
        x509.DNSName("compat.test"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8:0:0:ab:0:0:ff01")),
        x509.RFC822Name("ops@compat.test"),
        x509.UniformResourceIdentifier("https://compat.test/path?q=1"),
        x509.DirectoryName(many_attributes()),
        x509.RegisteredID(ObjectIdentifier("1.2.3.4.5.6")),  # unknown to OpenSSL: dotted
        x509.RegisteredID(NameOID.COMMON_NAME),  # known: named
        *other_names(),
    ]


def access_and_crl_extensions() -> list[x509.ExtensionType]:
    ocsp, issuers = AuthorityInformationAccessOID.OCSP, AuthorityInformationAccessOID.CA_ISSUERS
    uri = x509.UniformResourceIdentifier
    aia = x509.AuthorityInformationAccess([
        x509.AccessDescription(issuers, uri("http://ca.compat.test/issuer.der")),  # caIssuers first in the extension
        x509.AccessDescription(ocsp, uri("http://ocsp.compat.test")),
        x509.AccessDescription(ocsp, x509.DNSName("not-a-uri.compat.test")),  # not a URI: ssl skips it
        x509.AccessDescription(issuers, uri("http://ca2.compat.test/issuer.p7c")),
        x509.AccessDescription(ObjectIdentifier("1.3.6.1.5.5.7.48.5"), uri("http://repo.compat.test")),  # caRepository
        x509.AccessDescription(ocsp, uri("http://ocsp2.compat.test")),
    ])
    point = x509.DistributionPoint
    crl = x509.CRLDistributionPoints([
        point([uri("http://crl.compat.test/a.crl"), x509.DNSName("skipped.compat.test")], None, None, None),
        point(None, x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "relative")]), None, None),
        point([x509.DirectoryName(x509.Name([attribute(NameOID.COMMON_NAME, "crl dir")]))], None, None, None),
        point(None, None, None, [x509.DirectoryName(x509.Name([attribute(NameOID.COMMON_NAME, "crl issuer")]))]),
        point([uri("ldap://crl.compat.test/cn=b"), uri("http://crl.compat.test/b.crl")],
              None, frozenset({x509.ReasonFlags.key_compromise}), None),
    ])
    return [aia, crl]


@pytest.fixture(scope="module")
def root() -> CA:
    return CA.root("compat root")  # plain: issuer names are test_name_attributes' subject


def test_a_certificate_cryptography_cannot_load_is_decoded_as_ssl_decodes_it(tmp_path: Path, root: CA) -> None:
    """An X.509 version field of 3, which OpenSSL takes and cryptography refuses: getpeercert() read the certificate
    through cryptography and raised; it reads the DER, as ssl does, so the dict and its one-line subject still come."""
    quirky = version_4_certificate(root.leaf("v4.test"), root)
    with pytest.raises(x509.InvalidVersion):
        x509.load_pem_x509_certificate(quirky)
    path = write_pem(tmp_path / "v4.pem", quirky)
    expected = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    decoded = _ssl_compat.peercert_dict(ssl.PEM_cert_to_DER_cert(quirky.decode()))
    assert decoded == expected and decoded["version"] == 4
    assert _ssl_compat.name_text(decoded["subject"]) == "CN=v4.test"
    assert _ssl_compat.name_text(decoded["issuer"]) == "CN=compat root"


@pytest.mark.parametrize("serial", [0xABC, 0x1, 0xF, 0x7F, 0x80, 0x100, 0xFFFF, 0x1_0000, 2**159 - 1, 2**64 + 5])
def test_serial_numbers(tmp_path: Path, root: CA, serial: int) -> None:
    """Whole bytes, upper case: 0xABC is '0ABC'; 0x80 (DER 00 80) is '80'."""
    decoded = assert_same_as_ssl(tmp_path, root.leaf("serial.test", serial=serial))
    assert len(str(decoded["serialNumber"])) % 2 == 0


def test_name_attributes(tmp_path: Path) -> None:
    """Subject and issuer attributes named as OpenSSL names them (title, givenName, surname, businessCategory,
    pseudonym, …), dotted when OpenSSL knows no name, with ssl's RDN grouping and value conversion."""
    issuer = CA.root(many_attributes())
    decoded = assert_same_as_ssl(tmp_path, issuer.leaf(subject=many_attributes()))
    flat = dict(pair for rdn in decoded["subject"] for pair in rdn)  # type: ignore[attr-defined]
    assert flat["title"] == "boss" and flat["givenName"] == "Zoë" and flat["surname"] == "Ångström"
    assert flat["businessCategory"] == "Private Organization" and flat["pseudonym"] == "the compat one"
    assert flat[PRIVATE_OID.dotted_string] == "private value"
    assert flat["x500UniqueIdentifier"] == b"\xab\xc8"  # 3 unused bits: the count is dropped, the bits cleared


def test_subject_alt_names_of_every_type(tmp_path: Path, root: CA) -> None:
    decoded = assert_same_as_ssl(tmp_path, root.leaf("san.test", other_sans=every_san()))
    kinds = {kind for kind, _ in decoded["subjectAltName"]}  # type: ignore[attr-defined]
    assert kinds == {"DNS", "IP Address", "email", "URI", "DirName", "Registered ID", "othername"}


def test_an_other_name_with_a_high_tag_number_keeps_the_rest(tmp_path: Path, root: CA) -> None:
    """Valid DER the first reader refused: an otherName whose value has a high tag number (31 and up) made the
    whole subjectAltName (DNS names included) and authorityInfoAccess disappear; ssl shows them."""
    high_tag = bytes([0x9F, 0x1F, 0x01, 0x00])  # [31] IMPLICIT, one content byte
    odd = x509.OtherName(PRIVATE_OID, high_tag)
    access = x509.AuthorityInformationAccess([
        x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP, odd),
        x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://o.test")),
    ])
    leaf = root.leaf("high", dns=["localhost", "srv.test"], other_sans=[odd], extensions=[access])
    decoded = assert_same_as_ssl(tmp_path, leaf)
    assert decoded["subjectAltName"] == (("DNS", "localhost"), ("DNS", "srv.test"), ("othername", "<unsupported>"))
    assert decoded["OCSP"] == ("http://o.test",)


def test_x400_and_edi_party_names(tmp_path: Path, root: CA) -> None:
    """Forms cryptography refuses to parse (every extension of the certificate becomes unreadable to it) and ssl
    writes as '<unsupported>'."""
    names = x509.SubjectAlternativeName([x509.DNSName("edi.test"), x509.RegisteredID(PRIVATE_OID)]).public_bytes()
    x400 = der(0xA3, der(0x30, b""))  # an empty ORAddress
    edi = der(0xA5, der(0xA1, utf8("party")))  # EDIPartyName with its partyName only
    raw = der(0x30, x400 + names[2:] + edi)
    leaf = root.leaf(extensions=[x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, raw),
                                 *access_and_crl_extensions()])
    with pytest.raises(x509.UnsupportedGeneralNameType):
        leaf.cert.extensions  # noqa: B018
    decoded = assert_same_as_ssl(tmp_path, leaf)
    assert decoded["subjectAltName"][0] == ("X400Name", "<unsupported>")  # type: ignore[index]
    assert decoded["subjectAltName"][-1] == ("EdiPartyName", "<unsupported>")  # type: ignore[index]


def test_ocsp_ca_issuers_and_crl_distribution_points(tmp_path: Path, root: CA) -> None:
    decoded = assert_same_as_ssl(tmp_path, root.leaf("aia.test", extensions=access_and_crl_extensions()))
    assert decoded["OCSP"] == ("http://ocsp.compat.test", "http://ocsp2.compat.test")
    assert decoded["caIssuers"] == ("http://ca.compat.test/issuer.der", "http://ca2.compat.test/issuer.p7c")
    assert decoded["crlDistributionPoints"] == (
        "http://crl.compat.test/a.crl", "ldap://crl.compat.test/cn=b", "http://crl.compat.test/b.crl")


def _uri_free() -> Iterator[tuple[str, list[x509.ExtensionType]]]:
    yield "no extensions of these kinds", []
    yield "an empty subjectAltName", [x509.SubjectAlternativeName([])]
    yield "OCSP only", [x509.AuthorityInformationAccess([
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://o.test"))])]
    yield "access and CRL points without URIs", [
        x509.AuthorityInformationAccess([x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                                                x509.DNSName("ca.test"))]),
        x509.CRLDistributionPoints([x509.DistributionPoint(
            None, x509.RelativeDistinguishedName([attribute(NameOID.COMMON_NAME, "r")]), None, None)]),
    ]


@pytest.mark.parametrize(("case", "extensions"), list(_uri_free()), ids=[case for case, _ in _uri_free()])
def test_keys_only_where_ssl_has_them(tmp_path: Path, root: CA, case: str,
                                      extensions: Sequence[x509.ExtensionType]) -> None:
    """subjectAltName whenever the extension is there (even empty); OCSP, caIssuers, crlDistributionPoints only
    when they would hold a URI."""
    assert_same_as_ssl(tmp_path, root.leaf(eku=None, extensions=extensions))


def test_fallback_names_are_openssls() -> None:
    """The table used when the binding lacks OBJ_txt2nid/OBJ_nid2ln names each OID as OpenSSL does."""
    assert _binding.OBJECT_NAMES
    for oid, name in _ssl_compat.FALLBACK_NAMES.items():
        assert _binding.object_name(oid) == name, oid
    assert _binding.object_name(PRIVATE_OID.dotted_string) is None


def test_without_the_binding_names_come_from_the_table(tmp_path: Path, root: CA,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    subject = x509.Name([attribute(oid, value) for oid, value in [
        (NameOID.COMMON_NAME, "fallback"), (NameOID.TITLE, "t"), (NameOID.GIVEN_NAME, "g"),
        (NameOID.BUSINESS_CATEGORY, "b"), (NameOID.PSEUDONYM, "p"), (NameOID.USER_ID, "u"), (PRIVATE_OID, "x")]])
    leaf = root.leaf(subject=subject, other_sans=[x509.DirectoryName(subject)])
    monkeypatch.setattr(_binding, "OBJECT_NAMES", False)
    _ssl_compat.object_name.cache_clear()
    try:
        assert_same_as_ssl(tmp_path, leaf)
    finally:
        _ssl_compat.object_name.cache_clear()


def with_validity(cert: Certified, before: tuple[int, bytes], after: tuple[int, bytes]) -> bytes:
    """``cert``'s DER with its validity times replaced by these (tag, contents), signature left as it was (never
    verified here): forms OpenSSL's parser takes and ``cryptography`` may not."""
    [(_, body)] = _der_items(cert.cert.public_bytes(serialization.Encoding.DER))
    (tbs_tag, tbs), (alg_tag, alg), (sig_tag, sig) = _der_items(body)
    fields = _der_items(tbs)
    at = 4 if fields[0][0] == 0xA0 else 3
    fields[at] = (0x30, _der(*before) + _der(*after))
    new_tbs = _der(tbs_tag, b"".join(_der(tag, value) for tag, value in fields))
    return _der(0x30, new_tbs + _der(alg_tag, alg) + _der(sig_tag, sig))


@pytest.mark.parametrize(("before", "after"), [
    ((0x17, b"500101000000Z"), (0x17, b"491231235959Z")),  # UTCTime's century turns at 50
    ((0x18, b"19500101000000Z"), (0x18, b"20500101000000Z")),  # GeneralizedTime, also before 2050
    ((0x18, b"00010101000000Z"), (0x18, b"99991231235959Z")),
    ((0x17, b"261227235922Z"), (0x17, b"261228005545+0100")),  # an offset: OpenSSL reads it, cryptography not
    ((0x17, b"3601011234Z"), (0x17, b"3601011234-0130")),  # no seconds
    ((0x17, b"261327000000Z"), (0x17, b"2612\x00\x00000000Z")),  # no such month; not digits
    ((0x18, b"99991231235959-1200"), (0x18, b"00010101000000+0100")),  # the offset leaves the calendar (review2)
    ((0x17, b"261227235959+1300"), (0x17, b"261227235959+0160")),  # offsets OpenSSL refuses (past 12:59)
    ((0x18, b"20261227235959.25Z"), (0x18, b"20261227235959.125-0130")),  # fractions kept (audit48)
    ((0x18, b"00000229000000Z"), (0x18, b"00001231235959+0000")),  # year 0, a leap year; +0000 does not adjust
    ((0x18, b"19000101005959+0100"), (0x18, b"18991231233000-0100")),  # adjusted before 1900: refused, not after
])
def test_certificate_times_read_as_ssl_reads_them(
        tmp_path: Path, root: CA, before: tuple[int, bytes], after: tuple[int, bytes]) -> None:
    """getpeercert() reads the dates from the DER since it also serves certificates cryptography cannot load; its
    first reader took RFC 5280's strict forms only, so a chain certificate with an offset time (which OpenSSL
    accepts off the verified path) stopped `gtls connect` with a traceback."""
    der = with_validity(root.leaf("times.test"), before, after)
    path = write_pem(tmp_path / "times.pem", ssl.DER_cert_to_PEM_cert(der).encode())
    expected = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    decoded = _ssl_compat.peercert_dict(der)
    assert (decoded["notBefore"], decoded["notAfter"]) == (expected["notBefore"], expected["notAfter"])


@pytest.mark.parametrize(("value", "text"), [
    (" ", "\\ "),  # one space: escaped once, as leading (it read "\\\\ ", an escaped backslash) (review2)
    ("  ", "\\ \\ "), ("#x", "\\#x"), ("a ", "a\\ "), ("a,b+c", "a\\,b\\+c"), ('"<>;\\', '\\"\\<\\>\\;\\\\'),
    ("a\0b", "a\\00b"),  # RFC 4514 §2.4: NUL as \00
    ("a\nb\x1b\u2028", "a\\0Ab\\1B\\E2\\80\\A8"),  # other controls as hex pairs too (audit a81: log lines)
    ("a=b", "a\\=b"),  # gtls escapes "=" here, for a reader splitting at the first "=" (audit 61)
])
def test_fallback_names_escape_as_rfc_4514_says(value: str, text: str) -> None:
    assert _ssl_compat.name_text(((("commonName", value),),)) == f"CN={text}"


def test_fallback_names_use_rfc_4514s_short_names() -> None:
    """gtls connect's chain lines: RFC 4514's keys for the attributes it names, OpenSSL's long name for others."""
    name = ((("userId", "u1"),), (("domainComponent", "test"),), (("streetAddress", "Main 1"),),
            (("emailAddress", "a@b.test"),))
    assert _ssl_compat.name_text(name) == "emailAddress=a@b.test,STREET=Main 1,DC=test,UID=u1"  # most specific first



def with_tbs_fields(cert: Certified, change: dict[int, bytes]) -> bytes:
    """``cert``'s DER with fields of its signed part (0 version, 1 serial, 3 issuer, 4 validity, 5 subject) replaced
    by these encodings, signature left as it was (never verified here)."""
    [(_, body)] = _der_items(cert.cert.public_bytes(serialization.Encoding.DER))
    (tbs_tag, tbs), (alg_tag, alg), (sig_tag, sig) = _der_items(body)
    fields = [_der(tag, value) for tag, value in _der_items(tbs)]
    for index, encoded in change.items():
        fields[index] = encoded
    return _der(0x30, _der(tbs_tag, b"".join(fields)) + _der(alg_tag, alg) + _der(sig_tag, sig))


def assert_der_same_as_ssl(tmp_path: Path, certificate: bytes) -> dict[str, object]:
    path = write_pem(tmp_path / "case.pem", ssl.DER_cert_to_PEM_cert(certificate).encode())
    expected: dict[str, object] = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    assert _ssl_compat.peercert_dict(certificate) == expected
    return expected


COMMON_NAME = der(0x06, bytes.fromhex("550403"))


def one_attribute(value: bytes, oid: bytes = COMMON_NAME) -> bytes:
    """A Name of one attribute whose value is the encoding ``value``."""
    return der(0x30, der(0x31, der(0x30, oid + value)))


@pytest.mark.parametrize("subject", [
    bytes.fromhex("3080") + der(0x31, der(0x30, COMMON_NAME + utf8("ber"))) + b"\0\0",  # indefinite length
    bytes.fromhex("3088000000000000000e") + der(0x31, der(0x30, COMMON_NAME + utf8("ber"))),  # 8 length bytes
], ids=["indefinite", "eight-length-bytes"])
def test_ber_lengths_that_openssl_takes(tmp_path: Path, root: CA, subject: bytes) -> None:
    """audit48: an indefinite length (30 80 … 00 00) or a long form of more than four bytes: OpenSSL parses and
    verifies such a certificate (it keeps the signed bytes as sent) and getpeercert() raised ValueError('bad DER
    length') (/tmp/audit48/e2e_indef.py: a verified handshake, then the raise)."""
    decoded = assert_der_same_as_ssl(tmp_path, with_tbs_fields(root.leaf("ber.test"), {5: subject}))
    assert decoded["subject"] == ((("commonName", "ber"),),)


@pytest.mark.parametrize(("field", "encoded"), [
    (5, one_attribute(bytes.fromhex("2c80") + utf8("con") + ia5("structed") + b"\0\0")),  # pieces' tags unchecked
    (5, one_attribute(der(0x3E, der(0x1E, "Zoë".encode("utf-16-be"))))),  # a constructed BMPString
    (5, one_attribute(der(0x03, b"\x03"), der(0x06, bytes.fromhex("55042d")))),  # a BIT STRING of no bits: None
    (1, der(0x02, bytes([0x4F] + [0xA5] * 40))),  # a serial past 35 bytes: ssl reads the first line
    (1, der(0x02, bytes([0xB0] + [0x5A] * 35))),  # negative, 36 bytes
    (0, der(0xA0, der(0x02, bytes.fromhex("7fffffffffffffff")))),  # ssl adds 1 to a C long: it wraps
    (0, der(0xA0, der(0x02, bytes.fromhex("0100000000000000000000")))),  # past a long: X509_get_version is -1
], ids=["constructed-utf8", "constructed-bmp", "bit-string-no-bits", "long-serial", "long-negative-serial",
        "version-long-max", "version-past-long"])
def test_name_serial_and_version_forms(tmp_path: Path, root: CA, field: int, encoded: bytes) -> None:
    """audit48: a constructed (BER) string read as its pieces joined (it read the pieces' headers as characters); a
    serial longer than 35 bytes printed whole (ssl: i2a_ASN1_INTEGER's first line, ending in a backslash and a
    newline); a version a C long cannot hold given as itself (ssl: 0); a BIT STRING without bits as b'' (ssl: None)."""
    assert_der_same_as_ssl(tmp_path, with_tbs_fields(root.leaf("forms.test"), {field: encoded}))


def test_a_bit_string_in_a_fallback_name_is_marked_as_hex() -> None:
    """A BIT STRING value is not text: "#" then hex, as RFC 4514 writes it (it printed bare, "0102" like a string)."""
    name = ((("x500UniqueIdentifier", None), ("commonName", "a")),)
    assert _ssl_compat.name_text(name) == "x500UniqueIdentifier=#+CN=a"
    assert _ssl_compat.name_text(((("x500UniqueIdentifier", b"\x01\x02"),),)) == "x500UniqueIdentifier=#0102"


def _san(*names: bytes, after: bytes = b"") -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, der(0x30, b"".join(names)) + after)


DNS = der(0x82, b"kept.test")


@pytest.mark.parametrize("extension", [
    _san(DNS, der(0xA6, ia5("http://con") + ia5("structed.test"))),  # a constructed URI: ssl shows it
    _san(DNS, der(0xA0, der(0x06, bytes.fromhex("2b06010505070805")) + der(0xA0, der(0x2C, utf8("x@y.test"))))),
    _san(DNS, after=b"\x05\x00"),  # X509V3_EXT_d2i reads the first element only
    _san(DNS, after=b"\x00"),  # even when what follows is not DER
    _san(DNS, der(0xA5, b"")),  # EDIPartyName without its partyName: OpenSSL cannot parse the extension
    _san(DNS, der(0xA5, der(0xA1, der(0x16, b"party")))),  # partyName not a DirectoryString
    _san(DNS, der(0xA4, one_attribute(der(0x0C, b"\xff")))),  # DirName: a UTF8String that is not UTF-8
    _san(DNS, der(0xA4, one_attribute(der(0x02, b"\x01")))),  # DirName: an INTEGER value
    _san(DNS, der(0xA4, one_attribute(utf8("x"), der(0x06, b"\x55\x80\x03")))),  # an OID arc padded with 0x80
    _san(DNS, der(0xA4, one_attribute(der(0x1E, "𝄞".encode("utf-16-be"))))),  # BMPString: no surrogate pairs
    _san(DNS, der(0xA0, der(0x06, bytes.fromhex("2b06010505070805")) + der(0xA0, der(0x02, b"\x00\x01")))),
    x509.UnrecognizedExtension(ExtensionOID.CRL_DISTRIBUTION_POINTS, der(0x30, der(0x30, der(
        0xA0, der(0xA0, der(0x86, b"http://crl.test/"))) + der(0x81, b"\x09\x00")))),  # reasons: 9 unused bits
    x509.UnrecognizedExtension(ExtensionOID.CRL_DISTRIBUTION_POINTS, der(0x30, der(0x30, der(
        0xA0, der(0xA0, der(0x86, b"http://crl.test/"))) + der(0xA3, b"")))),  # no field [3]
    # audit 54, found by differential fuzzing. Where ssl prints only URIs (distribution points, access locations),
    # a DirName needs only to parse: OpenSSL takes a value of a type it cannot convert (EXTERNAL) and, in a name
    # relative to the CRL issuer, which it does not convert, bytes that are not UTF-8; a DirName's UTF8String is
    # converted while it is parsed, so one that is not UTF-8 still leaves out the extension.
    x509.UnrecognizedExtension(ExtensionOID.CRL_DISTRIBUTION_POINTS, der(0x30, der(0x30, der(0xA0, der(
        0xA0, der(0x86, b"http://crl.test/") + der(0xA4, one_attribute(der(0x08, b"x")))))))),
    x509.UnrecognizedExtension(ExtensionOID.CRL_DISTRIBUTION_POINTS, der(0x30, der(0x30, der(0xA0, der(
        0xA0, der(0x86, b"http://crl.test/") + der(0xA4, one_attribute(der(0x0C, b"\xff")))))))),
    x509.UnrecognizedExtension(ExtensionOID.CRL_DISTRIBUTION_POINTS, der(0x30, der(0x30, der(0xA0, der(
        0xA1, der(0x30, COMMON_NAME + der(0x0C, b"\xff"))))) + der(0x30, der(0xA0, der(0xA0, der(
            0x86, b"http://crl.test/")))))),
    x509.UnrecognizedExtension(ExtensionOID.AUTHORITY_INFORMATION_ACCESS, der(0x30, der(0x30, der(
        0x06, bytes.fromhex("2b06010505073002")) + der(0xA4, one_attribute(der(0x08, b"x")))) + der(0x30, der(
            0x06, bytes.fromhex("2b06010505073001")) + der(0x86, b"http://ocsp.test/")))),
    _san(DNS, der(0xA0, der(0x06, bytes.fromhex("2b06010505070805")) + der(0xA0, der(0x10, utf8("x"))))),
], ids=["constructed-uri", "constructed-othername", "data-after", "junk-after", "edi-empty", "edi-ia5",
        "dirname-not-utf8", "dirname-integer", "dirname-oid-padding", "dirname-bmp-pair", "othername-integer-padding",
        "crl-reasons", "crl-field-3", "crl-dirname-external", "crl-dirname-not-utf8", "crl-relative-not-utf8",
        "access-dirname-external", "othername-primitive-sequence"])
def test_extensions_as_openssl_parses_them(tmp_path: Path, root: CA, extension: x509.ExtensionType) -> None:
    """audit48: forms ssl shows that getpeercert() left out (BER constructed strings, data after the value) and
    flaws for which OpenSSL leaves out the whole extension and getpeercert() showed it (EDIPartyName, DirName
    strings and OIDs, otherName values, distribution point fields: OpenSSL's parser checks them)."""
    assert_der_same_as_ssl(tmp_path, root.leaf("ext.test", extensions=[extension]).cert_der)


def _tag_offsets(data: bytes, start: int = 0, depth: int = 0) -> Iterator[int]:
    """The offset of every tag byte in ``data``, and in every element's contents that is itself DER (an extension's
    OCTET STRING included)."""
    at = 0
    while at < len(data):
        size, contents_at = data[at + 1], at + 2
        if size & 0x80:
            count = size & 0x7F
            if not 0 < count <= 4:
                raise ValueError("not DER")
            size, contents_at = int.from_bytes(data[at + 2:at + 2 + count], "big"), at + 2 + count
        if contents_at + size > len(data):
            raise ValueError("not DER")
        yield start + at
        contents = data[contents_at:contents_at + size]
        if contents and depth < 12:
            with contextlib.suppress(ValueError, IndexError):
                yield from list(_tag_offsets(contents, start + contents_at, depth + 1))
        at = contents_at + size


def _compat_certificates(root: CA) -> Iterator[Certified]:
    yield root.leaf("every.test", other_sans=every_san(), extensions=access_and_crl_extensions())
    names = x509.SubjectAlternativeName([x509.DNSName("edi.test")]).public_bytes()
    raw = der(0x30, der(0xA3, der(0x30, b"")) + names[2:] + der(0xA5, der(0xA0, utf8("a")) + der(0xA1, utf8("p"))))
    yield root.leaf(extensions=[x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, raw)])


def test_every_tag_in_the_other_form_reads_as_ssl_reads_it(tmp_path: Path, root: CA) -> None:
    """Each tag of a certificate, one at a time, turned constructed or primitive: wherever ``ssl`` still decodes the
    certificate, gtls gives the same dict. OpenSSL does not check that a SEQUENCE OF or SET OF is marked
    constructed (GeneralNames, a DirName's Name and RDNs, CRL distribution points' fullName and cRLIssuer), and gtls
    left out the whole extension for such a form (found by differential fuzzing, audit 54)."""
    checked = 0
    for certified in _compat_certificates(root):
        original = certified.cert.public_bytes(serialization.Encoding.DER)
        for offset in _tag_offsets(original):
            mutated = bytearray(original)
            mutated[offset] ^= 0x20
            path = tmp_path / "mutated.pem"
            path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(mutated))
                             + b"-----END CERTIFICATE-----\n")
            try:
                expected = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
            except ssl.SSLError:
                continue  # OpenSSL refuses the certificate: no peer could present it
            assert _ssl_compat.peercert_dict(bytes(mutated)) == expected, (offset, hex(original[offset]))
            checked += 1
    assert checked > 50, checked


def _attribute(oid: ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.NameAttribute:
    return x509.NameAttribute(oid, value) if kind is None else x509.NameAttribute(oid, value, kind)


@pytest.mark.parametrize("attributes", [
    [[_attribute(NameOID.COUNTRY_NAME, "DE")], [_attribute(NameOID.EMAIL_ADDRESS, "a@b.test")],
     [_attribute(NameOID.COMMON_NAME, "client")]],
    [[_attribute(NameOID.BUSINESS_CATEGORY, "x=y")], [_attribute(NameOID.SERIAL_NUMBER, "42")],
     [_attribute(ObjectIdentifier("1.3.6.1.4.1.55555.9"), "private")], [_attribute(NameOID.USER_ID, "u1")],
     [_attribute(NameOID.DOMAIN_COMPONENT, "test"), _attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops")]],
    [[_attribute(NameOID.COMMON_NAME, " lead, \"quoted\" + <more>; back\\slash ")],
     [_attribute(NameOID.COMMON_NAME, "#hash\0nul")], [_attribute(NameOID.STREET_ADDRESS, "Straße 1")],
     [_attribute(NameOID.ORGANIZATION_NAME, "Zoë", _ASN1Type.BMPString)],
     [_attribute(NameOID.LOCALITY_NAME, "L"), _attribute(NameOID.STATE_OR_PROVINCE_NAME, "ST")]],
    [[_attribute(NameOID.COMMON_NAME, "Zoë", _ASN1Type.T61String)],
     [_attribute(NameOID.ORGANIZATION_NAME, "emoji 😀", _ASN1Type.BMPString)],
     [_attribute(NameOID.LOCALITY_NAME, "Zoë 😀", _ASN1Type.UniversalString)],
     [x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\x02", _ASN1Type.BitString)]],
    # ASCII in wide string types, which also decode as UTF-8 (NULs between the letters) (audit 61)
    [[_attribute(NameOID.COMMON_NAME, "Ops", _ASN1Type.UniversalString)],
     [_attribute(NameOID.ORGANIZATION_NAME, "Ops", _ASN1Type.BMPString)]],
], ids=["email", "dotted-oids", "escapes", "string-types", "ascii-wide"])
def test_a_subject_read_from_the_der_is_written_as_cryptography_writes_it(
        attributes: list[list[x509.NameAttribute]]) -> None:
    """The subject of a refused or accepted certificate cryptography cannot load is read from the DER by gtls; it
    wrote OpenSSL's long names ("emailAddress=", "serialNumber=") and its own escaping where cryptography writes
    dotted OIDs and escapes "=" not, so one subject read two ways for loadable and unloadable certificates (an
    allow-list of subjects missed it). Differential: cryptography's text of the same DER."""
    name = x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in attributes])
    leaf = CA.root("rfc4514 root").leaf(subject=name, dns=("rfc4514.test",))
    assert _ssl_compat.subject_rfc4514(leaf.cert_der) == leaf.cert.subject.rfc4514_string()


def test_the_subject_of_an_unloadable_certificate_is_written_as_cryptography_writes_it(root: CA) -> None:
    """The same through the failure path's reader, on a certificate cryptography refuses (version field 3)."""
    from gtls._offline import der_subject

    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@v4.test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "v4 client")])
    leaf = root.leaf(subject=name, dns=("v4.test",))
    unloadable = ssl.PEM_cert_to_DER_cert(version_4_certificate(leaf, root).decode())
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_certificate(unloadable)
    expected = "CN=v4 client,1.2.840.113549.1.9.1=ops@v4.test"
    assert der_subject(unloadable) == expected == leaf.cert.subject.rfc4514_string()
    nameless = ssl.PEM_cert_to_DER_cert(version_4_certificate(root.leaf(dns=("v4.test",)), root).decode())
    assert der_subject(nameless) == "(empty subject)"
    spaced = ssl.PEM_cert_to_DER_cert(version_4_certificate(root.leaf(" ", dns=("v4.test",)), root).decode())
    assert der_subject(spaced) == "CN=\\ "  # as cryptography 50 writes it (earlier releases: "CN=\\\\ ")


def test_control_characters_of_a_subject_are_escaped_by_both_readers(root: CA) -> None:
    """A peer's certificate names are its own bytes, and gtls logs them when it refuses the peer: a newline forged a
    log line, an escape sequence repainted the terminal (audit a81). Both readers write control characters as RFC
    4514 hex pairs of their UTF-8 bytes, the same way, so a subject stays one line and reads the same whether or not
    cryptography can load the certificate."""
    from gtls._offline import der_subject
    from gtls.pki.certs import subject_text

    leaf = root.leaf("a\nb\x1b[0m\x7f\x85\u2028\u202ez", dns=("ctl.test",))
    expected = "CN=a\\0Ab\\1B[0m\\7F\\C2\\85\\E2\\80\\A8\\E2\\80\\AEz"
    assert subject_text(leaf.cert) == _ssl_compat.subject_rfc4514(leaf.cert_der) == expected
    unloadable = ssl.PEM_cert_to_DER_cert(version_4_certificate(leaf, root).decode())
    assert der_subject(unloadable) == expected


def test_a_subject_cryptography_cannot_read_is_written_as_openssl_reads_it() -> None:
    """A T61String in Latin-1 (as older CAs wrote it): cryptography loads the certificate but cannot read its
    subject (not UTF-8); the DER reader gives OpenSSL's reading (one byte a character) instead of failing with the
    certificate's refusal or log line (audit 61)."""
    from gtls._offline import der_subject

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Zoxx!", _ASN1Type.T61String)])
    der = CA.root("t61 root").leaf(subject=name, dns=("t61.test",)).cert_der
    latin1 = der.replace(b"Zoxx!", b"Zo\xeb!!")
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(latin1).subject  # noqa: B018 - the subject is parsed when read
    assert der_subject(latin1) == _ssl_compat.subject_rfc4514(latin1) == "CN=Zo\u00eb!!"
