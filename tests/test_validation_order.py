"""Which reason wins when a peer's chain has several faults at once (spec §9), in both roles, on the wire.

Spec §9 leaves the winner to OpenSSL ("the first fault OpenSSL reports"); gtls documents OpenSSL's order in README
(*Several faults at once*): the path (``untrusted``), then each certificate's CA and purpose checks from the leaf up
(``bad-purpose``, ``bad-ca``), the security level, the peer-name check (``name-mismatch``), revocation from the leaf
up (the CRL reasons), and last signatures and validity times from the trust anchor down (``untrusted``,
``expired``, ``not-yet-valid``). These tests pin that order, and that ``verify_chain`` (spec §9: the same checks
offline) gives the handshake's reason and depth for the same chain, so a change of either is seen.

Client role: a gtls client context against ``openssl s_server`` sending the faulty chain. Server role: a gtls
mutual-TLS server context with ``openssl s_client`` presenting it. One PKI per case, written to a temporary folder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gtls import PeerVerificationError, direct
from gtls.context import compile_context
from gtls.testing import CA, Certified, write_pem
from gtls.verify import verify_chain
from tests.peers import client_handshake, close, gtls_server, s_client, s_server

DAY = dt.timedelta(days=1)
NAME = "combo.test"  # the client's reference name (the dialled host)


@dataclass
class Case:
    chain: list[Certified]  # sent by the peer, leaf first
    options: dict[str, str]  # the judging side's options (a server's own identity included)


def build(faults: frozenset[str], role: str, tmp: Path) -> Case:
    """A chain with ``faults`` as the side of ``role`` would judge it. Faults: ``untrusted`` (a stranger's root),
    ``bad-ca`` (the intermediate is not a CA), ``bad-purpose`` (the leaf's EKU is for the other role), ``name`` (the
    leaf does not name NAME), ``revoked`` (the intermediate's CRL lists the leaf), ``crl-unavailable`` (only another
    CA's CRL), ``bad-signature`` (the leaf's), ``expired`` / ``not-yet-valid`` (the leaf), ``inter-expired``,
    ``key-usage`` (the leaf's keyUsage is nonRepudiation alone), ``root-expired`` (the trust anchor),
    ``crl-expired-warn`` (the intermediate's CRL is past its next update, with ``tls-crl-expired=warn``),
    ``weak-inter`` (an RSA-1024 intermediate, below OpenSSL's security level)."""
    trusted = CA.root("order trusted root", **({"not_before": -10 * DAY, "not_after": -DAY}
                                                 if "root-expired" in faults else {}))
    root = CA.root("order stranger root") if "untrusted" in faults else trusted
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024) if "weak-inter" in faults else None
    inter = root.intermediate("order inter", ca="bad-ca" not in faults, key=weak,
                              **({"not_before": -10 * DAY, "not_after": -DAY} if "inter-expired" in faults else {}))
    wanted, wrong = ("server", "client") if role == "client" else ("client", "server")  # the peer's purpose
    when: dict[str, dt.timedelta] = {}
    if "expired" in faults:
        when = {"not_before": -10 * DAY, "not_after": -DAY}
    elif "not-yet-valid" in faults:
        when = {"not_before": DAY, "not_after": 10 * DAY}
    usage = x509.KeyUsage(digital_signature=False, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    leaf = inter.leaf("order leaf", dns=["elsewhere.test" if "name" in faults else NAME],
                      eku=(wrong if "bad-purpose" in faults else wanted,), bad_signature="bad-signature" in faults,
                      extensions=[x509.Extension(x509.OID_KEY_USAGE, True, usage)] if "key-usage" in faults else [],
                      **when)  # type: ignore[arg-type]
    options = {"trusted-ca": str(write_pem(tmp / "trusted.pem", trusted))}
    if role == "client":
        options["tls-target-name-check"] = "host"
    else:  # a mutual-TLS server: its own identity too
        own = CA.root("order server root").leaf("server.test", dns=["server.test"])
        options.update({"tls-mutual": "1", "certificate": str(own.write_cert(tmp / "own.pem")),
                        "certificate-key": str(own.write_key(tmp / "own.key"))})
    if "revoked" in faults or "crl-unavailable" in faults or "crl-expired-warn" in faults:
        old = {"this_update": -10 * DAY, "next_update": -DAY} if "crl-expired-warn" in faults else {}
        crl = CA.root("order unrelated CA").crl() if "crl-unavailable" in faults else inter.crl(
            revoked=[leaf] if "revoked" in faults else [], **old)  # type: ignore[arg-type]
        options["tls-crl"] = str(write_pem(tmp / "crl.pem", crl.pem))
        if "crl-expired-warn" in faults:
            options["tls-crl-expired"] = "warn"
    return Case([leaf, inter], options)


def offline(case: Case, role: str, tmp: Path) -> tuple[str, int | None]:
    compiled = compile_context(direct(case.options, role))  # type: ignore[arg-type]
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([c.cert for c in case.chain], compiled, role, target_name=NAME)  # type: ignore[arg-type]
    return caught.value.reason, caught.value.depth


def client_on_the_wire(case: Case, tmp: Path, *args: str) -> tuple[str, int | None]:
    compiled = compile_context(direct(case.options, "client"))
    chain = write_pem(tmp / "sent.pem", *case.chain)
    key = case.chain[0].write_key(tmp / "sent.key")
    with s_server("-cert", chain, "-cert_chain", chain, "-key", key, *args) as server:
        conn, error = client_handshake(compiled, server.port, server_hostname=NAME)
        close(conn)
    assert isinstance(error, PeerVerificationError), error
    return error.reason, error.depth


def server_on_the_wire(case: Case, tmp: Path) -> tuple[str, int | None]:
    compiled = compile_context(direct(case.options, "server"))
    chain = write_pem(tmp / "sent.pem", *case.chain)
    key = case.chain[0].write_key(tmp / "sent.key")
    with gtls_server(compiled, max_connections=1, close_after_handshake=True) as server:
        s_client(server.port, "-cert", chain, "-cert_chain", chain, "-key", key, "-tls1_2")
    [outcome] = server.outcomes
    assert not outcome.ok and isinstance(outcome.error, PeerVerificationError), outcome
    return outcome.error.reason, outcome.error.depth


# (faults, reason and depth that win). Where spec §9's numbered steps would pick another reason, the comment says so.
CLIENT_CASES = [
    ({"untrusted", "name"}, ("untrusted", 1)),
    ({"untrusted", "expired", "revoked", "name"}, ("untrusted", 1)),
    ({"bad-ca", "name", "expired"}, ("bad-ca", 1)),
    ({"bad-purpose", "name", "expired"}, ("bad-purpose", 0)),
    ({"bad-purpose", "bad-ca"}, ("bad-purpose", 0)),  # the leaf's checks before its issuer's
    ({"expired", "name"}, ("name-mismatch", 0)),  # §9's steps: expired (A5 before the name check)
    ({"expired", "revoked", "name"}, ("name-mismatch", 0)),  # §9's steps: revoked
    ({"bad-signature", "name"}, ("name-mismatch", 0)),  # §9's steps: untrusted
    ({"expired", "revoked"}, ("revoked", 0)),
    ({"not-yet-valid", "crl-unavailable"}, ("crl-unavailable", 0)),
    ({"bad-signature", "revoked"}, ("revoked", 0)),
    ({"bad-signature", "expired"}, ("untrusted", 0)),  # a certificate's signature before its validity
    ({"inter-expired", "bad-signature"}, ("expired", 1)),  # from the trust anchor down
    ({"root-expired", "inter-expired", "expired"}, ("expired", 2)),  # the trust anchor's dates count too
    # tls-crl-expired=warn: the expiry waived, the expired CRL still revokes before signatures and dates count
    ({"crl-expired-warn", "revoked", "expired"}, ("revoked", 0)),
    ({"crl-expired-warn", "revoked", "bad-signature"}, ("revoked", 0)),
    ({"crl-expired-warn", "revoked", "not-yet-valid"}, ("revoked", 0)),
    ({"crl-expired-warn", "revoked", "name"}, ("name-mismatch", 0)),
    ({"crl-expired-warn", "expired"}, ("expired", 0)),
    ({"crl-expired-warn", "revoked", "expired", "weak-inter"}, ("untrusted", 1)),  # the security level first
]
SERVER_CASES = [
    ({"untrusted", "expired", "revoked"}, ("untrusted", 1)),
    ({"bad-ca", "expired"}, ("bad-ca", 1)),
    ({"bad-purpose", "expired", "revoked"}, ("bad-purpose", 0)),
    ({"name", "expired"}, ("expired", 0)),  # a server never checks a client's names (§7, §9 A6)
    ({"expired", "revoked"}, ("revoked", 0)),
    ({"expired", "crl-unavailable"}, ("crl-unavailable", 0)),
    ({"bad-signature", "revoked"}, ("revoked", 0)),
    ({"bad-signature", "not-yet-valid"}, ("untrusted", 0)),
    ({"inter-expired", "bad-signature"}, ("expired", 1)),
    ({"root-expired", "revoked"}, ("revoked", 0)),
    ({"crl-expired-warn", "revoked", "expired"}, ("revoked", 0)),
    ({"crl-expired-warn", "revoked", "bad-signature"}, ("revoked", 0)),
]


def _id(case: tuple[set[str], tuple[str, int]]) -> str:
    return "+".join(sorted(case[0]))


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[_id(c) for c in CLIENT_CASES])
def test_which_fault_wins_client(case: tuple[set[str], tuple[str, int]], tmp_path: Path) -> None:
    faults, expected = case
    built = build(frozenset(faults), "client", tmp_path)
    lenient = ("-cipher", "DEFAULT:@SECLEVEL=0") if "weak-inter" in faults else ()  # a server still sending RSA-1024
    assert client_on_the_wire(built, tmp_path, *lenient) == expected
    assert offline(built, "client", tmp_path) == expected


@pytest.mark.parametrize("case", SERVER_CASES, ids=[_id(c) for c in SERVER_CASES])
def test_which_fault_wins_server(case: tuple[set[str], tuple[str, int]], tmp_path: Path) -> None:
    faults, expected = case
    built = build(frozenset(faults), "server", tmp_path)
    assert server_on_the_wire(built, tmp_path) == expected
    assert offline(built, "server", tmp_path) == expected


@pytest.mark.parametrize(("faults", "expected"), [
    ({"expired", "name"}, ("expired", 0)),
    ({"expired", "revoked", "name"}, ("revoked", 0)),
    ({"bad-signature", "name"}, ("untrusted", 0)),
])
def test_which_fault_wins_without_openssls_host_check(faults: set[str], expected: tuple[str, int], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pyOpenSSL's private API is gone, the name is checked right after OpenSSL's verification (README), so
    every other fault wins over the name, as spec §9's steps list them; the handshake and verify_chain still agree."""
    from gtls.pki import hostcheck

    monkeypatch.setattr(hostcheck, "AVAILABLE", False)
    built = build(frozenset(faults), "client", tmp_path)
    assert client_on_the_wire(built, tmp_path) == expected
    assert offline(built, "client", tmp_path) == expected



@pytest.mark.parametrize("role", ["client", "server"])
def test_a_leaf_whose_key_usage_does_not_suit_tls_is_bad_purpose(role: str, tmp_path: Path) -> None:
    """Spec §9 A3/B: the leaf's keyUsage must suit TLS (OpenSSL's ssl_client/ssl_server purpose), else bad-purpose.
    A leaf with the right EKU whose keyUsage is nonRepudiation alone, refused on the wire (TLS 1.3: a TLS 1.2
    s_server does not sign with such a key, it fails the handshake itself) and offline alike."""
    built = build(frozenset({"key-usage"}), role, tmp_path)
    on_the_wire = client_on_the_wire(built, tmp_path, "-tls1_3") if role == "client" else server_on_the_wire(
        built, tmp_path)
    assert on_the_wire == offline(built, role, tmp_path) == ("bad-purpose", 0)
