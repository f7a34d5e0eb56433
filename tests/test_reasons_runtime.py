"""Every runtime failure reason of spec §10 provoked for real on the wire, with the reason word asserted.

Client side: the gtls connector against ``openssl s_server``, a gtls server or scripted TCP peers. Server side:
the gtls server's ``on_handshake`` events and its one log line, with ``openssl s_client``, Python ``ssl`` and raw
sockets as clients. (The PKI tests cover every CRL variant offline; here they run on the wire too.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
from OpenSSL import SSL

from gtls import HandshakeError, HandshakeEvent, PeerVerificationError, TLSOptions, TLSStream, classify_ending
from gtls.client import open_tls_over_tcp_stream
from gtls.errors import CERTIFICATE_REASONS
from gtls.server import open_tls_over_tcp_listeners, serve_tls_over_tcp
from gtls.testing import CA, Certified, write_pem
from tests.hostile import MemoryServer, read_until_closed
from tests.peers import (
    OPENSSL,
    PKI,
    close_after_hello,
    openssl_client,
    openssl_server,
    plaintext_reply,
    python_ssl_client,
    raw_server,
    serial_zero_identity,
    silent,
    version_4_certificate,
    write_pki,
)

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("reasons-pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("stranger-pki"))


def write_identity(directory: Path, name: str, leaf: Certified, *chain: Certified) -> tuple[Path, Path]:
    cert = write_pem(directory / f"{name}.pem", leaf.cert_pem, *(c.cert_pem for c in chain))
    return cert, leaf.write_key(directory / f"{name}.key")


async def client_failure(port: int, options: TLSOptions, *, timeout: float = 10.0) -> HandshakeError:
    return await client_failure_as(port, options, "localhost", timeout=timeout)


async def client_failure_as(port: int, options: TLSOptions, server_hostname: str, *, timeout: float = 10.0
                            ) -> HandshakeError:
    with pytest.raises(HandshakeError) as caught:
        stream = await open_tls_over_tcp_stream(
            "127.0.0.1", port, options, server_hostname=server_hostname, handshake_timeout=timeout
        )
        await stream.aclose()
    return _classed(caught.value)


def _classed(error: HandshakeError) -> HandshakeError:
    """Spec §10: the certificate reasons (untrusted … no-peer-certificate) raise PeerVerificationError, the others
    the handshake error."""
    assert isinstance(error, PeerVerificationError) == (error.reason in CERTIFICATE_REASONS), repr(error)
    return error


async def failure_against_openssl(
    cert: Path, key: Path, options: TLSOptions, *, args: tuple[str, ...] = (), chain: Path | None = None
) -> HandshakeError:
    with openssl_server(cert=cert, key=key, chain=chain, args=args) as server:
        return await client_failure(server.port, options)


# --- certificate reasons, seen by the gtls client ------------------------------------------------------------------


async def test_untrusted(pki: PKI, stranger: PKI) -> None:
    error = await failure_against_openssl(stranger.server_cert, stranger.server_key, pki.client_options(),
                                          chain=stranger.intermediate_file)
    assert isinstance(error, PeerVerificationError) and error.reason == "untrusted"
    assert error.peer is not None and error.peer.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("reason", "validity"),
    [
        ("expired", {"not_before": -10 * DAY, "not_after": -DAY}),
        ("not-yet-valid", {"not_before": DAY, "not_after": 10 * DAY}),
    ],
)
async def test_validity(pki: PKI, tmp_path: Path, reason: str, validity: dict[str, dt.timedelta]) -> None:
    leaf = pki.intermediate.leaf("localhost", dns=("localhost",), **validity)  # type: ignore[arg-type]
    cert, key = write_identity(tmp_path, "leaf", leaf, pki.intermediate)
    error = await failure_against_openssl(cert, key, pki.client_options(), chain=pki.intermediate_file)
    assert error.reason == reason
    assert error.depth == 0 and error.subject is not None and "localhost" in error.subject


async def test_a_bundle_pasted_after_the_servers_chain_keeps_depth_and_subject(pki: PKI, tmp_path: Path) -> None:
    """A server that sends a CA bundle after its own chain (12 strangers here) is refused for its expired
    intermediate: the client names the intermediate, re-verifying the path OpenSSL built rather than all that was
    sent (sent lists over 10 certificates are not re-verified, so any hostile peer's refusal stays cheap)."""
    expired = pki.root.intermediate("expired inter", not_before=-10 * DAY, not_after=-DAY)
    leaf = expired.leaf("localhost", dns=("localhost",))
    strangers = [pki.root.intermediate(f"bundle {index}") for index in range(12)]
    cert, key = write_identity(tmp_path, "leaf", leaf)
    chain = write_pem(tmp_path / "chain.pem", expired.cert_pem, *(c.cert_pem for c in strangers))
    error = await failure_against_openssl(cert, key, pki.client_options(), chain=chain)
    assert isinstance(error, PeerVerificationError)
    assert (error.reason, error.depth, error.subject) == ("expired", 1, "CN=expired inter")


def crl_cases(pki: PKI, stranger: PKI) -> dict[str, bytes]:
    now = dt.timedelta(0)
    return {
        "revoked": pki.intermediate.crl(revoked=[pki.server]).pem,
        "crl-unavailable": stranger.intermediate.crl().pem,  # no CRL from the server certificate's issuer
        "crl-expired": pki.intermediate.crl(this_update=-10 * DAY, next_update=-DAY).pem,
        "crl-not-yet-valid": pki.intermediate.crl(this_update=DAY, next_update=10 * DAY).pem,
        "crl-signature": pki.intermediate.crl(signer=stranger.intermediate.key).pem,
        "ok": pki.intermediate.crl(revoked=[pki.client], this_update=now - DAY).pem,
    }


@pytest.mark.parametrize("expired", ["reject", "warn"])
@pytest.mark.parametrize(
    "reason", ["revoked", "crl-unavailable", "crl-expired", "crl-not-yet-valid", "crl-signature", "ok"]
)
async def test_crl_reasons_on_the_wire(pki: PKI, stranger: PKI, tmp_path: Path, reason: str, expired: str) -> None:
    """Each CRL reason; tls-crl-expired=warn waives the CRL's expiry and nothing else (spec §11 C6)."""
    crl_file = write_pem(tmp_path / "crl.pem", crl_cases(pki, stranger)[reason])
    options = pki.client_options(tls_crl=str(crl_file), tls_crl_expired=expired)
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        if reason == "ok" or (reason, expired) == ("crl-expired", "warn"):
            stream = await open_tls_over_tcp_stream("127.0.0.1", server.port, options, server_hostname="localhost")
            await stream.aclose()
            return
        error = await client_failure(server.port, options)
    assert isinstance(error, PeerVerificationError)
    assert error.reason == reason


@pytest.mark.parametrize("scope", ["leaf", "chain"])
async def test_crl_expired_warn_names_only_the_crls_this_chain_used(pki: PKI, tmp_path: Path, scope: str) -> None:
    """tls-crl-expired=warn with expired CRLs of the root, the intermediate and an unrelated CA in one file: the
    handshake's warnings name the intermediate's CRL (the leaf's issuer) in leaf scope, the root's too in chain
    scope, and never the unrelated CA's, which no certificate of this chain was checked against."""
    crl_file = write_pem(tmp_path / "crl.pem", *(ca.crl(this_update=-10 * DAY, next_update=-DAY).pem
                                                 for ca in (pki.intermediate, pki.root, CA.root("unrelated CA"))))
    options = pki.client_options(tls_crl=str(crl_file), tls_crl_expired="warn", tls_crl_scope=scope)
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        stream = await open_tls_over_tcp_stream("127.0.0.1", server.port, options, server_hostname="localhost")
        warnings = list(stream.handshake_warnings)
        await stream.aclose()
    named = sorted(w.split("accepted the expired CRL of ", 1)[1].split(" (next update", 1)[0] for w in warnings)
    used = [pki.intermediate] + ([pki.root] if scope == "chain" else [])
    assert named == sorted(ca.cert.subject.rfc4514_string() for ca in used), warnings


async def test_bad_ca(pki: PKI, tmp_path: Path) -> None:
    not_a_ca = pki.root.intermediate("not a CA", ca=False)
    leaf = not_a_ca.leaf("localhost", dns=("localhost",))
    cert, key = write_identity(tmp_path, "leaf", leaf, not_a_ca)
    chain = write_pem(tmp_path / "chain.pem", not_a_ca.cert_pem)
    error = await failure_against_openssl(cert, key, pki.client_options(), chain=chain)
    assert error.reason == "bad-ca"


async def test_bad_purpose(pki: PKI, tmp_path: Path) -> None:
    leaf = pki.intermediate.leaf("localhost", dns=("localhost",), eku=("client",))
    cert, key = write_identity(tmp_path, "leaf", leaf)
    error = await failure_against_openssl(cert, key, pki.client_options(), chain=pki.intermediate_file)
    assert error.reason == "bad-purpose" and error.depth == 0


async def test_name_mismatch(pki: PKI, tmp_path: Path) -> None:
    leaf = pki.intermediate.leaf("other.example", dns=("other.example",))
    cert, key = write_identity(tmp_path, "leaf", leaf)
    error = await failure_against_openssl(
        cert, key, pki.client_options(tls_target_name_check="host"), chain=pki.intermediate_file
    )
    assert isinstance(error, PeerVerificationError) and error.reason == "name-mismatch"
    assert "other.example" in error.message


# --- protocol reasons, seen by the gtls client ---------------------------------------------------------------------


async def test_protocol_version_client(pki: PKI) -> None:
    error = await failure_against_openssl(
        pki.server_cert, pki.server_key, pki.client_options(sec_protocol="TLSv13"), args=("-tls1_2",),
        chain=pki.intermediate_file,
    )
    assert error.reason == "protocol-version"


async def test_a_servers_small_dh_group_is_no_shared_cipher_client(tmp_path: Path) -> None:
    """A TLS 1.2 server offering only DHE with a 1024-bit group: the client refuses the key exchange. The server
    speaks TLS, so this read "not-tls" (invalid TLS from the peer) before; the message says what to change."""
    rsa = write_pki(tmp_path / "rsa", key_type="rsa")
    group = tmp_path / "dh1024.pem"
    subprocess.run([OPENSSL, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "dh_rfc5114:1",
                    "-out", str(group)], check=True, capture_output=True, timeout=30)
    error = await failure_against_openssl(
        rsa.server_cert, rsa.server_key, rsa.client_options(), chain=rsa.intermediate_file,
        args=("-tls1_2", "-dhparam", str(group), "-cipher", "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"),
    )
    assert error.reason == "no-shared-cipher", error
    assert "Diffie-Hellman group" in error.message and "dh key too small" in error.message, error.message
    assert error.message.startswith("the server's Diffie-Hellman group is smaller"), error.message  # its own words
    assert error.alert is None  # refused here: the server sent no alert


def hide_supported_versions(hello: bytes) -> bytes:
    """The ClientHello record ``hello`` with its supported_versions extension renamed to an unknown type (same
    length): what a man in the middle does to make a TLS 1.3 server answer in TLS 1.2."""
    body = bytearray(hello[5:])
    at = 4 + 2 + 32
    at += 1 + body[at]  # session id
    at += 2 + int.from_bytes(body[at:at + 2], "big")  # cipher suites
    at += 1 + body[at]  # compression methods
    end = at + 2 + int.from_bytes(body[at:at + 2], "big")
    at += 2
    while at < end:
        kind, size = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
        if kind == 43:
            body[at:at + 2] = b"\xfa\x0a"
            return hello[:5] + bytes(body)
        at += 4 + size
    raise AssertionError("no supported_versions extension in the ClientHello")


@asynccontextmanager
async def version_stripping_proxy(upstream: int) -> AsyncIterator[int]:
    """A man in the middle on 127.0.0.1 for one connection: hides TLS 1.3 in the ClientHello, relays the rest."""

    async def relay(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await sink.send_eof()

    async def one(client: trio.SocketStream) -> None:
        async with client:
            hello = b""
            while len(hello) < 5 or len(hello) < 5 + int.from_bytes(hello[3:5], "big"):
                chunk = await client.receive_some(65536)
                if not chunk:
                    return
                hello += chunk
            async with await trio.open_tcp_stream("127.0.0.1", upstream) as server:
                await server.send_all(hide_supported_versions(hello))
                async with trio.open_nursery() as pipes:
                    pipes.start_soon(relay, client, server)
                    pipes.start_soon(relay, server, client)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(partial(trio.serve_listeners, one, listeners, handler_nursery=nursery))
            yield listeners[0].socket.getsockname()[1]
            nursery.cancel_scope.cancel()


async def test_tls13_downgrade_sentinel_is_checked_client(pki: PKI) -> None:
    """A man in the middle hides TLS 1.3 from a TLS 1.3 server, which answers in TLS 1.2 with the RFC 8446
    downgrade sentinel in ServerHello.random: the client refuses the downgrade, as a version failure (it used to
    read "not-tls", which says the peer did not speak TLS at all)."""
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        async with version_stripping_proxy(server.port) as port:
            error = await client_failure(port, pki.client_options())
        assert error.reason == "protocol-version", error
        assert error.message.startswith("version downgrade refused: "), error.message  # not "no TLS version ..."


async def test_peer_alert_tls12_client_without_certificate(pki: PKI) -> None:
    with openssl_server(
        cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file, ca=pki.ca_file,
        verify_client=True, args=("-tls1_2",),
    ) as server:
        error = await client_failure(server.port, pki.client_options())
    assert error.reason == "peer-alert" and error.alert and error.alert in error.message


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_peer_alert_unrecognized_name(pki: PKI, version: str) -> None:
    """An SNI-strict server (nginx ssl_reject_handshake, here s_server -servername_fatal) refuses a name it does not
    serve with unrecognized_name (112), whose OpenSSL text has no "alert" in it: still peer-alert, named."""
    args = ("-servername", "localhost", "-servername_fatal", "-cert2", str(pki.server_cert),
            "-key2", str(pki.server_key), version)
    with openssl_server(cert=pki.server_cert, key=pki.server_key, args=args) as server:
        error = await client_failure_as(server.port, pki.client_options(), "other.test")
    assert (error.reason, error.alert) == ("peer-alert", "unrecognized_name"), error
    assert "unrecognized_name" in error.message


async def test_peer_alert_tls13_rejection_arrives_on_first_receive(pki: PKI) -> None:
    """In TLS 1.3 the client finishes first; the server's rejection of its missing certificate must surface on the
    next receive as peer-alert (naming the alert), not as end of stream."""
    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), server_hostname="localhost")
        async with stream:
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.receive_some()
    cause = caught.value.__cause__
    assert isinstance(cause, HandshakeError) and cause.reason == "peer-alert"
    assert cause.alert == "certificate_required"
    assert cause.message == ("the peer sent the alert certificate_required before any data, after our side of the "
                             "handshake (a TLS 1.3 server refuses a client's certificate this way, after the client's "
                             "handshake)")
    assert [e.reason for e in events] == ["no-peer-certificate"]


