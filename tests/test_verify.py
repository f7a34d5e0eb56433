"""verify_chain: pinned time, settings forms, and agreement with real handshakes on random PKIs (hypothesis)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ObjectIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import crypto

from gtls.context import compile_context
from gtls.errors import ConfigError, PeerVerificationError
from gtls.options import TLSOptions
from gtls.resolve import direct, resolve_client
from gtls.testing import CA, CRL, Certified, write_pem
from gtls.verify import ANCHOR_CRL_CHECKED, verify_chain
from tests.peers import client_handshake, close, s_server, serial_zero_identity, version_4_certificate

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
          "client-only-eku", "name", "revoked", "inter-expired", "no-keycertsign", "weak-inter", "weak-leaf",
          "weak-inter-and-expired"]
EXPECTED = {"none": None, "expired": "expired", "not-yet-valid": "not-yet-valid", "untrusted-root": "untrusted",
            "bad-signature": "untrusted", "inter-not-ca": "bad-ca", "path-length": "bad-ca",
            "no-keycertsign": "bad-ca",
            "client-only-eku": "bad-purpose", "name": "name-mismatch", "revoked": "revoked",
            "inter-expired": "expired",
            # OpenSSL's security level (2 in 3.2 and later) refuses an RSA-1024 key before any other fault.
            "weak-inter": "untrusted", "weak-leaf": "untrusted", "weak-inter-and-expired": "untrusted"}


EXPIRED_LEAF = ("expired", "weak-inter-and-expired")


def _weak_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


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
                key=_weak_key() if fault.startswith("weak-inter") and level == 0 else None,
                key_cert_sign=not (fault == "no-keycertsign" and level == 0),
                not_after=-DAY if fault == "inter-expired" and level == depth - 1 else None,
                not_before=-3 * DAY if fault == "inter-expired" and level == depth - 1 else None)
            issuers.append(issuer)
        leaf = issuer.leaf(
            "prop.test", dns=["other.test" if fault == "name" else "prop.test"],
            eku=("client",) if fault == "client-only-eku" else ("server",),
            key=_weak_key() if fault == "weak-leaf" else None,
            not_before=-3 * DAY if fault in EXPIRED_LEAF else (DAY if fault == "not-yet-valid" else None),
            not_after=-DAY if fault in EXPIRED_LEAF else (3 * DAY if fault == "not-yet-valid" else None),
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
        # A server that still sends an RSA-1024 chain (security level 0); the client's level judges it.
        lenient = ["-cipher", "DEFAULT:@SECLEVEL=0"] if fault.startswith("weak") else []
        with s_server("-cert", tmp / "chain.pem", "-cert_chain", tmp / "chain.pem", "-key",
                      tmp / "key.pem", *lenient) as server:
            conn, error = client_handshake(compiled, server.port, server_hostname="prop.test")
            close(conn)
        online = (error.reason, error.depth) if error is not None else None
        assert offline == online, (fault, depth, crl, offline, online)
        assert (offline[0] if offline else None) == EXPECTED[fault], (fault, offline)


def _crl_case(name: str) -> tuple[list[Certified], list[CRL], dict[str, str], str | None]:
    """(chain sent, CRLs in file order, extra client options, expected reason) for tls-crl-expired=warn, where
    verify_chain must pick among several CRLs of one issuer the CRL OpenSSL picks."""
    root = CA.root("crl choice root")
    inter = root.intermediate("crl choice inter")
    leaf = inter.leaf("crl.test", dns=["crl.test"])
    warn = {"tls-crl-expired": "warn"}
    old = {"this_update": -10 * DAY, "next_update": -5 * DAY}
    if name == "newer-expired-revokes":  # two expired CRLs: the newer one counts, whatever the file order
        return [leaf, inter], [inter.crl(**old), inter.crl(revoked=[leaf], this_update=-4 * DAY,
                                                           next_update=-DAY)], warn, "revoked"
    if name == "current-beats-expired":  # scope chain: the root's current CRL lists the intermediate
        return [leaf, inter], [inter.crl(**old), root.crl(**old), root.crl(revoked=[inter])], {
            **warn, "tls-crl-scope": "chain"}, "revoked"
    if name == "rekeyed-issuer":  # an expired CRL of an older key of the same name does not count
        rekeyed = root.intermediate("crl choice inter")
        return [leaf, inter], [rekeyed.crl(**old), inter.crl(**old)], warn, None
    if name == "anchor-listed-in-its-own-crl":  # scope chain checks the trust anchor too, up to OpenSSL 3.x
        return [leaf, inter], [inter.crl(**old), root.crl(revoked=[root])], {**warn, "tls-crl-scope": "chain"}, (
            "revoked" if ANCHOR_CRL_CHECKED else None)
    if name == "remove-from-crl-entry":  # OpenSSL passes an entry whose reason is removeFromCRL
        return [leaf, inter], [inter.crl(revoked=[leaf], reason=x509.ReasonFlags.remove_from_crl, **old)], warn, None
    if name == "unhandled-critical-extension":  # OpenSSL refuses a CRL with a critical extension it does not know
        oid = ObjectIdentifier("1.3.6.1.4.1.55555.1")
        unknown = x509.Extension(oid, True, x509.UnrecognizedExtension(oid, b"\x05\x00"))
        return [leaf, inter], [inter.crl(**old, extensions=[unknown])], warn, "untrusted"
    assert name == "root-without-crl-sign"
    signless = CA.root("crl choice signless root", crl_sign=False)
    inter = signless.intermediate("crl choice inter 2")
    leaf = inter.leaf("crl.test", dns=["crl.test"])
    return [leaf, inter], [inter.crl(**old), signless.crl(**old)], {**warn, "tls-crl-scope": "chain"}, "crl-signature"


@pytest.mark.parametrize("name", ["newer-expired-revokes", "current-beats-expired", "rekeyed-issuer",
                                  "root-without-crl-sign", "anchor-listed-in-its-own-crl", "remove-from-crl-entry",
                                  "unhandled-critical-extension"])
def test_expired_crl_waiver_judges_the_crl_openssl_picks(name: str, tmp_path: Path) -> None:
    sent, crls, extra, expected = _crl_case(name)
    top = sent[-1]
    anchor = top.issuer if isinstance(top.issuer, CA) else None
    assert anchor is not None
    write_pem(tmp_path / "chain.pem", *sent)
    sent[0].write_key(tmp_path / "key.pem")
    opts = {"trusted-ca": str(write_pem(tmp_path / "ca.pem", anchor)),
            "tls-crl": str(write_pem(tmp_path / "crl.pem", *(crl.pem for crl in crls))), **extra}
    compiled = compile_context(direct(opts, "client"))
    try:
        verify_chain([c.cert for c in sent], compiled, "client")
        offline = None
    except PeerVerificationError as exc:
        offline = (exc.reason, exc.depth)
    with s_server("-cert", tmp_path / "chain.pem", "-cert_chain", tmp_path / "chain.pem", "-key",
                  tmp_path / "key.pem") as server:
        conn, error = client_handshake(compiled, server.port)
        close(conn)
    online = (error.reason, error.depth) if error is not None else None
    assert offline == online
    assert (online[0] if online else None) == expected


def test_offline_verification_converts_the_crls_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed handshake re-verifies offline for the depth and subject (any peer can cause that). Converting the
    CRLs for OpenSSL took 40 ms for one of 50,000 entries, and a store kept per reference name held a copy of each
    (590 MiB for 64 names): now every verification makes a small store of its own that shares the CRLs and CAs
    converted once per compiled context."""
    from gtls import _binding
    from gtls.pki import hostcheck

    if not hostcheck.AVAILABLE:
        pytest.skip("the binding's CRL functions are gone: each store converts its CRLs (the fallback)")
    converted: list[int] = []
    convert = _binding.openssl_crls

    def counting(crls: list[x509.CertificateRevocationList]) -> object:
        converted.append(len(crls))
        return convert(crls)

    monkeypatch.setattr(_binding, "openssl_crls", counting)
    root = CA.root("store root")
    inter = root.intermediate("store inter")
    leaf = inter.leaf("store.test", dns=("store.test",))
    crl = write_pem(tmp_path / "crl.pem", inter.crl(revoked=[leaf]).pem, root.crl().pem)
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "ca.pem", root)),
                                       "tls-crl": str(crl), "tls-target-name-check": "host"}, "client"))
    for name in ("store.test", "store.test", "other.test", "third.test"):
        with pytest.raises(PeerVerificationError) as info:
            verify_chain([leaf.cert, inter.cert], compiled, "client", target_name=name)
        # OpenSSL judges the name before revocation: each verification had its own reference name
        assert (info.value.reason, info.value.depth) == (("revoked", 0) if name == "store.test" else
                                                        ("name-mismatch", 0))
    with pytest.raises(PeerVerificationError) as pinned:
        verify_chain([leaf.cert, inter.cert], compiled, "client", target_name="store.test",
                     at=dt.datetime.now(dt.UTC))
    assert pinned.value.reason == "revoked"
    assert converted == [2]


