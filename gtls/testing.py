"""A small test PKI: root CAs, intermediates, leaves and CRLs, built with ``cryptography`` only.

Made for tests (gtls's own and users'): every knob a TLS failure test needs is a keyword argument, and every object
can be written as PEM files for configuration that names files::

    root = CA.root()
    inter = root.intermediate("gtls test intermediate")
    server = inter.leaf("server.test", dns=["server.test"])
    client = inter.leaf("client.test", eku=("client",))
    crl = inter.crl(revoked=[client])
    write_pem(tmp / "chain.pem", server, inter)
    server.write_key(tmp / "key.pem")          # mode 0o600

Defaults: EC P-256 keys (cheap), SHA-256 signatures, random positive 64-bit serials, SubjectKeyIdentifier and
AuthorityKeyIdentifier on everything, validity from one hour ago to 30 days ahead for leaves (a year for CAs),
CRLs current from one hour ago to 7 days ahead. Nothing is cached between calls, so tests stay independent.

Failure knobs: ``bad_signature=True`` signs with an unrelated key; ``issuer_name=`` writes another issuer name;
``key_ids=False`` omits SKI/AKI; ``ca=False`` / ``key_cert_sign=False`` / ``crl_sign=False`` / ``path_length``
make broken issuers; ``eku=None`` omits extendedKeyUsage; ``extensions=`` adds or replaces any extension;
``CA.crl(signer=…)`` signs a CRL with the wrong key.

``demo_pki(directory)`` writes the standard demo set used by ``gtls pki`` and ``gtls serve``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA",
    "CRL",
    "Certified",
    "DemoFiles",
    "DemoPKI",
    "KeyType",
    "PrivateKey",
    "TimeSpec",
    "demo_pki",
    "generate_key",
    "random_serial",
    "write_pem",
]

KeyType: TypeAlias = Literal["ec", "rsa"]
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
#: An absolute time (naive values are taken as UTC) or an offset from now (``timedelta(days=-1)`` = yesterday).
TimeSpec: TypeAlias = dt.datetime | dt.timedelta
#: One extendedKeyUsage purpose: server, client, email, code_signing, time_stamping, ocsp_signing, any, or an OID.
Purpose: TypeAlias = str | x509.ObjectIdentifier
IPLike: TypeAlias = str | ipaddress.IPv4Address | ipaddress.IPv6Address
PemSource: TypeAlias = "bytes | str | Certified | CRL"
#: Extensions to add, or to put in place of the default one of the same type; bare values are non-critical.
ExtraExtensions: TypeAlias = Sequence[x509.ExtensionType | x509.Extension[x509.ExtensionType]]

_HASH = hashes.SHA256()
_EKU_NAMES: dict[str, x509.ObjectIdentifier] = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "email": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "time_stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_LEAF_DAYS = 30
_CA_DAYS = 365
_CRL_DAYS = 7
_BACKDATE = dt.timedelta(hours=1)  # tolerate small clock differences between test processes


# --- small helpers -------------------------------------------------------------------------------------------------


def generate_key(key_type: KeyType = "ec") -> PrivateKey:
    """A fresh private key: EC P-256 (milliseconds) or RSA-2048 (tens of milliseconds)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def random_serial() -> int:
    """A random positive serial number that fits in 64 bits."""
    return secrets.randbelow(2**64 - 1) + 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _when(value: TimeSpec | None, default: dt.timedelta) -> dt.datetime:
    """Turn a ``TimeSpec`` (or the default offset from now) into an aware UTC datetime."""
    if value is None:
        return _now() + default
    if isinstance(value, dt.timedelta):
        return _now() + value
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _name(value: str | x509.Name) -> x509.Name:
    if isinstance(value, x509.Name):
        return value
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def _subject_for_leaf(
    common_name: str | None, common_names: Sequence[str] | None, subject: x509.Name | None
) -> x509.Name:
    given = [common_name is not None, common_names is not None, subject is not None]
    if sum(given) > 1:
        raise ValueError("give at most one of common_name, common_names and subject")
    if subject is not None:
        return subject
    names = [common_name] if common_name is not None else list(common_names or ())
    # One RDN per CN (UTF8String, so Unicode CNs are fine): the usual shape of a multi-CN subject.
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, n)]) for n in names])