async def test_not_tls_client() -> None:
    with raw_server(plaintext_reply) as port:
        error = await client_failure(port, TLSOptions.from_mapping({"trusted-ca": str(_any_ca_file())}))
    assert error.reason == "not-tls"
    # An HTTP reply is no HTTP request. OpenSSL's own words vary: "wrong version number", or on 3.5.2, given the whole
    # reply at once, "packet length too long; record layer failure".
    said = "the server sent bytes that are not TLS (a plaintext or other protocol on this port?) "
    assert error.message in (said + "(wrong version number)", said + "(packet length too long; record layer failure)"
                             ), error.message


async def test_timeout_client(pki: PKI) -> None:
    with raw_server(silent(5.0)) as port:
        started = trio.current_time()
        error = await client_failure(port, pki.client_options(), timeout=0.3)
    assert error.reason == "timeout"
    assert trio.current_time() - started < 3


async def test_eof_in_handshake_client(pki: PKI) -> None:
    with raw_server(close_after_hello) as port:
        error = await client_failure(port, pki.client_options())
    assert error.reason == "eof-in-handshake"


_CA_FILE: list[Path] = []


def _any_ca_file() -> Path:
    if not _CA_FILE:
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="gtls-reasons-"))
        _CA_FILE.append(CA.root().write_cert(directory / "ca.pem"))
    return _CA_FILE[0]


