"""compile_context: verify modes, purposes, options, caching/reuse, resumption, versions, ciphers and the mapping
of real handshake failures to reason words (spec §8–§10)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from pathlib import Path

import pytest
from OpenSSL import SSL

from gtls import context as context_module
from gtls.context import SSL_MODE_NO_AUTO_CHAIN, CompiledContext, compile_context
from gtls.errors import CipherListError, HandshakeError, PeerVerificationError, UnsupportedProtocol
from gtls.resolve import direct
from gtls.testing import CA, write_pem
from tests.peers import client_handshake, close, gtls_server, s_client, s_server


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ctx")
    root = CA.root("ctx root")
    server = root.leaf("server.test", dns=["server.test"], eku=("server",))
    client = root.leaf("client.test", eku=("client",))
    server_only = root.leaf("serveronly.test", eku=("server",))
    client_only = root.leaf("clientonly.test", dns=["server.test"], eku=("client",))
    stranger = CA.root("stranger").leaf("server.test", dns=["server.test"])
    out = {"ca": write_pem(tmp / "ca.pem", root)}
    for name, item in {"server": server, "client": client, "server_only": server_only,
                       "client_only": client_only, "stranger": stranger}.items():
        out[name] = item.write_cert(tmp / f"{name}.pem")
        out[f"{name}_key"] = item.write_key(tmp / f"{name}.key")
    return out


def server_ctx(files: dict[str, Path], name: str = "server", **extra: str) -> CompiledContext:
    return compile_context(direct({"certificate": str(files[name]), "certificate-key": str(files[f"{name}_key"]),
                                   "trusted-ca": str(files["ca"]), **extra}, "server"))


def client_ctx(files: dict[str, Path], name: str | None = None, **extra: str) -> CompiledContext:
    opts = {"trusted-ca": str(files["ca"]), **extra}
    if name:
        opts |= {"certificate": str(files[name]), "certificate-key": str(files[f"{name}_key"])}
    return compile_context(direct(opts, "client"))


def test_verify_modes_options_and_no_callback(files: dict[str, Path]) -> None:
    simple, mutual, client = server_ctx(files), server_ctx(files, **{"tls-mutual": "1"}), client_ctx(files)
    assert simple.ssl_context.get_verify_mode() == SSL.VERIFY_NONE
    assert mutual.ssl_context.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    assert client.ssl_context.get_verify_mode() == SSL.VERIFY_PEER
    for compiled in (simple, mutual, client):
        ctx = compiled.ssl_context
        assert ctx._verify_callback is None  # no Python code runs per certificate
        assert ctx.set_options(0) & (SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION) == (
            SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
        assert ctx.set_mode(0) & (SSL.MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN) == (
            SSL.MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN)
    assert [name.CN for name in mutual.new_connection().get_client_ca_list()] == ["ctx root"]


def test_purpose_follows_the_role(files: dict[str, Path]) -> None:
    """OpenSSL sets ssl_server on a client and ssl_client on a server by itself: wrong EKUs fail as bad-purpose."""
    with s_server("-cert", files["client_only"], "-key", files["client_only_key"]) as server:
        conn, error = client_handshake(client_ctx(files), server.port, server_hostname="server.test")
        close(conn)
    assert error is not None and error.reason == "bad-purpose" and error.depth == 0
    with gtls_server(server_ctx(files, **{"tls-mutual": "1"})) as srv:
        s_client(srv.port, "-cert", files["server_only"], "-key", files["server_only_key"], "-tls1_2")
        s_client(srv.port, "-cert", files["client"], "-key", files["client_key"], "-tls1_2")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(False, "bad-purpose"), (True, None)]


def test_cache_shares_equal_settings_and_rebuilds_on_change(tmp_path: Path, files: dict[str, Path]) -> None:
    ca = write_pem(tmp_path / "ca.pem", files["ca"].read_bytes())
    opts = {"trusted-ca": str(ca)}
    first = compile_context(direct(opts, "client"))
    assert compile_context(direct(dict(opts), "client")) is first
    assert compile_context(direct({**opts, "sec-protocol": "TLSv13"}, "client")) is not first
    write_pem(ca, files["ca"].read_bytes(), CA.root("another").cert_pem)
    changed = compile_context(direct(opts, "client"))
    assert changed is not first and len(changed.trusted) == 2


def test_many_handshakes_read_no_files_and_build_one_context(files: dict[str, Path]) -> None:
    context_module.clear_cache()
    before = (context_module.STATS.builds, context_module.STATS.file_reads)
    server = server_ctx(files, **{"tls-mutual": "1"})
    client = client_ctx(files, "client", **{"tls-target-name-check": "host"})
    assert client_ctx(files, "client", **{"tls-target-name-check": "host"}) is client
    built = (context_module.STATS.builds - before[0], context_module.STATS.file_reads - before[1])
    # Each compile_context call reads its files once (to compare digests): 3 + 3 + 3; the repeat built nothing.
    assert built == (2, 9)
    opened: list[str] = []
    watching = threading.Event()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if watching.is_set() and event == "open":
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # cannot be removed; inert unless watching
    reads = context_module.STATS.file_reads
    with gtls_server(server, max_connections=20) as srv:
        watching.set()
        try:
            for _ in range(20):
                conn, error = client_handshake(client, srv.port, server_hostname="server.test")
                assert error is None, error
                close(conn)
        finally:
            watching.clear()
    assert [o.ok for o in srv.outcomes] == [True] * 20
    assert opened == [] and context_module.STATS.file_reads == reads
    assert context_module.STATS.builds - before[0] == 2


def test_server_resumption(tmp_path: Path, files: dict[str, Path]) -> None:
    """TLS 1.2 session ids and TLS 1.3 tickets: a second s_client with the saved session is resumed."""
    server = server_ctx(files)
    for version in ("-tls1_2", "-tls1_3"):
        session = tmp_path / f"session{version}.pem"
        with gtls_server(server, max_connections=2, close_after_handshake=True) as srv:
            first = s_client(srv.port, version, "-ign_eof", "-sess_out", session, "-CAfile", files["ca"])
            second = s_client(srv.port, version, "-ign_eof", "-sess_in", session, "-CAfile", files["ca"])
        assert "New, TLS" in first.stdout and "Reused, TLS" in second.stdout, second.stdout[-1500:]
        assert [o.reused for o in srv.outcomes] == [False, True], version


def test_client_resumption_with_openssl_server(files: dict[str, Path]) -> None:
    client = client_ctx(files)
    with s_server("-cert", files["server"], "-key", files["server_key"], "-tls1_2") as server:
        first, error = client_handshake(client, server.port, server_hostname="server.test")
        assert first is not None, error
        session = first.get_session()
        close(first)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.settimeout(None)
        again = client.new_connection(sock, server_hostname="server.test")
        assert session is not None
        again.set_session(session)
        again.do_handshake()
        from gtls import _binding

        assert _binding.session_reused(again)
        close(again)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"cipher-list": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}, "IANA"),
        ({"cipher-list": "NOSUCHCIPHER:ALSONOT"}, "selects no cipher"),
        ({"cipher-list": "TLS_AES_128_GCM_SHA256", "sec-protocol": "TLSv12"}, "only TLS 1.3 suites"),
        ({"cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256", "sec-protocol": "TLSv13"}, "no TLS 1.3 suite"),
        ({"cipher-list": "DEFAULT:@SECLEVEL=0"}, "security level"),
    ],
)
def test_cipher_list_errors(files: dict[str, Path], opts: dict[str, str], message: str) -> None:
    with pytest.raises(CipherListError) as info:
        server_ctx(files, **opts)
    assert message in str(info.value) and info.value.option == "cipher-list"


def test_cipher_list_tokens(files: dict[str, Path]) -> None:
    listed = "ECDHE-ECDSA-AES128-GCM-SHA256, BOGUS !aNULL\tTLS_AES_256_GCM_SHA384"
    compiled = server_ctx(files, **{"cipher-list": listed})
    assert any("BOGUS select no cipher" in w for w in compiled.warnings)
    assert not any("aNULL" in w for w in compiled.warnings)
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384")
        s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [
        (False, "no-shared-cipher"), (True, None), (False, "no-shared-cipher")]


def test_unsupported_protocol_value(files: dict[str, Path]) -> None:
    """Settings for a context name an unsupported version: refused before any context exists, listing the values."""
    with pytest.raises(UnsupportedProtocol) as info:
        compile_context(direct({"trusted-ca": str(files["ca"]), "sec-protocol": "TLSv1"}, "client"))
    assert info.value.option == "sec-protocol" and info.value.level == "Connection"
    assert all(value in str(info.value) for value in ("'TLSv1'", "empty", "SSLv23", "TLSv12", "TLSv13"))


def test_protocol_version_both_ways(files: dict[str, Path]) -> None:
    with gtls_server(server_ctx(files, **{"sec-protocol": "TLSv13"})) as srv:
        s_client(srv.port, "-tls1_2")
    assert srv.outcomes[0].error is not None and srv.outcomes[0].error.reason == "protocol-version"
    client = client_ctx(files, **{"sec-protocol": "TLSv12"})
    with s_server("-cert", files["server"], "-key", files["server_key"], "-tls1_3") as server:
        conn, error = client_handshake(client, server.port, server_hostname="server.test")
        close(conn)
    assert error is not None and error.reason == "protocol-version"


def test_failure_reasons_of_a_server(files: dict[str, Path]) -> None:
    mutual = server_ctx(files, **{"tls-mutual": "1"})
    with gtls_server(mutual, max_connections=4) as srv:
        s_client(srv.port)  # no client certificate
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with contextlib.suppress(OSError):
                raw.recv(100)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5):
            pass  # closed before any byte
        s_client(srv.port, "-CAfile", files["server"], "-verify_return_error", "-tls1_2")  # client rejects us
    reasons = [o.error.reason if o.error else "ok" for o in srv.outcomes]
    assert reasons == ["no-peer-certificate", "not-tls", "eof-in-handshake", "peer-alert"]
    last = srv.outcomes[3].error
    assert last is not None and last.alert == "unknown_ca" and not isinstance(last, PeerVerificationError)
    assert isinstance(srv.outcomes[0].error, PeerVerificationError)


def test_failure_reasons_of_a_client(files: dict[str, Path]) -> None:
    client = client_ctx(files)
    with s_server("-cert", files["server"], "-key", files["server_key"], "-Verify", "1", "-tls1_2") as server:
        conn, error = client_handshake(client, server.port, server_hostname="server.test")
        close(conn)
    assert isinstance(error, HandshakeError) and error.reason == "peer-alert" and error.alert
    with s_server("-cert", files["stranger"], "-key", files["stranger_key"]) as server:
        conn, error = client_handshake(client, server.port, server_hostname="server.test")
        close(conn)
    assert isinstance(error, PeerVerificationError) and error.reason == "untrusted"
    assert error.depth == 0 and error.subject == "CN=server.test"
