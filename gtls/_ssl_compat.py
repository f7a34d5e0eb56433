"""A peer certificate in the shape ``ssl.SSLSocket.getpeercert()`` returns, for code written against trio's
``SSLStream`` (Python's ``ssl``): ``TLSStream.getpeercert()``. gtls's own API is ``peer_certificate`` (a
``cryptography`` certificate); this is the porting aid.

It mirrors CPython's ``_decode_certificate`` (Modules/_ssl.c), which renders OpenSSL's own parse of the DER: names in
their encoded order and string conversions, OpenSSL's names for OIDs, GeneralNames as OpenSSL prints them. So this
reads the DER too, not ``cryptography``'s objects, which refuse what OpenSSL takes (an x400Address or EDIPartyName in
subjectAltName makes every extension of the certificate unreadable to ``cryptography``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Callable
from typing import Any

from . import _binding
from ._der import elements, first, oid_text, only, string_contents
from ._printable import printable

#: A name as ``ssl`` gives it: RDNs of (attribute, value); the value is bytes for a BIT STRING (None for one
#: without a byte after its count of unused bits: ssl's Py_BuildValue("y#") of OpenSSL's NULL data).
Value = str | bytes | None
Name = tuple[tuple[tuple[str, Value], ...], ...]

# Universal tags of the value types told apart here.
_BIT_STRING, _UTF8_STRING, _IA5_STRING, _UNIVERSAL_STRING, _BMP_STRING = 0x03, 0x0C, 0x16, 0x1C, 0x1E
_SEQUENCE = 0x30
#: The constructed bit of a tag. OpenSSL's parser checks it for a SEQUENCE and an EXPLICIT tag, not for a SEQUENCE OF
#: or SET OF, universal or IMPLICIT-tagged (GeneralNames, a Name and its RDNs, fullName, cRLIssuer): ``ssl`` reads
#: those in primitive form too, so gtls compares their tags with ``tag | _CONSTRUCTED``.
_CONSTRUCTED = 0x20
#: The universal types of a name attribute's value that OpenSSL parses and ssl converts: BIT, UTF8, Numeric,
#: Printable, T61, IA5, Universal and BMP strings.
_NAME_VALUE_TYPES = frozenset((0x03, 0x0C, 0x12, 0x13, 0x14, 0x16, 0x1C, 0x1E))
#: The universal types OpenSSL's parser takes as a name attribute's value (ASN1_PRINTABLE: the types above, SEQUENCE
#: and those it has no name for, such as EXTERNAL), whether or not ``ssl`` could convert them for printing.
_PARSED_VALUE_TYPES = frozenset((0x03, 0x07, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x12, 0x13, 0x14, 0x16,
                                 0x1C, 0x1D, 0x1E))
#: DirectoryString (an EDIPartyName's parts): Printable, T61, BMP, Universal and UTF8 strings.
_DIRECTORY_STRING_TYPES = frozenset((0x13, 0x14, 0x1E, 0x1C, 0x0C))

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


def _universal(tag: int, contents: bytes) -> tuple[int, bytes]:
    """A universal value's type number and bytes, a constructed (BER) string's pieces joined as OpenSSL joins them;
    ValueError for what OpenSSL's parser refuses: a constructed INTEGER, BOOLEAN, NULL, OBJECT IDENTIFIER or
    ENUMERATED, a SEQUENCE or SET in primitive form, and a value its c2i rejects (INTEGER padding, a BMPString of odd
    length, …)."""
    number = tag & 0x1F
    if number in (0x10, 0x11) and not tag & _CONSTRUCTED:  # asn1_d2i_ex_primitive: they must be constructed
        raise ValueError("a primitive SEQUENCE or SET")
    if tag & 0x20 and number not in (0x10, 0x11):  # SEQUENCE and SET stay as they are
        if number in (0x01, 0x02, 0x05, 0x06, 0x0A):
            raise ValueError("a constructed primitive type")
        contents = string_contents(tag, contents)
    if number == 0x01 and len(contents) != 1 or number == 0x05 and contents:
        raise ValueError("bad BOOLEAN or NULL")
    if number in (0x02, 0x0A) and (not contents or len(contents) > 1 and (
            contents[0] == 0 and contents[1] < 0x80 or contents[0] == 0xFF and contents[1] >= 0x80)):
        raise ValueError("bad INTEGER")
    if number == 0x06:
        oid_text(contents)
    if number == _BIT_STRING and (not contents or contents[0] > 7):
        raise ValueError("bad BIT STRING")
    if number == _BMP_STRING and len(contents) % 2 or number == _UNIVERSAL_STRING and len(contents) % 4:
        raise ValueError("bad BMPString or UniversalString length")
    return number, contents


def _code_points(data: bytes, width: int, strict: bool) -> str:
    # BMPString and UniversalString as OpenSSL converts them: each unit is one code point (no UTF-16 pairs);
    # a surrogate or a value past U+10FFFF fails the conversion
    text = []
    for at in range(0, len(data) - len(data) % width, width):
        point = int.from_bytes(data[at:at + width], "big")
        if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
            if strict:
                raise ValueError("not a Unicode code point")
            point = 0xFFFD
        text.append(chr(point))
    return "".join(text)


def _value(tag: int, contents: bytes, strict: bool = False) -> str | bytes | None:
    """A name attribute's value as ``ASN1_STRING_to_UTF8`` converts it; a BIT STRING stays bytes, as in ``ssl``.
    ``strict``: ValueError for a value OpenSSL's name parser refuses (it converts each string of a name), which
    leaves out a DirName's whole extension; a certificate's own names were parsed by OpenSSL before."""
    if strict and (tag & 0xC0 or tag & 0x1F not in _NAME_VALUE_TYPES):
        raise ValueError("not a string type of a name")
    if strict:
        number, contents = _universal(tag, contents)
    else:  # a name OpenSSL parsed: a constructed string's pieces joined, anything else (a SEQUENCE…) as it is
        number = tag & 0x1F
        if tag & 0x20 and number not in (0x10, 0x11):
            with contextlib.suppress(ValueError):
                contents = string_contents(tag, contents)
    if number == _BIT_STRING:
        if len(contents) <= 1:
            return None
        data = bytearray(contents[1:])  # OpenSSL drops the leading count of unused bits and clears those bits
        data[-1] &= 0xFF << (contents[0] & 7) & 0xFF
        return bytes(data)
    if number == _UTF8_STRING:
        return contents.decode("utf-8") if strict else _utf8(contents)
    if number == _BMP_STRING:
        return _code_points(contents, 2, strict)
    if number == _UNIVERSAL_STRING:
        return _code_points(contents, 4, strict)
    return contents.decode("latin-1")  # PrintableString, IA5String, T61String…: one byte a character


def _name(rdns: bytes, strict: bool = False, naming: Callable[[str], str] = object_name,
          reading: Callable[[int, bytes, bool], Value] = _value) -> Name:
    """A Name (the contents of its SEQUENCE) as ``ssl`` gives it: attributes in their encoded order, one tuple per
    RDN, each named by ``naming`` from its dotted OID and its value read by ``reading``. ``strict`` (a DirName):
    ValueError where OpenSSL's parse fails."""
    name = []
    for rdn_tag, rdn in elements(rdns):
        if strict and rdn_tag | _CONSTRUCTED != 0x31:  # a SET OF
            raise ValueError("not a Name")
        attributes = _attributes(rdn, strict, naming, reading)
        if attributes:
            name.append(attributes)
    return tuple(name)