# --- reasons seen by the gtls server -------------------------------------------------------------------------------


@asynccontextmanager
async def gtls_server(options: TLSOptions, events: list[HandshakeEvent], **kwargs: object) -> AsyncIterator[int]:
    async def handler(stream: TLSStream) -> None:
        await stream.send_all(b"welcome\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                handler, 0, options, host="127.0.0.1", on_handshake=events.append, task_status=task_status,
                **kwargs,
            )
        )
        yield listeners[0].socket.getsockname()[1]
        await _settle(events)
        nursery.cancel_scope.cancel()


async def _settle(events: list[HandshakeEvent]) -> None:
    with trio.move_on_after(2):
        while not events:
            await trio.sleep(0.01)


async def server_reason(options: TLSOptions, client: object, **kwargs: object) -> HandshakeEvent:
    events: list[HandshakeEvent] = []
    async with gtls_server(options, events, **kwargs) as port:
        assert callable(client)
        await client(port)
    failures = [e for e in events if not e.ok]
    assert len(failures) == 1, [e.describe() for e in events]
    assert failures[0].error is not None
    _classed(failures[0].error)
    return failures[0]


async def test_no_peer_certificate_server(pki: PKI) -> None:
    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2"])

    event = await server_reason(pki.server_options(tls_mutual="1"), client)
    assert event.reason == "no-peer-certificate"
    assert isinstance(event.error, PeerVerificationError)


async def test_untrusted_client_certificate_server(pki: PKI, stranger: PKI) -> None:
    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=stranger.client_cert, key=stranger.client_key,
                             chain=stranger.intermediate_file)

    event = await server_reason(pki.server_options(tls_mutual="1"), client)
    assert event.reason == "untrusted"


async def test_revoked_client_certificate_server(pki: PKI, tmp_path: Path) -> None:
    crl_file = pki.intermediate.crl(revoked=[pki.client]).write(tmp_path / "crl.pem")

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=pki.client_cert, key=pki.client_key,
                             chain=pki.intermediate_file)

    event = await server_reason(pki.server_options(tls_mutual="1", tls_crl=str(crl_file)), client)
    assert event.reason == "revoked"


