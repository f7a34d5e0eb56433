"""A peer certificate in the shape ``ssl.SSLSocket.getpeercert()`` returns, for code written against trio's
``SSLStream`` (Python's ``ssl``): ``TLSStream.getpeercert()``. gtls's own API is ``peer_certificate`` (a
``cryptography`` certificate); this is the porting aid.

It mirrors CPython's ``_decode_certificate`` (Modules/_ssl.c), which renders OpenSSL's own parse of the DER: names in
their encoded order and string conversions, OpenSSL's names for OIDs, GeneralNames as OpenSSL prints them. So this
reads the DER too, not ``cryptography``'s objects, which refuse what OpenSSL takes (an x400Address or EDIPartyName in
subjectAltName makes every extension of the certificate unreadable to ``cryptography``)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

from . import _binding
from ._der import elements, oid_text, only

#: A name as ``ssl`` gives it: RDNs of (attribute, value); the value is bytes for a BIT STRING.
Name = tuple[tuple[tuple[str, str | bytes], ...], ...]

# Universal tags of the value types told apart here.
_BIT_STRING, _UTF8_STRING, _IA5_STRING, _UNIVERSAL_STRING, _BMP_STRING = 0x03, 0x0C, 0x16, 0x1C, 0x1E

_SUBJECT_ALT_NAME = "2.5.29.17"
_CRL_DISTRIBUTION_POINTS = "2.5.29.31"
_AUTHORITY_INFO_ACCESS = "1.3.6.1.5.5.7.1.1"
_AIA_KEYS = {"1.3.6.1.5.5.7.48.1": "OCSP", "1.3.6.1.5.5.7.48.2": "caIssuers"}

#: The otherName forms OpenSSL 3's GENERAL_NAME_print spells out, with the one value type it accepts for each;
#: any other otherName prints as "othername:<unsupported>".
_OTHER_NAMES = {
    "1.3.6.1.5.5.7.8.9": ("SmtpUTF8Mailbox", _UTF8_STRING),
    "1.3.6.1.5.5.7.8.5": ("XmppAddr", _UTF8_STRING),
    "1.3.6.1.5.5.7.8.7": ("SRVName", _IA5_STRING),
    "1.3.6.1.4.1.311.20.2.3": ("UPN", _UTF8_STRING),
    "1.3.6.1.5.5.7.8.8": ("NAIRealm", _UTF8_STRING),
}

# Without the binding's OBJ_* functions: OpenSSL's long names of the name attributes it knows (2.5.4.3 to 54 run
# unbroken). tests/test_ssl_compat.py checks every entry against OpenSSL.
_X520_FROM_3 = (
    "commonName", "surname", "serialNumber", "countryName", "localityName", "stateOrProvinceName", "streetAddress",
    "organizationName", "organizationalUnitName", "title", "description", "searchGuide", "businessCategory",
    "postalAddress", "postalCode", "postOfficeBox", "physicalDeliveryOfficeName", "telephoneNumber", "telexNumber",
    "teletexTerminalIdentifier", "facsimileTelephoneNumber", "x121Address", "internationaliSDNNumber",
    "registeredAddress", "destinationIndicator", "preferredDeliveryMethod", "presentationAddress",
    "supportedApplicationContext", "member", "owner", "roleOccupant", "seeAlso", "userPassword", "userCertificate",
    "cACertificate", "authorityRevocationList", "certificateRevocationList", "crossCertificatePair", "name",
    "givenName", "initials", "generationQualifier", "x500UniqueIdentifier", "dnQualifier", "enhancedSearchGuide",
    "protocolInformation", "distinguishedName", "uniqueMember", "houseIdentifier", "supportedAlgorithms",
    "deltaRevocationList", "dmdName",
)
FALLBACK_NAMES: dict[str, str] = {
    **{f"2.5.4.{arc}": name for arc, name in enumerate(_X520_FROM_3, start=3)},
    "2.5.4.65": "pseudonym",
    "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "0.9.2342.19200300.100.1.1": "userId",
    "0.9.2342.19200300.100.1.25": "domainComponent",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionLocalityName",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionStateOrProvinceName",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
}


@functools.lru_cache(maxsize=512)
def object_name(dotted: str) -> str:
    """The OID as ``OBJ_obj2txt(..., no_name=0)`` writes it: OpenSSL's name for it, else the dotted form."""
    name = _binding.object_name(dotted) if _binding.OBJECT_NAMES else FALLBACK_NAMES.get(dotted)
    return name if name is not None else dotted


def _utf8(data: bytes) -> str:
    # ssl raises on bytes that are not UTF-8; a porting aid should not, so they read as U+FFFD
    return data.decode("utf-8", "replace")


