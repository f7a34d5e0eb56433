"""ALPN (RFC 7301): what HTTP/2 and gRPC servers and clients need to agree on a protocol. Real peers only: ``openssl
s_client``/``s_server`` and Python's ``ssl``, each with its own ALPN list, against gtls's server and connector."""

from __future__ import annotations

import socket
import ssl
from functools import partial
from pathlib import Path

import pytest
import trio

from gtls import TLSStream, open_tls_over_tcp_stream, serve_tls_over_tcp
from gtls.context import compile_settings
from tests.peers import PKI, openssl_client, openssl_server, python_context, write_pki

H2_FIRST = ["h2", "http/1.1"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("alpn-pki"))


def python_client(port: int, ca: Path, offered: list[str] | None) -> str | None:
    """A Python-ssl client offering ``offered``; returns the protocol it was given after one echo."""
    context = python_context(server=False, ca=ca)
    if offered is not None:
        context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"ping")
        assert conn.recv(10) == b"ping"
        return conn.selected_alpn_protocol()


async def test_server_picks_its_first_choice_among_those_offered(pki: PKI) -> None:
    seen: list[str | None] = []

    async def echo(stream: TLSStream) -> None:
        seen.append(stream.selected_alpn_protocol())
        assert stream.selected_alpn_protocol() == stream.alpn_protocol
        await stream.send_all(await stream.receive_some())  # one echo, then the server closes

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_tls_over_tcp, echo, 0, pki.server_options(), host="127.0.0.1",
                                                alpn_protocols=H2_FIRST))
        port = listeners[0].socket.getsockname()[1]
        assert listeners[0].context.alpn_protocols == ("h2", "http/1.1")
        result = await openssl_client(port, ca=pki.ca_file, servername="localhost", args=["-alpn", "http/1.1,h2"],
                                      send=b"ping")
        assert "ALPN protocol: h2" in result.stdout, result.stdout  # ours first, not the client's
        offers: list[list[str] | None] = [["http/1.1"], ["spdy/3", "http/1.1"], ["spdy/3"], None]
        given = [await trio.to_thread.run_sync(python_client, port, pki.ca_file, offer) for offer in offers]
        # Nothing in common, or nothing offered: the handshake goes on without ALPN (as Python's ssl server does).
        assert given == ["http/1.1", "http/1.1", None, None]
        nursery.cancel_scope.cancel()
    assert seen == ["h2", "http/1.1", "http/1.1", None, None]


async def test_a_server_without_alpn_negotiates_none_and_keeps_its_own_context(pki: PKI) -> None:
    plain = compile_settings(pki.server_options(), "server")
    with_alpn = compile_settings(pki.server_options(), "server", alpn=H2_FIRST)
    assert with_alpn is not plain and with_alpn.ssl_context is not plain.ssl_context  # OpenSSL selects per context
    assert compile_settings(plain, "server", alpn=["h2", "http/1.1"]) is with_alpn  # cached like any settings
    assert compile_settings(with_alpn, "server") is with_alpn  # a compiled context keeps its protocols
    seen: list[str | None] = []

    async def record(stream: TLSStream) -> None:
        seen.append(stream.alpn_protocol)
        await stream.send_all(await stream.receive_some())

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_tls_over_tcp, record, 0, plain, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        result = await openssl_client(port, ca=pki.ca_file, servername="localhost", args=["-alpn", "h2"],
                                      send=b"x")
        assert "No ALPN negotiated" in result.stdout, result.stdout
        nursery.cancel_scope.cancel()
    assert seen == [None]


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
async def test_connector_offers_its_protocols_to_s_server(pki: PKI, version: str) -> None:
    with openssl_server(cert=pki.server_cert, key=pki.server_key, chain=pki.intermediate_file,
                        args=[version, "-alpn", "http/1.1,h2"]) as server:
        stream = await open_tls_over_tcp_stream("127.0.0.1", server.port, pki.client_options(),
                                                server_hostname="localhost", alpn_protocols=H2_FIRST)
        async with stream:
            assert stream.alpn_protocol == stream.selected_alpn_protocol() == "http/1.1"  # the server's choice
        plain = await open_tls_over_tcp_stream("127.0.0.1", server.port, pki.client_options(),
                                               server_hostname="localhost")
        async with plain:
            assert plain.alpn_protocol is None  # nothing offered


async def test_connector_and_python_ssl_server(pki: PKI) -> None:
    context = python_context(server=True, cert=pki.server_cert, key=pki.server_key)
    context.set_alpn_protocols(["h2"])
    chosen: list[str | None] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve_one() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            chosen.append(conn.selected_alpn_protocol())
            conn.sendall(conn.recv(10))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, serve_one)
            stream = await open_tls_over_tcp_stream("127.0.0.1", listener.getsockname()[1], pki.client_options(),
                                                    server_hostname="localhost", alpn_protocols=H2_FIRST)
            async with stream:
                await stream.send_all(b"hi")
                assert await stream.receive_some() == b"hi"
                assert stream.alpn_protocol == "h2"
    finally:
        listener.close()
    assert chosen == ["h2"]


@pytest.mark.parametrize(("protocols", "error"), [
    ("h2", TypeError),  # a string, not a list of names
    ([b"h2"], TypeError),
    ([""], ValueError),
    (["x" * 256], ValueError),
    (["é"], ValueError),
    ([f"{n:03d}" + "x" * 252 for n in range(300)], ValueError),  # each fine, together longer than the extension
])
def test_protocol_names_are_checked_before_anything_opens(pki: PKI, protocols: object, error: type) -> None:
    with pytest.raises(error):
        compile_settings(pki.server_options(), "server", alpn=protocols)  # type: ignore[arg-type]


def test_an_ssl_module_alpn_name_is_accepted_as_is(pki: PKI) -> None:
    # The names Python's ssl takes (set_alpn_protocols) work unchanged, so porting code keeps its list.
    names = ["h2", "http/1.1", "acme-tls/1"]
    ssl.create_default_context().set_alpn_protocols(names)
    assert compile_settings(pki.client_options(), "client", alpn=names).alpn_protocols == tuple(names)


def test_any_iterable_of_names_will_do_as_for_the_ssl_module(pki: PKI) -> None:
    """A generator was read once to compare and then given on empty: nothing was offered, without an error."""
    compiled = compile_settings(pki.client_options(), "client")
    again = compile_settings(compiled, "client", alpn=(name for name in H2_FIRST))
    assert again.alpn_protocols == ("h2", "http/1.1")