@pytest.mark.parametrize(
    "reason", ["bad-ca", "crl-unavailable", "crl-expired", "crl-not-yet-valid", "crl-signature"]
)
async def test_certificate_reasons_seen_by_the_server(pki: PKI, stranger: PKI, tmp_path: Path, reason: str) -> None:
    """The certificate reasons the tests above provoke only against the gtls client, on a mutual-TLS gtls server:
    an openssl s_client presents a client certificate the server's side of spec §9 A refuses."""
    leaf, chain, crl = pki.client, pki.intermediate_file, None
    if reason == "bad-ca":  # the client's issuer is not a CA
        not_a_ca = pki.root.intermediate("client issuer not a CA", ca=False)
        leaf, chain = not_a_ca.leaf("client.test", eku=("client",)), write_pem(tmp_path / "inter.pem", not_a_ca)
    else:
        crl = {
            "crl-unavailable": stranger.intermediate.crl(),
            "crl-expired": pki.intermediate.crl(this_update=-10 * DAY, next_update=-DAY),
            "crl-not-yet-valid": pki.intermediate.crl(this_update=DAY, next_update=10 * DAY),
            "crl-signature": pki.intermediate.crl(signer=stranger.intermediate.key),
        }[reason].write(tmp_path / "crl.pem")
    cert, key = write_identity(tmp_path, "client", leaf)

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key, chain=chain)

    options = pki.server_options(tls_mutual="1", **({"tls_crl": str(crl)} if crl else {}))
    event = await server_reason(options, client)
    assert isinstance(event.error, PeerVerificationError)
    depth = 1 if reason == "bad-ca" else 0
    assert (event.reason, event.error.depth, event.subject) == (reason, depth, "CN=client.test")


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("case", ["untrusted", "leaf-only", "expired", "not-yet-valid", "revoked", "bad-purpose"])
async def test_server_names_the_refused_client_certificate(
    pki: PKI, stranger: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, version: str
) -> None:
    """A refused client certificate is named, by depth and subject, in the server's event and its one log line:
    OpenSSL drops what the client sent but keeps the chain it was building, and gtls reads that on failure."""
    crl = None
    leaf: Certified = pki.client
    chain = pki.intermediate_file
    expected: tuple[str, int, Certified]
    if case == "untrusted":  # a stranger's chain: its intermediate's issuer is unknown here
        leaf, expected = stranger.client, ("untrusted", 1, stranger.intermediate)
        chain = stranger.intermediate_file
    elif case == "leaf-only":  # the client forgot its intermediate
        chain, expected = None, ("untrusted", 0, leaf)
    elif case in ("expired", "not-yet-valid"):
        when = {"not_before": -10 * DAY, "not_after": -DAY} if case == "expired" else {
            "not_before": DAY, "not_after": 10 * DAY}
        leaf = pki.intermediate.leaf(f"{case} client", eku=("client",), **when)  # type: ignore[arg-type]
        expected = (case, 0, leaf)
    elif case == "revoked":
        crl = str(pki.intermediate.crl(revoked=[pki.client]).write(tmp_path / "crl.pem"))
        expected = ("revoked", 0, leaf)
    else:
        leaf = pki.intermediate.leaf("server-only client", eku=("server",))
        expected = ("bad-purpose", 0, leaf)
    cert, key = write_identity(tmp_path, "client", leaf)

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key, chain=chain, args=[version])

    caplog.set_level("WARNING", logger="gtls.server")
    options = pki.server_options(tls_mutual="1", **({"tls_crl": crl} if crl else {}))
    event = await server_reason(options, client)
    reason, depth, culprit = expected
    subject = culprit.cert.subject.rfc4514_string()
    client_subject = leaf.cert.subject.rfc4514_string()  # the event and the log line name the client's own
    assert isinstance(event.error, PeerVerificationError)
    assert (event.reason, event.error.depth, event.error.subject, event.subject) == (
        reason, depth, subject, client_subject)
    lines = [r.getMessage() for r in caplog.records if r.name == "gtls.server"]
    assert len(lines) == 1 and f"handshake failed: {reason} " in lines[0], lines
    assert f"subject={client_subject}:" in lines[0], lines
    assert lines[0].endswith(f"(depth {depth}: {subject})") == (depth != 0), lines


async def test_server_names_the_refused_client_certificate_of_python_ssl(pki: PKI, stranger: PKI) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.check_hostname = False
    chain_file = write_pem(stranger.dir / "client-with-chain.pem", stranger.client.cert_pem,
                           stranger.intermediate.cert_pem)
    context.load_cert_chain(chain_file, stranger.client_key)

    async def client(port: int) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            await trio.to_thread.run_sync(python_ssl_client, port, context)

    event = await server_reason(pki.server_options(tls_mutual="1"), client)
    assert event.reason == "untrusted" and isinstance(event.error, PeerVerificationError)
    assert (event.error.depth, event.error.subject, event.subject) == (
        1, stranger.intermediate.cert.subject.rfc4514_string(), stranger.client.cert.subject.rfc4514_string())


@pytest.mark.filterwarnings("error")  # a program run with warnings as errors (a test suite, python -W error)
async def test_a_serial_zero_peer_certificate_cannot_crash_a_refusal(pki: PKI, tmp_path: Path) -> None:
    """Reading a serial-0 certificate makes cryptography warn; as an error, the warning escaped the failure path's
    re-verification and stopped the server (one client certificate took it down) or replaced the client's
    PeerVerificationError. The refusal stands with its reason, and names the certificate as OpenSSL read it."""
    cert, key = serial_zero_identity(tmp_path, "serial zero client")

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key)
        await openssl_client(port, ca=pki.ca_file, cert=pki.client_cert, key=pki.client_key,
                             chain=pki.intermediate_file)  # still served

    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        await client(port)
    assert [(e.ok, e.reason) for e in events] == [(False, "untrusted"), (True, None)], [e.describe() for e in events]
    refused = events[0].error
    assert isinstance(refused, PeerVerificationError)
    assert (refused.depth, refused.subject) == (0, "CN=serial zero client")
    assert refused.message.startswith("we refused the client's certificate: self-signed certificate; "), refused.message
    cert, key = serial_zero_identity(tmp_path, "serial zero server")
    error = await failure_against_openssl(cert, key, pki.client_options())
    assert isinstance(error, PeerVerificationError) and error.reason == "untrusted"
    assert (error.depth, error.subject) == (0, "CN=serial zero server")
    assert error.message.startswith("we refused the server's certificate: self-signed certificate; "), error.message


async def test_a_verified_client_certificate_cryptography_cannot_read_does_not_stop_the_server(
    pki: PKI, tmp_path: Path
) -> None:
    """A client certificate from a trusted CA that OpenSSL verifies but cryptography refuses to load (version field
    3): the successful handshake's event read its subject through cryptography, and the parse error escaped the
    serving loop and stopped the server (wire mutation fuzzing, audit 44). The event now names the subject as
    OpenSSL read it, and the server goes on serving."""
    from cryptography import x509

    quirky = version_4_certificate(pki.client, pki.intermediate)
    with pytest.raises(x509.InvalidVersion):
        x509.load_pem_x509_certificate(quirky)
    cert = write_pem(tmp_path / "v4-client.pem", quirky, pki.intermediate.cert_pem)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.check_hostname = False
    context.load_cert_chain(cert, pki.client_key)
    normal = ssl.create_default_context(cafile=str(pki.ca_file))
    normal.check_hostname = False
    normal.load_cert_chain(pki.client_cert, pki.client_key)

    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        for client_context in (context, normal):  # the second one is served too
            data, *_ = await trio.to_thread.run_sync(python_ssl_client, port, client_context)
            assert data == b"welcome\n"
    assert [(e.ok, e.subject) for e in events] == [(True, "CN=client.test"), (True, "CN=client.test")], [
        e.describe() for e in events]