def _value(tag: int, contents: bytes) -> str | bytes:
    """A name attribute's value as ``ASN1_STRING_to_UTF8`` converts it; a BIT STRING stays bytes, as in ``ssl``."""
    if tag == _BIT_STRING:
        data = bytearray(contents[1:])  # OpenSSL drops the leading count of unused bits and clears those bits
        if data:
            data[-1] &= 0xFF << (contents[0] & 7) & 0xFF
        return bytes(data)
    if tag == _UTF8_STRING:
        return _utf8(contents)
    if tag == _BMP_STRING:
        return contents.decode("utf-16-be", "replace")
    if tag == _UNIVERSAL_STRING:
        return contents.decode("utf-32-be", "replace")
    return contents.decode("latin-1")  # PrintableString, IA5String, T61String…: one byte a character


def _name(rdns: bytes) -> Name:
    """A Name (the contents of its SEQUENCE) as ``ssl`` gives it: attributes in their encoded order, one tuple per
    RDN."""
    name = []
    for _, rdn in elements(rdns):
        attributes = []
        for _, pair in elements(rdn):
            (_, oid), (tag, value), *_ = elements(pair)
            attributes.append((object_name(oid_text(oid)), _value(tag, value)))
        if attributes:
            name.append(tuple(attributes))
    return tuple(name)


def _printed(text: str) -> str:
    # GENERAL_NAME_print writes the value with "%.*s" (ends at a NUL) and ssl reads one line back (BIO_gets)
    text = text.split("\0", 1)[0]
    line, newline, _ = text.partition("\n")
    return line + newline


def _general_name(tag: int, contents: bytes) -> tuple[str, Any]:
    """One GeneralName as ``ssl``'s ``_get_peer_alt_names`` renders it; ValueError for a form OpenSSL refuses."""
    if tag == 0x81:
        return ("email", _utf8(contents))
    if tag == 0x82:
        return ("DNS", _utf8(contents))
    if tag == 0x86:
        return ("URI", _utf8(contents))
    if tag == 0xA4:
        return ("DirName", _name(only(contents)[1]))
    if tag == 0x87:
        if len(contents) == 4:
            return ("IP Address", ".".join(str(byte) for byte in contents))
        if len(contents) == 16:  # ssl's own spelling: eight unpadded upper-case groups, nothing compressed
            return ("IP Address", ":".join(f"{int.from_bytes(contents[i:i + 2], 'big'):X}" for i in range(0, 16, 2)))
        return ("IP Address", "<invalid>")
    if tag == 0x88:
        return ("Registered ID", object_name(oid_text(contents)))
    if tag == 0xA0:
        (_, type_id), (value_tag, value), *_ = elements(contents)
        if value_tag != 0xA0:
            raise ValueError("otherName without its [0] value")
        inner_tag, inner = only(value)
        form = _OTHER_NAMES.get(oid_text(type_id))
        if form is None or inner_tag != form[1]:
            return ("othername", "<unsupported>")
        return ("othername", f"{form[0]}:{_printed(_utf8(inner))}")
    if tag == 0xA3:
        return ("X400Name", "<unsupported>")
    if tag == 0xA5:
        return ("EdiPartyName", "<unsupported>")
    raise ValueError(f"no GeneralName has tag {tag:#x}")


def _general_names(der: bytes) -> list[tuple[str, Any]]:
    return [_general_name(tag, contents) for tag, contents in elements(der)]


def _uris(names: list[tuple[str, Any]]) -> list[str]:
    return [value for kind, value in names if kind == "URI"]


def _extensions(extensions: bytes) -> dict[str, bytes | None]:
    """Each extension's value by OID; None for one that appears twice, which OpenSSL's X509_get_ext_d2i gives none
    of."""
    found: dict[str, bytes | None] = {}
    for _, extension in elements(only(extensions)[1]):
        parts = elements(extension)
        oid = oid_text(parts[0][1])
        found[oid] = None if oid in found else parts[-1][1]
    return found


def _alt_names(der: bytes) -> dict[str, Any]:
    # the key is there whenever the extension is, even with no names in it
    return {"subjectAltName": tuple(_general_names(only(der)[1]))}


def _access(der: bytes) -> dict[str, Any]:
    """OCSP and caIssuers: the URIs of each access method, a key only when it has some."""
    found: dict[str, list[str]] = {}
    for _, description in elements(only(der)[1]):
        (_, method), location = elements(description)
        uris = _uris([_general_name(*location)])
        key = _AIA_KEYS.get(oid_text(method))
        if key is not None and uris:
            found.setdefault(key, []).extend(uris)
    return {key: tuple(found[key]) for key in _AIA_KEYS.values() if key in found}  # ssl's order: OCSP first


def _crl_points(der: bytes) -> dict[str, Any]:
    """The URIs among the full names of the distribution points, a key only when there are some (ssl skips names
    relative to the CRL issuer)."""
    uris: list[str] = []
    for _, point in elements(only(der)[1]):
        for tag, contents in elements(point):
            if tag == 0xA0:  # distributionPoint
                name_tag, names = only(contents)
                if name_tag == 0xA0:  # fullName
                    uris += _uris(_general_names(names))
    return {"crlDistributionPoints": tuple(uris)} if uris else {}


