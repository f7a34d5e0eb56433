"""Compile resolved settings into a reusable pyOpenSSL ``SSL.Context`` (spec §4–§9).

``compile_context`` is the only place gtls reads certificate, key, CA and CRL files. The result is cached by role,
effective options and the SHA-256 of every file read, so equal settings share one context and a changed file gives a
new one. Handshakes then only create ``SSL.Connection`` objects from it: no file reads, no Python callback per
certificate (the one exception, ``tls-crl-expired=warn`` with a CRL, is documented at ``_allow_expired_crl``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import socket
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL, crypto

from . import _stat_memo, _verdicts
from . import errors as e
from ._printable import printable
from ._redact import redact
from ._sessions import ContextSlot, Renewed, enable_resumption
from ._ssl_compat import subject_rfc4514
from .errors import CredentialLoadError, CrlLoadError, HandshakeError, InvalidOptionValue, PeerVerificationError
from .options import TLSOptions, log_warnings
from .pki import hostcheck, names, reasons, system_trust
from .pki.certs import subject_text
from .pki.chain import assemble, leaf_warnings, load_certificates, select_leaf, split_list
from .pki.crl import freshness_warnings, issuer_text, load_crls
from .pki.keys import TLSKey, load_private_key
from .pki.pem import parse_blocks, read_file, resolve_path
from .pki.protocol import apply_ciphers, apply_versions, check_tls12_negotiable
from .pki.store import load_store, lookup, store_files, thumbprint
from .pki.strength import describe, weaknesses
from .pki.system_trust import Sources
from .pki.trust import load_trusted_cas, missing_file_hint
from .pki.where import Where
from .resolve import Resolved, Role, direct

#: OpenSSL's SSL_MODE_NO_AUTO_CHAIN (not exported by the binding): never complete our chain from the trust store.
SSL_MODE_NO_AUTO_CHAIN = 0x8
#: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a write retried after WANT_WRITE may come from another buffer holding the same
#: bytes (the stream keeps a copy of a cancelled send's unsent part). pyOpenSSL sets it since 25.2; said here too.
SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 0x2
#: Compiled contexts kept for reuse (least recently used dropped first).
CACHE_SIZE = 64
_T = TypeVar("_T")
#: The CA names of a certificate request travel in one list of at most 2**16 - 1 bytes (RFC 8446 §4.2.4, RFC 5246
#: §7.4.4), beside the request's other fields; past this, OpenSSL fails every mutual handshake with internal_error.
MAX_CA_NAMES_BYTES = 65_000


@dataclass
class BuildStats:
    """Counters a test or operator can read: contexts built, cache hits and files read by ``compile_context``."""

    builds: int = 0
    cache_hits: int = 0
    file_reads: int = 0


STATS = BuildStats()
_CACHE: OrderedDict[Hashable, CompiledContext] = OrderedDict()
#: Settings whose files were last seen unchanged → their stamps and context (see gtls._stat_memo).
_STAMPED: OrderedDict[Hashable, tuple[_stat_memo.Stamps, CompiledContext]] = OrderedDict()
#: ``TLSOptions`` given directly, by role and working directory → their resolution (it reads no files).
_DIRECT: OrderedDict[Hashable, Resolved] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _STAMPED.clear()
        _DIRECT.clear()


def _remember(cache: OrderedDict[Hashable, _T], key: Hashable, value: _T) -> None:
    with _CACHE_LOCK:
        _store(cache, key, value)


def _remember_first(cache: OrderedDict[Hashable, _T], key: Hashable, value: _T) -> _T:
    """``value`` under ``key``, unless another thread stored one first: then that one (the equal build is dropped)."""
    with _CACHE_LOCK:
        first = cache.get(key)
        if first is not None:
            cache.move_to_end(key)
            return first
        STATS.builds += 1
        _store(cache, key, value)
    return value


def _store(cache: OrderedDict[Hashable, _T], key: Hashable, value: _T) -> None:
    """Holding ``_CACHE_LOCK``: the newest entry, and the oldest dropped past ``CACHE_SIZE``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What the options name on disk, with every file's bytes read once."""

    certificate_files: tuple[Path, ...] = ()
    store: tuple[tuple[Path, ...], bool] | None = None
    thumbprint: str | None = None
    key_file: Path | None = None
    trusted_ca: Path | None = None
    crl_file: Path | None = None
    #: Profile windows without trusted-ca: the system store's files read (CA files, then folder entries, in order;
    #: their bytes in ``files``) and what could not be read (gtls.pki.system_trust).
    system: tuple[Path, ...] | None = None
    system_problems: tuple[str, ...] = ()
    files: dict[Path, bytes] = field(default_factory=dict)
    #: Each file's stamp, taken just before it was read (gtls._stat_memo).
    stamps: dict[Path, _stat_memo.Stamp | None] = field(default_factory=dict)


def _where(resolved: Resolved) -> Where:
    return Where(resolved.object_path, resolved.level.title if resolved.level is not None else None)