UNREADABLE_CASES = ["untrusted", "stranger", "expired", "revoked", "expired-intermediate"]


def unreadable_identity(pki: PKI, stranger: PKI, tmp_path: Path, role: str, case: str
                        ) -> tuple[Path, Path, Path | None, str | None, tuple[str, int, str, str]]:
    """A peer identity whose own certificate cryptography cannot load (version field 3; OpenSSL reads and verifies
    it), refused for ``case``: its certificate file, key, chain file (intermediates), CRL file, and the expected
    (reason, depth, subject at fault, the peer leaf's subject)."""
    name = "localhost" if role == "client" else "client.test"
    eku = ("server",) if role == "client" else ("client",)
    issuer, chain, crl = pki.intermediate, [pki.intermediate.cert_pem], None
    leaf = issuer.leaf(name, dns=(name,), eku=eku)
    leaf_pem = version_4_certificate(leaf, issuer)
    at_fault = (0, name)
    if case == "untrusted":  # the intermediate is not sent: the v4 leaf's issuer is unknown
        chain = []
    elif case == "stranger":  # a stranger's readable intermediate is at fault, above the v4 leaf
        issuer, chain = stranger.intermediate, [stranger.intermediate.cert_pem]
        leaf = issuer.leaf(name, dns=(name,), eku=eku)
        leaf_pem, at_fault = version_4_certificate(leaf, issuer), (1, "gtls transport test intermediate")
    elif case == "expired":
        leaf = issuer.leaf(name, dns=(name,), eku=eku, not_before=-10 * DAY, not_after=-DAY)
        leaf_pem = version_4_certificate(leaf, issuer)
    elif case == "revoked":
        crl = str(issuer.crl(revoked=[leaf]).write(tmp_path / "crl.pem"))
    else:  # a readable leaf under an expired intermediate cryptography cannot load
        issuer = pki.root.intermediate("expired v4 inter", not_before=-10 * DAY, not_after=-DAY)
        leaf = issuer.leaf(name, dns=(name,), eku=eku)
        leaf_pem, chain, at_fault = leaf.cert_pem, [version_4_certificate(issuer, pki.root)], (1, "expired v4 inter")
    cert = write_pem(tmp_path / "peer.pem", leaf_pem)
    chain_file = write_pem(tmp_path / "chain.pem", *chain) if chain else None
    reason = {"untrusted": "untrusted", "stranger": "untrusted", "revoked": "revoked"}.get(case, "expired")
    return cert, leaf.write_key(tmp_path / "peer.key"), chain_file, crl, (reason, at_fault[0], f"CN={at_fault[1]}",
                                                                         f"CN={name}")


@pytest.mark.parametrize("case", UNREADABLE_CASES)
async def test_a_refused_client_certificate_cryptography_cannot_read_is_named(
    pki: PKI, stranger: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """A client certificate OpenSSL reads but cryptography cannot load (version field 3) is refused with the depth
    and subject of the certificate at fault, as a readable one is: OpenSSL's own verdict re-run offline, its subject
    read from the DER (it was the reason word only)."""
    cert, key, chain, crl, (reason, depth, subject, client_subject) = unreadable_identity(
        pki, stranger, tmp_path, "server", case)

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key, chain=chain)

    caplog.set_level("WARNING", logger="gtls.server")
    event = await server_reason(pki.server_options(tls_mutual="1", **({"tls_crl": crl} if crl else {})), client)
    assert isinstance(event.error, PeerVerificationError)
    assert (event.reason, event.error.depth, event.error.subject, event.subject) == (
        reason, depth, subject, client_subject)
    assert event.error.message.startswith("we refused the client's certificate: " + {
        "untrusted": "unable to get local issuer certificate", "expired": "certificate has expired",
        "revoked": "certificate revoked"}[reason]), event.error.message
    lines = [r.getMessage() for r in caplog.records if r.name == "gtls.server"]
    assert len(lines) == 1 and f"handshake failed: {reason} " in lines[0], lines
    assert f"subject={client_subject}:" in lines[0], lines
    assert lines[0].endswith(f"(depth {depth}: {subject})") == (depth != 0), lines


@pytest.mark.parametrize("case", UNREADABLE_CASES)
async def test_a_refused_server_certificate_cryptography_cannot_read_is_named(
    pki: PKI, stranger: PKI, tmp_path: Path, case: str
) -> None:
    """The same for a gtls client refusing such a server certificate, sent by openssl s_server."""
    cert, key, chain, crl, (reason, depth, subject, _) = unreadable_identity(pki, stranger, tmp_path, "client", case)
    options = pki.client_options(**({"tls_crl": crl} if crl else {}))
    error = await failure_against_openssl(cert, key, options, chain=chain)
    assert isinstance(error, PeerVerificationError)
    assert (error.reason, error.depth, error.subject) == (reason, depth, subject)
    assert error.peer is not None and error.peer.startswith("127.0.0.1:")


async def test_unreadable_certificates_located_by_openssl_keep_gtls_words(pki: PKI, tmp_path: Path) -> None:
    """A server certificate cryptography cannot load (version field 3), refused for a verify error gtls has no word
    of its own for (an unknown critical extension, 34), is located by OpenSSL alone and keeps the message of spec
    §10 (OpenSSL's code and text), as a readable one does; one with an empty subject is named "(empty subject)"."""
    from cryptography import x509

    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    leaf = pki.intermediate.leaf("localhost", dns=("localhost",), extensions=(
        x509.Extension(oid, True, x509.UnrecognizedExtension(oid, b"\x05\x00")),))
    cert = write_pem(tmp_path / "v4.pem", version_4_certificate(leaf, pki.intermediate))
    error = await failure_against_openssl(cert, leaf.write_key(tmp_path / "v4.key"), pki.client_options(),
                                          chain=pki.intermediate_file)
    assert isinstance(error, PeerVerificationError)
    assert (error.reason, error.depth, error.subject) == ("untrusted", 0, "CN=localhost")
    assert error.message == "we refused the server's certificate: OpenSSL verify error 34: unhandled critical extension"
    nameless = pki.intermediate.leaf(dns=("localhost",))  # untrusted: its intermediate is not sent
    cert = write_pem(tmp_path / "nameless.pem", version_4_certificate(nameless, pki.intermediate))
    error = await failure_against_openssl(cert, nameless.write_key(tmp_path / "nameless.key"), pki.client_options())
    assert isinstance(error, PeerVerificationError)
    assert (error.reason, error.depth, error.subject) == ("untrusted", 0, "(empty subject)")


