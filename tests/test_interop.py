"""gtls in both roles against real peers over 127.0.0.1: ``openssl s_server``/``s_client``, Python's ``ssl`` module
(blocking, in threads) and trio's ``SSLStream``; TLS 1.2 and 1.3, ECDSA and RSA, simple and mutual TLS. The gtls
server always sends a chain configured as two scrambled files (intermediate first), which peers can only verify if
gtls sends it leaf first."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from gtls import HandshakeEvent, _binding, classify_ending, open_tls_over_tcp_stream
from gtls.server import serve_tls_over_tcp
from tests.peers import (
    INTEROP_MATRIX,
    PKI,
    SEC_PROTOCOL,
    echo_line,
    openssl_client,
    openssl_server,
    python_context,
    python_ssl_client,
    python_ssl_server,
    settled,
    write_pki,
)

OPENSSL_FLAG = {"1.2": "-tls1_2", "1.3": "-tls1_3"}


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PKI]:
    return {key: write_pki(tmp_path_factory.mktemp(f"interop-{key}"), key_type=key) for key in ("ec", "rsa")}  # type: ignore[arg-type]


def python_client_context(pki: PKI, version: str, mutual: bool) -> ssl.SSLContext:
    """Python's ``ssl`` client context for ``pki``: verifies the server and its name, sends the client chain when
    ``mutual``."""
    return python_context(server=False, ca=pki.ca_file, cert=pki.client_cert if mutual else None,
                          key=pki.client_key if mutual else None, version=version, check_hostname=True)


def python_server_context(pki: PKI, version: str, mutual: bool) -> ssl.SSLContext:
    """Python's ``ssl`` server context for ``pki``: the server chain, a client certificate required when ``mutual``."""
    return python_context(server=True, ca=pki.ca_file, cert=pki.server_cert, key=pki.server_key,
                          require_client_cert=mutual, version=version)


@asynccontextmanager
async def gtls_server(pki: PKI, version: str, mutual: bool) -> AsyncIterator[tuple[int, list[HandshakeEvent]]]:
    events: list[HandshakeEvent] = []
    options = pki.server_options(sec_protocol=SEC_PROTOCOL[version], tls_mutual="1" if mutual else "0")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                echo_line, 0, options, host="127.0.0.1", on_handshake=events.append, task_status=task_status
            )
        )
        yield listeners[0].socket.getsockname()[1], events
        await settled()  # a TLS 1.3 client is done before the server has read its Finished: let it record the event
        nursery.cancel_scope.cancel()


def expect_success(events: list[HandshakeEvent], pki: PKI, version: str, mutual: bool) -> None:
    assert [e.ok for e in events] == [True], [e.describe() for e in events]
    assert events[0].tls_version == f"TLSv{version}"
    assert events[0].subject == (pki.client.cert.subject.rfc4514_string() if mutual else None)


# --- gtls as the server ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_server_with_openssl_client(pkis: dict[str, PKI], version: str, key: str, mutual: bool) -> None:
    pki = pkis[key]
    async with gtls_server(pki, version, mutual) as (port, events):
        extra = {"cert": pki.client_cert, "key": pki.client_key, "chain": pki.intermediate_file} if mutual else {}
        result = await openssl_client(
            port, ca=pki.ca_file, servername="localhost", args=[OPENSSL_FLAG[version]], send=b"hello\n", **extra
        )
    assert result.ok, result.stderr
    assert "Verify return code: 0 (ok)" in result.stdout
    assert "hello\n" in result.stdout
    expect_success(events, pki, version, mutual)


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_server_with_python_ssl_client(pkis: dict[str, PKI], version: str, key: str, mutual: bool) -> None:
    pki = pkis[key]
    context = python_client_context(pki, version, mutual)
    async with gtls_server(pki, version, mutual) as (port, events):
        data, negotiated, _, _ = await trio.to_thread.run_sync(
            lambda: python_ssl_client(port, context, server_hostname="localhost")
        )
    assert data == b"hello\n" and negotiated == f"TLSv{version}"
    expect_success(events, pki, version, mutual)
    assert events[0].server_name == "localhost"


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_server_with_trio_sslstream_client(
    pkis: dict[str, PKI], version: str, key: str, mutual: bool
) -> None:
    pki = pkis[key]
    context = python_client_context(pki, version, mutual)
    async with gtls_server(pki, version, mutual) as (port, events):
        transport = await trio.open_tcp_stream("127.0.0.1", port)
        async with trio.SSLStream(transport, context, server_hostname="localhost") as stream:
            await stream.send_all(b"hello\n")
            assert await stream.receive_some() == b"hello\n"
            assert stream.version() == f"TLSv{version}"
    expect_success(events, pki, version, mutual)