def _read_inputs(resolved: Resolved, where: Where, warnings: list[str]) -> _Inputs:
    opts = resolved.options
    base = resolved.base_dir
    files: dict[Path, bytes] = {}
    stamps: dict[Path, _stat_memo.Stamp | None] = {}

    def read(path: Path, option: str, error: type[e.ConfigError] = CredentialLoadError, hint: str = "") -> None:
        if path in files:
            return
        STATS.file_reads += 1
        before = _stat_memo.stamp(path)  # before the read: the bytes are at least as new as the stamp
        try:
            files[path] = read_file(path, option=option, where=where, error=error)
        except e.ConfigError as exc:
            if hint:
                exc.message += hint
                exc.args = (exc.message,)
            raise
        # A stamp that moved during the read may not belong to the bytes read (a symlink switched, then switched
        # back, would match it again): such a file is not stamped, so its settings are read again next time.
        stamps[path] = before if _stat_memo.stamp(path) == before else None

    cert_files: list[Path] = []
    store: tuple[tuple[Path, ...], bool] | None = None
    print_ = thumbprint(opts.certificate) if opts.certificate else None
    if print_ is not None:
        if not opts.certificate_store:
            raise where.error(
                e.UnsupportedFeature,
                f"certificate is the thumbprint {print_}; gtls finds thumbprints only in a certificate-store "
                "at the same level",
                option="certificate",
            )
        listed = [resolve_path(p, base, option="certificate-store", warnings=warnings)
                  for p in split_list(opts.certificate_store, option="certificate-store", where=where)]
        store_list, from_dir = store_files(listed)
        store = (tuple(store_list), from_dir)
        for path in store_list:
            try:
                read(path, "certificate-store")
            except e.ConfigError as exc:
                if not from_dir:
                    raise
                warnings.append(f"certificate-store: skipped {path}: {exc.message}")
        if opts.certificate_key:
            warnings.append("certificate-key is ignored: a thumbprint certificate takes its key from certificate-store")
    elif opts.certificate:  # an unused certificate-store is reported by resolution (once, naming its level)
        for item in split_list(opts.certificate, option="certificate", where=where):
            path = resolve_path(item, base, option="certificate", warnings=warnings)
            cert_files.append(path)
            read(path, "certificate")
    key_file = None
    if opts.certificate_key and print_ is None:
        key_file = resolve_path(opts.certificate_key.strip(), base, option="certificate-key", warnings=warnings)
        read(key_file, "certificate-key")
    trusted = None
    if opts.trusted_ca:
        if thumbprint(opts.trusted_ca) is not None:
            raise where.error(
                InvalidOptionValue,
                "trusted-ca must be the path of a PEM file; thumbprints are not supported here",
                option="trusted-ca",
            )
        trusted = resolve_path(opts.trusted_ca.strip(), base, option="trusted-ca", warnings=warnings)
        read(trusted, "trusted-ca", hint=missing_file_hint(opts.trusted_ca))
    system = _read_system_store(files, stamps) if _uses_system_store(resolved) else None
    crl_file = None
    crl_value = opts.effective_crl
    if crl_value and resolved.profile == "windows":
        warnings.append("tls-crl is ignored under profile windows (gtls fetches no CRL distribution points)")
    elif crl_value:
        crl_file = resolve_path(crl_value.strip(), base, option="tls-crl", warnings=warnings)
        read(crl_file, "tls-crl", CrlLoadError, hint=missing_file_hint(crl_value, "tls-crl"))
    return _Inputs(tuple(cert_files), store, print_, key_file, trusted, crl_file,
                   system[0] if system else None, system[1] if system else (), files, stamps)


def _uses_system_store(resolved: Resolved) -> bool:
    """Profile windows without trusted-ca verifies against the system trust store (spec §1.6)."""
    return resolved.profile == "windows" and not resolved.options.trusted_ca


def _read_system_store(files: dict[Path, bytes], stamps: dict[Path, _stat_memo.Stamp | None]
                       ) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """Every file of the system store, read now so no handshake reads one (gtls.pki.system_trust), with stamps for
    the cache: the CA files' and the folders' (a folder's changes when an entry is added, removed or relinked, as
    ``openssl rehash`` and ``update-ca-certificates`` do), absent ones included. Not each entry's: ~150 more stats
    took a cache hit from ~15 µs to ~450 µs; an entry rewritten in place alone counts from the next full compile."""
    where = system_trust.sources()
    problems: list[str] = []
    order: list[Path] = []
    candidates = list(where.files)
    for folder in where.folders:
        stamps[folder] = _stat_memo.presence(folder)  # before listing it, as files are stamped before reading
        candidates += system_trust.entries(folder, problems)
    for path in candidates:
        if path in files:
            continue
        if path in where.files:
            stamps[path] = _stat_memo.presence(path)
        STATS.file_reads += 1
        data = system_trust.read(path, problems)
        if data is not None:
            files[path] = data
            order.append(path)
    return tuple(order), tuple(problems)


def _settings_key(resolved: Resolved, alpn: tuple[bytes, ...] = ()) -> tuple[Hashable, ...]:
    """What identifies settings apart from the contents of their files (and the ALPN protocols of the context)."""
    # The system store's sources come from the environment: a new SSL_CERT_DIR is other settings (a few stats).
    system: Sources | None = system_trust.sources() if _uses_system_store(resolved) else None
    return (resolved.role, resolved.secure, resolved.options, resolved.profile, str(resolved.base_dir), alpn, system)


def alpn_ids(protocols: Iterable[str] | None) -> tuple[bytes, ...]:
    """ALPN protocol names (``"h2"``, ``"http/1.1"``) as the wire takes them; ValueError for what it cannot."""
    if protocols is None:
        return ()
    if isinstance(protocols, str | bytes):
        raise TypeError("alpn_protocols is a list of protocol names, such as ['h2', 'http/1.1']")
    ids = []
    for name in protocols:
        if not isinstance(name, str):
            raise TypeError(f"ALPN protocol names are str, not {type(name).__name__}: {name!r}")
        try:
            raw = name.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"ALPN protocol name {name!r} is not ASCII") from None
        if not 0 < len(raw) < 256:
            raise ValueError(f"ALPN protocol name {name!r} must have 1 to 255 characters")
        ids.append(raw)
    unique = tuple(dict.fromkeys(ids))
    if sum(1 + len(raw) for raw in unique) > 65535:  # the extension's two-byte length
        raise ValueError("ALPN protocol names take more than the 65,535 bytes the extension can carry")
    return unique