def _eku(purposes: Sequence[Purpose] | None) -> x509.ExtendedKeyUsage | None:
    if purposes is None:
        return None
    if isinstance(purposes, str):  # eku="server" would otherwise be read letter by letter
        purposes = (purposes,)
    if not purposes:
        raise ValueError("eku must name at least one purpose, or be None to omit the extension")
    oids: list[x509.ObjectIdentifier] = []
    for purpose in purposes:
        if isinstance(purpose, x509.ObjectIdentifier):
            oids.append(purpose)
        elif purpose in _EKU_NAMES:
            oids.append(_EKU_NAMES[purpose])
        else:
            raise ValueError(f"unknown eku purpose {purpose!r}; use one of {sorted(_EKU_NAMES)} or an OID")
    return x509.ExtendedKeyUsage(oids)


def _key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_bytes(source: PemSource) -> bytes:
    if isinstance(source, Certified):
        return source.cert_pem
    if isinstance(source, CRL):
        return source.pem
    data = source.encode("ascii") if isinstance(source, str) else source
    return data if data.endswith(b"\n") else data + b"\n"


def write_pem(path: str | os.PathLike[str], *pem_blobs: PemSource, mode: int | None = None) -> Path:
    """Write PEM blobs (bytes, str, a ``Certified``'s certificate or a ``CRL``) one after another to ``path``.

    Use it for chains (``write_pem(p, leaf, inter)``), CA bundles and CRL lists. ``mode`` sets the file mode.
    """
    target = Path(path)
    target.write_bytes(b"".join(_pem_bytes(blob) for blob in pem_blobs))
    if mode is not None:
        target.chmod(mode)
    return target