def _attributes(rdn: bytes, strict: bool, naming: Callable[[str], str], reading: Callable[[int, bytes, bool], Value]
                ) -> tuple[tuple[str, Value], ...]:
    attributes = []
    for pair_tag, pair in elements(rdn):
        if strict:
            (oid_tag, oid), (tag, value) = elements(pair)
            if (pair_tag, oid_tag) != (_SEQUENCE, 0x06):
                raise ValueError("not an AttributeTypeAndValue")
        else:
            (_, oid), (tag, value), *_ = elements(pair)
        attributes.append((naming(oid_text(oid)), reading(tag, value, strict)))
    return tuple(attributes)


def _checked_name(rdns: bytes) -> None:
    """A Name ``ssl`` prints nothing of (a DirName among CRL distribution points or access locations): ValueError
    where OpenSSL's parse fails, which leaves out the extension."""
    for rdn_tag, rdn in elements(rdns):
        if rdn_tag | _CONSTRUCTED != 0x31:  # a SET OF
            raise ValueError("not a Name")
        _checked_attributes(rdn, canonical=True)


def _checked_attributes(rdn: bytes, canonical: bool) -> None:
    """An RDN's attributes as OpenSSL parses them. ``canonical``: part of a Name, whose strings OpenSSL converts to
    UTF-8 while parsing it (x509_name_canon); a CRL distribution point's name relative to its issuer is not."""
    for pair_tag, pair in elements(rdn):
        (oid_tag, oid), (tag, value) = elements(pair)
        if (pair_tag, oid_tag) != (_SEQUENCE, 0x06):
            raise ValueError("not an AttributeTypeAndValue")
        oid_text(oid)
        if tag & 0xC0 or tag & 0x1F not in _PARSED_VALUE_TYPES:
            raise ValueError("not a type of a name's value")
        number, contents = _universal(tag, value)
        if canonical and number == _UTF8_STRING:
            contents.decode("utf-8")
        elif canonical and number in (_BMP_STRING, _UNIVERSAL_STRING):
            _code_points(contents, 2 if number == _BMP_STRING else 4, strict=True)