async def test_an_unreadable_client_certificate_keeps_the_handshakes_reason(pki: PKI, tmp_path: Path) -> None:
    """A client certificate cryptography cannot load, refused for its 1024-bit key (the security level, which a bare
    re-verification does not apply) and also expired: the offline verdict (expired) is not the handshake's, so the
    refusal keeps the handshake's reason and OpenSSL's words, unlocated, rather than report the other fault."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = pki.intermediate.leaf("weak client", eku=("client",), key=rsa.generate_private_key(65537, 1024),
                                 not_before=-10 * DAY, not_after=-DAY)
    cert = write_pem(tmp_path / "weak.pem", version_4_certificate(weak, pki.intermediate))

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=weak.write_key(tmp_path / "weak.key"),
                             chain=pki.intermediate_file, args=["-cipher", "DEFAULT@SECLEVEL=0"])

    event = await server_reason(pki.server_options(tls_mutual="1"), client)
    assert isinstance(event.error, PeerVerificationError)
    assert (event.reason, event.error.depth, event.error.message) == (
        "untrusted", None, "we refused the client's certificate: EE certificate key too weak")


async def test_a_refused_client_is_named_as_its_accepted_peers_are(pki: PKI, stranger: PKI, tmp_path: Path) -> None:
    """A client refused above its own certificate (a stranger's intermediate) is named by its leaf's subject in the
    same form as a served client's event names it (RFC 4514, as cryptography writes it), an emailAddress too."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.test"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "mail client")])
    leaf = stranger.intermediate.leaf(subject=subject, eku=("client",))
    cert, key = write_identity(tmp_path, "client", leaf)
    chain = write_pem(tmp_path / "chain.pem", stranger.intermediate)

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key, chain=chain)

    event = await server_reason(pki.server_options(tls_mutual="1"), client)
    assert isinstance(event.error, PeerVerificationError) and event.error.depth == 1
    assert event.subject == leaf.cert.subject.rfc4514_string() == "CN=mail client,1.2.840.113549.1.9.1=ops@example.test"


@pytest.mark.parametrize("fault", ["name", "critical-extension"])
async def test_a_long_real_chain_is_refused_unlocated_with_gtls_words(pki: PKI, tmp_path: Path, fault: str) -> None:
    """A server chain of 14 real links (over the 10 re-verified offline): a name mismatch is still named by the leaf
    and its names; an error without its own word keeps OpenSSL's code and text (spec §10), unlocated."""
    from cryptography import x509

    issuer = pki.intermediate
    links = []
    for index in range(12):
        issuer = issuer.intermediate(f"long link {index}")
        links.append(issuer)
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    extensions = (x509.Extension(oid, True, x509.UnrecognizedExtension(oid, b"\x05\x00")),)
    leaf = (issuer.leaf("elsewhere.test", dns=("elsewhere.test",)) if fault == "name"
            else issuer.leaf("localhost", dns=("localhost",), extensions=extensions))
    cert, key = write_identity(tmp_path, "leaf", leaf)
    chain = write_pem(tmp_path / "links.pem", *reversed(links), pki.intermediate)
    error = await failure_against_openssl(cert, key, pki.client_options(tls_target_name_check="host"), chain=chain)
    assert isinstance(error, PeerVerificationError)
    if fault == "name":
        assert (error.reason, error.depth, error.subject) == ("name-mismatch", 0, "CN=elsewhere.test")
        assert "elsewhere.test" in error.message
    else:
        assert (error.reason, error.depth) == ("untrusted", None)
        assert error.message == ("we refused the server's certificate: OpenSSL verify error 34: unhandled critical "
                                 "extension")


async def test_a_hostile_long_chain_costs_no_offline_reverification(pki: PKI, tmp_path: Path) -> None:
    """Re-verifying a refused chain offline (for depth and subject) doubled what a refusal cost with a 100-certificate
    chain, which any client can send: chains over 10 certificates keep the reason only, and the event still names
    the client's own certificate."""
    issuer = pki.intermediate
    links = []
    for index in range(12):
        issuer = issuer.intermediate(f"link {index}")
        links.append(issuer)
    leaf = issuer.leaf("long client", eku=("client",), not_before=-10 * DAY, not_after=-DAY)
    chain = write_pem(tmp_path / "links.pem", *reversed(links), pki.intermediate)
    cert, key = write_identity(tmp_path, "client", leaf)

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, cert=cert, key=key, chain=chain)

    event = await server_reason(pki.server_options(tls_mutual="1"), client)
    assert isinstance(event.error, PeerVerificationError)
    assert (event.reason, event.error.depth, event.subject) == ("expired", None, "CN=long client")


async def test_a_client_chain_over_the_limit_reads_the_alert(pki: PKI, tmp_path: Path) -> None:
    """A client chain over OpenSSL's 100 KiB limit is refused as a TLS message (not-tls, 'excessive message
    size'); the refusal lingers as any other, so the client reads the alert instead of a reset (the lingering was
    for every refusal but not-tls, which also covered TLS that was refused, not only plaintext)."""
    big = [pki.intermediate.intermediate(f"padding {index} " + "x" * 40) for index in range(420)]
    leaf = pki.intermediate.leaf("big client", eku=("client",))
    cert_file = write_pem(tmp_path / "big.pem", leaf.cert_pem, *(c.cert_pem for c in big))
    assert cert_file.stat().st_size > 100 * 1024 * 1.4  # PEM of more than 100 KiB of DER
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.check_hostname = False
    context.load_cert_chain(cert_file, leaf.write_key(tmp_path / "big.key"))
    seen: list[str] = []

    async def client(port: int) -> None:
        for _ in range(5):
            try:
                await trio.to_thread.run_sync(python_ssl_client, port, context)
                seen.append("accepted")
            except ssl.SSLError as exc:
                seen.append(f"alert {exc.reason}")
            except OSError as exc:
                seen.append(type(exc).__name__)

    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        await client(port)
    assert [e.reason for e in events] == ["not-tls"] * 5, [e.describe() for e in events]
    assert all(item.startswith("alert ") for item in seen), seen


async def test_protocol_version_server(pki: PKI) -> None:
    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2"])

    event = await server_reason(pki.server_options(sec_protocol="TLSv13"), client)
    assert event.reason == "protocol-version"
    assert event.error is not None and event.error.message == (  # we refused: no alert came from the client
        "we refused the handshake (unsupported protocol): no TLS version both sides allow; we allow TLS 1.3 only, by "
        "sec-protocol")