def _write_private(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` readable by the owner only (0o600), also when the file already existed with a wider mode."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    return target


# --- certificates ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Spec:
    """Everything that goes into one certificate; shared by roots, intermediates and leaves."""

    subject: x509.Name
    key: PrivateKey
    not_before: dt.datetime
    not_after: dt.datetime
    extensions: tuple[x509.ExtensionType, ...]
    critical: frozenset[type[x509.ExtensionType]]
    key_ids: bool
    serial: int


class Certified:
    """A certificate with its private key, and the CA that issued it (``None`` for a self-signed root)."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey, issuer: CA | None = None) -> None:
        self.cert = cert
        self.key = key
        self.issuer = issuer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cert.subject.rfc4514_string()!r} serial={self.serial:#x}>"

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def subject(self) -> x509.Name:
        return self.cert.subject

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        """SHA-1 fingerprint of the DER certificate, 40 upper-case hex digits (a Windows-style thumbprint)."""
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def encrypted_key_pem(self, passphrase: bytes) -> bytes:
        """The private key encrypted with ``passphrase`` (for tests of refused encrypted keys)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    @property
    def chain(self) -> list[Certified]:
        """This certificate, then each issuer up to and including the root."""
        out: list[Certified] = [self]
        issuer = self.issuer
        while issuer is not None and len(out) < 64:  # bounded, though issuers never form cycles
            out.append(issuer)
            issuer = issuer.issuer
        return out

    def chain_pem(self, *, include_root: bool = False) -> bytes:
        """PEM of this certificate and its issuing CAs, leaf first; the self-signed root only if asked."""
        links = self.chain
        if not include_root and len(links) > 1:
            links = links[:-1]
        return b"".join(link.cert_pem for link in links)

    def write_cert(self, path: str | os.PathLike[str]) -> Path:
        return write_pem(path, self.cert_pem)

    def write_chain(self, path: str | os.PathLike[str], *, include_root: bool = False) -> Path:
        return write_pem(path, self.chain_pem(include_root=include_root))

    def write_key(self, path: str | os.PathLike[str]) -> Path:
        """Write the unencrypted key, readable by the owner only (mode 0o600)."""
        return _write_private(path, self.key_pem)


def _sign(spec: _Spec, issuer_name: x509.Name, signing_key: PrivateKey, issuer_key: PrivateKey,
          issuer_cert: x509.Certificate | None, extra: ExtraExtensions) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(issuer_name)
        .public_key(spec.key.public_key())
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
    )
    extensions: dict[type[x509.ExtensionType], tuple[x509.ExtensionType, bool]] = {}
    for ext in spec.extensions:
        extensions[type(ext)] = (ext, type(ext) in spec.critical)
    if spec.key_ids:
        extensions[x509.SubjectKeyIdentifier] = (
            x509.SubjectKeyIdentifier.from_public_key(spec.key.public_key()), False)
        extensions[x509.AuthorityKeyIdentifier] = (_authority_key_id(issuer_key, issuer_cert), False)
    # Caller-given extensions replace ours of the same type (e.g. a different KeyUsage) or add new ones.
    for item in extra:
        if isinstance(item, x509.Extension):
            extensions[type(item.value)] = (item.value, item.critical)
        else:
            extensions[type(item)] = (item, False)
    for value, critical in extensions.values():
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(signing_key, _HASH)


def _authority_key_id(issuer_key: PrivateKey, issuer_cert: x509.Certificate | None) -> x509.AuthorityKeyIdentifier:
    """AKI matching the issuer's SKI when it has one, else derived from its public key."""
    if issuer_cert is not None:
        try:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            pass
        else:
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())


class CA(Certified):
    """A certificate authority: a ``Certified`` that can issue intermediates, leaves and CRLs."""

    @classmethod
    def root(
        cls,
        name: str | x509.Name = "gtls test root",
        *,
        key_type: KeyType = "ec",
        not_before: TimeSpec | None = None,
        not_after: TimeSpec | None = None,
        path_length: int | None = None,
        key: PrivateKey | None = None,
        key_ids: bool = True,
        key_cert_sign: bool = True,
        crl_sign: bool = True,
        bad_signature: bool = False,
        serial: int | None = None,
        extensions: ExtraExtensions = (),
    ) -> CA:
        """A self-signed root CA. ``bad_signature=True`` makes its self-signature fail to verify."""
        own_key = key if key is not None else generate_key(key_type)
        spec = _ca_spec(_name(name), own_key, not_before, not_after, path_length, True, key_cert_sign, crl_sign,
                        key_ids, serial)
        signing_key = generate_key(_key_type_of(own_key)) if bad_signature else own_key
        cert = _sign(spec, spec.subject, signing_key, own_key, None, extensions)
        return cls(cert, own_key, None)

    def intermediate(
        self,
        name: str | x509.Name = "gtls test intermediate",
        *,
        key_type: KeyType = "ec",
        path_length: int | None = None,
        not_before: TimeSpec | None = None,
        not_after: TimeSpec | None = None,
        key_cert_sign: bool = True,
        crl_sign: bool = True,
        ca: bool = True,
        key: PrivateKey | None = None,
        key_ids: bool = True,
        issuer_name: str | x509.Name | None = None,
        bad_signature: bool = False,
        serial: int | None = None,
        extensions: ExtraExtensions = (),
    ) -> CA:
        """A CA issued by this one. ``ca=False`` gives an issuer whose basicConstraints say CA:FALSE."""
        own_key = key if key is not None else generate_key(key_type)
        spec = _ca_spec(_name(name), own_key, not_before, not_after, path_length, ca, key_cert_sign, crl_sign,
                        key_ids, serial)
        cert = self._issue(spec, issuer_name, bad_signature, extensions)
        return CA(cert, own_key, self)

    def leaf(
        self,
        common_name: str | None = None,
        *,
        dns: Iterable[str] = (),
        ips: Iterable[IPLike] = (),
        emails: Iterable[str] = (),
        uris: Iterable[str] = (),
        other_sans: Iterable[x509.GeneralName] = (),
        common_names: Sequence[str] | None = None,
        subject: x509.Name | None = None,
        eku: Sequence[Purpose] | None = ("server", "client"),
        key_type: KeyType = "ec",
        not_before: TimeSpec | None = None,
        not_after: TimeSpec | None = None,
        key: PrivateKey | None = None,
        key_ids: bool = True,
        issuer_name: str | x509.Name | None = None,
        bad_signature: bool = False,
        serial: int | None = None,
        extensions: ExtraExtensions = (),
    ) -> Certified:
        """An end-entity certificate (CA:FALSE) issued by this CA.

        Names: ``common_name`` (one CN), ``common_names`` (several, or ``[]`` for none) or a full ``subject``; with
        none of them the subject is empty. subjectAltName holds ``dns`` (A-labels, as ``cryptography`` requires),
        ``ips``, ``emails``, ``uris`` and any ``other_sans`` in that order, and is left out when all are empty.
        ``eku`` names purposes (``"server"``, ``"client"``, …) or is ``None`` for no extendedKeyUsage extension.
        """
        own_key = key if key is not None else generate_key(key_type)
        subject_name = _subject_for_leaf(common_name, common_names, subject)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip) if isinstance(ip, str) else ip) for ip in ips]
        sans += [x509.RFC822Name(e) for e in emails]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        sans += list(other_sans)
        usage = _key_usage(digital_signature=True, key_encipherment=isinstance(own_key, rsa.RSAPrivateKey))
        exts: list[x509.ExtensionType] = [x509.BasicConstraints(ca=False, path_length=None), usage]
        critical: set[type[x509.ExtensionType]] = {x509.BasicConstraints, x509.KeyUsage}
        purposes = _eku(eku)
        if purposes is not None:
            exts.append(purposes)
        if sans:
            exts.append(x509.SubjectAlternativeName(sans))
            if len(subject_name) == 0:  # RFC 5280 4.2.1.6: SAN is critical when the subject is empty
                critical.add(x509.SubjectAlternativeName)
        spec = _Spec(
            subject=subject_name,
            key=own_key,
            not_before=_when(not_before, -_BACKDATE),
            not_after=_when(not_after, dt.timedelta(days=_LEAF_DAYS)),
            extensions=tuple(exts),
            critical=frozenset(critical),
            key_ids=key_ids,
            serial=serial if serial is not None else random_serial(),
        )
        cert = self._issue(spec, issuer_name, bad_signature, extensions)
        return Certified(cert, own_key, self)

    def crl(
        self,
        revoked: Iterable[Certified | int] = (),
        *,
        this_update: TimeSpec | None = None,
        next_update: TimeSpec | None = None,
        signer: Certified | PrivateKey | None = None,
        count: int = 0,
        revocation_date: TimeSpec | None = None,
        reason: x509.ReasonFlags | None = None,
        crl_number: int | None = None,
        key_ids: bool = True,
        issuer_name: str | x509.Name | None = None,
        extensions: ExtraExtensions = (),
    ) -> CRL:
        """A CRL issued by this CA listing ``revoked`` (certificates or serials) plus ``count`` random serials.

        Defaults: this update one hour ago, next update in 7 days. ``signer`` (a ``Certified`` or key) signs
        instead of this CA's key while the issuer name and AKI still name this CA: a CRL whose signature fails.
        ``extensions`` are added to the CRL's own (an ``x509.Extension`` says whether it is critical; a bare value is
        not), as for certificates: a delta CRL indicator, or a critical extension nobody handles.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        serials = [item.serial if isinstance(item, Certified) else item for item in revoked]
        serials += [random_serial() for _ in range(count)]
        last = _when(this_update, -_BACKDATE)
        revoked_at = last if revocation_date is None else _when(revocation_date, dt.timedelta())
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer_name) if issuer_name is not None else self.cert.subject)
            .last_update(last)
            .next_update(_when(next_update, dt.timedelta(days=_CRL_DAYS)))
            .add_extension(x509.CRLNumber(crl_number if crl_number is not None else 1), critical=False)
        )
        if key_ids:
            builder = builder.add_extension(_authority_key_id(self.key, self.cert), critical=False)
        for item in extensions:
            value, critical = (item.value, item.critical) if isinstance(item, x509.Extension) else (item, False)
            builder = builder.add_extension(value, critical=critical)
        for serial in serials:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        if signer is None:
            signing_key: PrivateKey = self.key
        else:
            signing_key = signer.key if isinstance(signer, Certified) else signer
        return CRL(builder.sign(signing_key, _HASH))

    def _issue(self, spec: _Spec, issuer_name: str | x509.Name | None, bad_signature: bool,
               extensions: ExtraExtensions) -> x509.Certificate:
        name = _name(issuer_name) if issuer_name is not None else self.cert.subject
        # A bad signature comes from an unrelated key of the same type, so only the signature check fails.
        signing_key = generate_key(_key_type_of(self.key)) if bad_signature else self.key
        return _sign(spec, name, signing_key, self.key, self.cert, extensions)


def _key_type_of(key: PrivateKey) -> KeyType:
    return "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ec"


def _ca_spec(subject: x509.Name, key: PrivateKey, not_before: TimeSpec | None, not_after: TimeSpec | None,
             path_length: int | None, ca: bool, key_cert_sign: bool, crl_sign: bool, key_ids: bool,
             serial: int | None) -> _Spec:
    usage = _key_usage(digital_signature=True, key_cert_sign=key_cert_sign, crl_sign=crl_sign)
    return _Spec(
        subject=subject,
        key=key,
        not_before=_when(not_before, -_BACKDATE),
        not_after=_when(not_after, dt.timedelta(days=_CA_DAYS)),
        extensions=(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), usage),
        critical=frozenset({x509.BasicConstraints, x509.KeyUsage}),
        key_ids=key_ids,
        serial=serial if serial is not None else random_serial(),
    )


# --- CRLs ------------------------------------------------------------------------------------------------------------


class CRL:
    """A certificate revocation list."""

    def __init__(self, crl: x509.CertificateRevocationList) -> None:
        self.crl = crl

    def __repr__(self) -> str:
        return f"<CRL issuer={self.crl.issuer.rfc4514_string()!r} entries={len(self.crl)}>"

    @property
    def pem(self) -> bytes:
        return self.crl.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.crl.public_bytes(serialization.Encoding.DER)

    @property
    def revoked_serials(self) -> frozenset[int]:
        return frozenset(entry.serial_number for entry in self.crl)

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_pem(path, self.pem)


# --- the demo set ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """The files of the demo PKI (``demo_pki`` writes them; a bare ``gtls serve`` and the hints it prints use
    them, from the per-user folder of ``gtls.demo``)."""

    directory: Path

    @property
    def root_ca(self) -> Path:
        return self.directory / "root-ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server-cert.pem"

    @property
    def server_chain(self) -> Path:
        return self.directory / "server-chain.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def intermediate_ca(self) -> Path:
        return self.directory / "intermediate-ca.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client-cert.pem"

    @property
    def client_chain(self) -> Path:
        return self.directory / "client-chain.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def ca_bundle(self) -> Path:
        return self.directory / "ca-bundle.pem"

    @property
    def second_root_ca(self) -> Path:
        return self.directory / "second-root-ca.pem"

    def required(self) -> tuple[Path, ...]:
        """The files a bare ``gtls serve`` and its hints need."""
        return (self.root_ca, self.intermediate_ca, self.server_cert, self.server_chain, self.server_key,
                self.client_cert, self.client_chain, self.client_key)

    @property
    def files(self) -> dict[str, Path]:
        """File name → path for every file of the set."""
        return {p.name: p for p in (*self.required(), self.ca_bundle, self.second_root_ca, self.crl)}


@dataclass(frozen=True)
class DemoPKI(DemoFiles):
    """The files ``demo_pki`` wrote (paths from ``DemoFiles``), and the objects behind them (to issue more in tests)."""

    root: CA
    intermediate: CA
    second_root: CA
    server: Certified
    client: Certified
    root_crl: CRL
    intermediate_crl: CRL


def demo_pki(
    directory: str | os.PathLike[str],
    *,
    key_type: KeyType = "ec",
    server_names: Sequence[str] = ("localhost",),
    client_name: str = "gtls demo client",
    days: int = 365,
    ca_days: int | None = None,
    crl_days: int | None = None,
) -> DemoPKI:
    """Write the standard demo PKI to ``directory`` (created if needed) and return the paths.

    Root → intermediate → server and client leaves. The server leaf's CN is ``server_names[0]``; its dNSName SANs are
    ``server_names`` plus ``localhost``, with iPAddress 127.0.0.1 (spec §7 never consults it). Leaves are valid for
    ``days``, CAs for ``ca_days`` (default twice ``days``), CRLs until ``crl_days`` (default ``days``) from now.
    ``crl.pem`` holds a current CRL from the root and one from the intermediate listing one unrelated serial.
    ``ca-bundle.pem`` is the root plus an unrelated second root, for multi-CA ``trusted-ca`` files.
    """
    if not server_names:
        raise ValueError("server_names needs at least one name")
    ca_valid = dt.timedelta(days=ca_days if ca_days is not None else 2 * days)
    leaf_valid = dt.timedelta(days=days)
    crl_valid = dt.timedelta(days=crl_days if crl_days is not None else days)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)

    root = CA.root("gtls demo root CA", key_type=key_type, not_after=ca_valid)
    intermediate = root.intermediate("gtls demo intermediate CA", key_type=key_type, not_after=ca_valid,
                                     path_length=0)
    second_root = CA.root("gtls demo second root CA", key_type=key_type, not_after=ca_valid)
    dns = list(dict.fromkeys([*server_names, "localhost"]))
    # Genesys uses one certificate for both roles, so the server leaf also allows clientAuth (spec §4.3).
    server = intermediate.leaf(server_names[0], dns=dns, ips=["127.0.0.1"], eku=("server", "client"),
                               key_type=key_type, not_after=leaf_valid)
    client = intermediate.leaf(client_name, eku=("client",), key_type=key_type, not_after=leaf_valid)
    root_crl = root.crl(next_update=crl_valid)
    intermediate_crl = intermediate.crl(count=1, next_update=crl_valid)

    demo = DemoPKI(out, root, intermediate, second_root, server, client, root_crl, intermediate_crl)
    root.write_cert(demo.root_ca)
    intermediate.write_cert(demo.intermediate_ca)
    server.write_cert(demo.server_cert)
    server.write_chain(demo.server_chain)
    server.write_key(demo.server_key)
    client.write_cert(demo.client_cert)
    client.write_chain(demo.client_chain)
    client.write_key(demo.client_key)
    write_pem(demo.ca_bundle, root, second_root)
    second_root.write_cert(demo.second_root_ca)
    write_pem(demo.crl, root_crl, intermediate_crl)
    return demo
