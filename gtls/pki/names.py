"""The peer-name rule of spec §7 in pure Python.

The handshake delegates the check to OpenSSL (``hostcheck.py``: ``X509_VERIFY_PARAM_set1_host`` with wildcards off).
This module computes exactly the verdict OpenSSL reaches, so it can stand in when the private API is missing (checked
right after the handshake, before any data is returned) and explain a mismatch. Measured against OpenSSL 3.0 (see
tests/test_names.py), two cases of spec §7 cannot be reproduced inside the handshake without a per-certificate
Python callback, and both sides of gtls deliberately agree on OpenSSL's stricter result:

* a presented name with a trailing dot (``host.example.com.``) never matches (spec: the dot is removed);
* a Unicode (non-ASCII) CN never matches (spec: converted to A-labels first);
* an IPv6-literal reference never matches (spec: compared as a plain string). OpenSSL refuses ``:`` in a reference
  name, so gtls hands it ``IPV6_SENTINEL`` instead, a name no certificate holds: chosen at random per process (a
  fixed name, even under RFC 6761 ``.invalid``, is one a private CA may be asked to issue, and its certificate then
  passed for every IPv6 address), and this module compares against the same sentinel, so every route agrees.

Reference names OpenSSL refuses (4.0: labels of letters, digits, ``-`` and ``_``, at most 63 long, no ``-`` at either
end; not one character, ``checked_reference``) are rejected up front as ``BadReferenceName`` (gtls:
``InvalidOptionValue``), rather than failing every handshake; so are names over 253 characters, which are no DNS
names (and OpenSSL sends none over 255 as SNI).
"""

from __future__ import annotations

import re
import secrets
import unicodedata

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from .._redact import holds_key_material
from .._ssl_compat import peercert_dict
from ..options import is_ip_literal

#: What OpenSSL checks for an IPv6 reference: unknowable in advance, so no certificate matches it (see above).
IPV6_SENTINEL = f"ipv6-literal-{secrets.token_hex(16)}.invalid"
#: The longest DNS name (RFC 1035: 255 octets on the wire, 253 characters written). OpenSSL sends up to 255 as SNI
#: and silently sends nothing for longer ones (leaving an error queued); idna refuses more than 253 for a U-label.
MAX_NAME = 253
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class BadReferenceName(ValueError):
    """The reference name cannot be checked (``*``, whitespace, control characters, empty labels, …)."""


def _to_alabels(name: str) -> str:
    if name.isascii():
        return name.lower()
    try:
        import idna  # optional: IDNA 2008 / UTS 46 when installed, else Python's IDNA 2003 codec

        return str(idna.encode(name, uts46=True).decode("ascii")).lower()
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - idna raises several error types
        raise BadReferenceName(f"{name!r} is not a valid internationalised host name ({exc})") from None
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise BadReferenceName(f"{name!r} is not a valid internationalised host name ({exc})") from None


def normalise_reference(name: str) -> str:
    """The reference name R as compared: one trailing dot removed, A-labels, lower case; IP literals as given.

    Raises ``BadReferenceName`` for names that cannot identify a host: empty, ``*``, whitespace, control
    characters, a leading dot (OpenSSL would read it as "any subdomain") or empty labels."""
    if not name:
        raise BadReferenceName("the reference name is empty")
    if holds_key_material(name):  # checked before any message quotes it (lower-cased, it would escape redact)
        raise BadReferenceName("the reference name holds what looks like key material (not shown), not a host name")
    if "*" in name:
        raise BadReferenceName(f"reference name {name!r} contains '*'; wildcards are not allowed")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in name):
        raise BadReferenceName(f"reference name {name!r} contains whitespace or control characters")
    if is_ip_literal(name):
        return name.strip("[]").lower()
    stripped = name[:-1] if name.endswith(".") else name
    alabels = _to_alabels(stripped)
    if not alabels or any(not label for label in alabels.split(".")):
        raise BadReferenceName(f"reference name {name!r} has an empty label")
    bad = [label for label in alabels.split(".") if not _LABEL.fullmatch(label)]
    if bad:
        raise BadReferenceName(
            f"reference name {name!r} is not a host name (bad label {bad[0]!r}: letters, digits, '-' and '_' only, "
            "at most 63, no '-' at either end)"
        )
    if len(alabels) > MAX_NAME:
        raise BadReferenceName(f"reference name {name!r} is not a host name (longer than {MAX_NAME} characters)")
    return alabels