def _printed(text: str) -> str:
    # GENERAL_NAME_print writes the value with "%.*s" (ends at a NUL) and ssl reads one line back (BIO_gets)
    text = text.split("\0", 1)[0]
    line, newline, _ = text.partition("\n")
    return line + newline


def _general_name(tag: int, contents: bytes, printed: bool = True) -> tuple[str, Any]:
    """One GeneralName as ``ssl``'s ``_get_peer_alt_names`` renders it; ValueError for a form OpenSSL refuses.
    ``printed``: ssl converts a DirName's strings, and fails where they do not convert; elsewhere (CRL distribution
    points, access locations) it reads URIs only, and a DirName needs only to parse."""
    if tag & 0xDF in (0x81, 0x82, 0x86, 0x87):  # IA5String or OCTET STRING: primitive, or constructed (BER)
        contents = string_contents(tag, contents)
        tag &= 0xDF
    if tag == 0x81:
        return ("email", _utf8(contents))
    if tag == 0x82:
        return ("DNS", _utf8(contents))
    if tag == 0x86:
        return ("URI", _utf8(contents))
    if tag == 0xA4:
        name_tag, name = only(contents)
        if name_tag | _CONSTRUCTED != _SEQUENCE:  # a Name is a SEQUENCE OF
            raise ValueError("DirName without a Name")
        if not printed:
            _checked_name(name)
            return ("DirName", ())
        return ("DirName", _name(name, strict=True))
    if tag == 0x87:
        if len(contents) == 4:
            return ("IP Address", ".".join(str(byte) for byte in contents))
        if len(contents) == 16:  # ssl's own spelling: eight unpadded upper-case groups, nothing compressed
            return ("IP Address", ":".join(f"{int.from_bytes(contents[i:i + 2], 'big'):X}" for i in range(0, 16, 2)))
        return ("IP Address", "<invalid>")
    if tag == 0x88:
        return ("Registered ID", object_name(oid_text(contents)))
    if tag == 0xA0:
        (id_tag, type_id), (value_tag, value) = elements(contents)
        if (id_tag, value_tag) != (0x06, 0xA0):
            raise ValueError("otherName without its type or [0] value")
        kind = oid_text(type_id)
        inner_tag, inner = only(value)
        if not inner_tag & 0xC0:  # ANY: a universal value is parsed as its type
            inner_tag, inner = _universal(inner_tag, inner)
        form = _OTHER_NAMES.get(kind)
        if form is None or inner_tag != form[1]:
            return ("othername", "<unsupported>")
        return ("othername", f"{form[0]}:{_printed(_utf8(inner))}")
    if tag == 0xA3:
        return ("X400Name", "<unsupported>")
    if tag == 0xA5:
        parts = elements(contents)  # EDIPartyName: nameAssigner [0] OPTIONAL, partyName [1], DirectoryStrings
        if [part_tag for part_tag, _ in parts] not in ([0xA1], [0xA0, 0xA1]):
            raise ValueError("not an EDIPartyName")
        for _, part in parts:
            string_tag, string = only(part)
            if string_tag & 0xDF not in _DIRECTORY_STRING_TYPES:
                raise ValueError("not a DirectoryString")
            _universal(string_tag, string)
        return ("EdiPartyName", "<unsupported>")
    raise ValueError(f"no GeneralName has tag {tag:#x}")


