"""Offline verification: the handshake's policy (store, flags, CRLs, purpose, name rule) on a given chain (spec §9).

``verify_chain`` is the public entry point: it compiles the settings as a port or connector would and runs the
offline verifier (``gtls._offline``), which ``CompiledContext.handshake_failure`` also runs on the failure path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from . import _advice
from ._offline import (
    ANCHOR_CRL_CHECKED,
    CertLike,
    Verdict,
    as_cryptography,
    der_subject,
    located_by_openssl,
    openssl_peer_chain,
    verify_compiled,
)
from .context import CompiledContext, compile_settings
from .errors import InvalidOptionValue, PeerVerificationError
from .options import TLSOptions
from .resolve import Resolved, Role


def verify_chain(
    chain: Sequence[CertLike],
    settings: Resolved | TLSOptions | CompiledContext,
    role: Role,
    target_name: str | None = None,
    at: dt.datetime | None = None,
) -> list[x509.Certificate]:
    """Verify a peer's ``chain`` (leaf first) offline with the policy a handshake of ``role`` would apply.

    ``role`` is the local side: ``"client"`` judges a server certificate (purpose ssl_server, name check when
    ``tls-target-name-check=host``, reference ``tls-target-name`` else ``target_name``); ``"server"`` judges a client
    certificate (ssl_client; CRLs only with ``tls-mutual=1``, as in a handshake). ``at`` pins the validation time.
    Returns the verified path, leaf first, or raises ``PeerVerificationError`` with reason, depth and subject; its
    message says what a handshake's would (the fault in OpenSSL's words, the certificate at fault, what to change),
    of a chain that would be refused."""
    compiled = compile_settings(settings, role)
    reference = None
    if compiled.name_check:
        reference = compiled.reference_name(target_name, given_as="target_name")
        if reference is None:
            raise InvalidOptionValue(
                "tls-target-name-check=host needs a reference name: pass target_name or set tls-target-name",
                option="tls-target-name-check",
            )
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    certs = as_cryptography(chain)
    try:
        return verify_compiled(compiled, certs, reference=reference, at=at)
    except Verdict as verdict:
        raise _advised(compiled, verdict, certs, clock=at is None) from None


def _advised(compiled: CompiledContext, verdict: Verdict, certs: list[x509.Certificate], *, clock: bool
             ) -> PeerVerificationError:
    """The verdict in the operator's words, by the hints a handshake's refusal uses (gtls._advice)."""
    try:
        return _advice.offline_verdict(compiled, verdict, verdict.code, certs, clock=clock)
    except Exception:  # noqa: BLE001 - a diagnostic must never hide the verdict
        return verdict


__all__ = ["ANCHOR_CRL_CHECKED", "CertLike", "der_subject", "located_by_openssl", "openssl_peer_chain", "verify_chain",
           "verify_compiled"]