async def test_fallback_scsv_is_refused_server(pki: PKI) -> None:
    """A client that retries with a lower version and TLS_FALLBACK_SCSV (RFC 7507), below the best version both
    support, is refused with inappropriate_fallback, and the server reports a version failure, not "not-tls"."""

    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2", "-fallback_scsv"])

    event = await server_reason(pki.server_options(), client)
    assert event.reason == "protocol-version", event.describe()
    assert event.error is not None and event.error.message.startswith("version downgrade refused: ")
    ok: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(sec_protocol="TLSv12"), ok) as port:  # TLS 1.2 is its best: no fallback
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2", "-fallback_scsv"])
    assert [e.ok for e in ok] == [True], [e.describe() for e in ok]


async def test_no_shared_cipher_server(pki: PKI) -> None:
    async def client(port: int) -> None:
        await openssl_client(port, ca=pki.ca_file, args=["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"])

    options = pki.server_options(sec_protocol="TLSv12", cipher_list="ECDHE-ECDSA-AES128-GCM-SHA256")
    event = await server_reason(options, client)
    assert event.reason == "no-shared-cipher"


async def test_peer_alert_server(pki: PKI, stranger: PKI) -> None:
    async def client(port: int) -> None:  # a client that does not trust us aborts with unknown_ca
        await openssl_client(port, ca=stranger.ca_file)

    event = await server_reason(pki.server_options(), client)
    assert event.reason == "peer-alert"
    assert event.error is not None and event.error.alert == "unknown_ca" and "unknown_ca" in event.error.message


async def test_not_tls_server(pki: PKI) -> None:
    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                sock.recv(100)
            except ConnectionResetError:  # the server drops us with our bytes unread
                pass

    event = await trio_thread_client(pki.server_options(), client)
    assert event.reason == "not-tls"


async def test_timeout_server(pki: PKI) -> None:
    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.recv(100)  # returns b"" when the server drops us at its deadline

    event = await trio_thread_client(pki.server_options(), client, handshake_timeout=0.3)
    assert event.reason == "timeout"
    assert 0.25 <= event.duration < 2


async def test_eof_in_handshake_server(pki: PKI) -> None:
    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello, then EOF

    event = await trio_thread_client(pki.server_options(), client)
    assert event.reason == "eof-in-handshake"


async def trio_thread_client(options: TLSOptions, client: object, **kwargs: object) -> HandshakeEvent:
    """``server_reason`` with a blocking-socket client run in a thread."""
    assert callable(client)

    async def in_thread(port: int) -> None:
        await trio.to_thread.run_sync(client, port)

    return await server_reason(options, in_thread, **kwargs)


async def test_peer_alert_tls13_rejection_seen_by_a_client_that_writes_first(pki: PKI) -> None:
    """Same rejection, but the client writes before it reads: the failed write still names the alert."""
    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), server_hostname="localhost")
        async with stream:
            await _settle(events)  # the server has judged us and closed
            with pytest.raises(trio.BrokenResourceError) as caught:
                for _ in range(100):
                    await stream.send_all(b"x" * 1000)
                    await trio.sleep(0.01)
    cause = caught.value.__cause__
    assert isinstance(cause, HandshakeError) and cause.reason == "peer-alert", repr(cause)
    assert cause.alert == "certificate_required"


async def test_a_tls13_rejection_already_arrived_fails_the_very_first_write(pki: PKI) -> None:
    """A write after the server's rejection arrived looks for it first: the first send_all raises it, rather than
    handing the request to a server that lingers, reading and dropping it, for up to a second (audit 58)."""
    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), server_hostname="localhost")
        async with stream:
            with trio.fail_after(5):
                await trio.lowlevel.wait_readable(stream.transport_stream.socket)  # the alert is here
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
    cause = caught.value.__cause__
    assert isinstance(cause, HandshakeError) and cause.alert == "certificate_required", repr(cause)


def _slow_judge(pki: PKI) -> Callable[[socket.socket], None]:
    """A Python-ssl TLS 1.3 server (memory BIOs) that requires a client certificate but reads the client's last
    handshake flight only after 1 MiB of application data came behind it: its rejection then arrives while the
    client streams, long after the writes that look for it, and the server closes under the client's writes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_3

    def judge(raw: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(raw.recv(65536))  # the ClientHello
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        raw.sendall(outgoing.read())  # our flight: the client finishes its handshake and starts streaming
        held = b""
        for _ in range(10_000):
            if len(held) >= 1 << 20:
                break
            chunk = raw.recv(65536)
            if not chunk:
                return
            held += chunk
        incoming.write(held)
        with contextlib.suppress(ssl.SSLError):
            tls.do_handshake()  # fails: no client certificate
        raw.sendall(outgoing.read())  # the alert; then the connection closes under the client's writes

    return judge


async def test_peer_alert_tls13_rejection_seen_by_a_client_streaming_into_it(pki: PKI) -> None:
    """The rejection comes after the writes that look for it: the write that fails (EPIPE or a reset, the server
    closed) reads the alert that came first, and names it; it used to report ``reset``."""
    with raw_server(_slow_judge(pki)) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), server_hostname="localhost")
        async with stream:
            sent = 0
            with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
                while sent < 64 << 20:  # the server stops reading at 1 MiB and closes
                    await stream.send_all(b"x" * 65536)
                    sent += 65536
            assert sent >= 1 << 20
            cause = caught.value.__cause__
            if SSL.OPENSSL_VERSION_NUMBER >= 0x40000000:
                # OpenSSL 4.0 reads nothing more once the connection was reset under a write: the alert is lost.
                assert classify_ending(caught.value).word == "reset", repr(cause)
                return
            assert isinstance(cause, HandshakeError) and cause.reason == "peer-alert", repr(cause)
            assert cause.alert == "certificate_required"
            with pytest.raises(trio.BrokenResourceError) as again:
                await stream.receive_some()  # and the next receive says the same
            assert again.value.__cause__ is cause


def _writes_first_without_certificate(port: int, ca: Path) -> BaseException | None:
    """A Python-ssl TLS 1.3 client with no certificate that writes before it reads (as every HTTP/2 client does);
    returns the error its read gets."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        try:
            for _ in range(4):
                conn.sendall(b"x" * 16384)
                time.sleep(0.02)  # the server's verdict arrives while we write
            conn.recv(100)
        except OSError as exc:
            return exc
    return None


