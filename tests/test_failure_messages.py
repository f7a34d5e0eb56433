"""Failure messages as an operator reads them (audit 76): which end refused, the certificate at fault, what to change,
and, for settings from a deployment file, the option's level and endpoint; verify_chain's say the same of a chain
that would be refused, and timeouts and EOFs name the setting and the side (audit 78). Real peers on 127.0.0.1; the
reason words themselves are tests/test_reasons_runtime.py's."""

from __future__ import annotations

import datetime as dt
import socket
import struct
import time
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL

from gtls import HandshakeError, HandshakeEvent, PeerVerificationError, TLSOptions, _advice, verify_chain
from gtls import context as context_module
from gtls.client import open_tls_over_tcp_stream
from gtls.context import CompiledContext, compile_context
from gtls.deployment import load_deployment
from gtls.resolve import direct
from gtls.testing import CA, Certified, write_pem
from tests.peers import (
    PKI,
    close_after_hello,
    error_line,
    gtls_serve,
    openssl_client,
    openssl_server,
    raw_server,
    run_gtls,
    silent,
    version_4_certificate,
    write_pki,
)
from tests.test_reasons_runtime import gtls_server, trio_thread_client

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("messages-pki"))


async def _client_error(port: int, options: TLSOptions | CompiledContext, handshake_timeout: float = 10
                        ) -> HandshakeError:
    with pytest.raises(HandshakeError) as caught:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, options, server_hostname="localhost",
                                                handshake_timeout=handshake_timeout)
        await stream.aclose()
    return caught.value


def _leaf(pki: PKI, tmp_path: Path, name: str, **kwargs: object) -> tuple[Path, Path]:
    leaf = pki.intermediate.leaf(kwargs.pop("cn", "localhost"), dns=kwargs.pop("dns", ("localhost",)),  # type: ignore[arg-type]
                                 **kwargs)  # type: ignore[arg-type]
    return write_pem(tmp_path / f"{name}.pem", leaf.cert_pem), leaf.write_key(tmp_path / f"{name}.key")


async def test_a_server_without_its_intermediate_is_named_as_such(pki: PKI, tmp_path: Path) -> None:
    leaf_only = write_pem(tmp_path / "leaf.pem", pki.server.cert_pem)
    with openssl_server(cert=leaf_only, key=pki.server_key) as server:
        error = await _client_error(server.port, pki.client_options())
    assert error.reason == "untrusted" and error.depth == 0
    assert error.message.startswith("we refused the server's certificate: unable to get local issuer certificate; ")
    assert "the server sent only its own certificate, no intermediate" in error.message, error.message
    assert "its issuer CN=gtls transport test intermediate is neither sent by the server nor in trusted-ca" \
        in error.message, error.message


@pytest.mark.parametrize(("case", "phrases"), [
    ("expired", ("we refused the server's certificate: certificate has expired; it was valid until ",
                 "the server must renew it")),
    ("not-yet-valid", ("it is valid only from ", "check this machine's clock")),
    ("bad-purpose", ("does not allow TLS servers (serverAuth)",)),
    ("name-mismatch", ("compared 'localhost'", "dial a name the certificate carries, or set tls-target-name")),
])
async def test_certificate_verdicts_say_what_to_change(pki: PKI, tmp_path: Path, case: str,
                                                       phrases: tuple[str, ...]) -> None:
    kwargs: dict[str, object] = {
        "expired": {"not_before": -10 * DAY, "not_after": -DAY}, "not-yet-valid": {"not_before": DAY},
        "bad-purpose": {"eku": ("client",)}, "name-mismatch": {"cn": "other.example", "dns": ("other.example",)},
    }[case]
    cert, key = _leaf(pki, tmp_path, case, **kwargs)
    options = pki.client_options(tls_target_name_check="host")
    with openssl_server(cert=cert, key=key, chain=pki.intermediate_file) as server:
        error = await _client_error(server.port, options)
    assert error.reason == case
    for phrase in phrases:
        assert phrase in error.message, error.message