def test_each_crl_is_read_for_unhandled_extensions_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under tls-crl-expired=warn a refused peer's revocation is judged in Python, which read every entry of the
    CRL for critical extensions on every refusal (60 ms for 50,000 entries): once per compiled context now."""
    from gtls import _offline

    calls: list[int] = []
    judge = _offline._unhandled_critical

    def counting(crl: x509.CertificateRevocationList) -> bool:
        calls.append(1)
        return judge(crl)

    monkeypatch.setattr(_offline, "_unhandled_critical", counting)
    sent, crls, extra, expected = _crl_case("newer-expired-revokes")
    anchor = sent[-1].issuer
    assert isinstance(anchor, CA) and expected == "revoked"
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "ca.pem", anchor)),
                                       "tls-crl": str(write_pem(tmp_path / "crl.pem", *(c.pem for c in crls))),
                                       **extra}, "client"))
    for _ in range(3):
        with pytest.raises(PeerVerificationError) as info:
            verify_chain([c.cert for c in sent], compiled, "client")
        assert info.value.reason == "revoked"
    assert len(calls) == len(crls)


def test_the_presumed_path_is_linear_in_what_the_peer_sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After a failure OpenSSL reports one certificate; the path around it is rebuilt by issuer name. A server may
    send 100 KiB of certificates, and comparing names across all of them at every step (quadratic) took half a
    second of the client's event loop: names are indexed once, and the walk stops at OpenSSL's verify depth."""
    from gtls import _offline

    root = CA.root("walk root")
    links = [root]
    for index in range(150):  # each issued by the one before: a 151-certificate chain, sent leaf first
        links.append(links[-1].intermediate(f"walk link {index}"))
    leaf = links[-1].leaf("walk.test", dns=["walk.test"])
    sent = [leaf.cert, *(link.cert for link in reversed(links[1:])), *(CA.root(f"decoy {i}").cert for i in range(50))]
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "ca.pem", root))}, "client"))
    comparisons: list[int] = []
    equal = x509.Name.__eq__

    def counting(self: x509.Name, other: object) -> bool:
        comparisons.append(1)
        return equal(self, other)

    monkeypatch.setattr(x509.Name, "__eq__", counting)
    path = _offline._presumed_path(compiled, sent)
    assert path[:3] == [leaf.cert, links[-1].cert, links[-2].cert] and len(path) == 101  # OpenSSL's verify depth
    assert len(comparisons) < 4 * len(sent), len(comparisons)


