"""CRLs (spec §5): every outcome through verify_chain, the main ones through real handshakes, loading errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import ssl
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from gtls.context import CompiledContext, compile_context
from gtls.errors import CrlLoadError, HandshakeError, PeerVerificationError
from gtls.resolve import direct
from gtls.server import HandshakeEvent, serve_tls_over_tcp
from gtls.testing import CA, CRL, Certified, write_pem
from gtls.verify import verify_chain
from tests.peers import (
    client_handshake,
    close,
    echo_line,
    gtls_server,
    python_context,
    s_client,
    s_server,
    version_4_certificate,
    wrap_client,
)

DAY = dt.timedelta(days=1)


class Pki:
    def __init__(self) -> None:
        self.root = CA.root("crl root")
        self.inter = self.root.intermediate("crl inter")
        self.leaf = self.inter.leaf("crl.test", dns=["crl.test"])
        self.weak = self.root.intermediate("no crl sign inter", crl_sign=False)
        self.weak_leaf = self.weak.leaf("weak.test", dns=["weak.test"])


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def client(tmp: Path, pki: Pki, *crls: CRL, scope: str = "leaf", expired: str = "reject") -> CompiledContext:
    trusted = write_pem(tmp / "ca.pem", pki.root)
    crl_file = write_pem(tmp / f"crl-{scope}-{expired}-{len(list(tmp.iterdir()))}.pem", *(c.pem for c in crls))
    return compile_context(direct({"trusted-ca": str(trusted), "tls-crl": str(crl_file), "tls-crl-scope": scope,
                                   "tls-crl-expired": expired}, "client"))


def reason(compiled: CompiledContext, chain: list[Certified]) -> tuple[str, int | None] | str:
    try:
        verify_chain([c.cert for c in chain], compiled, "client")
    except PeerVerificationError as exc:
        return exc.reason, exc.depth
    return "ok"


def cases(p: Pki) -> dict[str, tuple[list[CRL], str, str, object]]:
    """name -> (CRLs, scope, tls-crl-expired, expected)"""
    fresh_inter = p.inter.crl()
    fresh_root = p.root.crl()
    return {
        "leaf ok": ([fresh_inter], "leaf", "reject", "ok"),
        "leaf revoked": ([p.inter.crl(revoked=[p.leaf])], "leaf", "reject", ("revoked", 0)),
        "leaf unavailable": ([fresh_root], "leaf", "reject", ("crl-unavailable", 0)),
        "leaf expired reject": ([p.inter.crl(this_update=-3 * DAY, next_update=-DAY)], "leaf", "reject",
                                ("crl-expired", 0)),
        "leaf expired warn": ([p.inter.crl(this_update=-3 * DAY, next_update=-DAY)], "leaf", "warn", "ok"),
        "leaf expired warn still revoked": (
            [p.inter.crl(revoked=[p.leaf], this_update=-3 * DAY, next_update=-DAY)], "leaf", "warn", ("revoked", 0)),
        "leaf not yet valid": ([p.inter.crl(this_update=DAY, next_update=3 * DAY)], "leaf", "reject",
                               ("crl-not-yet-valid", 0)),
        "leaf bad signature": ([p.inter.crl(signer=p.root)], "leaf", "reject", ("crl-signature", 0)),
        "chain ok": ([fresh_inter, fresh_root], "chain", "reject", "ok"),
        "chain revoked intermediate": ([fresh_inter, p.root.crl(revoked=[p.inter])], "chain", "reject",
                                       ("revoked", 1)),
        "chain unavailable above leaf": ([fresh_inter], "chain", "reject", ("crl-unavailable", 1)),
        "chain expired root crl warn": ([fresh_inter, p.root.crl(this_update=-3 * DAY, next_update=-DAY)], "chain",
                                        "warn", "ok"),
        "chain expired root crl warn revoked": (
            [fresh_inter, p.root.crl(revoked=[p.inter], this_update=-3 * DAY, next_update=-DAY)], "chain", "warn",
            ("revoked", 1)),
        "chain expired leaf crl warn, root crl missing": (
            [p.inter.crl(this_update=-3 * DAY, next_update=-DAY)], "chain", "warn", ("crl-unavailable", 1)),
        "leaf scope ignores revoked intermediate": ([fresh_inter, p.root.crl(revoked=[p.inter])], "leaf", "reject",
                                                   "ok"),
    }


CASE_IDS = [
    "leaf ok", "leaf revoked", "leaf unavailable", "leaf expired reject", "leaf expired warn",
    "leaf expired warn still revoked", "leaf not yet valid", "leaf bad signature", "chain ok",
    "chain revoked intermediate", "chain unavailable above leaf", "chain expired root crl warn",
    "chain expired root crl warn revoked", "chain expired leaf crl warn, root crl missing",
    "leaf scope ignores revoked intermediate",
]


def against_s_server(tmp_path: Path, compiled: CompiledContext, leaf: Certified, issuer: CA, name: str
                     ) -> tuple[HandshakeError | None, list[str]]:
    """A handshake of ``compiled``'s client against ``openssl s_server`` sending ``leaf`` and ``issuer``: its error,
    and the per-handshake warnings when it succeeded."""
    write_pem(tmp_path / "served.pem", leaf, issuer)
    leaf.write_key(tmp_path / "served.key")
    with s_server("-cert", tmp_path / "served.pem", "-cert_chain", tmp_path / "served.pem", "-key",
                  tmp_path / "served.key") as server:
        conn, error = client_handshake(compiled, server.port, server_hostname=name)
        warnings = compiled.established(conn) if conn is not None else []
        close(conn)
    return error, warnings


@pytest.mark.parametrize("name", CASE_IDS)
def test_crl_outcomes_offline(tmp_path: Path, pki: Pki, name: str) -> None:
    crls, scope, expired, expected = cases(pki)[name]
    compiled = client(tmp_path, pki, *crls, scope=scope, expired=expired)
    assert reason(compiled, [pki.leaf, pki.inter]) == expected


def test_issuer_without_crl_sign(tmp_path: Path, pki: Pki) -> None:
    """Spec §5 Results: an issuer whose keyUsage lacks cRLSign (KEYUSAGE_NO_CRL_SIGN) is crl-signature, offline and
    in a handshake."""
    compiled = client(tmp_path, pki, pki.weak.crl())
    assert reason(compiled, [pki.weak_leaf, pki.weak]) == ("crl-signature", 0)
    error, _ = against_s_server(tmp_path, compiled, pki.weak_leaf, pki.weak, "weak.test")
    assert error is not None and (error.reason, error.depth) == ("crl-signature", 0), error


@pytest.mark.parametrize("name", ["leaf revoked", "leaf expired reject", "leaf expired warn", "leaf unavailable",
                                  "chain revoked intermediate", "leaf expired warn still revoked",
                                  "leaf scope ignores revoked intermediate"])
def test_crl_outcomes_in_a_handshake(tmp_path: Path, pki: Pki, name: str) -> None:
    crls, scope, expired, expected = cases(pki)[name]
    compiled = client(tmp_path, pki, *crls, scope=scope, expired=expired)
    error, warnings = against_s_server(tmp_path, compiled, pki.leaf, pki.inter, "crl.test")
    if expected == "ok":
        assert error is None
        if expired == "warn":
            assert any("expired CRL of CN=crl inter" in w for w in warnings), warnings
    else:
        assert error is not None and (error.reason, error.depth) == expected, error
        assert isinstance(error, PeerVerificationError) and error.subject


def delta_crl(issuer: CA, base_number: int) -> CRL:
    """An empty delta CRL of ``issuer``, newer than its base."""
    indicator = x509.Extension(ExtensionOID.DELTA_CRL_INDICATOR, True, x509.DeltaCRLIndicator(base_number))
    return issuer.crl(this_update=-dt.timedelta(minutes=1), crl_number=base_number + 1, extensions=[indicator])


@pytest.mark.parametrize("with_base", [True, False])
def test_a_delta_crl_never_hides_a_revocation(tmp_path: Path, pki: Pki, with_base: bool) -> None:
    """OpenSSL took a newer (empty) delta CRL for the whole list: the base's revocation of the server was ignored and
    the handshake passed. gtls checks complete CRLs only: the delta is left out with a warning, the base counts,
    and a delta alone leaves the issuer without a CRL (crl-unavailable), as no CRL would."""
    crls = [pki.inter.crl(revoked=[pki.leaf], this_update=-DAY, crl_number=7)] if with_base else []
    compiled = client(tmp_path, pki, *crls, delta_crl(pki.inter, 7))
    assert any("the delta CRL of CN=crl inter" in w and "is not used" in w for w in compiled.warnings)
    error, _ = against_s_server(tmp_path, compiled, pki.leaf, pki.inter, "crl.test")
    expected = ("revoked", 0) if with_base else ("crl-unavailable", 0)
    assert error is not None and (error.reason, error.depth) == expected, error
    assert reason(compiled, [pki.leaf, pki.inter]) == expected


def test_mutual_server_checks_client_crl(tmp_path: Path, pki: Pki) -> None:
    client_leaf = pki.inter.leaf("client.test", eku=("client",))
    write_pem(tmp_path / "client.pem", client_leaf, pki.inter)
    client_leaf.write_key(tmp_path / "client.key")
    server_leaf = pki.root.leaf("srv.test")
    write_pem(tmp_path / "srv.pem", server_leaf)
    server_leaf.write_key(tmp_path / "srv.key")
    write_pem(tmp_path / "ca.pem", pki.root)
    write_pem(tmp_path / "crl.pem", pki.inter.crl(revoked=[client_leaf]).pem)
    base = {"certificate": str(tmp_path / "srv.pem"), "certificate-key": str(tmp_path / "srv.key"),
            "trusted-ca": str(tmp_path / "ca.pem"), "tls-crl": str(tmp_path / "crl.pem")}
    mutual = compile_context(direct({**base, "tls-mutual": "1"}, "server"))
    warnings: list[str] = []
    simple = compile_context(direct(base, "server", warnings=warnings))
    assert [w for w in (*warnings, *simple.warnings) if "tls-crl" in w] == [  # once, naming the level
        "Port: tls-crl: no effect on a server without tls-mutual=1 (no client certificate is checked)"]
    client_args = ("-cert", tmp_path / "client.pem", "-cert_chain", tmp_path / "client.pem", "-key",
                   tmp_path / "client.key")
    with gtls_server(mutual) as srv:
        s_client(srv.port, *client_args)
    with gtls_server(simple) as srv2:
        s_client(srv2.port, *client_args)
    assert [(o.ok, o.error and o.error.reason, o.error and o.error.depth) for o in srv.outcomes] == [
        (False, "revoked", 0)]  # OpenSSL keeps the chain it was building when it refused the client
    assert [o.ok for o in srv2.outcomes] == [True]


async def test_an_expired_crl_waived_for_a_certificate_cryptography_cannot_read_keeps_the_server_up(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """tls-crl-expired=warn names the CRLs a chain used, read through cryptography; a client certificate OpenSSL
    verifies but cryptography refuses (an X.509 version field of 3) raised InvalidVersion out of the handshake, and
    the serving loop stopped, for every client. The waiver now names every expired CRL instead, as when no issuer
    matches."""
    caplog.set_level(logging.WARNING, logger="gtls")
    server_leaf = pki.root.leaf("localhost", dns=["localhost"])
    odd = pki.inter.leaf("v4 client", eku=("client",))
    options = direct({
        "certificate": str(write_pem(tmp_path / "srv.pem", server_leaf)),
        "certificate-key": str(server_leaf.write_key(tmp_path / "srv.key")),
        "trusted-ca": str(write_pem(tmp_path / "ca.pem", pki.root)),
        "tls-mutual": "1",
        "tls-crl": str(write_pem(tmp_path / "crl.pem", pki.inter.crl(this_update=-3 * DAY, next_update=-DAY).pem)),
        "tls-crl-expired": "warn",
    }, "server")
    context = python_context(server=False, ca=tmp_path / "ca.pem", version="1.3",
                             cert=write_pem(tmp_path / "v4.pem", version_4_certificate(odd, pki.inter), pki.inter),
                             key=odd.write_key(tmp_path / "v4.key"))

    def echo(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, wrap_client(context, raw) as conn:
            conn.sendall(b"odd\n")
            with contextlib.suppress(ssl.SSLError, OSError):
                return conn.recv(10)
        return b""

    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(lambda task_status: serve_tls_over_tcp(
                echo_line, 0, options, host="127.0.0.1", on_handshake=events.append, task_status=task_status))
            port = listeners[0].socket.getsockname()[1]
            assert await trio.to_thread.run_sync(echo, port) == b"odd\n"
            assert await trio.to_thread.run_sync(echo, port) == b"odd\n"  # the server is still there
            nursery.cancel_scope.cancel()
    assert [event.ok for event in events] == [True, True]
    assert all("expired CRL of CN=crl inter" in warning for event in events for warning in event.warnings)
    assert [event.warnings != () for event in events] == [True, True]


def test_load_errors_and_freshness_warnings(tmp_path: Path, pki: Pki) -> None:
    trusted = write_pem(tmp_path / "ca.pem", pki.root)

    def build(path: Path) -> CompiledContext:
        return compile_context(direct({"trusted-ca": str(trusted), "tls-crl": str(path)}, "client"))

    (tmp_path / "crl.der").write_bytes(pki.inter.crl().der)
    write_pem(tmp_path / "nocrl.pem", pki.root)
    cases = {
        tmp_path / "missing.pem": "file not found",
        tmp_path: "is a directory",  # unreadable as a file, even for root
        tmp_path / "crl.der": "DER (binary) data",
        tmp_path / "nocrl.pem": "no PEM X509 CRL block",
    }
    for bad, why in cases.items():
        with pytest.raises(CrlLoadError) as info:
            build(bad)
        assert info.value.option == "tls-crl" and info.value.file == str(bad) and why in str(info.value)
    # One file, as trusted-ca (spec §5, §6): a list's comma is part of the name, and the error says so.
    listed = f"{write_pem(tmp_path / 'a.pem', pki.inter.crl().pem)},{write_pem(tmp_path / 'b.pem', pki.root.crl().pem)}"
    with pytest.raises(CrlLoadError) as info:
        build(Path(listed))
    assert str(info.value).endswith(f"file not found: {listed} (tls-crl takes exactly one file; a comma is part of "
                                    "the file name)")
    both = write_pem(tmp_path / "two.pem", pki.inter.crl(next_update=dt.timedelta(hours=5)).pem,
                     pki.root.crl(this_update=-3 * DAY, next_update=-DAY).pem)
    compiled = build(both)
    assert len(compiled.crls) == 2
    text = "\n".join(compiled.warnings)
    assert "CRL of CN=crl inter" in text and "due for update" in text
    assert "CRL of CN=crl root" in text and "expired at" in text and "crl-expired" in text


def test_a_crl_not_valid_yet_is_named_when_the_context_is_built(tmp_path: Path, pki: Pki) -> None:
    """Beside the spec's load-time warnings (§5: past or due within a day), a CRL whose this update is in the future
    is named too: every handshake checking it fails (crl-not-yet-valid) until then."""
    compiled = client(tmp_path, pki, pki.inter.crl(this_update=DAY, next_update=3 * DAY))
    [warning] = [w for w in compiled.warnings if "CRL of CN=crl inter" in w]
    assert "is not valid before" in warning


def test_tls_crl_is_ignored_under_profile_windows(tmp_path: Path, pki: Pki) -> None:
    """Spec §5 Platform and §1.6: under profile windows tls-crl is ignored, with a warning: its file is not read
    (a missing one is no error) and a revoked peer passes, as it does without tls-crl."""
    from gtls.resolve import resolve_client

    trusted = write_pem(tmp_path / "ca.pem", pki.root)
    warnings: list[str] = []
    host = {"trusted-ca": str(trusted), "tls-crl": str(tmp_path / "missing-crl.pem")}
    compiled = compile_context(resolve_client(target="tls=1", host=host, profile="windows", warnings=warnings))
    assert compiled.crls == () and compiled.verify_flags == 0
    assert warnings == ["Host: tls-crl: ignored under profile windows (gtls fetches no CRL distribution points)"]
    assert verify_chain([pki.leaf.cert, pki.inter.cert], compiled, "client")[0] == pki.leaf.cert


@pytest.mark.parametrize("profile", ["windows", "unix"])
def test_a_revoked_server_passes_only_where_the_profile_ignores_tls_crl(tmp_path: Path, pki: Pki, profile: str) -> None:
    """Spec §5 Platform on the wire: the same CRL revoking the server fails the handshake under unix and is not
    consulted under windows."""
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "ca.pem", pki.root)),
                                       "tls-crl": str(write_pem(tmp_path / "crl.pem",
                                                                pki.inter.crl(revoked=[pki.leaf]).pem))},
                                      "client", profile=profile))
    write_pem(tmp_path / "chain.pem", pki.leaf, pki.inter)
    pki.leaf.write_key(tmp_path / "key.pem")
    with s_server("-cert", tmp_path / "chain.pem", "-cert_chain", tmp_path / "chain.pem", "-key",
                  tmp_path / "key.pem") as server:
        conn, error = client_handshake(compiled, server.port, server_hostname="crl.test")
        close(conn)
    if profile == "windows":
        assert error is None, error
    else:
        assert error is not None and (error.reason, error.depth) == ("revoked", 0), error


@pytest.mark.parametrize("scope", ["leaf", "chain"])
def test_a_mutual_server_checks_the_scope_of_its_crl(tmp_path: Path, pki: Pki, scope: str) -> None:
    """Spec §5 Scope on a server: a client whose intermediate is revoked passes in leaf scope (the intermediate's own
    CRL is current) and fails at depth 1 in chain scope."""
    client_leaf = pki.inter.leaf("scope client", eku=("client",))
    write_pem(tmp_path / "client.pem", client_leaf, pki.inter)
    client_leaf.write_key(tmp_path / "client.key")
    server_leaf = pki.root.leaf("srv.test")
    server = compile_context(direct({
        "certificate": str(write_pem(tmp_path / "srv.pem", server_leaf)),
        "certificate-key": str(server_leaf.write_key(tmp_path / "srv.key")),
        "trusted-ca": str(write_pem(tmp_path / "ca.pem", pki.root)), "tls-mutual": "1", "tls-crl-scope": scope,
        "tls-crl": str(write_pem(tmp_path / "crl.pem", pki.inter.crl().pem, pki.root.crl(revoked=[pki.inter]).pem)),
    }, "server"))
    with gtls_server(server) as srv:
        s_client(srv.port, "-cert", tmp_path / "client.pem", "-cert_chain", tmp_path / "client.pem", "-key",
                 tmp_path / "client.key")
    expected = [(True, None)] if scope == "leaf" else [(False, ("revoked", 1))]
    assert [(o.ok, o.error and (o.error.reason, o.error.depth)) for o in srv.outcomes] == expected


def test_certificates_in_the_crl_file_are_named_and_trust_nothing(tmp_path: Path, pki: Pki) -> None:
    """Genesys calls the CRL file's contents "certificates defining the CRL", so a user may put the CA certificates
    there beside their CRLs. They were skipped without a word (spec §5 is silent; §4.1 and §6 warn of other blocks
    in their files): now they are named, and still trust nothing (a chain through them is untrusted)."""
    stranger = CA.root("crl stranger root")
    trusted = write_pem(tmp_path / "ca.pem", stranger)
    crl_file = write_pem(tmp_path / "crl-and-cas.pem", pki.inter.crl().pem, pki.root.cert_pem, pki.inter.cert_pem)
    compiled = compile_context(direct({"trusted-ca": str(trusted), "tls-crl": str(crl_file)}, "client"))
    assert len(compiled.crls) == 1
    assert [w for w in compiled.warnings if "skipped PEM blocks" in w] == [
        f"tls-crl: skipped PEM blocks CERTIFICATE in {crl_file} (certificates here are not trusted; trusted-ca names "
        "the CA certificates)"]
    assert reason(compiled, [pki.leaf, pki.inter]) == ("untrusted", 1)
    only_crls = write_pem(tmp_path / "crl-only.pem", pki.inter.crl().pem)
    compiled = compile_context(direct({"trusted-ca": str(trusted), "tls-crl": str(only_crls)}, "client"))
    assert not [w for w in compiled.warnings if "skipped PEM blocks" in w]
    # A block that is no certificate is named without the note on certificates (audit 61).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with_key = write_pem(tmp_path / "crl-and-key.pem", pki.inter.crl().pem, key_pem)
    compiled = compile_context(direct({"trusted-ca": str(trusted), "tls-crl": str(with_key)}, "client"))
    assert [w for w in compiled.warnings if "skipped PEM blocks" in w] == [
        f"tls-crl: skipped PEM blocks PRIVATE KEY in {with_key}"]