@pytest.mark.parametrize(("case", "phrase"), [
    ("revoked", "a CRL in tls-crl lists it as revoked: the server needs a new certificate"),
    ("crl-unavailable", "tls-crl holds no CRL of CN=gtls transport test intermediate"),
    ("crl-expired", "is past its next update: put a current CRL in the file, or accept expired CRLs with "
                    "tls-crl-expired=warn"),
])
async def test_crl_verdicts_name_the_crl_and_the_option(pki: PKI, tmp_path: Path, case: str, phrase: str) -> None:
    crl = {"revoked": lambda: pki.intermediate.crl(revoked=[pki.server]).pem,
           "crl-unavailable": lambda: pki.root.crl().pem,
           "crl-expired": lambda: pki.intermediate.crl(this_update=-10 * DAY, next_update=-DAY).pem}[case]()
    options = pki.client_options(tls_crl=str(write_pem(tmp_path / "crl.pem", crl)))
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        error = await _client_error(server.port, options)
    assert error.reason == case and phrase in error.message, error.message


async def test_peer_alerts_say_the_peer_refused_us_and_why(pki: PKI) -> None:
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file, ca=pki.ca_file,
                        verify_client=True, args=("-tls1_2",)) as server:
        error = await _client_error(server.port, pki.client_options())
    assert error.reason == "peer-alert"
    assert error.message.startswith("the server refused the handshake with the alert handshake_failure: "), error
    assert "requires a client certificate and got none (set certificate and certificate-key)" in error.message


async def test_protocol_version_names_sec_protocol(pki: PKI) -> None:
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file,
                        args=("-tls1_2",)) as server:
        error = await _client_error(server.port, pki.client_options(sec_protocol="TLSv13"))
    assert error.reason == "protocol-version"
    assert error.message == ("the server refused the handshake (protocol_version alert): no TLS version both sides "
                             "allow; we allow TLS 1.3 only, by sec-protocol")


# --- the server's side ---------------------------------------------------------------------------------------------


async def _server_error(options: TLSOptions, client: object) -> HandshakeError:
    events: list[HandshakeEvent] = []
    async with gtls_server(options, events) as port:
        assert callable(client)
        await client(port)
    failures = [event.error for event in events if event.error is not None]
    assert len(failures) == 1, [event.describe() for event in events]
    return failures[0]