def _general_names(der: bytes, printed: bool = True) -> list[tuple[str, Any]]:
    return [_general_name(tag, contents, printed) for tag, contents in elements(der)]


def _uris(names: list[tuple[str, Any]]) -> list[str]:
    return [value for kind, value in names if kind == "URI"]


def _extensions(extensions: bytes) -> dict[str, bytes | None]:
    """Each extension's value by OID; None for one that appears twice, which OpenSSL's X509_get_ext_d2i gives none
    of."""
    found: dict[str, bytes | None] = {}
    for _, extension in elements(only(extensions)[1]):
        parts = elements(extension)
        oid = oid_text(parts[0][1])
        found[oid] = None if oid in found else string_contents(*parts[-1])  # an OCTET STRING, maybe constructed
    return found


def _sequence(der: bytes) -> bytes:
    """The contents of the SEQUENCE OF an extension's value starts with (OpenSSL's X509V3_EXT_d2i reads the first
    element and ignores what follows)."""
    tag, contents = first(der)
    if tag | _CONSTRUCTED != _SEQUENCE:
        raise ValueError("not a SEQUENCE")
    return contents


def _alt_names(der: bytes) -> dict[str, Any]:
    # the key is there whenever the extension is, even with no names in it
    return {"subjectAltName": tuple(_general_names(_sequence(der)))}


def _access(der: bytes) -> dict[str, Any]:
    """OCSP and caIssuers: the URIs of each access method, a key only when it has some."""
    found: dict[str, list[str]] = {}
    for description_tag, description in elements(_sequence(der)):
        (method_tag, method), location = elements(description)
        if (description_tag, method_tag) != (_SEQUENCE, 0x06):
            raise ValueError("not an AccessDescription")
        uris = _uris([_general_name(*location, printed=False)])
        key = _AIA_KEYS.get(oid_text(method))
        if key is not None and uris:
            found.setdefault(key, []).extend(uris)
    return {key: tuple(found[key]) for key in _AIA_KEYS.values() if key in found}  # ssl's order: OCSP first


def _crl_points(der: bytes) -> dict[str, Any]:
    """The URIs among the full names of the distribution points, a key only when there are some (ssl skips names
    relative to the CRL issuer). Each point is checked as OpenSSL parses it: any flaw leaves out the extension."""
    uris: list[str] = []
    for point_tag, point in elements(_sequence(der)):
        parts = elements(point)
        fields = [tag & 0x1F for tag, _ in parts]  # distributionPoint [0], reasons [1], cRLIssuer [2], in order
        if point_tag != _SEQUENCE or fields != sorted(set(fields)) or not set(fields) <= {0, 1, 2}:
            raise ValueError("not a DistributionPoint")
        for tag, contents in parts:
            if tag == 0xA0:
                name_tag, names = only(contents)
                if name_tag | _CONSTRUCTED == 0xA0:  # fullName, an IMPLICIT GeneralNames
                    uris += _uris(_general_names(names, printed=False))
                elif name_tag | _CONSTRUCTED == 0xA1:  # nameRelativeToCRLIssuer (a SET OF): checked only
                    _checked_attributes(names, canonical=False)
                else:
                    raise ValueError("not a DistributionPointName")
            elif tag & 0xDF == 0x81:  # reasons: a BIT STRING
                _universal(_BIT_STRING | tag & 0x20, contents)
            elif tag | _CONSTRUCTED == 0xA2:  # cRLIssuer, an IMPLICIT GeneralNames
                _general_names(contents, printed=False)
            else:
                raise ValueError("not a DistributionPoint")
    return {"crlDistributionPoints": tuple(uris)} if uris else {}