def _file_digests(inputs: _Inputs) -> tuple[tuple[str, str], ...]:
    """(path, SHA-256 of its contents) of every file the settings read, in path order."""
    return tuple(sorted((str(p), hashlib.sha256(data).hexdigest()) for p, data in inputs.files.items()))


def _cache_key(settings_key: tuple[Hashable, ...], inputs: _Inputs) -> Hashable:
    digests = _file_digests(inputs)
    # Who may read the key file is part of the settings' state: a key made readable by others must be refused (or
    # warned about) by the next compile, not served from the cache because its bytes are the same.
    key_access = _group_other_bits(inputs.key_file) if inputs.key_file is not None else None
    return (*settings_key, digests, key_access)


def _group_other_bits(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode & 0o077
    except OSError:
        return None


def compile_context(resolved: Resolved, *, alpn: Iterable[str] | None = None) -> CompiledContext:
    """The compiled context for ``resolved``: files read and checked now, the result cached and shared.

    ``alpn``: the ALPN protocols this context offers (client) or accepts, in order of preference (server); a
    context of its own, since OpenSSL's server selection is set per context.

    While the files of settings compiled before are unchanged on disk (their stamps, ``gtls._stat_memo``), their
    context is returned after one ``stat`` per file instead of reading and hashing them again."""
    given: object = resolved  # untyped callers: an AttributeError on .role said nothing about what to pass
    if not isinstance(given, Resolved):
        hint = "; resolve TLSOptions first: gtls.direct(options, 'server' or 'client')" if isinstance(
            given, TLSOptions) else ""
        raise TypeError(f"compile_context takes Resolved settings (gtls.direct, resolve_server, resolve_client or "
                        f"an endpoint's .resolved), not {type(given).__name__}{hint}")
    protocols = alpn_ids(alpn)
    settings_key = _settings_key(resolved, protocols)
    stamped = _STAMPED.get(settings_key)
    if stamped is not None and _stat_memo.unchanged(stamped[0]):
        STATS.cache_hits += 1
        return _seen_by(stamped[1], resolved)
    where = _where(resolved)
    target_name = resolved.options.tls_target_name
    if resolved.role == "client" and target_name is not None:
        # Refused here, with the configuration errors, rather than by every connection after its TCP connect.
        try:
            reference = names.normalise_reference(target_name)
            if resolved.options.tls_target_name_check == "host":
                names.checked_reference(reference)
        except names.BadReferenceName as exc:
            raise where.error(InvalidOptionValue, str(exc), option="tls-target-name") from None
    warnings: list[str] = []
    try:
        inputs = _read_inputs(resolved, where, warnings)
        key = _cache_key(settings_key, inputs)
        with _CACHE_LOCK:
            compiled = _CACHE.get(key)
            if compiled is not None:
                _CACHE.move_to_end(key)
                STATS.cache_hits += 1
        if compiled is None:
            # Built outside the lock (it can take milliseconds); a thread that built the same settings meanwhile
            # won, and its context is the one every endpoint shares (a session then resumes on any port using it).
            compiled = _remember_first(_CACHE, key, _build(resolved, inputs, where, warnings, protocols))
    except e.ConfigError as exc:
        # What was warned on the way is often the cause: an identity skipped as world-readable, then "thumbprint
        # not found"; a relative path, then "file not found". The error carries it rather than losing it.
        exc.with_warnings(_located(resolved, warnings))
        raise
    # A certificate-store folder can gain files without any stamped file changing: those settings are always read.
    stamps = _stat_memo.settled(inputs.stamps.items()) if inputs.store is None else None
    if stamps is not None:
        _remember(_STAMPED, settings_key, (stamps, compiled))
    return _seen_by(compiled, resolved)


def _located(resolved: Resolved, warnings: Sequence[str]) -> tuple[str, ...]:
    """``warnings`` headed by ``resolved``'s endpoint and level (``CompiledContext.located_warnings``)."""
    if resolved.object_path is None:
        return tuple(warnings)
    level = _where(resolved).level
    head = f"{resolved.object_path}: {level}: " if level else f"{resolved.object_path}: "
    return tuple(head + warning for warning in warnings)


def _seen_by(compiled: CompiledContext, resolved: Resolved) -> CompiledContext:
    """``compiled`` for the endpoint ``resolved`` describes. Endpoints with equal settings share one SSL context,
    but each must see its own object path, level and provenance (``TLSStream.settings``, error messages): a
    connection's error must not name another connection that happened to be compiled first."""
    if compiled.resolved is resolved or compiled.resolved == resolved:
        return compiled
    return replace(compiled, resolved=resolved)


def compile_settings(settings: Resolved | TLSOptions | CompiledContext, role: Role, *,
                     alpn: Iterable[str] | None = None) -> CompiledContext:
    """Any form of settings a public entry point takes → the compiled context for ``role`` (cached as above).

    ``TLSOptions`` are settings given directly (``resolve.direct``); a ``Resolved`` must be for ``role`` and secure
    (fail closed: never a TLS endpoint from plaintext settings); a ``CompiledContext`` must be for ``role``.
    ``alpn``: the ALPN protocols (None: a ``CompiledContext`` keeps its own, other settings offer none)."""
    wanted = alpn_ids(alpn) if alpn is not None else None  # read once: any iterable will do, as for ssl's
    if wanted is not None:
        alpn = tuple(name.decode("ascii") for name in wanted)
    if isinstance(settings, CompiledContext):  # the per-connection case: checked first, nothing else to do
        if settings.role != role:
            raise ValueError(f"this context was compiled for a {settings.role}, not a {role}")
        if wanted is not None and wanted != settings.alpn_ids:
            return compile_context(settings.resolved, alpn=alpn)
        return settings
    if isinstance(settings, TLSOptions):
        # Callers that pass the same options for every connection resolve them once (~90 µs each time otherwise);
        # relative paths depend on the working directory, so it is part of the key.
        direct_key = (settings, role, os.getcwd())
        resolved = _DIRECT.get(direct_key)
        if resolved is None:
            resolved = direct(settings, role)
            _remember(_DIRECT, direct_key, resolved)
        settings = resolved
    if isinstance(settings, Resolved):
        if settings.role != role:
            raise ValueError(f"settings were resolved for a {settings.role}, not a {role}")
        if not settings.secure:
            raise e.ConfigError(
                "these settings are not secure (tls is off); refusing to open a TLS endpoint with them",
                object_path=settings.object_path,
                option="tls",
            )
        return compile_context(settings, alpn=alpn)
    raise TypeError(f"settings must be Resolved, TLSOptions or CompiledContext, not {type(settings).__name__}")


def _identity(
    resolved: Resolved, inputs: _Inputs, where: Where, warnings: list[str]
) -> tuple[list[x509.Certificate], TLSKey, Path] | None:
    """The chain served (leaf first), its key, and the file the key was read from (a store's identity file)."""
    if inputs.thumbprint is not None and inputs.store is not None:
        store_list, from_dir = inputs.store
        readable = [p for p in store_list if p in inputs.files]
        index = load_store(readable, from_dir, inputs.files, where=where, warnings=warnings)
        found = lookup(index, inputs.thumbprint, where=where)
        loaded, key, option, key_file = found.certificates, found.key, "certificate", found.file
    elif inputs.certificate_files:
        if inputs.key_file is None:  # normally caught by resolution; fail closed for hand-made settings too
            raise where.error(e.IncompleteTlsLevel, "certificate is set without certificate-key",
                              option="certificate-key")
        loaded = load_certificates(inputs.certificate_files, inputs.files, option="certificate", where=where,
                                   warnings=warnings, key_file=inputs.key_file)
        key = load_private_key(inputs.key_file, inputs.files, option="certificate-key", where=where,
                               warnings=warnings)
        option, key_file = "certificate", inputs.key_file
    else:
        return None
    leaf = select_leaf(loaded, key, option=option, key_file=key_file, where=where)
    chain = assemble(loaded, leaf, option=option, warnings=warnings)
    leaf_warnings(chain[0], resolved.role, dt.datetime.now(dt.UTC), option=option, warnings=warnings)
    return chain, key, key_file


#: Connections whose handshake accepted an expired CRL (tls-crl-expired=warn), with the depths of the certificates
#: it was checked for (the CRL is their issuer's); weak, so nothing leaks.
_WAIVED_CRL_EXPIRY: weakref.WeakKeyDictionary[SSL.Connection, set[int]] = weakref.WeakKeyDictionary()


def _allow_expired_crl(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
    """Verify callback installed ONLY with ``tls-crl-expired=warn`` and a CRL in use: let ``CRL_HAS_EXPIRED`` pass,
    change nothing else. OpenSSL has no flag that ignores just CRL expiry (``NO_CHECK_TIME`` or a pinned time would
    relax certificate validity too), so this is the one Python call per certificate gtls accepts, and only here.
    Cost: pyOpenSSL wraps each certificate of the peer's path for the call (measured in benchmarks/context_build.py).
    OpenSSL clears the error once the path verifies, so the waiver is noted for ``CompiledContext.established``."""
    if ok:
        return True
    if errnum == reasons.CRL_HAS_EXPIRED:
        _WAIVED_CRL_EXPIRY.setdefault(conn, set()).add(depth)
        return True
    return False


def _peer_leaf(conn: SSL.Connection) -> x509.Certificate | bytes | None:
    """The peer's certificate for the name check: ``cryptography``'s, else its DER (OpenSSL accepts certificates
    cryptography cannot load, such as a version field of 3: its InvalidVersion escaped the handshake)."""
    leaf = conn.get_peer_certificate()
    if leaf is None:
        return None
    der = crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        return der


@dataclass(eq=False)
class CompiledContext:
    """A ready ``SSL.Context`` plus what gtls needs around it. Build with ``compile_context``."""

    #: The SSL context of new connections (``ssl_context``), shared by the copies ``_seen_by`` makes.
    _slot: ContextSlot
    resolved: Resolved
    role: Role
    chain: tuple[x509.Certificate, ...]
    warnings: tuple[str, ...]
    trusted: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    verify_flags: int
    #: Whether this side verifies the peer's certificate (client; server with tls-mutual=1).
    verifies_peer: bool
    crl_expired_warn: bool
    #: The ALPN protocols, as on the wire (``compile_context(..., alpn=...)``).
    alpn_ids: tuple[bytes, ...] = ()
    _references: weakref.WeakKeyDictionary[SSL.Connection, str] = field(default_factory=weakref.WeakKeyDictionary)
    #: Normalised names by dialled host: ``reference_name`` and ``sni_name`` cost ~7 µs per client connection.
    _name_cache: dict[str | None, tuple[str | None, str | None]] = field(default_factory=dict)
    #: Profile windows without trusted-ca: the system store's certificates, as this context's store holds them.
    system_anchors: tuple[crypto.X509, ...] = ()
    #: The trusted CAs and CRLs converted for OpenSSL once, shared by the offline verifier's stores (gtls._offline):
    #: converting them per verification took 40 ms for a CRL of 50,000 entries, on a path peers can trigger.
    _verify_cas: tuple[crypto.X509, ...] | None = None
    _verify_crls: tuple[Any, ...] | None = None
    #: Per CRL: whether it has a critical extension OpenSSL does not handle (gtls._offline, tls-crl-expired=warn).
    _crl_unhandled: tuple[bool, ...] | None = None

    @property
    def ssl_context(self) -> SSL.Context:
        """The ``SSL.Context`` new connections are made on now (a server's is renewed hourly: gtls._sessions)."""
        return self._slot.context

    @property
    def located_warnings(self) -> tuple[str, ...]:
        """``warnings``, each headed by the endpoint and the level of its settings, as resolution warnings are
        (``applications.srv.ports.p: Host: …``): a service with several ports must tell which one to fix. Settings
        given directly have no location, and their warnings stay as they are."""
        return _located(self.resolved, self.warnings)

    @property
    def alpn_protocols(self) -> tuple[str, ...]:
        """The ALPN protocols this context offers (client) or accepts (server), in order of preference."""
        return tuple(protocol.decode("ascii") for protocol in self.alpn_ids)

    @property
    def name_check(self) -> bool:
        return self.role == "client" and self.resolved.options.tls_target_name_check == "host"

    def _names_for(self, server_hostname: str | None, given_as: str) -> tuple[str | None, str | None]:
        """(reference name, SNI name) for a dialled host, remembered per host (a bounded cache; errors are not)."""
        found = self._name_cache.get(server_hostname)
        if found is None:
            reference = self.reference_name(server_hostname, given_as=given_as)
            found = (reference, names.sni_name(reference))
            if len(self._name_cache) >= 256:
                self._name_cache.clear()
            self._name_cache[server_hostname] = found
        return found

    def reference_name(self, server_hostname: str | None, *, given_as: str = "server_hostname") -> str | None:
        """The normalised reference name R: ``tls-target-name``, else the dialled host (spec §7). ``given_as``: what
        the caller called the dialled host (its parameter or deployment key), the option an error names."""
        raw = self.resolved.options.tls_target_name or server_hostname
        if raw is None:
            return None
        try:
            reference = names.normalise_reference(raw)
            return names.checked_reference(reference) if self.name_check else reference
        except names.BadReferenceName as exc:
            if self.resolved.options.tls_target_name:
                raise _where(self.resolved).error(InvalidOptionValue, str(exc), option="tls-target-name") from None
            # The dialled name is the connection's (or the caller's), not an option of any level: no level named.
            raise InvalidOptionValue(str(exc), option=given_as, object_path=self.resolved.object_path) from None

    def renew_if_due(self, sharing: Iterable[Resolved] = ()) -> None:
        """Renew a server's context when its session-ticket key is due (gtls._sessions), and log once, located at this
        endpoint and at the others ``sharing`` it, the warnings the renewal's build found that the first did not."""
        news = self._slot.renew_if_due(self._build_off_loop)
        if news:  # hourly at most; every new connection asks
            self.log_renewal(news, sharing)

    def _build_off_loop(self, build: Callable[[], tuple[str, ...]]) -> bool:
        """A connection of an event loop that finds the key due (before the serving loop's look at it, which comes
        at most RENEWAL_LOOK late after a suspend; on a listener accepting by itself) does not build the new context
        there, holding up every task of the loop for ~1 ms, ~0.1 s with a large CA bundle or CRL: a worker thread
        builds it, and the connection takes the current key. The thread is awaited by a system task, so trio.run
        does not return before the build ends. Elsewhere (a thread of its own) it builds in place."""
        from trio import lowlevel  # only when the key is due: hourly

        try:
            lowlevel.spawn_system_task(self._build_in_thread, build, name="gtls ticket-key renewal")
        except RuntimeError:  # not in an event loop (or one that is closing): in place
            return False
        return True

    async def _build_in_thread(self, build: Callable[[], tuple[str, ...]]) -> None:
        import trio

        ran: list[bool] = []

        def in_thread() -> tuple[str, ...]:
            ran.append(True)
            return build()

        # A system task must not raise (trio.run would end with TrioInternalError), and ``build`` must run: it ends
        # the renewal this connection took, else no renewal would ever be taken again. Shielded, and with a thread
        # token of its own, so it runs whatever happens (a closing run waits for it, ~0.1 s at most); where no
        # worker thread can be started (can't start new thread), here, as before the hand-off. A failure to log
        # (the logging setup's own: a filter that raises) is dropped.
        with contextlib.suppress(Exception), trio.CancelScope(shield=True):
            try:
                news = await trio.to_thread.run_sync(in_thread, limiter=trio.CapacityLimiter(1))
            except Exception:
                if ran:
                    raise
                news = build()
            self.log_renewal(news)

    def log_renewal(self, news: tuple[str, ...], sharing: Iterable[Resolved] = ()) -> None:
        """Log a renewal's new warnings (see ``renew_if_due``; the serving loop renews in a worker thread)."""
        if news:
            for resolved in dict.fromkeys((self.resolved, *sharing)):
                log_warnings(_located(resolved, news))

    def new_connection(self, sock: socket.socket | None = None, *, server_hostname: str | None = None
                       ) -> SSL.Connection:
        """An ``SSL.Connection`` in connect (client) or accept (server) state, with SNI and the name check set."""
        self.renew_if_due()
        conn = SSL.Connection(self._slot.for_connection(), sock)
        if self.role == "server":
            conn.set_accept_state()
            return conn
        conn.set_connect_state()
        reference, sni = self.client_names(server_hostname)
        if reference is not None:
            self._references[conn] = reference
            if hostcheck.AVAILABLE:
                hostcheck.set_reference_name(conn, names.openssl_reference(reference))
        if sni is not None:
            conn.set_tlsext_host_name(sni.encode("ascii"))
        return conn

    def client_names(self, server_hostname: str | None, *, given_as: str = "server_hostname"
                     ) -> tuple[str | None, str | None]:
        """(reference name to check, or None without the name check; SNI name, or None) for a connection dialled
        as ``server_hostname``. Raises ``InvalidOptionValue`` for a name that cannot be checked, naming ``given_as``
        (``host`` when the caller gave no server_hostname): the connector calls this before it dials, so such a
        name costs no TCP connection."""
        if self.name_check:
            reference, sni = self._names_for(server_hostname, given_as)
            if reference is None:
                raise _where(self.resolved).error(
                    InvalidOptionValue,
                    "tls-target-name-check=host needs a reference name: set tls-target-name or dial a host name",
                    option="tls-target-name-check",
                )
            return reference, sni
        try:
            return None, self._names_for(server_hostname, given_as)[1]
        except e.ConfigError:
            if self.resolved.options.tls_target_name:
                raise
            return None, None  # an odd dialled host is fine without the name check; just send no SNI

    @property
    def checks_after_handshake(self) -> bool:
        """Whether ``established`` has anything to do: a client name check OpenSSL could not run, or the warnings
        of ``tls-crl-expired=warn``. Read per handshake, so the common case skips the call (and the peer text)."""
        return self.crl_expired_warn or (self.role == "client" and not hostcheck.AVAILABLE)

    def established(self, conn: SSL.Connection, *, peer: str | None = None) -> list[str]:
        """Call right after a successful handshake, before any data is returned. Runs the pure-Python name check
        when the private API is missing (raising ``PeerVerificationError``) and returns warnings to log for this
        handshake (an expired CRL accepted under ``tls-crl-expired=warn``), headed by the endpoint as
        ``located_warnings`` are when the settings come from a deployment file."""
        out: list[str] = []
        reference = self._references.get(conn)
        if reference is not None and not hostcheck.AVAILABLE:
            cert = _peer_leaf(conn)
            if cert is None or not names.matches(cert, reference):
                message = names.mismatch_message(cert, reference) if cert is not None else "no server certificate"
                raise PeerVerificationError(e.NAME_MISMATCH, message, peer=peer, depth=0, subject=(
                    None if cert is None else subject_text(cert) if isinstance(cert, x509.Certificate)
                    else printable(subject_rfc4514(cert))))
        depths = _WAIVED_CRL_EXPIRY.get(conn) if self.crl_expired_warn else None
        if depths:
            now = dt.datetime.now(dt.UTC)
            expired = [(crl, crl.next_update_utc) for crl in self.crls
                       if crl.next_update_utc is not None and crl.next_update_utc < now]
            # Only the CRLs this chain used: those of the issuers of the certificates whose check waived an expiry
            # (leaf scope: the leaf's issuer only). Runs only after a waiver, so reading the chain costs little.
            try:
                chain = conn.get_verified_chain(as_cryptography=True) or []
            except Exception:  # noqa: BLE001 - a certificate OpenSSL verified but cryptography cannot load (an X.509
                chain = []  # version field of 3): no issuer is known, so every expired CRL is named below
            issuers = [chain[depth].issuer for depth in depths if depth < len(chain)]
            # A waiver is never silent: should no CRL match (an issuer name encoded differently), name them all.
            expired = [item for item in expired if item[0].issuer in issuers] or expired
            for crl, next_update in expired:
                out.append(f"tls-crl: accepted the expired CRL of {issuer_text(crl)} (next update "
                           f"{next_update:%Y-%m-%d %H:%M} UTC) because tls-crl-expired=warn"
                           + (f"; peer {peer}" if peer else ""))
        return list(_located(self.resolved, out)) if out else out  # headed by the endpoint, as load-time ones are

    def handshake_failure(self, conn: SSL.Connection, exc: BaseException, peer: str | None = None
                          ) -> HandshakeError:
        """The error of a failed handshake on a connection of this context (gtls._verdicts)."""
        return _verdicts.handshake_failure(self, conn, exc, peer)

    def late_rejection(self, conn: SSL.Connection, exc: SSL.Error, peer: str | None = None) -> HandshakeError | None:
        """A TLS 1.3 client's first read failed: the server's late rejection, or None (gtls._verdicts)."""
        return _verdicts.late_rejection(self, conn, exc, peer)


def _refuse_weak_chain(chain: list[x509.Certificate], inputs: _Inputs, where: Where) -> None:
    """Our own chain under OpenSSL's security level, now: it would refuse a weak leaf here with a bare library error,
    and a weak intermediate only when sending it, failing every handshake with ``internal_error``."""
    for cert, found in zip(chain, weaknesses(chain), strict=True):
        if found is not None:
            raise where.error(CredentialLoadError, describe(cert, found), option="certificate",
                              file=_file_holding(cert, inputs))


def _file_holding(cert: x509.Certificate, inputs: _Inputs) -> Path | None:
    """The ``certificate`` (or store) file ``cert`` was read from, so an error about it names the file to fix in a
    list of several. Error path only: the files are scanned again."""
    der = cert.public_bytes(serialization.Encoding.DER)
    candidates = inputs.certificate_files or (inputs.store[0] if inputs.store is not None else ())
    for path in candidates:
        if path in inputs.files and any(block.der == der for block in parse_blocks(inputs.files[path])):
            return path
    return None


def _build(resolved: Resolved, inputs: _Inputs, where: Where, warnings: list[str],
           alpn: tuple[bytes, ...] = ()) -> CompiledContext:
    opts = resolved.options
    role = resolved.role
    now = dt.datetime.now(dt.UTC)
    ctx = SSL.Context(SSL.TLS_METHOD)
    if alpn:
        _apply_alpn(ctx, role, alpn)
    versions = apply_versions(ctx, opts.sec_protocol)
    cipher_string, versions = apply_ciphers(ctx, opts.cipher_list, versions, where=where, warnings=warnings)
    ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)

    identity = _identity(resolved, inputs, where, warnings)
    if identity is None and role == "server":  # normally caught by resolution; a server cannot work without one
        raise where.error(e.IncompleteTlsLevel, "a secure server needs certificate and certificate-key",
                          option="certificate")
    chain: list[x509.Certificate] = []
    identity_file = None
    if identity is not None:
        chain, key, identity_file = identity
        _refuse_weak_chain(chain, inputs, where)
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)
        ctx.check_privatekey()
    if cipher_string is not None:  # a server's ciphers must suit its key: checked once it is loaded
        server_identity = (chain[0], key) if identity is not None and role == "server" else None
        check_tls12_negotiable(cipher_string, versions, server_identity, where=where, warnings=warnings)

    store = ctx.get_cert_store()
    assert store is not None
    trusted: list[x509.Certificate] = []
    if inputs.trusted_ca is not None:
        trusted = load_trusted_cas(inputs.trusted_ca, inputs.files, where=where, warnings=warnings, now=now)
        for ca, found in zip(trusted, weaknesses(trusted), strict=True):
            store.add_cert(crypto.X509.from_cryptography(ca))
            if found is not None:  # a self-signed CA's own signature is never judged, as in OpenSSL
                warnings.append(f"trusted-ca: {describe(ca, found)}; paths through it fail (untrusted): "
                                f"{inputs.trusted_ca}")  # the file, as the other trusted-ca warnings say
    system_anchors: tuple[crypto.X509, ...] = ()
    if inputs.system is not None:  # profile windows without trusted-ca: the system trust store (spec §1.6)
        system_anchors, skipped = system_trust.anchors(inputs.system, inputs.files, inputs.system_problems)
        for anchor in system_anchors:
            store.add_cert(anchor)
        warnings.extend([skipped] if skipped else [])
        warnings.extend(_system_trust_warnings(resolved))

    mutual = bool(opts.tls_mutual) and role == "server"
    verifies_peer = role == "client" or mutual
    crls: list[x509.CertificateRevocationList] = []
    flags = 0
    if inputs.crl_file is not None:
        crls = load_crls(inputs.crl_file, inputs.files, where=where, warnings=warnings)
        if verifies_peer:
            for crl in crls:
                store.add_crl(crl)
            flags = crypto.X509StoreFlags.CRL_CHECK
            if opts.tls_crl_scope == "chain":
                flags |= crypto.X509StoreFlags.CRL_CHECK_ALL
            store.set_flags(flags)
            warnings.extend(freshness_warnings(crls, now, path=inputs.crl_file,
                                               expired_policy=opts.tls_crl_expired or "reject"))
    # tls-crl on a server without tls-mutual=1, and tls-crl-scope/-expired without tls-crl, are reported by resolution
    # (once, naming the level), not again here in other words.
    crl_expired_warn = bool(crls) and verifies_peer and opts.tls_crl_expired == "warn"

    if role == "client":
        mode = SSL.VERIFY_PEER
    elif mutual:
        mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        if trusted:  # advertise acceptable issuers in the certificate request (spec §6, MAY)
            _advertise_client_cas(ctx, trusted, warnings)
    else:
        mode = SSL.VERIFY_NONE
    # No Python verify callback on the handshake path, except the CRL-expiry waiver (see _allow_expired_crl).
    ctx.set_verify(mode, _allow_expired_crl if crl_expired_warn else None)

    epochs = None
    renew: Callable[[], Renewed] | None = None
    if role == "server":
        # Resumption only among connections of equal settings (TLS 1.2 ids and 1.3 tickets), for SESSION_LIFETIME;
        # where clients are verified, in epochs that end every chain of resumptions in time (gtls._sessions).
        settings_identity = repr((resolved.options, [c.fingerprint(hashes.SHA256()) for c in chain],
                                  _file_digests(inputs))).encode()
        epochs = enable_resumption(ctx, settings_identity, verifies_clients=mutual)
        if versions[0] <= SSL.TLS1_2_VERSION and not ctx.set_options(0) & SSL.OP_NO_TICKET:
            # It may issue TLS 1.2 tickets: built anew hourly for a fresh ticket key, from what it was built from.
            kept = _renewal_inputs(inputs, identity_file)

            def renew() -> Renewed:
                # Hourly, so also a check of what time changes: a certificate or CRL that expired while the port
                # ran is said when the key is renewed (CompiledContext.renew_if_due), not only when it opens again.
                found: list[str] = []
                fresh = _build(resolved, kept, where, found, alpn)
                known = set(map(redact, warnings))
                return fresh._slot.current, tuple(w for w in dict.fromkeys(map(redact, found)) if w not in known)
    else:
        # OpenSSL's client-side cache only stores sessions (a client never looks one up there: a caller resumes with
        # get_session()/set_session()), and gtls reads none of them back: each connection's session (~12 KB) stayed
        # there until the cache's 20,480-session limit, per context.
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        # Nor does it ask a TLS 1.2 server for a session ticket: one is the session's master secret encrypted under
        # the server's ticket key, which most servers never change (OpenSSL's default; gtls renews its own hourly),
        # so a recorded connection would stay decryptable by whoever reads that key later. (TLS 1.3 tickets keep
        # forward secrecy; servers send them unasked, and OpenSSL discards them here.)
        ctx.set_options(SSL.OP_NO_TICKET)

    return CompiledContext(
        _slot=ContextSlot(ctx, epochs, renew),
        resolved=resolved,
        role=role,
        chain=tuple(chain),
        warnings=tuple(dict.fromkeys(map(redact, warnings))),  # users print them: no key pasted into a value
        trusted=tuple(trusted),
        crls=tuple(crls),
        verify_flags=int(flags),
        verifies_peer=verifies_peer,
        crl_expired_warn=crl_expired_warn,
        alpn_ids=alpn,
        system_anchors=system_anchors,
    )