async def test_server_side_words(pki: PKI) -> None:
    async def no_certificate(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2"])

    error = await _server_error(pki.server_options(tls_mutual="1"), no_certificate)
    assert error.message == ("we refused the client (peer did not return a certificate): it sent no certificate, and "
                             "tls-mutual=1 requires one; the client must set its certificate and certificate-key")

    async def no_shared_cipher(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"])

    error = await _server_error(pki.server_options(sec_protocol="TLSv12", cipher_list="ECDHE-ECDSA-AES128-GCM-SHA256"),
                                no_shared_cipher)
    assert error.message.startswith("we refused the handshake (no shared cipher): the client offered no cipher suite "
                                    "we allow; ours come from cipher-list and sec-protocol"), error.message

    async def p384_only(port: int) -> None:  # the suites match; the certificate's curve (P-256) is not offered
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2", "-groups", "P-384"])

    error = await _server_error(pki.server_options(), p384_only)
    assert error.reason == "no-shared-cipher"
    assert error.message.endswith("; or, in TLS 1.2, the client's supported groups leave out P-256, the curve of our "
                                  "ECDSA certificate"), error.message
    rsa = write_pki(pki.dir / "rsa", key_type="rsa")
    error = await _server_error(rsa.server_options(sec_protocol="TLSv12", cipher_list="ECDHE-RSA-AES128-GCM-SHA256"),
                                no_shared_cipher)
    assert "supported groups" not in error.message  # an RSA certificate has no curve

    async def distrusting(port: int) -> None:
        stranger = write_pki(pki.dir / "stranger")
        await openssl_client(port, ca=stranger.ca_file)

    error = await _server_error(pki.server_options(), distrusting)
    assert error.message.startswith("the client refused the handshake with the alert unknown_ca: it does not trust "
                                    "the CA that issued our certificate"), error.message


async def test_plain_http_to_a_tls_port_is_said_in_plain_words(pki: PKI) -> None:
    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                sock.recv(100)
            except ConnectionResetError:
                pass

    event = await trio_thread_client(pki.server_options(), client)
    assert event.error is not None and event.error.reason == "not-tls"
    assert event.error.message == "the client sent an HTTP request (plain HTTP to a TLS port?) (http request)"


# --- settings from a deployment file: the option's level and endpoint ----------------------------------------------


def _deployment(tmp_path: Path, pki: PKI, port: int, client_security: str, port_transport: str = "tls=1",
                server: tuple[Path, Path] | None = None) -> Path:
    """A server application ``srv`` (the PKI's server, or ``server``: chain and key files) and a client ``cli``."""
    chain, key = server or (",".join(str(p) for p in pki.server_chain_files), pki.server_key)
    config = tmp_path / "deployment.toml"
    config.write_text(f"""
[hosts.h]
address = "localhost"
[hosts.h.security]
certificate = "{chain}"
certificate-key = "{key}"
trusted-ca = "{pki.ca_file}"
[applications.srv]
host = "h"
[applications.srv.ports.default]
address = "127.0.0.1"
port = {port}
transport = "{port_transport}"
[applications.cli.security]
{client_security}
[applications.cli.connections.c]
server = "srv"
address = "127.0.0.1"
host = "localhost"
""")
    return config


def test_connect_with_a_deployment_file_names_the_level_to_change(pki: PKI, tmp_path: Path) -> None:
    stranger = write_pki(tmp_path / "stranger")
    with openssl_server(cert=stranger.server_cert, key=stranger.server_key, chain=stranger.intermediate_file) as server:
        config = _deployment(tmp_path, pki, server.port, f'trusted-ca = "{pki.ca_file}"')
        result = run_gtls("connect", "--config", str(config), "--app", "cli", "--connection", "c", "--timeout", "5")
    line = error_line(result)
    assert result.returncode == 1 and line.startswith("gtls: untrusted: we refused the server's certificate: "), line
    assert "nor in trusted-ca (level Application of applications.cli.connections.c): add that CA there" in line, line


def test_serve_with_a_deployment_file_names_the_level_of_tls_mutual(pki: PKI, tmp_path: Path) -> None:
    config = _deployment(tmp_path, pki, 0, f'trusted-ca = "{pki.ca_file}"', "tls=1;tls-mutual=1")
    with gtls_serve("--config", str(config), "--app", "srv") as server:
        trio.run(lambda: openssl_client(server.port, ca=pki.ca_file, args=["-tls1_2"]))
        line = server.stderr.wait_for(lambda text: "failed:" in text)
    assert "failed: no-peer-certificate: we refused the client (peer did not return a certificate): it sent no " \
           "certificate, and tls-mutual=1 (level Port of applications.srv.ports.default) requires one" in line, line


# --- offline: verify_chain says what a handshake's refusal says (audit 78) -----------------------------------------


def _offline_case(pki: PKI, tmp_path: Path, case: str) -> tuple[list[Certified], dict[str, str]]:
    """The server's chain (leaf first) and the client's extra options that make ``case`` fail, one fault each."""
    inter, root = pki.intermediate, pki.root

    def leaf(**kwargs: object) -> Certified:
        return inter.leaf(kwargs.pop("cn", "localhost"), dns=kwargs.pop("dns", ("localhost",)), **kwargs)  # type: ignore[arg-type]

    def crl(pem: bytes) -> dict[str, str]:
        return {"tls-crl": str(write_pem(tmp_path / f"{case}.crl.pem", pem))}

    if case == "expired-intermediate":
        old = root.intermediate("expired intermediate", not_before=-10 * DAY, not_after=-DAY)
        return [old.leaf("localhost", dns=["localhost"]), old], {}
    if case == "bad-ca":
        not_a_ca = root.intermediate("issuer not a CA", ca=False)
        return [not_a_ca.leaf("localhost", dns=["localhost"]), not_a_ca], {}
    if case == "weak-ca-key":
        weak = root.intermediate("weak intermediate", key=rsa.generate_private_key(65537, 1024))
        return [weak.leaf("localhost", dns=["localhost"]), weak], {}
    if case == "self-signed":
        return [CA.root("localhost")], {}
    return {
        "expired": lambda: ([leaf(not_before=-10 * DAY, not_after=-DAY), inter], {}),
        "not-yet-valid": lambda: ([leaf(not_before=DAY), inter], {}),
        "bad-purpose": lambda: ([leaf(eku=("client",)), inter], {}),
        "name-mismatch": lambda: ([leaf(cn="other.example", dns=("other.example",)), inter],
                                  {"tls-target-name-check": "host"}),
        "revoked": lambda: ([pki.server, inter], crl(inter.crl(revoked=[pki.server]).pem)),
        "crl-unavailable": lambda: ([pki.server, inter], crl(root.crl().pem)),
        "crl-expired": lambda: ([pki.server, inter], crl(inter.crl(this_update=-10 * DAY, next_update=-DAY).pem)),
        "crl-not-yet-valid": lambda: ([pki.server, inter], crl(inter.crl(this_update=DAY, next_update=10 * DAY).pem)),
        "crl-signature": lambda: ([pki.server, inter], crl(inter.crl(signer=root).pem)),
        "weak-leaf-key": lambda: ([leaf(key=rsa.generate_private_key(65537, 1024)), inter], {}),
    }[case]()


_OFFLINE_HINTS = {  # each case's reason and (a phrase of) the hint that says what to change
    "expired": ("expired", "; it was valid until "),
    "expired-intermediate": ("expired", ": the server must send this CA's renewed certificate (or this machine's"),
    "not-yet-valid": ("not-yet-valid", "; it is valid only from "),
    "bad-purpose": ("bad-purpose", "does not allow TLS servers (serverAuth): the server needs a certificate for that"),
    "bad-ca": ("bad-ca", "; it issued another certificate of the server's chain but is not a valid CA"),
    "name-mismatch": ("name-mismatch", "; dial a name the certificate carries, or set tls-target-name to one"),
    "revoked": ("revoked", "; a CRL in tls-crl lists it as revoked: the server needs a new certificate"),
    "crl-unavailable": ("crl-unavailable", "; tls-crl holds no CRL of CN=gtls transport test intermediate"),
    "crl-expired": ("crl-expired", "is past its next update: put a current CRL in the file"),
    "crl-not-yet-valid": ("crl-not-yet-valid", "in tls-crl is not valid yet: check this machine's clock"),
    "crl-signature": ("crl-signature", "does not verify with that CA's key: replace it with the CRL the CA signed"),
    "self-signed": ("untrusted", "; it is self-signed and not in trusted-ca: add it there if you trust it"),
    "weak-leaf-key": ("untrusted", "; CN=localhost has a 1024-bit RSA key, weaker than OpenSSL's security level"),
    "weak-ca-key": ("untrusted", "; CN=weak intermediate has a 1024-bit RSA key, weaker than OpenSSL's security"),
}


@pytest.mark.parametrize("case", list(_OFFLINE_HINTS))
async def test_verify_chain_gives_the_handshakes_hint(pki: PKI, tmp_path: Path, case: str) -> None:
    """verify_chain's message is the handshake's, said of a chain that would be refused: the same fault in OpenSSL's
    words and the same hint (gtls._advice's, one text for both), the same reason, depth and subject. The runtime
    side is a gtls client refusing the same chain from openssl s_server."""
    chain, extra = _offline_case(pki, tmp_path, case)
    options = pki.client_options(**{k.replace("-", "_"): v for k, v in extra.items()})
    reason, hint = _OFFLINE_HINTS[case]
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([c.cert for c in chain], options, "client", target_name="localhost")
    offline = caught.value
    assert type(offline) is PeerVerificationError
    assert offline.reason == reason and offline.message.startswith("the server's chain would be refused: "), offline
    assert hint in offline.message, offline.message
    cert = write_pem(tmp_path / "cert.pem", chain[0])
    key = chain[0].write_key(tmp_path / "key.pem")
    intermediates = write_pem(tmp_path / "chain.pem", *chain[1:]) if chain[1:] else None
    weak = ("-cipher", "DEFAULT@SECLEVEL=0") if case.startswith("weak") else ()
    with openssl_server(cert=cert, key=key, chain=intermediates, args=weak) as server:
        runtime = await _client_error(server.port, options)
    said = runtime.message.removeprefix("we refused the server's certificate: ")
    assert (runtime.reason, runtime.depth, runtime.subject) == (offline.reason, offline.depth, offline.subject)
    assert said == offline.message.removeprefix("the server's chain would be refused: "), (runtime, offline)


def test_verify_chain_says_where_the_missing_issuer_should_be(pki: PKI) -> None:
    """A leaf without its intermediate: the handshake's hint, with the chain given instead of one sent."""
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([pki.server.cert], pki.client_options(), "client")
    assert caught.value.message == (
        "the server's chain would be refused: unable to get local issuer certificate; the chain holds only the "
        "server's own certificate, no intermediate; its issuer CN=gtls transport test intermediate is neither in the "
        "chain nor in trusted-ca: add that CA there if you trust it, or have the server send its intermediate "
        "certificates")


def test_verify_chain_of_a_client_and_at_a_pinned_time(pki: PKI) -> None:
    """A server's verdict on a client chain speaks of the client; a pinned ``at`` is no clock to check."""
    options = pki.server_options(tls_mutual="1")
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([pki.intermediate.leaf("c.test", eku=("server",)).cert, pki.intermediate.cert], options,
                     "server")
    assert caught.value.message.startswith("the client's chain would be refused: unsuitable certificate purpose; "
                                           "its key usage or extended key usage does not allow TLS clients "
                                           "(clientAuth): the client needs a certificate for that"), caught.value
    later = pki.client.cert.not_valid_after_utc + DAY  # its CAs are still valid then
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([pki.client.cert, pki.intermediate.cert], options, "server", at=later)
    assert caught.value.reason == "expired" and caught.value.message.endswith(": the client must renew it")


def test_verify_chain_with_a_deployment_file_names_the_level(pki: PKI, tmp_path: Path) -> None:
    stranger = write_pki(tmp_path / "stranger")
    config = _deployment(tmp_path, pki, 9999, f'trusted-ca = "{pki.ca_file}"\ntls-target-name-check = "host"')
    endpoint = load_deployment(config).connection("cli", "c")
    resolved, name = endpoint.resolved, endpoint.server_hostname
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([stranger.server.cert, stranger.intermediate.cert], resolved, "client", name)
    assert "nor in trusted-ca (level Application of applications.cli.connections.c): add that CA there" \
        in caught.value.message, caught.value
    renamed = pki.intermediate.leaf("other.example", dns=["other.example"])
    with pytest.raises(PeerVerificationError) as caught:
        verify_chain([renamed.cert, pki.intermediate.cert], resolved, "client", name)
    assert caught.value.message.endswith("; dial a name the certificate carries, or set tls-target-name (level "
                                         "Application of applications.cli.connections.c) to one"), caught.value


# --- timeout and eof-in-handshake: the setting in force, the side that closed --------------------------------------


async def test_a_timeout_names_handshake_timeout_and_its_value(pki: PKI) -> None:
    with raw_server(silent(5.0)) as port:
        error = await _client_error(port, pki.client_options(), 0.3)
    assert (error.reason, error.message) == ("timeout", "the handshake did not complete within 0.3 s "
                                             "(handshake_timeout=0.3): raise handshake_timeout if the server or the "
                                             "network is that slow")

    def silent_client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.recv(100)

    event = await trio_thread_client(pki.server_options(), silent_client, handshake_timeout=0.3)
    assert event.error is not None and event.error.message == (
        "the handshake did not complete within 0.3 s (handshake_timeout=0.3): raise handshake_timeout if the client "
        "or the network is that slow")


async def test_eof_in_handshake_says_which_side_closed(pki: PKI) -> None:
    with raw_server(close_after_hello) as port:
        error = await _client_error(port, pki.client_options())
    assert error.reason == "eof-in-handshake"
    assert error.message == "the server closed the connection without close_notify during the handshake", error

    def half_hello_then_reset(port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # an RST

    event = await trio_thread_client(pki.server_options(), half_hello_then_reset)
    assert event.error is not None and event.reason == "eof-in-handshake"
    assert event.error.message == "the connection with the client was reset (ECONNRESET) during the handshake"


def test_eof_reported_by_openssl_names_the_side(pki: PKI) -> None:
    """OpenSSL's own EOF error (SSL_R_UNEXPECTED_EOF_WHILE_READING) goes through the library's path: same words."""
    compiled = compile_context(direct(pki.server_options(), "server"))
    conn = compiled.new_connection()
    error = compiled.handshake_failure(conn, SSL.Error([("SSL routines", "", "unexpected eof while reading")]))
    assert (error.reason, error.message) == (
        "eof-in-handshake", "the client closed the connection during the handshake (unexpected eof while reading)")


def test_gtls_connect_names_its_timeout_flag(pki: PKI) -> None:
    with raw_server(silent(10)) as port:
        result = run_gtls("connect", f"127.0.0.1:{port}", "--trusted-ca", str(pki.ca_file), "--timeout", "0.5")
    assert error_line(result) == ("gtls: timeout: the handshake did not complete within 0.5 s (--timeout=0.5): raise "
                                  f"--timeout if the server or the network is that slow (peer 127.0.0.1:{port})")


def test_gtls_serve_names_its_handshake_timeout_flag(pki: PKI, tmp_path: Path) -> None:
    config = _deployment(tmp_path, pki, 0, "")
    with gtls_serve("--config", str(config), "--app", "srv", "--handshake-timeout", "0.5") as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5):
        line = server.stderr.wait_for(lambda text: "failed:" in text)
    assert line.endswith("failed: timeout: the handshake did not complete within 0.5 s (--handshake-timeout=0.5): "
                         "raise --handshake-timeout if the client or the network is that slow"), line


def test_gtls_serve_names_its_max_handshakes_flag_for_a_wait_for_a_slot(pki: PKI, tmp_path: Path) -> None:
    """A client that spent its deadline waiting for a handshake slot: the line names --max-handshakes, and says the
    wait counted toward --handshake-timeout (found by audit 87)."""
    config = _deployment(tmp_path, pki, 0, "")
    with gtls_serve("--config", str(config), "--app", "srv", "--handshake-timeout", "1",
                    "--max-handshakes", "1") as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as holder, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as waiter:
        holder.sendall(b"\x16\x03\x01\x02\x00\x01")  # a handshake record header and one byte of its body
        time.sleep(0.3)
        waiter.sendall(b"\x16\x03\x01\x02\x00\x01")
        line = server.stderr.wait_for(lambda text: "slot" in text)
    assert "failed: timeout: the handshake did not complete within 1 s (--handshake-timeout=1, the wait for a " \
           "handshake slot included): " in line, line
    assert "--max-handshakes=1 handshake slots" in line and line.endswith(
        "raise --max-handshakes, or lower --handshake-timeout so that stalled handshakes give their slots up sooner")


def test_gtls_check_names_the_certificate_at_fault(pki: PKI, tmp_path: Path) -> None:
    """gtls check's rehearsed handshake names the certificate at fault, as gtls connect and gtls serve do."""
    old = pki.root.intermediate("expired intermediate", not_before=-10 * DAY, not_after=-DAY)
    leaf = old.leaf("localhost", dns=["localhost"])
    server = write_pem(tmp_path / "chain.pem", leaf, old), leaf.write_key(tmp_path / "key.pem")
    config = _deployment(tmp_path, pki, 9999, f'trusted-ca = "{pki.ca_file}"', server=server)
    result = run_gtls("check", "--config", str(config))
    line = next(line for line in result.stdout.splitlines() if "handshake with" in line)
    assert line.endswith(": the server must send this CA's renewed certificate (or this machine's clock is wrong)) "
                         "(depth 1; subject CN=expired intermediate)"), line


# --- the hints, each with what it names (mutation testing, audit a79) -----------------------------------------------


async def _against(tmp_path: Path, options: TLSOptions | CompiledContext, leaf: Certified, *sent: Certified
                   ) -> HandshakeError:
    """A gtls client's error against an openssl s_server that sends ``leaf`` and then ``sent``."""
    cert, key = leaf.write_cert(tmp_path / "sent.pem"), leaf.write_key(tmp_path / "sent.key")
    chain = write_pem(tmp_path / "sent-chain.pem", *(c.cert_pem for c in sent)) if sent else None
    with openssl_server(cert=cert, key=key, chain=chain) as server:
        return await _client_error(server.port, options)


def _minute(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


async def test_an_untrusted_self_signed_root_sent_by_the_server_is_called_self_signed(pki: PKI, tmp_path: Path
                                                                                     ) -> None:
    stranger = write_pki(tmp_path / "stranger")
    error = await _against(tmp_path, pki.client_options(), stranger.server, stranger.intermediate, stranger.root)
    assert (error.reason, error.depth) == ("untrusted", 2), error
    assert error.message.endswith("self-signed certificate in certificate chain; it is self-signed and not in "
                                  "trusted-ca: add it there if you trust it"), error.message


async def test_the_dates_said_are_the_certificates_own(pki: PKI, tmp_path: Path) -> None:
    """An expired leaf is named with its notAfter, a leaf not yet valid with its notBefore (not the other one)."""
    expired = pki.intermediate.leaf("localhost", dns=["localhost"], not_before=-10 * DAY, not_after=-DAY)
    error = await _against(tmp_path, pki.client_options(), expired, pki.intermediate)
    assert f"it was valid until {_minute(expired.cert.not_valid_after_utc)}: the server must renew it (or this " \
           "machine's clock is wrong)" in error.message, error.message
    early = pki.intermediate.leaf("localhost", dns=["localhost"], not_before=DAY, not_after=10 * DAY)
    error = await _against(tmp_path, pki.client_options(), early, pki.intermediate)
    assert f"it is valid only from {_minute(early.cert.not_valid_before_utc)}: check this machine's clock" \
        in error.message, error.message


async def test_an_expired_trusted_root_is_ours_to_replace(tmp_path: Path) -> None:
    """The certificate at fault is found among the trusted CAs too (the server does not send the root): the fix is in
    trusted-ca, not on the server."""
    old = CA.root("expired test root", not_before=-20 * DAY, not_after=-DAY)
    inter = old.intermediate("intermediate of the expired root")
    leaf = inter.leaf("localhost", dns=["localhost"])
    options = TLSOptions.from_mapping({"trusted-ca": str(old.write_cert(tmp_path / "old-root.pem"))})
    error = await _against(tmp_path, options, leaf, inter)
    assert (error.reason, error.subject) == ("expired", "CN=expired test root"), error
    assert error.message.endswith(f"it was valid until {_minute(old.cert.not_valid_after_utc)}: replace it in "
                                  "trusted-ca (or this machine's clock is wrong)"), error.message


async def test_an_issuer_that_is_no_ca_is_named_as_such(pki: PKI, tmp_path: Path) -> None:
    not_a_ca = pki.root.intermediate("an issuer without CA:TRUE", ca=False)
    error = await _against(tmp_path, pki.client_options(), not_a_ca.leaf("localhost", dns=["localhost"]), not_a_ca)
    assert error.reason == "bad-ca", error
    assert "it issued another certificate of the server's chain but is not a valid CA (CA:TRUE, keyCertSign" \
        in error.message, error.message


async def test_a_wrong_intermediate_is_not_called_a_missing_one(pki: PKI, tmp_path: Path) -> None:
    """Two certificates sent, the second not the leaf's issuer: the server did send an intermediate (the wrong one),
    and with the trusted CA holding the intermediate, the missing issuer is the root, not an intermediate."""
    stranger = write_pki(tmp_path / "stranger")
    error = await _against(tmp_path, pki.client_options(), pki.server, stranger.intermediate)
    assert (error.reason, error.depth) == ("untrusted", 0), error
    assert "sent only its own certificate" not in error.message, error.message
    assert "its issuer CN=gtls transport test intermediate is neither sent by the server nor in trusted-ca" \
        in error.message, error.message
    options = TLSOptions.from_mapping({"trusted-ca": str(pki.intermediate_file)})  # an intermediate, no root
    error = await _against(tmp_path, options, pki.server)
    assert (error.reason, error.depth) == ("untrusted", 1), error
    assert "sent only its own certificate" not in error.message, error.message
    assert "its issuer CN=gtls transport test root is neither sent by the server nor in trusted-ca" in error.message


async def test_an_unreadable_certificate_gets_no_invented_issuer(pki: PKI, tmp_path: Path) -> None:
    """A leaf OpenSSL reads and cryptography cannot (a version field of 3), sent without its intermediate: the
    refusal keeps OpenSSL's words, with no hint naming an issuer gtls could not read."""
    quirky = write_pem(tmp_path / "v4.pem", version_4_certificate(pki.server, pki.intermediate))
    with openssl_server(cert=quirky, key=pki.server_key) as server:
        error = await _client_error(server.port, pki.client_options())
    assert (error.reason, error.depth) == ("untrusted", 0), error
    assert error.message == "we refused the server's certificate: unable to get local issuer certificate", error


async def test_a_name_mismatch_on_a_dialled_ip_address_gives_its_advice_once(pki: PKI) -> None:
    options = pki.client_options(tls_target_name_check="host")
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server, \
            pytest.raises(HandshakeError) as caught:
        await open_tls_over_tcp_stream("127.0.0.1", server.port, options, handshake_timeout=10)
    message = caught.value.message
    assert caught.value.reason == "name-mismatch" and message.count("tls-target-name") == 2, message  # -check, set
    assert message.endswith("an IP address is compared as a plain string; dial by host name or set tls-target-name")


@pytest.mark.parametrize(("case", "phrase"), [
    ("crl-not-yet-valid", "the CRL of CN=gtls transport test intermediate in tls-crl is not valid yet: check this "
                          "machine's clock, or the CRL's dates"),
    ("crl-signature", "the CRL of CN=gtls transport test intermediate in tls-crl does not verify with that CA's key: "
                      "replace it with the CRL the CA signed"),
])
async def test_crl_dates_and_signatures_are_told_apart(pki: PKI, tmp_path: Path, case: str, phrase: str) -> None:
    crl = {"crl-not-yet-valid": lambda: pki.intermediate.crl(this_update=DAY, next_update=10 * DAY),
           "crl-signature": lambda: pki.intermediate.crl(signer=pki.root)}[case]()
    options = pki.client_options(tls_crl=str(crl.write(tmp_path / "crl.pem")))
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        error = await _client_error(server.port, options)
    assert error.reason == case and error.message.endswith(phrase), error.message


async def test_the_crl_scope_hint_comes_only_where_it_helps(pki: PKI, tmp_path: Path) -> None:
    """tls-crl-scope=chain, the intermediate's CRL missing (depth 1): checking the leaf only would pass. The leaf's
    CRL missing (depth 0): it would not, so no such hint."""
    for crl, depth in ((pki.intermediate.crl(), 1), (pki.root.crl(), 0)):
        options = pki.client_options(tls_crl=str(crl.write(tmp_path / "crl.pem")), tls_crl_scope="chain")
        with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
            error = await _client_error(server.port, options)
        assert (error.reason, error.depth) == ("crl-unavailable", depth), error
        assert ("or check the leaf only with tls-crl-scope=leaf" in error.message) == bool(depth), error.message


async def test_a_client_certificate_for_servers_only_is_named_for_clients(pki: PKI, tmp_path: Path) -> None:
    leaf = pki.intermediate.leaf("client.test", dns=["client.test"], eku=("server",))
    cert, key = leaf.write_cert(tmp_path / "server-only.pem"), leaf.write_key(tmp_path / "server-only.key")

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key, chain=pki.intermediate_file)

    error = await _server_error(pki.server_options(tls_mutual="1"), client)
    assert error.reason == "bad-purpose"
    assert error.message.startswith("we refused the client's certificate: "), error.message
    assert error.message.endswith("its key usage or extended key usage does not allow TLS clients (clientAuth): the "
                                  "client needs a certificate for that"), error.message


async def test_a_certificate_cryptography_cannot_read_leaves_the_others_hints(pki: PKI, tmp_path: Path) -> None:
    """An intermediate OpenSSL takes and cryptography cannot (a version field of 3) beside an expired leaf: the
    leaf's hint stays (its date), the unreadable certificate is only left out."""
    expired = pki.intermediate.leaf("localhost", dns=["localhost"], not_before=-10 * DAY, not_after=-DAY)
    quirky = write_pem(tmp_path / "v4-intermediate.pem", version_4_certificate(pki.intermediate, pki.root))
    cert, key = expired.write_cert(tmp_path / "expired.pem"), expired.write_key(tmp_path / "expired.key")
    with openssl_server(cert=cert, key=key, chain=quirky) as server:
        error = await _client_error(server.port, pki.client_options())
    assert (error.reason, error.depth) == ("expired", 0), error
    assert f"it was valid until {_minute(expired.cert.not_valid_after_utc)}: the server must renew it" \
        in error.message, error.message


async def test_a_failing_diagnostic_leaves_the_refusal_as_it_was(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The words around a refusal are extras: if building them fails, the refusal still comes, in OpenSSL's words,
    as the same error (not the diagnostic's exception)."""
    def broken(*args: object) -> str:
        raise RuntimeError("diagnostic bug")

    monkeypatch.setattr(_advice, "_library_hint", broken)
    monkeypatch.setattr(_advice, "_verdict_hint", broken)
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file,
                        args=("-tls1_2",)) as server:
        error = await _client_error(server.port, pki.client_options(sec_protocol="TLSv13"))
    assert (error.reason, error.message) == (
        "protocol-version", "the peer allows no protocol version we allow (protocol_version alert)")
    stranger = write_pki(pki.dir / "stranger-for-diagnostics")
    with openssl_server(cert=stranger.server_cert, key=stranger.server_key, chain=stranger.intermediate_file) as server:
        error = await _client_error(server.port, pki.client_options())
    assert (error.reason, error.message) == ("untrusted", "unable to get local issuer certificate")


async def test_a_windows_client_without_trusted_ca_is_told_of_the_system_store(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Profile windows without trusted-ca verifies against the system trust store: the hint names that store, not
    trusted-ca (unset; setting it would replace the system store, the endpoint then trusting that CA alone)."""
    stranger = write_pki(tmp_path / "stranger")
    monkeypatch.setenv("SSL_CERT_FILE", str(stranger.ca_file))  # the "system" store: another root
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    context_module.clear_cache()
    request.addfinalizer(context_module.clear_cache)
    compiled = compile_context(direct({}, "client", profile="windows"))
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        error = await _client_error(server.port, compiled)
    assert error.reason == "untrusted", error
    assert "its issuer CN=gtls transport test root is neither sent by the server nor in the system trust store " \
           "(profile windows without trusted-ca): add that CA there if you trust it" in error.message, error.message
    leaf = pki.root.leaf("localhost", dns=["localhost"])
    error = await _against(tmp_path, compiled, leaf, pki.root)  # its root sent too, not in the system store
    assert error.message.endswith("it is self-signed and not in the system trust store (profile windows without "
                                  "trusted-ca): add it there if you trust it"), error.message