def _system_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, *roots: CA) -> Path:
    """``roots`` as the whole system store of profile windows (SSL_CERT_FILE; SSL_CERT_DIR names no folder)."""
    from gtls import context as context_module

    bundle = write_pem(tmp_path / "system.pem", *roots)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    context_module.clear_cache()
    request.addfinalizer(context_module.clear_cache)
    return bundle


def test_the_windows_profile_reads_the_system_ca_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           request: pytest.FixtureRequest) -> None:
    """Profile windows without trusted-ca trusts the system's CAs; the offline verifier read the whole CA file into
    every store (4.6 ms per refusal, which any peer can cause): the context's compile reads it, and the offline
    verifier takes the certificates its store was given. TRUSTED CERTIFICATE blocks (OpenSSL trust settings, which
    gtls does not read) are skipped with a warning rather than trusted without their settings."""
    bundle = _system_store(tmp_path, monkeypatch, request, CA.root("system root one"), CA.root("system root two"))
    stranger = CA.root("stranger root")
    leaf = stranger.leaf("w.test", dns=["w.test"])
    compiled = compile_context(direct({}, "client", profile="windows"))
    for _ in range(2):
        with pytest.raises(PeerVerificationError) as info:
            verify_chain([leaf.cert], compiled, "client")
        assert info.value.reason == "untrusted"
    assert compiled._verify_cas is not None and len(compiled._verify_cas) == 2
    assert compiled._verify_cas == compiled.system_anchors
    trusted_root = CA.root("system root three")
    write_pem(bundle, trusted_root.cert_pem.replace(b" CERTIFICATE-----", b" TRUSTED CERTIFICATE-----"))
    skipping = compile_context(direct({"sec-protocol": "TLSv13"}, "client", profile="windows"))  # not cached
    with pytest.raises(PeerVerificationError) as info:
        verify_chain([trusted_root.leaf("t.test", dns=["t.test"]).cert], skipping, "client")
    assert info.value.reason == "untrusted" and skipping.system_anchors == ()
    assert any("TRUSTED CERTIFICATE block 1" in w for w in skipping.warnings), skipping.warnings