def _renewal_inputs(inputs: _Inputs, identity_file: Path | None) -> _Inputs:
    """What a server context is built anew from (its ticket key's renewal, gtls._sessions): the files this build
    used. Of a certificate-store only ``identity_file``, the one the served identity was loaded from: the others may
    hold other identities' keys, which must not stay in memory for the renewals' sake. (Not the first file holding
    the served certificate: a copy without its key, skipped by the store, made every renewal fail.)"""
    if inputs.store is None or identity_file is None:
        return replace(inputs, stamps={})
    keep = {identity_file, inputs.trusted_ca, inputs.crl_file, *(inputs.system or ())}
    return replace(inputs, files={path: data for path, data in inputs.files.items() if path in keep}, stamps={})


def _system_trust_warnings(resolved: Resolved) -> list[str]:
    """What profile windows without trusted-ca lets through (spec §1.6, E8): as specified, so not refused, but never
    silent. The system trust store holds hundreds of public CAs, any of which issues certificates to anyone."""
    opts = resolved.options
    if resolved.role == "server" and opts.tls_mutual:
        return ["tls-mutual=1 without trusted-ca (profile windows): clients are verified against the system trust "
                "store, so a client certificate any of its CAs issued is accepted, whoever it was issued to; set "
                "trusted-ca to the CAs that issue your clients' certificates"]
    if resolved.role == "client" and opts.tls_target_name_check != "host":
        return ["no trusted-ca and tls-target-name-check=no (profile windows): the server is verified against the "
                "system trust store without a name check, so a certificate any of its CAs issued, for any name, "
                "is accepted (a man in the middle needs only a certificate from a public CA); set "
                "tls-target-name-check=host, or trusted-ca to the CAs of your servers"]
    return []