async def test_a_refused_client_that_writes_first_still_reads_why(pki: PKI) -> None:
    """Closed at once after refusing a client certificate, the server's socket held the client's unread bytes, so
    the kernel answered with a reset and a client that writes first (curl over HTTP/2) failed on it without reading
    our alert: "connection reset" or "EOF", never "certificate required". The server now lingers (FIN after the
    alert, drains what comes, at most 1 s), as s_server and nginx do."""
    events: list[HandshakeEvent] = []
    async with gtls_server(pki.server_options(tls_mutual="1"), events) as port:
        errors = [await trio.to_thread.run_sync(_writes_first_without_certificate, port, pki.ca_file)
                  for _ in range(5)]
    assert all(isinstance(error, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(error) for error in errors), errors
    assert [event.reason for event in events] == ["no-peer-certificate"] * 5


async def test_a_client_refused_by_a_users_own_accept_loop_still_reads_why(pki: PKI) -> None:
    """The test above with the user's own loop over TLSListener.accept() (trio's pattern) in place of
    serve_tls_over_tcp: its aclose() after the failed handshake closed at once, so the client met a reset."""
    errors: list[BaseException | None] = []
    [listener] = await open_tls_over_tcp_listeners(0, pki.server_options(tls_mutual="1"), host="127.0.0.1")
    port = listener.socket.getsockname()[1]

    async def client() -> None:
        errors.append(await trio.to_thread.run_sync(_writes_first_without_certificate, port, pki.ca_file))

    async with listener:
        for _ in range(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client)
                async with await listener.accept() as stream:
                    with pytest.raises(HandshakeError) as caught:
                        await stream.do_handshake()
                    assert caught.value.reason == "no-peer-certificate"
    assert all(isinstance(error, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(error) for error in errors), errors


def _writes_on_after_its_flight(cert: Path, key: Path, outcomes: list[str]) -> Callable[[socket.socket], None]:
    """A TLS 1.3 server that, like gnutls-serv, writes on after its flight (GnuTLS sends its session tickets there)
    while the client judges its certificate, then reads what the client sent until it closes. ``outcomes`` gets
    ``alert`` when the client's alert record arrived, else the error its write met."""
    def behaviour(conn: socket.socket) -> None:
        server = MemoryServer(conn, cert, key)
        for _ in range(10):  # the ClientHello, however the kernel split it
            server.conn.bio_write(conn.recv(65536))
            with contextlib.suppress(SSL.WantReadError):
                server.conn.do_handshake()
            flight = server.pending_output()
            if flight:
                break
        conn.sendall(flight)
        time.sleep(0.3)  # the client refuses the certificate meanwhile
        try:
            conn.sendall(b"\x17\x03\x03\x00\x10" + bytes(16))  # a record, as a ticket would be
        except OSError as exc:
            outcomes.append(type(exc).__name__)
            return
        received = read_until_closed(conn)
        outcomes.append("alert" if received.startswith(b"\x15\x03\x03\x00\x02\x02") else repr(received[:16]))

    return behaviour


@pytest.mark.parametrize("dialled", ["127.0.0.1", "localhost"])  # a bare socket; trio's, after happy eyeballs
async def test_a_refused_server_that_writes_on_still_reads_why(pki: PKI, stranger: PKI, dialled: str) -> None:
    """The client's side of the test above: closed at once after refusing a server's certificate, the client's socket
    held the rest of the server's flight unread, so the kernel answered with a reset, and a server still writing (a
    GnuTLS server sends its tickets behind its flight) failed on it without reading our alert: gnutls-serv logged
    "The TLS connection was non-properly terminated" (8 to 14 of 60 TLS 1.3 connections), not why, and Java servers
    "Broken pipe". The connector now lingers
    as the server does (FIN after the alert, drains until the server closes, at most 1 s)."""
    outcomes: list[str] = []
    options = pki.client_options(sec_protocol="TLSv13")
    with raw_server(_writes_on_after_its_flight(stranger.server_cert, stranger.server_key, outcomes)) as port:
        for _ in range(3):
            with pytest.raises(HandshakeError) as caught:
                await open_tls_over_tcp_stream(dialled, port, options, server_hostname="localhost")
            assert caught.value.reason == "untrusted"
        with trio.fail_after(5):
            while len(outcomes) < 3:
                await trio.sleep(0.01)
    assert outcomes == ["alert"] * 3


async def test_a_verify_error_without_its_own_word_is_untrusted_with_openssls_code_and_text(
    pki: PKI, tmp_path: Path
) -> None:
    """Spec §10: `untrusted` also covers any verify error not listed, and its message gives OpenSSL's code and text
    (here X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, 34, from a leaf with a critical extension nobody knows)."""
    from cryptography import x509

    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    leaf = pki.intermediate.leaf("localhost", dns=("localhost",), extensions=(
        x509.Extension(oid, True, x509.UnrecognizedExtension(oid, b"\x05\x00")),))
    cert, key = write_identity(tmp_path, "leaf", leaf)
    error = await failure_against_openssl(cert, key, pki.client_options(), chain=pki.intermediate_file)
    assert isinstance(error, PeerVerificationError)
    assert (error.reason, error.depth) == ("untrusted", 0)
    assert "OpenSSL verify error 34: unhandled critical extension" in error.message


async def test_strict_x509_mode_stays_off(tmp_path: Path) -> None:
    """Spec §9: X509_V_FLAG_X509_STRICT stays off, so a CA with a non-critical basicConstraints and certificates
    without key identifiers verify (OpenSSL's strict mode refuses both)."""
    from cryptography import x509

    loose = x509.Extension(x509.oid.ExtensionOID.BASIC_CONSTRAINTS, False, x509.BasicConstraints(ca=True,
                                                                                                path_length=None))
    root = CA.root("loose root", key_ids=False)
    inter = root.intermediate("loose inter", key_ids=False, extensions=(loose,))
    leaf = inter.leaf("localhost", dns=("localhost",), key_ids=False)
    cert, key = write_identity(tmp_path, "leaf", leaf)
    chain = write_pem(tmp_path / "chain.pem", inter)
    options = TLSOptions.from_mapping({"trusted-ca": str(write_pem(tmp_path / "ca.pem", root)),
                                       "tls-target-name-check": "host"})
    with openssl_server(cert=cert, key=key, chain=chain) as server:
        stream = await open_tls_over_tcp_stream("127.0.0.1", server.port, options, server_hostname="localhost")
        assert [c.subject.rfc4514_string() for c in stream.peer_chain] == ["CN=localhost", "CN=loose inter"]
        await stream.aclose()
