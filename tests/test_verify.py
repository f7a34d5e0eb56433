"""verify_chain: pinned time, settings forms, and agreement with real handshakes on random PKIs (hypothesis)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtls.context import compile_context
from gtls.errors import ConfigError, PeerVerificationError
from gtls.options import TLSOptions
from gtls.resolve import direct, resolve_client
from gtls.testing import CA, write_pem
from gtls.verify import verify_chain
from tests.peers import client_handshake, close, s_server

DAY = dt.timedelta(days=1)


def test_time_pinning_and_settings_forms(tmp_path: Path) -> None:
    root = CA.root("verify root", not_before=-30 * DAY)
    leaf = root.leaf("v.test", dns=["v.test"], not_before=-DAY, not_after=10 * DAY)
    ca = write_pem(tmp_path / "ca.pem", root)
    options = TLSOptions(trusted_ca=str(ca))
    compiled = compile_context(direct(options, "client"))
    assert verify_chain([leaf.cert], options, "client") == [leaf.cert, root.cert]
    assert verify_chain([leaf.cert], direct(options, "client"), "client") == [leaf.cert, root.cert]
    now = dt.datetime.now(dt.UTC)
    for at, reason in ((now + 20 * DAY, "expired"), ((now - 2 * DAY).replace(tzinfo=None), "not-yet-valid")):
        with pytest.raises(PeerVerificationError) as info:
            verify_chain([leaf.cert], compiled, "client", at=at)
        assert (info.value.reason, info.value.depth, info.value.subject) == (reason, 0, "CN=v.test")
    with pytest.raises(ValueError, match="for a client"):
        verify_chain([leaf.cert], compiled, "server")
    with pytest.raises(ValueError, match="resolved for a client"):
        verify_chain([leaf.cert], direct(options, "client"), "server")
    plaintext = resolve_client(connection="tls=0", host={"trusted-ca": str(ca)})
    with pytest.raises(ConfigError, match="not secure"):  # never judged by a policy no endpoint would use
        verify_chain([leaf.cert], plaintext, "client")
    with pytest.raises(TypeError, match="dict"):
        verify_chain([leaf.cert], {"trusted-ca": str(ca)}, "client")  # type: ignore[arg-type]


def test_server_role_uses_client_purpose(tmp_path: Path) -> None:
    root = CA.root("purpose root")
    ca = write_pem(tmp_path / "ca.pem", root)
    server_leaf = root.leaf("s.test", eku=("server",))
    key = server_leaf.write_key(tmp_path / "k.pem")
    cert = server_leaf.write_cert(tmp_path / "c.pem")
    compiled = compile_context(direct({"certificate": str(cert), "certificate-key": str(key), "trusted-ca": str(ca),
                                       "tls-mutual": "1"}, "server"))
    assert verify_chain([root.leaf("c.test", eku=("client",)).cert], compiled, "server")
    with pytest.raises(PeerVerificationError) as info:
        verify_chain([server_leaf.cert], compiled, "server")
    assert info.value.reason == "bad-purpose"


FAULTS = ["none", "expired", "not-yet-valid", "untrusted-root", "bad-signature", "inter-not-ca", "path-length",
          "client-only-eku", "name", "revoked", "inter-expired", "no-keycertsign"]
EXPECTED = {"none": None, "expired": "expired", "not-yet-valid": "not-yet-valid", "untrusted-root": "untrusted",
            "bad-signature": "untrusted", "inter-not-ca": "bad-ca", "path-length": "bad-ca",
            "no-keycertsign": "bad-ca",
            "client-only-eku": "bad-purpose", "name": "name-mismatch", "revoked": "revoked",
            "inter-expired": "expired"}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_offline_and_in_a_handshake(fault: str) -> None:
    check_agreement(fault, 1, fault == "revoked")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fault=st.sampled_from(FAULTS), depth=st.integers(min_value=1, max_value=2), crl=st.booleans())
def test_verify_chain_agrees_with_handshake(fault: str, depth: int, crl: bool) -> None:
    check_agreement(fault, depth, crl)


def check_agreement(fault: str, depth: int, crl: bool) -> None:
    """One random PKI: verify_chain and a real handshake against openssl s_server give one verdict and reason."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = CA.root("prop root", path_length=0 if fault == "path-length" else None)
        trusted_root = CA.root("someone else") if fault == "untrusted-root" else root
        issuers = []
        issuer = root
        for level in range(depth):
            issuer = issuer.intermediate(
                f"prop inter {level}", ca=not (fault == "inter-not-ca" and level == 0),
                key_cert_sign=not (fault == "no-keycertsign" and level == 0),
                not_after=-DAY if fault == "inter-expired" and level == depth - 1 else None,
                not_before=-3 * DAY if fault == "inter-expired" and level == depth - 1 else None)
            issuers.append(issuer)
        leaf = issuer.leaf(
            "prop.test", dns=["other.test" if fault == "name" else "prop.test"],
            eku=("client",) if fault == "client-only-eku" else ("server",),
            not_before=-3 * DAY if fault == "expired" else (DAY if fault == "not-yet-valid" else None),
            not_after=-DAY if fault == "expired" else (3 * DAY if fault == "not-yet-valid" else None),
            bad_signature=fault == "bad-signature")
        sent = [leaf, *reversed(issuers)]
        write_pem(tmp / "chain.pem", *sent)
        leaf.write_key(tmp / "key.pem")
        opts = {"trusted-ca": str(write_pem(tmp / "ca.pem", trusted_root)), "tls-target-name-check": "host"}
        use_crl = crl or fault == "revoked"
        if use_crl:
            revoked = [leaf] if fault == "revoked" else []
            opts["tls-crl"] = str(write_pem(tmp / "crl.pem", issuer.crl(revoked=revoked).pem))
        compiled = compile_context(direct(opts, "client"))
        try:
            verify_chain([c.cert for c in sent], compiled, "client", target_name="prop.test")
            offline = None
        except PeerVerificationError as exc:
            offline = (exc.reason, exc.depth)
        with s_server("-cert", tmp / "chain.pem", "-cert_chain", tmp / "chain.pem", "-key",
                            tmp / "key.pem") as server:
            conn, error = client_handshake(compiled, server.port, server_hostname="prop.test")
            close(conn)
        online = (error.reason, error.depth) if error is not None else None
        assert offline == online, (fault, depth, crl, offline, online)
        assert (offline[0] if offline else None) == EXPECTED[fault], (fault, offline)
