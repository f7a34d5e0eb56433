"""A peer certificate in the shape ``ssl.SSLSocket.getpeercert()`` returns, for code written against trio's
``SSLStream`` (Python's ``ssl``): ``TLSStream.getpeercert()``. gtls's own API is ``peer_certificate`` (a
``cryptography`` certificate); this is the porting aid, with the fields code commonly reads."""

from __future__ import annotations

import ipaddress
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

#: Python's ssl names attributes by OpenSSL's long names.
_LONG_NAMES = {
    NameOID.COMMON_NAME: "commonName",
    NameOID.COUNTRY_NAME: "countryName",
    NameOID.STATE_OR_PROVINCE_NAME: "stateOrProvinceName",
    NameOID.LOCALITY_NAME: "localityName",
    NameOID.ORGANIZATION_NAME: "organizationName",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "domainComponent",
    NameOID.USER_ID: "userId",
}


def _name(name: x509.Name) -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(
        tuple((_LONG_NAMES.get(attr.oid, attr.oid.dotted_string), str(attr.value)) for attr in rdn)
        for rdn in name.rdns
    )


def _time(when: Any) -> str:
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S %Y} GMT"  # as OpenSSL prints it: "Nov  7 00:11:27 2026 GMT"


def _alt_names(cert: x509.Certificate) -> tuple[tuple[str, str], ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    entries: list[tuple[str, str]] = []
    for general in san:
        if isinstance(general, x509.DNSName):
            entries.append(("DNS", general.value))
        elif isinstance(general, x509.IPAddress):
            address = general.value
            # Python's ssl writes IPv6 as eight groups, unpadded, upper case ("0:0:0:0:0:0:0:1")
            if isinstance(address, ipaddress.IPv6Address):
                text = ":".join(f"{int(group, 16):X}" for group in address.exploded.split(":"))
            else:
                text = str(address)
            entries.append(("IP Address", text))
        elif isinstance(general, x509.RFC822Name):
            entries.append(("email", general.value))
        elif isinstance(general, x509.UniformResourceIdentifier):
            entries.append(("URI", general.value))
    return tuple(entries)


def peercert_dict(cert: x509.Certificate) -> dict[str, Any]:
    """``subject``, ``issuer``, ``version``, ``serialNumber``, ``notBefore``, ``notAfter`` and, when present,
    ``subjectAltName``, formatted as Python's ``ssl`` formats them."""
    info: dict[str, Any] = {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "version": cert.version.value + 1,
        "serialNumber": f"{cert.serial_number:X}".rjust(2, "0"),
        "notBefore": _time(cert.not_valid_before_utc),
        "notAfter": _time(cert.not_valid_after_utc),
    }
    alt = _alt_names(cert)
    if alt:
        info["subjectAltName"] = alt
    return info