def _serial(number: int) -> str:
    # i2a_ASN1_INTEGER: whole bytes of the magnitude in upper-case hex, "-" before a negative one
    digits = f"{abs(number):X}"
    return ("-" if number < 0 else "") + digits.zfill(len(digits) + len(digits) % 2)


def _time(when: dt.datetime) -> str:
    # as ASN1_TIME_print writes it: "Nov  7 00:11:27 2026 GMT"
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S} {when.year} GMT"


# RFC 5280's forms and what OpenSSL's parser also takes: seconds left out, an offset instead of Z.
_TIME_REST = rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:Z|([+-])(0\d|1[0-2])([0-5]\d))"  # offsets to 12:59
_DER_TIMES = {0x17: re.compile(rb"(\d{2})" + _TIME_REST), 0x18: re.compile(rb"(\d{4})" + _TIME_REST)}


def _der_time(tag: int, contents: bytes) -> str:
    """A certificate's time as ``ssl`` prints it (OpenSSL's ``ASN1_TIME_print``, in GMT; UTCTime years 50-99 are
    19xx). What OpenSSL cannot read either reads "Bad time value", as ``ssl`` says."""
    form = _DER_TIMES.get(tag)
    found = form.fullmatch(contents) if form is not None else None
    if found is None:
        return "Bad time value"
    year, month, day, hour, minute = (int(part) for part in found.group(1, 2, 3, 4, 5))
    second = int(found.group(6) or 0)
    if tag == 0x17:
        year += 1900 if year >= 50 else 2000
    try:
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:  # month 13, February 30, …
        return "Bad time value"
    if found.group(7):
        offset = dt.timedelta(hours=int(found.group(8)), minutes=int(found.group(9)))
        try:
            when -= offset if found.group(7) == b"+" else -offset
        except OverflowError:  # carried past year 9999 or before year 1
            return "Bad time value"
    return _time(when)


def peercert_dict(der: bytes) -> dict[str, Any]:
    """What ``ssl`` gives for the certificate ``der`` (its ``_decode_certificate``): ``subject``, ``issuer``,
    ``version``, ``serialNumber``, ``notBefore``, ``notAfter``; ``subjectAltName`` when the certificate has the
    extension (even empty); ``OCSP`` and ``caIssuers`` (URIs from authorityInfoAccess) and ``crlDistributionPoints``
    when they name some URI. An extension OpenSSL could not parse is left out, as ``ssl`` leaves it out. Read from
    the DER alone, so also for a certificate OpenSSL accepted that ``cryptography`` cannot load."""
    fields = elements(elements(only(der)[1])[0][1])
    version = 1
    if fields[0][0] == 0xA0:  # [0] EXPLICIT version, absent for v1
        version += int.from_bytes(only(fields[0][1])[1], "big", signed=True)
        fields = fields[1:]
    serial, _signature, issuer, validity, subject, *rest = fields
    (start_tag, start), (end_tag, end) = elements(validity[1])
    info: dict[str, Any] = {
        "subject": _name(subject[1]),
        "issuer": _name(issuer[1]),
        "version": version,
        "serialNumber": _serial(int.from_bytes(serial[1], "big", signed=True)),
        "notBefore": _der_time(start_tag, start),
        "notAfter": _der_time(end_tag, end),
    }
    extensions: dict[str, bytes | None] = {}
    for tag, contents in rest:
        if tag == 0xA3:  # [3] EXPLICIT extensions
            extensions = _extensions(contents)
    for oid, decode in (
        (_SUBJECT_ALT_NAME, _alt_names),
        (_AUTHORITY_INFO_ACCESS, _access),
        (_CRL_DISTRIBUTION_POINTS, _crl_points),
    ):
        value = extensions.get(oid)
        if value is not None:
            try:
                info.update(decode(value))
            except (ValueError, IndexError):  # X509_get_ext_d2i fails on it too: ssl has no key for it
                pass
    return info


#: RFC 4514's short names of the attributes it names; others keep OpenSSL's long name.
_SHORT_NAMES = {
    "commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST", "organizationName": "O",
    "organizationalUnitName": "OU", "countryName": "C", "streetAddress": "STREET", "domainComponent": "DC",
    "userId": "UID",
}


def name_text(name: Name) -> str:
    """A name from ``peercert_dict`` as one line, most specific first (``CN=…,O=…``), for logs and ``gtls connect``
    when ``cryptography`` cannot load the certificate."""
    rdns = ("+".join(f"{_SHORT_NAMES.get(key, key)}={_escaped(value) if isinstance(value, str) else value.hex()}"
                     for key, value in rdn) for rdn in reversed(name))
    return ",".join(rdns) or "(empty)"


def _escaped(value: str) -> str:
    """RFC 4514 §2.4: the characters that would change how the line reads are escaped."""
    text = re.sub(r'([,+"\\<>;=])', r"\\\1", value).replace("\0", "\\00")
    if text.startswith(("#", " ")):
        text = "\\" + text
    # a trailing space, unless it is the one leading space just escaped (a value of one space reads "\ ")
    return text[:-1] + "\\ " if value.endswith(" ") and len(value) > 1 else text