def _serial(number: int) -> str:
    # i2a_ASN1_INTEGER: the magnitude's bytes in upper-case hex, "-" before a negative one; it breaks the line
    # (backslash, newline) after 35 bytes and ssl reads the first line
    magnitude = abs(number).to_bytes(max(1, (abs(number).bit_length() + 7) // 8), "big")
    return ("-" if number < 0 else "") + magnitude[:35].hex().upper() + ("\\\n" if len(magnitude) > 35 else "")


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# What OpenSSL's parser takes (ossl_asn1_time_to_tm): RFC 5280's forms, seconds left out, a fraction of a second
# (GeneralizedTime), an offset up to 12:59 instead of Z.
_TIME_REST = rb"(?P<month>\d{2})(?P<day>\d{2})(?P<hour>\d{2})(?P<minute>\d{2})(?:(?P<second>\d{2})%s)?" \
             rb"(?:Z|(?P<sign>[+-])(?P<off_hour>0\d|1[0-2])(?P<off_minute>[0-5]\d))"
_DER_TIMES = {0x17: re.compile(rb"(?P<year>\d{2})" + _TIME_REST % b""),
              0x18: re.compile(rb"(?P<year>\d{4})" + _TIME_REST % rb"(?P<fraction>\.\d+)?")}


def _der_time(tag: int, contents: bytes) -> str:
    """A certificate's time as ``ssl`` prints it (OpenSSL's ``ASN1_TIME_print``: in GMT, a GeneralizedTime's fraction
    of a second kept; UTCTime years 50-99 are 19xx). What OpenSSL cannot read reads "Bad time value", as in ``ssl``,
    also an offset that carries the time out of the years 1900 to 9999 (without an offset, year 0 is fine)."""
    form = _DER_TIMES.get(tag)
    found = form.fullmatch(contents) if form is not None else None
    if found is None:
        return "Bad time value"
    year, month, day, hour, minute = (int(found[part]) for part in ("year", "month", "day", "hour", "minute"))
    second = int(found["second"] or 0)
    if tag == 0x17:
        year += 1900 if year >= 50 else 2000
    leap = year % 4 == 0 and year % 100 != 0 or year % 400 == 0
    if not 1 <= month <= 12 or not 1 <= day <= _MONTH_DAYS[month - 1] + (month == 2 and leap) or hour > 23 \
            or minute > 59 or second > 59:
        return "Bad time value"
    if found["sign"] and found["off_hour"] + found["off_minute"] != b"0000":  # OPENSSL_gmtime_adj
        offset = dt.timedelta(hours=int(found["off_hour"]), minutes=int(found["off_minute"]))
        try:
            when = dt.datetime(year, month, day, hour, minute, second) - (offset if found["sign"] == b"+" else -offset)
        except (ValueError, OverflowError):  # year 0, or carried past year 9999 or before year 1
            return "Bad time value"
        if not 1900 <= when.year <= 9999:
            return "Bad time value"
        year, month, day, hour, minute, second = when.year, when.month, when.day, when.hour, when.minute, when.second
    fraction = (found.groupdict().get("fraction") or b"").decode()
    return f"{_MONTHS[month - 1]} {day:2d} {hour:02d}:{minute:02d}:{second:02d}{fraction} {year} GMT"


def _signed_fields(der: bytes) -> tuple[bytes | None, list[tuple[int, bytes]]]:
    """A certificate's [0] EXPLICIT version (None for v1, which leaves it out) and its signed part's other fields."""
    fields = elements(elements(only(der)[1])[0][1])
    if fields[0][0] == 0xA0:
        return fields[0][1], fields[1:]
    return None, fields


def peercert_dict(der: bytes) -> dict[str, Any]:
    """What ``ssl`` gives for the certificate ``der`` (its ``_decode_certificate``): ``subject``, ``issuer``,
    ``version``, ``serialNumber``, ``notBefore``, ``notAfter``; ``subjectAltName`` when the certificate has the
    extension (even empty); ``OCSP`` and ``caIssuers`` (URIs from authorityInfoAccess) and ``crlDistributionPoints``
    when they name some URI. An extension OpenSSL could not parse is left out, as ``ssl`` leaves it out. Read from
    the DER alone, so also for a certificate OpenSSL accepted that ``cryptography`` cannot load."""
    encoded_version, fields = _signed_fields(der)
    version = 1
    if encoded_version is not None:
        number = int.from_bytes(only(encoded_version)[1], "big", signed=True)
        # X509_get_version: -1 for what a C long cannot hold; ssl adds 1 to that long (LONG_MAX wraps)
        version = ((number if -2**63 <= number < 2**63 else -1) + 1 + 2**63) % 2**64 - 2**63
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


#: The attributes RFC 4514 names, by OID; ``cryptography`` writes any other as its dotted OID.
_RFC4514_KEYS = {
    "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
    "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
}
#: The same by OpenSSL's long name, for ``name_text``; others keep their long name there.
_SHORT_NAMES = {FALLBACK_NAMES[oid]: short for oid, short in _RFC4514_KEYS.items()}


def name_text(name: Name) -> str:
    """A name from ``peercert_dict`` as one line, most specific first (``CN=…,O=…``), for logs and ``gtls connect``
    when ``cryptography`` cannot load the certificate."""
    rdns = ("+".join(f"{_SHORT_NAMES.get(key, key)}={_value_text(value)}" for key, value in rdn)
            for rdn in reversed(name))
    return printable(",".join(rdns)) or "(empty)"  # the peer's names, printed and logged: controls escaped


def subject_rfc4514(der: bytes) -> str:
    """The certificate's subject as ``cryptography``'s ``Name.rfc4514_string()`` writes it (RFC 4514's names, else
    dotted OIDs; its escaping, with a value of one space as "\\ ", as cryptography 50 writes it and earlier releases
    "\\\\ "), read from the DER: a subject reads the same whether or not ``cryptography`` can load the certificate,
    so one compared with a loadable certificate's (an allow-list) still matches."""
    subject = _signed_fields(der)[1][4][1]
    rdns = _name(subject, naming=lambda dotted: _RFC4514_KEYS.get(dotted, dotted), reading=_cryptography_value)
    return ",".join("+".join(f"{key}={_value_text(value, _CRYPTOGRAPHY_SPECIALS) if value else ''}"
                             for key, value in rdn) for rdn in reversed(rdns))


_CRYPTOGRAPHY_CODECS = {_BMP_STRING: "utf-16-be", _UNIVERSAL_STRING: "utf-32-be"}


def _cryptography_value(tag: int, contents: bytes, strict: bool = False) -> str | bytes | None:
    """A name attribute's value as ``cryptography`` reads it, which is not OpenSSL's way: a BIT STRING's contents as
    they are (its count of unused bits first), a BMPString as UTF-16 (surrogate pairs joined), a UniversalString as
    UTF-32, any other string type as UTF-8 (a T61String holding UTF-8 read as Latin-1 was mojibake). A value it
    cannot read (then it loads no such certificate) reads as OpenSSL converts it."""
    if not tag & 0xE0:  # a universal primitive value: cryptography's parser takes no other
        number = tag & 0x1F
        if number == _BIT_STRING:
            return contents
        with contextlib.suppress(UnicodeDecodeError):
            return contents.decode(_CRYPTOGRAPHY_CODECS.get(number, "utf-8"))
    return _value(tag, contents, strict)


#: The characters escaped anywhere in a value: RFC 4514 §2.4's, and "=" (which it allows escaped) for a reader that
#: splits at the first "=" of an attribute; ``cryptography`` leaves "=" as it is.
_SPECIALS = re.compile(r'([,+"\\<>;=])')
_CRYPTOGRAPHY_SPECIALS = re.compile(r'([,+"\\<>;])')


def _value_text(value: str | bytes | None, specials: re.Pattern[str] = _SPECIALS) -> str:
    # A BIT STRING in hex after "#", as RFC 4514 and cryptography mark a value that is not a string (bare hex read
    # as the text "0102")
    return _escaped(value, specials) if isinstance(value, str) else "#" + (value or b"").hex()


def _escaped(value: str, specials: re.Pattern[str]) -> str:
    """RFC 4514 §2.4: the characters that would change how the line reads are escaped; control characters as hex
    pairs (NUL as ``\\00``, as ``cryptography`` writes it), as ``subject_text`` writes them (``gtls._printable``)."""
    text = printable(specials.sub(r"\\\1", value))
    if text.startswith(("#", " ")):
        text = "\\" + text
    # a trailing space, unless it is the one leading space just escaped (a value of one space reads "\ ")
    return text[:-1] + "\\ " if value.endswith(" ") and len(value) > 1 else text