def _apply_alpn(ctx: SSL.Context, role: Role, protocols: tuple[bytes, ...]) -> None:
    """A client offers ``protocols``; a server picks the first of them the client offers (its own preference, as
    Python's ``ssl`` does), and with none in common goes on without ALPN (``NOACK``, also as Python's ``ssl``) rather
    than failing the handshake: the application then sees ``alpn_protocol`` None and decides. The server's choice
    is the one Python call per handshake gtls makes, and only on contexts given ALPN protocols."""
    if role == "client":
        ctx.set_alpn_protos(list(protocols))
        return

    def select(_conn: SSL.Connection, offered: list[bytes]) -> Any:  # bytes, or pyOpenSSL's no-overlap marker
        for protocol in protocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    ctx.set_alpn_select_callback(select)


def _advertise_client_cas(ctx: SSL.Context, trusted: list[x509.Certificate], warnings: list[str]) -> None:
    """List the trusted CAs' subjects in the certificate request, unless they do not fit in one: then the request
    carries no names (clients choose their certificate without the hint) rather than every handshake failing."""
    size = sum(2 + len(ca.subject.public_bytes()) for ca in trusted)  # each name as sent: length + DER
    if size > MAX_CA_NAMES_BYTES:
        warnings.append(
            f"trusted-ca holds {len(trusted)} CA names ({size} bytes), more than a TLS certificate request can carry "
            f"({MAX_CA_NAMES_BYTES} bytes): the server sends no CA names, so clients choose their certificate "
            "without that hint"
        )
        return
    # One name per CA, taken from the certificate by OpenSSL: no X509Name (deprecated), so no warnings filter to
    # change around it (warnings.catch_warnings swaps the process-wide filters: servers compiled in two threads at
    # once left DeprecationWarning ignored for the whole program).
    for ca in trusted:
        ctx.add_client_ca(ca)


__all__ = ["STATS", "BuildStats", "CompiledContext", "clear_cache", "compile_context"]