def checked_reference(reference: str) -> str:
    """A normalised reference the name check can take: one character is refused as ``BadReferenceName`` because
    OpenSSL 4.0 refuses it (``X509_VERIFY_PARAM_set1_host``), a crash on every connection there; refused on every
    OpenSSL so the settings that work do not depend on its version. SNI may still carry such a name."""
    if len(reference) == 1:
        raise BadReferenceName(f"reference name {reference!r} has one character; OpenSSL 4.0 cannot check such a name")
    return reference


def openssl_reference(reference: str) -> str:
    """The name OpenSSL is given for a normalised reference: itself, or ``IPV6_SENTINEL`` for an IPv6 literal."""
    return IPV6_SENTINEL if ":" in reference else reference


def sni_name(reference: str | None) -> str | None:
    """What a gtls client sends as SNI for an already normalised reference: a DNS name, never an IP literal."""
    if reference is None or is_ip_literal(reference):
        return None
    return reference


def _san_dns(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.UnsupportedGeneralNameType):
        # cryptography refuses names OpenSSL reads (a byte that is not UTF-8, an x400Address), and then every
        # extension: read the DER as OpenSSL does (bytes not UTF-8 as U+FFFD, which never match), else a mismatch
        # raised here instead of being explained.
        try:
            found = peercert_dict(cert.public_bytes(Encoding.DER)).get("subjectAltName", ())
        except (ValueError, IndexError):
            return []
        return [value for kind, value in found if kind == "DNS"]
    return san.get_values_for_type(x509.DNSName)


def presented_names(cert: x509.Certificate | bytes) -> tuple[list[str], str]:
    """The names compared and where they came from: the dNSName SAN entries if any, else every subject CN. ``cert``
    may be DER: a certificate OpenSSL accepted that ``cryptography`` cannot load (a version field of 3)."""
    if isinstance(cert, bytes):
        return _presented_in_der(cert)
    dns = _san_dns(cert)
    if dns:
        return list(dns), "subjectAltName"
    cns = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [value if isinstance(value, str) else value.decode("latin-1") for value in cns], "CN"


def _presented_in_der(der: bytes) -> tuple[list[str], str]:
    """``presented_names`` read by gtls's own DER reader, as ``ssl`` reads them; unreadable names are none."""
    try:
        info = peercert_dict(der)
    except (ValueError, IndexError):
        return [], "subjectAltName"
    dns = [value for kind, value in info.get("subjectAltName", ()) if kind == "DNS"]
    if dns:
        return dns, "subjectAltName"
    cns = [value for rdn in info["subject"] for key, value in rdn if key == "commonName" and isinstance(value, str)]
    return cns, "CN"


def name_matches(presented: str, reference: str) -> bool:
    """One presented name against a normalised reference, as OpenSSL decides with wildcards disabled."""
    if "*" in presented or not presented.isascii():
        return False  # no wildcards (Genesys); non-ASCII names cannot match an A-label reference (see module doc)
    if any(unicodedata.category(ch) == "Cc" for ch in presented):
        return False
    return presented.lower() == reference


def matches(cert: x509.Certificate | bytes, reference: str) -> bool:
    """Whether ``cert`` matches the normalised ``reference`` (exactly OpenSSL's in-handshake verdict)."""
    names, _ = presented_names(cert)
    compared = openssl_reference(reference)
    return any(name_matches(name, compared) for name in names)


def mismatch_message(cert: x509.Certificate | bytes, reference: str, *, option_hint: bool = True) -> str:
    """Which names the certificate has, which reference was compared, skipped wildcards, and advice for IPs."""
    names, source = presented_names(cert)
    shown = ", ".join(repr(n) for n in names) if names else "none"
    parts = [f"certificate names ({source}) are [{shown}]; tls-target-name-check=host compared {reference!r}"]
    wildcards = [n for n in names if "*" in n]
    if wildcards:
        parts.append(f"wildcard names are never matched (skipped {', '.join(wildcards)})")
    odd = [n for n in names if "*" not in n and (n.endswith(".") or not n.isascii())]
    if odd:
        parts.append(f"names ending in a dot or not in ASCII do not match (gtls): {', '.join(odd)}")
    if ":" in reference:
        parts.append("an IPv6 address never matches a certificate name (gtls)")
    elif is_ip_literal(reference):
        parts.append("an IP address is compared as a plain string")
    if is_ip_literal(reference) and option_hint:
        parts.append("dial by host name or set tls-target-name")
    return "; ".join(parts)