def test_the_windows_profile_with_trusted_ca_verifies_against_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """With trusted-ca, profile windows trusts its CAs, not the system's, offline as in a handshake."""
    system = CA.root("system root")
    _system_store(tmp_path, monkeypatch, request, system)
    own = CA.root("own root")
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "own.pem", own))}, "client",
                                      profile="windows"))
    assert compiled.system_anchors == ()
    assert verify_chain([own.leaf("o.test", dns=["o.test"]).cert], compiled, "client")
    with pytest.raises(PeerVerificationError) as info:
        verify_chain([system.leaf("s.test", dns=["s.test"]).cert], compiled, "client")
    assert info.value.reason == "untrusted"


def test_the_windows_system_ca_file_is_read_without_swapping_the_warnings_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A root of serial 0 (as a few of the system bundles have) is parsed by OpenSSL: no cryptography warning to
    silence, so no warnings.catch_warnings, which swaps the process-wide filters and puts its copy back on exit (a
    filter another thread set meanwhile was undone). Warnings as errors here: reading it warns about nothing."""
    cert, _ = serial_zero_identity(tmp_path, "serial zero root")
    _system_store(tmp_path, monkeypatch, request)
    os.replace(cert, tmp_path / "system.pem")
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = compile_context(direct({}, "client", profile="windows"))
        with pytest.raises(PeerVerificationError) as info:
            verify_chain([CA.root("stranger root").leaf("w.test", dns=["w.test"]).cert], compiled, "client")
    assert info.value.reason == "untrusted" and warnings.filters == filters
    assert len(compiled.system_anchors) == 1  # the serial-0 root, read


TRUST_CASES = {  # case -> the verdict both must give (None: verified)
    "intermediate-only-trusted": "untrusted",  # spec §6: no partial chains, an intermediate is no anchor
    "intermediate-completes-the-path": None,  # spec §6: every CA of the file helps build a path
    "no-key-identifiers": None,  # spec §9: certificates without AKI/SKI are fine (no X.509 strict mode)
    "windows-system-trust": None,  # spec §1.6: profile windows without trusted-ca trusts the system's CAs
    "windows-system-stranger": "untrusted",
}


@pytest.mark.parametrize("case", list(TRUST_CASES))
def test_trust_store_cases_agree_offline_and_in_a_handshake(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            request: pytest.FixtureRequest) -> None:
    """The handshake's store is built apart from ``verify_chain``'s, and design §4 has them apply one policy: each
    trust case runs through both (a real ``s_server`` for the handshake) and must give the expected verdict."""
    from gtls import context as context_module

    key_ids = case != "no-key-identifiers"
    root = CA.root("trust root", key_ids=key_ids)
    inter = root.intermediate("trust inter", key_ids=key_ids)
    leaf = inter.leaf("trust.test", dns=["trust.test"], key_ids=key_ids)
    sent = [leaf] if case == "intermediate-completes-the-path" else [leaf, inter]
    profile = "unix"
    opts: dict[str, str] = {}
    if case.startswith("windows"):
        profile = "windows"
        system = CA.root("stranger root") if case.endswith("stranger") else root
        monkeypatch.setenv("SSL_CERT_FILE", str(write_pem(tmp_path / "system.pem", system)))
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
        context_module.clear_cache()  # settings without files: the cache would hand out another test's context
        request.addfinalizer(context_module.clear_cache)  # nor keep this one, made under this test's environment
    else:
        trusted = {"intermediate-only-trusted": [inter], "intermediate-completes-the-path": [root, inter]}
        opts["trusted-ca"] = str(write_pem(tmp_path / "ca.pem", *trusted.get(case, [root])))
    compiled = compile_context(direct(opts, "client", profile=profile))
    try:
        verify_chain([c.cert for c in sent], compiled, "client")
        offline = None
    except PeerVerificationError as exc:
        offline = exc.reason
    write_pem(tmp_path / "leaf.pem", leaf)
    leaf.write_key(tmp_path / "key.pem")
    chain = ["-cert_chain", write_pem(tmp_path / "inter.pem", inter)] if len(sent) == 2 else []
    with s_server("-cert", tmp_path / "leaf.pem", "-key", tmp_path / "key.pem", *chain) as server:
        conn, error = client_handshake(compiled, server.port, server_hostname="trust.test")
        received = len(conn.get_peer_cert_chain() or []) if conn is not None else None
        close(conn)
    online = error.reason if error is not None else None
    assert (offline, online) == (TRUST_CASES[case], TRUST_CASES[case])
    if online is None:
        assert received == len(sent)  # what the server sent: the path was completed from trusted-ca, not from it


UNKNOWN_CRITICAL = x509.Extension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), True,
                                  x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"))


def _pick_case(name: str, tmp: Path) -> tuple[list[Certified], dict[str, str], tuple[str, int, str] | None]:
    """(chain sent, client options, the verdict both must give) where several CAs or CRLs fit by name and the
    offline verifier's own steps must pick the one OpenSSL picks (audit 66's differential testing found each)."""
    root = CA.root("pick root")
    old = {"this_update": -10 * DAY, "next_update": -DAY}
    expired = {"not_before": -30 * DAY, "not_after": -DAY}
    if name == "same-name-weak-ca":  # a weak CA of the root's name (another key) listed first: not on the path
        leaf = root.leaf("pick.test", dns=["pick.test"], **expired)
        decoy = CA.root("pick root", key=_weak_key())
        return [leaf], {"trusted-ca": str(write_pem(tmp / "ca.pem", decoy, root))}, ("expired", 0, "CN=pick.test")
    if name == "renewed-intermediate":  # its expired old copy sent first, listed in the root's (expired) CRL
        inter = root.intermediate("pick inter")
        stale = root.intermediate("pick inter", key=inter.key, not_before=-60 * DAY, not_after=-3 * DAY)
        leaf = inter.leaf("pick.test", dns=["pick.test"], **expired)
        crls = write_pem(tmp / "crl.pem", root.crl(revoked=[stale], **old), inter.crl())
        opts = {"trusted-ca": str(write_pem(tmp / "ca.pem", root)), "tls-crl": str(crls), "tls-crl-expired": "warn",
                "tls-crl-scope": "chain"}
        return [leaf, stale, inter], opts, ("expired", 0, "CN=pick.test")
    if name == "same-name-ca-crl":  # the issuer's CRL expired; a current one of another CA of its name is not used
        leaf = root.leaf("pick.test", dns=["pick.test"])
        other = CA.root("pick root")
        crls = write_pem(tmp / "crl.pem", root.crl(**old), other.crl())
        return [leaf], {"trusted-ca": str(write_pem(tmp / "ca.pem", root, other)), "tls-crl": str(crls),
                        "tls-crl-expired": "warn"}, None
    if name == "current-crl-with-unknown-critical-extension":  # loses to an expired CRL without one
        leaf = root.leaf("pick.test", dns=["pick.test"])
        crls = write_pem(tmp / "crl.pem", root.crl(extensions=[UNKNOWN_CRITICAL]), root.crl(revoked=[leaf], **old))
        return [leaf], {"trusted-ca": str(write_pem(tmp / "ca.pem", root)), "tls-crl": str(crls),
                        "tls-crl-expired": "warn"}, ("revoked", 0, "CN=pick.test")
    assert name == "weak-issuer-before-unhandled-crl"  # the security level comes before revocation
    inter = root.intermediate("pick weak inter", key=_weak_key())
    leaf = inter.leaf("pick.test", dns=["pick.test"])
    crls = write_pem(tmp / "crl.pem", inter.crl(extensions=[UNKNOWN_CRITICAL]))
    return [leaf, inter], {"trusted-ca": str(write_pem(tmp / "ca.pem", root)), "tls-crl": str(crls)}, (
        "untrusted", 1, "CN=pick weak inter")


@pytest.mark.parametrize("name", ["same-name-weak-ca", "renewed-intermediate", "same-name-ca-crl",
                                  "current-crl-with-unknown-critical-extension", "weak-issuer-before-unhandled-crl"])
def test_offline_steps_pick_the_issuer_and_crl_openssl_picks(name: str, tmp_path: Path) -> None:
    """Where verify_chain completes OpenSSL's verdict in Python (the path of a failed chain, for the security level
    and the revocation re-check of tls-crl-expired=warn), it chose issuers and CRLs by name alone: a same-named CA
    off the path made a handshake's `expired` an offline `untrusted` at the wrong depth, and a current CRL of
    another CA of the issuer's name (which OpenSSL never uses) failed a chain the handshake accepted. The handshake
    reports the offline depth and subject, so it lost them, or gave the wrong ones."""
    sent, opts, expected = _pick_case(name, tmp_path)
    compiled = compile_context(direct(opts, "client"))
    try:
        verify_chain([c.cert for c in sent], compiled, "client", target_name="pick.test")
        offline = None
    except PeerVerificationError as exc:
        offline = (exc.reason, exc.depth, exc.subject)
    write_pem(tmp_path / "leaf.pem", sent[0])
    sent[0].write_key(tmp_path / "key.pem")
    chain = ["-cert_chain", write_pem(tmp_path / "rest.pem", *sent[1:])] if len(sent) > 1 else []
    with s_server("-cert", tmp_path / "leaf.pem", "-key", tmp_path / "key.pem", "-cipher", "DEFAULT:@SECLEVEL=0",
                  *chain) as server:
        conn, error = client_handshake(compiled, server.port, server_hostname="pick.test")
        close(conn)
    online = (error.reason, error.depth, error.subject) if isinstance(error, PeerVerificationError) else error
    assert (offline, online) == (expected, expected)


def test_a_certificate_cryptography_cannot_load_is_a_clear_value_error(tmp_path: Path) -> None:
    """A handshake accepts a chain holding an "X.509 v4" certificate (tests/test_client.py), which only pyOpenSSL can
    hold; verify_chain raised cryptography's InvalidVersion (not a ValueError) from deep inside."""
    root = CA.root("v4 root")
    inter = root.intermediate("v4 intermediate")
    leaf = inter.leaf("v4.test", dns=["v4.test"])
    quirky = crypto.load_certificate(crypto.FILETYPE_PEM, version_4_certificate(leaf, inter))
    options = TLSOptions(trusted_ca=str(write_pem(tmp_path / "ca.pem", root)))
    with pytest.raises(ValueError, match=r"^certificate 0 of the chain \(0: the leaf\), accepted by OpenSSL, cannot be "
                                         r"loaded by cryptography .*; verify_chain cannot judge it"):
        verify_chain([quirky, crypto.X509.from_cryptography(inter.cert)], options, "client")
    quirky_inter = crypto.load_certificate(crypto.FILETYPE_PEM, version_4_certificate(inter, root))
    with pytest.raises(ValueError, match=r"^certificate 1 of the chain \(0: the leaf\), accepted by OpenSSL"):
        verify_chain([crypto.X509.from_cryptography(leaf.cert), quirky_inter], options, "client")
    # pyOpenSSL certificates cryptography can load are judged as before.
    loadable = [crypto.X509.from_cryptography(c.cert) for c in (leaf, inter)]
    assert verify_chain(loadable, options, "client") == [leaf.cert, inter.cert, root.cert]