@pytest.mark.parametrize("engine", ["direct", "public-api"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_gtls_server_resumes_sessions(
    pkis: dict[str, PKI], version: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """session_reused is the same on pyOpenSSL's binding (SSL_session_reused) and on its public-API fallback."""
    monkeypatch.setattr(_binding, "ENGINE", engine == "direct")
    pki = pkis["ec"]
    context = python_context(server=False, ca=pki.ca_file, version=version)
    async with gtls_server(pki, version, False) as (port, events):
        _, _, session, reused = await trio.to_thread.run_sync(lambda: python_ssl_client(port, context))
        assert not reused and session is not None
        _, _, _, reused = await trio.to_thread.run_sync(lambda: python_ssl_client(port, context, session=session))
    assert reused
    assert [e.session_reused for e in events] == [False, True]


# --- gtls as the client ------------------------------------------------------------------------------------------


def client_options(pki: PKI, version: str, mutual: bool, **extra: object):  # type: ignore[no-untyped-def]
    return pki.client_options(
        with_cert=mutual, sec_protocol=SEC_PROTOCOL[version], tls_target_name_check="host", **extra
    )


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_openssl_server(pkis: dict[str, PKI], version: str, key: str, mutual: bool) -> None:
    pki = pkis[key]
    with openssl_server(
        cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file, ca=pki.ca_file, verify_client=mutual
    ) as server:
        stream = await open_tls_over_tcp_stream(
            "127.0.0.1", server.port, client_options(pki, version, mutual), server_hostname="localhost"
        )
        async with stream:
            await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")
            page = b""
            with trio.fail_after(10):
                while chunk := await stream.receive_some():
                    page += chunk
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert f"Protocol  : TLSv{version}".encode() in page
    assert stream.tls_version == f"TLSv{version}"
    assert stream.peer_chain == [pki.server.cert, pki.intermediate.cert]


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_python_ssl_server(pkis: dict[str, PKI], version: str, key: str, mutual: bool) -> None:
    pki = pkis[key]
    context = python_server_context(pki, version, mutual)
    with python_ssl_server(context) as server:
        stream = await open_tls_over_tcp_stream(
            "127.0.0.1", server.port, client_options(pki, version, mutual), server_hostname="localhost"
        )
        async with stream:
            await stream.send_all(b"hello\n")
            assert await stream.receive_some() == b"hello\n"
            assert await stream.receive_some() == b""  # the server's close_notify
    assert server.errors == [] and server.versions == [f"TLSv{version}"]


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_trio_sslstream_server(
    pkis: dict[str, PKI], version: str, key: str, mutual: bool
) -> None:
    pki = pkis[key]
    context = python_server_context(pki, version, mutual)
    peer_certs: list[object] = []

    async def echo(stream: trio.SSLStream[trio.SocketStream]) -> None:
        data = await stream.receive_some()
        peer_certs.append(stream.getpeercert())
        await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: trio.serve_ssl_over_tcp(
                echo, 0, context, host="127.0.0.1", task_status=task_status
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        stream = await open_tls_over_tcp_stream(
            "127.0.0.1", port, client_options(pki, version, mutual), server_hostname="localhost"
        )
        async with stream:
            await stream.send_all(b"ping")
            assert await stream.receive_some() == b"ping"
            assert stream.tls_version == f"TLSv{version}"
        nursery.cancel_scope.cancel()
    assert bool(peer_certs[0]) is mutual


async def test_gtls_client_dials_a_host_name(pkis: dict[str, PKI]) -> None:
    """The dialled host is the reference name and SNI when tls-target-name is unset."""
    pki = pkis["ec"]
    async with gtls_server(pki, "1.3", False) as (port, events):
        stream = await open_tls_over_tcp_stream("localhost", port, pki.client_options(tls_target_name_check="host"))
        async with stream:
            assert stream.server_name == "localhost"
    assert events[0].server_name == "localhost"


async def test_gtls_client_with_a_crl_against_openssl(pkis: dict[str, PKI], tmp_path: Path) -> None:
    pki = pkis["ec"]
    crl = pki.intermediate.crl(revoked=[pki.client])  # current, from the server certificate's issuer
    crl_file = crl.write(tmp_path / "crl.pem")
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file) as server:
        stream = await open_tls_over_tcp_stream(
            "127.0.0.1", server.port, pki.client_options(tls_crl=str(crl_file)), server_hostname="localhost"
        )
        await stream.aclose()
    assert stream.tls_version == "TLSv1.3"


def test_peers_module_has_no_ssl_default_surprises() -> None:
    """The Python peers pin what they say: a client context without a CA does not verify."""
    context = python_context(server=False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


@pytest.mark.parametrize("data_first", [False, True])
async def test_gtls_client_refuses_a_tls12_servers_renegotiation_with_one_word(
    pkis: dict[str, PKI], data_first: bool
) -> None:
    """``openssl s_server`` asks to renegotiate (typed ``r``): the gtls client refuses, and the ending reads
    ``renegotiation-refused`` whether or not data came first. (Before, with nothing read yet, TLS 1.2 got TLS 1.3's
    rule for a late rejection of the handshake and read ``peer-alert``, although the handshake was long done.)"""
    pki = pkis["ec"]
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file, www=False,
                        args=["-tls1_2"]) as server:
        stream = await open_tls_over_tcp_stream("127.0.0.1", server.port, pki.client_options(),
                                                server_hostname="localhost")
        assert server.process.stdin is not None
        with trio.fail_after(10):
            async with stream:
                assert stream.tls_version == "TLSv1.2"
                if data_first:
                    server.process.stdin.write("first\n")
                    server.process.stdin.flush()
                    assert await stream.receive_some() == b"first\n"
                server.process.stdin.write("r\n")  # s_server: renegotiate
                server.process.stdin.flush()
                with pytest.raises(trio.BrokenResourceError) as caught:
                    for _ in range(10):
                        await stream.receive_some()
    assert classify_ending(caught.value).word == "renegotiation-refused", caught.value.__cause__
