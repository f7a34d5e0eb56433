"""compile_context: verify modes, purposes, options, caching/reuse, resumption, versions, ciphers and the mapping
of real handshake failures to reason words (spec §8–§10)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL

from gtls import _binding, _sessions, _stat_memo
from gtls import context as context_module
from gtls.context import SSL_MODE_NO_AUTO_CHAIN, CompiledContext, compile_context, compile_settings
from gtls.errors import (
    CipherListError,
    ConfigError,
    CredentialLoadError,
    HandshakeError,
    PeerVerificationError,
    UnsupportedProtocol,
)
from gtls.options import TLSOptions
from gtls.pki import system_trust
from gtls.resolve import direct
from gtls.testing import CA, Certified, write_pem
from gtls.verify import verify_chain
from tests.peers import OPENSSL, client_handshake, close, gtls_server, run_gtls, s_client, s_server


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
    # Freshly compiled: a cached context an earlier test connected with is in use, and pyOpenSSL then refuses
    # set_options, even set_options(0), which only reads them (this test failed when run after such a test).
    context_module.clear_cache()
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


_T = TypeVar("_T")


def all_at_once(threads: int, work: Callable[[], _T]) -> list[_T]:
    """Run ``work`` in ``threads`` threads released together by a barrier, wait for them (bounded), and return what
    each returned (fewer when a thread failed)."""
    barrier = threading.Barrier(threads)
    results: list[_T] = []

    def run() -> None:
        barrier.wait(timeout=10)
        results.append(work())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results


def test_equal_settings_compiled_at_once_in_threads_share_one_context(files: dict[str, Path]) -> None:
    """Two ports opened at the same moment from two threads (each with its own trio.run) must share one SSL context,
    as ports opened one after the other do, so a session from one resumes on the other either way."""
    threads = 4
    for trial in range(5):
        context_module.clear_cache()
        got = all_at_once(threads, lambda: server_ctx(files).ssl_context)
        assert len(got) == threads
        assert len({id(context) for context in got}) == 1, f"trial {trial}: {len(set(map(id, got)))} contexts"
        assert server_ctx(files).ssl_context is got[0]


def test_mutual_servers_compiled_in_threads_at_once_leave_the_warnings_filters_alone(files: dict[str, Path]) -> None:
    """A mutual-TLS server lists its CAs in the certificate request. That took pyOpenSSL's deprecated X509Name under
    warnings.catch_warnings, which swaps the process-wide filters and puts its copy back on exit: two ports compiled
    at once in two threads (each with its own trio.run) left DeprecationWarning ignored for the whole program."""
    before = list(warnings.filters)
    threads = 8
    try:
        for trial in range(20):
            context_module.clear_cache()  # every thread builds (the first to finish is kept)
            built = all_at_once(threads, lambda: server_ctx(files, **{"tls-mutual": "1"}))
            assert len(built) == threads
            assert warnings.filters == before, f"trial {trial}: {warnings.filters[:2]}"
    finally:
        warnings.filters[:] = before
    advertised = built[0].ssl_context
    assert [name.CN for name in SSL.Connection(advertised).get_client_ca_list()] == ["ctx root"]


def test_many_handshakes_read_no_files_and_build_one_context(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context_module.clear_cache()
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)  # trust stamps at once (the racy-file guard has its own test)
    before = (context_module.STATS.builds, context_module.STATS.file_reads)
    server = server_ctx(files, **{"tls-mutual": "1"})
    client = client_ctx(files, "client", **{"tls-target-name-check": "host"})
    assert client_ctx(files, "client", **{"tls-target-name-check": "host"}) is client
    built = (context_module.STATS.builds - before[0], context_module.STATS.file_reads - before[1])
    # The first compile of each reads its 3 files; the repeat finds them unchanged by their stamps: no read, no build.
    assert built == (2, 6)
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
        # Sessions live 5 minutes (nginx's default), not OpenSSL's 2 hours: the ticket says so.
        assert "lifetime hint: 300 (seconds)" in first.stdout, first.stdout[-1500:]


def s_client_session(port: int, version: str, args: list[str | Path], saved: Path, *, resume: bool) -> str:
    """``s_client`` resuming the latest session saved under ``saved.N`` (TLS 1.3 saves each connection's new
    ticket; TLS 1.2 keeps resuming its one session) and saving its own (none when the server offered no session to
    resume); returns its output."""
    previous = sorted(saved.parent.glob(f"{saved.name}.*"))
    resuming = ["-sess_in", previous[-1]] if resume and previous else []
    out = saved.with_name(f"{saved.name}.{len(previous)}")
    return s_client(port, version, *args, *resuming, "-sess_out", out).stdout


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_a_chain_of_resumptions_on_a_mutual_port_ends_within_the_session_lifetime(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """A resumed connection is not verified again. In TLS 1.3 each resumption hands out new tickets timed from
    itself, so a client coming back every few minutes was never checked again (an expired or revoked certificate
    went on being accepted). Where clients are verified, sessions resume only within the epoch of their full
    handshake: the chain ends at most SESSION_LIFETIME after the last verification. Elsewhere nothing changes."""
    context_module.clear_cache()  # fresh contexts: their epochs start on the clock set here
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    mutual = server_ctx(files, **{"tls-mutual": "1"})
    plain = server_ctx(files)
    client: list[str | Path] = ["-cert", files["client"], "-key", files["client_key"], "-CAfile", files["ca"],
                                "-ign_eof"]
    for compiled, label in ((mutual, "mutual"), (plain, "plain")):
        saved = tmp_path / f"{label}{version}"
        with gtls_server(compiled, max_connections=4, close_after_handshake=True) as srv:
            s_client_session(srv.port, version, client, saved, resume=False)
            s_client_session(srv.port, version, client, saved, resume=True)
            # Four minutes later by the epochs' clock the chain still resumes; a minute after that, a full
            # handshake checks the certificate again (on the mutual port only).
            monkeypatch.setattr("gtls._sessions.clock", lambda: now + 240)
            again = s_client_session(srv.port, version, client, saved, resume=True)
            monkeypatch.setattr("gtls._sessions.clock", lambda: now + 301)
            last = s_client_session(srv.port, version, client, saved, resume=True)
        monkeypatch.setattr("gtls._sessions.clock", lambda: now)
        assert "Reused, TLS" in again, (label, again[-800:])
        expected = [False, True, True, label == "plain"]
        assert [o.reused for o in srv.outcomes] == expected, (label, [o.reused for o in srv.outcomes])
        assert all(o.ok for o in srv.outcomes)
        assert ("Reused, TLS" in last) is (label == "plain")


def ticket_key_name(s_client_output: str) -> str:
    """The first 16 bytes of the TLS 1.2 ticket ``s_client`` printed: the name of the server's ticket key."""
    dump = s_client_output.split("TLS session ticket:\n", 1)[1]
    return dump.split("\n", 1)[0].split(" - ", 1)[1][:47]


@pytest.mark.parametrize("mutual", ["0", "1"])
def test_a_servers_ticket_key_is_renewed_hourly(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, mutual: str
) -> None:
    """OpenSSL never changes a context's ticket key, and a TLS 1.2 ticket is the session's master secret under it:
    the key outlived every connection it protects. A server context that issues TLS 1.2 tickets is built anew every
    TICKET_KEY_LIFETIME: new tickets carry another key name, and a ticket of the old key no longer resumes (one full
    handshake), while the new context resumes its own, in its own session epochs on a mutual port."""
    context_module.clear_cache()
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = server_ctx(files, **{"tls-mutual": mutual})
    client: list[str | Path] = ["-tls1_2", "-ign_eof", "-CAfile", files["ca"], "-cert", files["client"],
                                "-key", files["client_key"]]
    before, after = tmp_path / "before.pem", tmp_path / "after.pem"
    with gtls_server(compiled, max_connections=5, close_after_handshake=True) as srv:
        first = s_client(srv.port, *client, "-sess_out", before).stdout
        resumed = s_client(srv.port, *client, "-sess_in", before).stdout
        old_context = compiled.ssl_context
        monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
        renewed = s_client(srv.port, *client, "-sess_in", before, "-sess_out", after).stdout
        again = s_client(srv.port, *client, "-sess_in", after).stdout
        fresh = s_client(srv.port, *client).stdout
    assert [o.reused for o in srv.outcomes] == [False, True, False, True, False]
    assert all(o.ok for o in srv.outcomes)
    assert compiled.ssl_context is not old_context
    assert "Reused, TLS" in resumed and "Reused, TLS" in again and "New, TLS" in renewed, renewed[-1500:]
    assert ticket_key_name(renewed) == ticket_key_name(fresh) != ticket_key_name(first)


def test_a_renewal_is_seen_by_every_endpoint_sharing_the_context_and_keeps_its_settings(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endpoints of equal settings share one compiled context (each through its own copy, naming itself): a renewal
    made through one is the context of all. The new context is the old one's settings: ALPN, the client CA names a
    mutual server advertises, its verify mode."""
    context_module.clear_cache()
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    options = {"certificate": str(files["server"]), "certificate-key": str(files["server_key"]),
               "trusted-ca": str(files["ca"]), "tls-mutual": "1"}
    resolved = direct(options, "server")
    one = compile_context(dataclasses.replace(resolved, object_path="applications.a.ports.p"), alpn=["h2"])
    other = compile_context(dataclasses.replace(resolved, object_path="applications.b.ports.p"), alpn=["h2"])
    assert one is not other and one.ssl_context is other.ssl_context
    old = one.ssl_context
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    conn = one.new_connection()
    assert one.ssl_context is other.ssl_context is not old
    assert conn.get_context() is one.ssl_context
    assert one.ssl_context.get_verify_mode() == old.get_verify_mode() == \
        SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    assert [name.CN for name in conn.get_client_ca_list()] == ["ctx root"]
    with gtls_server(other, max_connections=1, close_after_handshake=True) as srv:
        out = s_client(srv.port, "-alpn", "h2", "-CAfile", files["ca"], "-cert", files["client"], "-key",
                       files["client_key"]).stdout
    assert "ALPN protocol: h2" in out and srv.outcomes[0].ok, out[-1500:]


def test_a_certificate_that_expires_while_the_port_runs_is_logged_at_the_renewal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The hourly renewal builds the context again, and so sees what time changed: a server certificate that
    expired while the port ran is logged once, located, at the first renewal after (it was said only when the port
    opened again). Located at the endpoint renewing it and at those sharing it, not at the first one ever compiled
    (review: a port renamed on a reload was named by its old name). Warnings the port opened with are not
    repeated, nor is a line at later renewals (logged once per process)."""
    context_module.clear_cache()
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    root = CA.root("expiring root")
    leaf = root.leaf("soon.test", dns=["soon.test"], not_after=dt.timedelta(seconds=2))
    resolved = direct({
        "certificate": str(leaf.write_cert(tmp_path / "soon.pem")),
        "certificate-key": str(leaf.write_key(tmp_path / "soon.key")),
        "trusted-ca": str(write_pem(tmp_path / "ca.pem", root)), "tls-mutual": "1"}, "server")
    first = compile_context(dataclasses.replace(resolved, object_path="applications.old.ports.p"))
    renamed = compile_context(dataclasses.replace(resolved, object_path="applications.new.ports.p"))
    sharing = compile_context(dataclasses.replace(resolved, object_path="applications.other.ports.q"))
    assert first.ssl_context is renamed.ssl_context is sharing.ssl_context
    assert not any("expired" in w for w in first.warnings)
    time.sleep(2.5)
    with caplog.at_level("WARNING", logger="gtls.config"):
        for hours in (1, 2):
            monkeypatch.setattr("gtls._sessions.clock", lambda hours=hours: now + hours * _sessions.TICKET_KEY_LIFETIME)
            renamed.renew_if_due(sharing=[sharing.resolved])
    logged = [r.getMessage() for r in caplog.records if r.name == "gtls.config"]
    assert [line.split(": ", 1)[0] for line in logged] == ["applications.new.ports.p", "applications.other.ports.q"]
    assert all("certificate CN=soon.test expired on" in line for line in logged), logged


def test_a_tls13_only_servers_context_keeps_its_key(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS 1.3 resumption keeps forward secrecy ((EC)DHE every time): such a context is never rebuilt, and neither
    is a client's (it issues no tickets)."""
    context_module.clear_cache()
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    tls13 = server_ctx(files, **{"sec-protocol": "TLSv13"})
    client = client_ctx(files)
    kept = [tls13.ssl_context, client.ssl_context]
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + 2 * _sessions.TICKET_KEY_LIFETIME)
    tls13.new_connection()
    client.new_connection(server_hostname="server.test")
    assert [tls13.ssl_context, client.ssl_context] == kept


def test_a_connection_does_not_wait_for_a_renewal_under_way_in_another_thread(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one thread builds the renewed context (the serving loop's worker, or a listener's own connection),
    a connection made in another thread takes the current key at once; it neither waits for the build nor starts a
    second one. (Before, it waited on the renewal's lock: up to ~0.1 s with a large CA bundle, in an event loop.)"""
    context_module.clear_cache()
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = server_ctx(files)
    old = compiled.ssl_context
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    made: list[SSL.Connection] = []
    with compiled._slot._lock:  # a renewal under way elsewhere
        other = threading.Thread(target=lambda: made.append(compiled.new_connection()), daemon=True)
        other.start()
        other.join(5)
        assert made and made[0].get_context() is old
    assert compiled.ssl_context is old  # nothing renewed behind the renewal under way
    compiled.new_connection()  # the renewal is due, and nobody else is at it
    assert compiled.ssl_context is not old


def test_a_failed_renewal_keeps_the_context_and_says_so(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Building the context again cannot fail on the settings it was built from, but if it does (memory, a bug),
    connections go on with the old key and a warning says why, once per lifetime."""
    context_module.clear_cache()
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = server_ctx(files)
    old = compiled.ssl_context

    def broken(*args: object, **kwargs: object) -> CompiledContext:
        raise MemoryError("no memory for a new context")

    monkeypatch.setattr(context_module, "_build", broken)
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    with caplog.at_level("WARNING", logger="gtls.server"):
        for _ in range(3):
            assert compiled.new_connection() is not None
    assert compiled.ssl_context is old
    assert [r.getMessage() for r in caplog.records] == [
        "session-ticket key not renewed: building the context again failed (no memory for a new context); the "
        f"current key stays in use for another {_sessions.TICKET_KEY_LIFETIME} s"]


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_without_the_epochs_binding_a_mutual_port_resumes_nothing(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """The fallback when pyOpenSSL's binding lacks what changes epochs: every client is verified every time."""
    context_module.clear_cache()
    monkeypatch.setattr("gtls._binding.SESSIONS", False)
    client: list[str | Path] = ["-cert", files["client"], "-key", files["client_key"], "-CAfile", files["ca"],
                                "-ign_eof"]
    try:
        with gtls_server(server_ctx(files, **{"tls-mutual": "1"}), max_connections=2,
                         close_after_handshake=True) as srv:
            s_client_session(srv.port, version, client, tmp_path / "s", resume=False)
            again = s_client_session(srv.port, version, client, tmp_path / "s", resume=True)
    finally:
        context_module.clear_cache()  # later tests get contexts with resumption
    assert "New, TLS" in again
    assert [(o.ok, o.reused) for o in srv.outcomes] == [(True, False), (True, False)]


def test_client_asks_tls12_servers_for_no_session_ticket(files: dict[str, Path]) -> None:
    """A TLS 1.2 session ticket is the session's master secret encrypted under the server's ticket key, which many
    servers never change (OpenSSL's default, nginx's, gtls's own): whoever reads that key later can decrypt the
    recorded connection. The connector never resumes a session, so it asks for no ticket (no session_ticket
    extension), and a server sends none: its connections keep forward secrecy whatever the server does."""
    with s_server("-cert", files["server"], "-key", files["server_key"], "-tls1_2", "-msg", "-www", "-naccept", "1"
                  ) as server:
        conn, error = client_handshake(client_ctx(files), server.port, server_hostname="server.test")
        assert conn is not None, error
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with contextlib.suppress(SSL.Error):
            while conn.recv(65536):
                pass
        close(conn)
        sent = server.stdout.drain(2.0)
    assert any("ServerHelloDone" in line for line in sent), sent[-20:]
    assert not [line for line in sent if "NewSessionTicket" in line]


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
        ({"cipher-list": "DEFAULT@SECLEVEL=0"}, "security level"),  # glued on: OpenSSL takes that form too
        ({"cipher-list": "HIGH@seclevel=0"}, "security level"),
        # A TLS 1.3-only port whose one suite OpenSSL never negotiates: every handshake would fail.
        ({"cipher-list": "TLS_AES_128_CCM_8_SHA256", "sec-protocol": "TLSv13"}, "never negotiates"),
        # OpenSSL reads ';' as ':'; inside a token it slipped IANA names past the check.
        ({"cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256;TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, "is an IANA name"),
        # A TLS 1.2-only port whose list selects only ciphers no handshake can use: below the security level, or
        # RSA ciphers for this ECDSA key. OpenSSL accepts both strings; every handshake would fail.
        ({"cipher-list": "eNULL:aNULL", "sec-protocol": "TLSv12"}, "leaves no cipher a TLS 1.2 handshake can use"),
        ({"cipher-list": "ECDHE-RSA-AES128-GCM-SHA256", "sec-protocol": "TLSv12"}, "with an ECDSA key"),
        # IANA names in any case: OpenSSL 4 reads them case-blind (OpenSSL 3: not at all), also behind an operator.
        ({"cipher-list": "tls_ecdhe_ecdsa_with_aes_128_gcm_sha256"}, "is an IANA name"),
        ({"cipher-list": "HIGH:!TLS_RSA_WITH_AES_128_CBC_SHA"}, "is an IANA name"),
        # The TLS <= 1.2 string took these and ignored them: the TLS 1.3 suite stayed.
        ({"cipher-list": "DEFAULT:!TLS_AES_128_GCM_SHA256"}, "do not apply to TLS 1.3 suites"),
        ({"cipher-list": "DEFAULT:-TLS_AES_128_GCM_SHA256"}, "do not apply to TLS 1.3 suites"),
        ({"cipher-list": "DEFAULT:+TLS_AES_256_GCM_SHA384"}, "do not apply to TLS 1.3 suites"),
        # First in the string: Suite B mode, the rest dropped, an RSA certificate failing every handshake.
        ({"cipher-list": "SUITEB128:HIGH"}, "Suite B mode"),
        ({"cipher-list": "HIGH suiteb192"}, "Suite B mode"),
    ],
)
def test_cipher_list_errors(files: dict[str, Path], opts: dict[str, str], message: str) -> None:
    with pytest.raises(CipherListError) as info:
        server_ctx(files, **opts)
    assert message in str(info.value) and info.value.option == "cipher-list"


def test_cipher_list_tokens(files: dict[str, Path]) -> None:
    listed = "ECDHE-ECDSA-AES128-GCM-SHA256, BOGUS !aNULL\tTLS_AES_256_GCM_SHA384"
    compiled = server_ctx(files, **{"cipher-list": listed})
    assert any("BOGUS selects no cipher" in w for w in compiled.warnings)
    assert not any("aNULL" in w for w in compiled.warnings)
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384")
        s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [
        (False, "no-shared-cipher"), (True, None), (False, "no-shared-cipher")]


def test_semicolons_separate_cipher_list_tokens(files: dict[str, Path]) -> None:
    """A ';' between a TLS 1.2 cipher and a TLS 1.3 suite went whole to OpenSSL's TLS 1.2 string, which dropped the
    suite without a word: the TLS 1.3 restriction was lost. It separates tokens as OpenSSL's own parser does."""
    compiled = server_ctx(files, **{"cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256;TLS_AES_128_GCM_SHA256"})
    assert not [w for w in compiled.warnings if w.startswith("cipher-list:")]
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384")
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
        s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [
        (False, "no-shared-cipher"), (True, None), (True, None)]


def test_ciphers_that_do_not_suit_the_key_are_named_in_a_warning(files: dict[str, Path]) -> None:
    """RSA ciphers for an ECDSA certificate: OpenSSL takes the string, then refuses every TLS 1.2 client. Where TLS
    1.3 stays available the port works, with a warning that says so; the warning is true on the wire."""
    compiled = server_ctx(files, **{"cipher-list": "ECDHE-RSA-AES128-GCM-SHA256"})
    assert [w for w in compiled.warnings if w.startswith("cipher-list:")] == [
        "cipher-list: 'ECDHE-RSA-AES128-GCM-SHA256' leaves no cipher a TLS 1.2 handshake can use: none of its "
        "ciphers both passes OpenSSL's security level and authenticates with an ECDSA key like the certificate's; "
        "peers without TLS 1.3 all fail"]
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_2")
        s_client(srv.port, "-tls1_3")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(False, "no-shared-cipher"), (True, None)]
    assert not [w for w in server_ctx(files, **{"cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256:eNULL"}).warnings
                if w.startswith("cipher-list:")]


def test_a_key_the_probe_cannot_use_is_not_blamed_on_the_cipher_list(tmp_path: Path) -> None:
    """The probe's client offers OpenSSL's default groups; a brainpool key fails it whatever the list (the key is
    named at load time), so a working list is not refused for it (s_client offering the curve negotiates it)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    root = CA.root("brainpool root")
    leaf = root.leaf("server.test", dns=["server.test"], key=ec.generate_private_key(ec.BrainpoolP256R1()))
    settings = {"certificate": str(write_pem(tmp_path / "leaf.pem", leaf)),
                "certificate-key": str(leaf.write_key(tmp_path / "leaf.key")),
                "trusted-ca": str(write_pem(tmp_path / "ca.pem", root)), "sec-protocol": "TLSv12"}
    compiled = compile_context(direct({**settings, "cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256"}, "server"))
    assert not [w for w in compiled.warnings if w.startswith("cipher-list:")]
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_2", "-groups", "brainpoolP256r1:P-256")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(True, None)]
    # A list with no ECDSA cipher is still refused for it: judged by the authentication its ciphers name.
    with pytest.raises(CipherListError, match="with an ECDSA key"):
        compile_context(direct({**settings, "cipher-list": "ECDHE-RSA-AES128-GCM-SHA256"}, "server"))


def test_a_client_cipher_list_with_nothing_to_offer(files: dict[str, Path]) -> None:
    """A client whose TLS 1.2 list selects only ciphers its security level refuses or that need PSK: OpenSSL sends
    no hello at all. Refused when TLS 1.2 is all it may use, a warning otherwise."""
    with pytest.raises(CipherListError, match="leaves no cipher a TLS 1.2 handshake can use"):
        client_ctx(files, **{"cipher-list": "aNULL:PSK", "sec-protocol": "TLSv12"})
    compiled = client_ctx(files, **{"cipher-list": "eNULL"})
    assert any("peers without TLS 1.3 all fail" in w for w in compiled.warnings)


def test_a_suite_below_the_security_level_is_named_in_a_warning(files: dict[str, Path]) -> None:
    """Listed beside a usable suite, TLS_AES_128_CCM_8_SHA256 only warns; the usable suite is negotiated and the
    listed-but-refused one fails like any suite the server does not offer (s_client offering only it)."""
    compiled = server_ctx(files, **{"cipher-list": "TLS_AES_128_CCM_8_SHA256:TLS_AES_128_CCM_SHA256",
                                    "sec-protocol": "TLSv13"})
    assert any("TLS_AES_128_CCM_8_SHA256 is never negotiated" in w for w in compiled.warnings)
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256")
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_8_SHA256")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(True, None), (False, "no-shared-cipher")]


def test_only_a_refused_tls13_suite_turns_tls13_off(files: dict[str, Path]) -> None:
    """TLS_AES_128_CCM_8_SHA256 as the only TLS 1.3 suite, TLS 1.2 allowed: the warning said TLS 1.3 was never used,
    but OpenSSL still chose TLS 1.3 for a server's TLS 1.3 client (then no-shared-cipher), and a client sent no hello
    at all ("no ciphers available"), so every default peer failed. TLS 1.3 is now off: TLS 1.2 is negotiated."""
    listed = {"cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_CCM_8_SHA256:TLS_AES_128_CCM_8_SHA256"}
    compiled = server_ctx(files, **listed)
    assert [w for w in compiled.warnings if w.startswith("cipher-list:")] == [
        "cipher-list: TLS_AES_128_CCM_8_SHA256 is the only TLS 1.3 suite listed, and OpenSSL's security level never "
        "negotiates it (an 8-byte tag: 64-bit security); TLS 1.3 is turned off, the endpoint speaks TLS 1.2 only"]
    with gtls_server(compiled) as srv:
        result = s_client(srv.port)  # offers TLS 1.3 and 1.2
    assert "TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in result.stdout
    assert [(o.ok, o.error) for o in srv.outcomes] == [(True, None)]
    client = client_ctx(files, **{"cipher-list": "TLS_AES_128_CCM_8_SHA256"})
    with s_server("-cert", files["server"], "-key", files["server_key"]) as peer:
        conn, error = client_handshake(client, peer.port, server_hostname="server.test")
    assert error is None and conn is not None and conn.get_protocol_version_name() == "TLSv1.2"
    close(conn)
    # With a TLS 1.2 list no handshake can use, nothing is left: refused, as on a TLSv12 endpoint.
    with pytest.raises(CipherListError, match="every handshake would fail"):
        server_ctx(files, **{"cipher-list": "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_CCM_8_SHA256"})


def test_tls13_suite_names_in_any_case(files: dict[str, Path]) -> None:
    """A lower-case TLS 1.3 name went to the TLS <= 1.2 string, where it selected nothing: the TLS 1.3 defaults stayed
    (and a TLSv13 endpoint was refused for listing no TLS 1.3 suite). Read as the capitalised name, with a warning."""
    compiled = server_ctx(files, **{"cipher-list": "tls_aes_128_gcm_sha256", "sec-protocol": "TLSv13"})
    assert [w for w in compiled.warnings if w.startswith("cipher-list:")] == [
        "cipher-list: 'tls_aes_128_gcm_sha256' read as 'TLS_AES_128_GCM_SHA256' (TLS 1.3 suite names are written "
        "in capitals)"]
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384")
        s_client(srv.port, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(False, "no-shared-cipher"), (True, None)]


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


# --- unchanged files are not read again (gtls._stat_memo) -------------------------------------------------------


def _reads() -> int:
    return context_module.STATS.file_reads


def _two_roots_of_equal_pem_size(name: str) -> tuple[CA, CA]:
    """Two roots whose certificates' PEM have the same length (ECDSA signatures vary by a few bytes)."""
    first = CA.root(f"{name} one")
    for _ in range(100):
        second = CA.root(f"{name} two")
        if len(second.cert_pem) == len(first.cert_pem):
            return first, second
    raise AssertionError("no two roots of equal PEM size in 100 tries")


def test_settled_files_are_not_read_again_until_they_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    ca = write_pem(tmp_path / "ca.pem", CA.root("first"))
    options = TLSOptions(trusted_ca=str(ca))
    first = compile_settings(options, "client")
    reads = _reads()
    for _ in range(3):
        assert compile_settings(options, "client") is first
    assert _reads() == reads  # one stat per file, no read
    write_pem(ca, CA.root("first"), CA.root("second"))  # rewritten (longer)
    changed = compile_settings(options, "client")
    assert changed is not first and len(changed.trusted) == 2 and _reads() == reads + 1


def test_a_file_replaced_by_rename_with_equal_size_and_times_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    one, two = _two_roots_of_equal_pem_size("rename")
    ca = write_pem(tmp_path / "ca.pem", one)
    first = compile_settings(TLSOptions(trusted_ca=str(ca)), "client")
    replacement = write_pem(tmp_path / "new.pem", two)
    assert replacement.stat().st_size == ca.stat().st_size  # same key type and name length: same PEM size
    stat = ca.stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, ca)  # a new inode, as deployment tools rotate files
    changed = compile_settings(TLSOptions(trusted_ca=str(ca)), "client")
    assert changed is not first
    assert [c.subject.rfc4514_string() for c in changed.trusted] == ["CN=rename two"]


def test_a_key_made_world_readable_is_refused_on_the_next_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    root = CA.root("mode root")
    leaf = root.leaf("mode.test", dns=["mode.test"])
    options = TLSOptions(certificate=str(leaf.write_cert(tmp_path / "leaf.pem")),
                         certificate_key=str(leaf.write_key(tmp_path / "leaf.key")),
                         trusted_ca=str(root.write_cert(tmp_path / "ca.pem")))
    compile_settings(options, "server")
    (tmp_path / "leaf.key").chmod(0o644)
    with pytest.raises(ConfigError, match="certificate-key"):
        compile_settings(options, "server")


def test_a_rewrite_keeping_size_and_modification_time_is_still_seen(tmp_path: Path) -> None:
    """Same size and the modification time put back (``touch -d``, or a rewrite within one file-system tick): the
    change time or the freshness guard still gives it away."""
    context_module.clear_cache()
    one, two = _two_roots_of_equal_pem_size("tick")
    ca = write_pem(tmp_path / "ca.pem", one)
    first = compile_settings(TLSOptions(trusted_ca=str(ca)), "client")
    stat = ca.stat()
    ca.write_bytes(two.cert_pem)
    assert ca.stat().st_size == stat.st_size
    os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = compile_settings(TLSOptions(trusted_ca=str(ca)), "client")
    assert [c.subject.rfc4514_string() for c in changed.trusted] == ["CN=tick two"] and changed is not first



def rotated_ca_folders(tmp_path: Path, label: str) -> tuple[Path, Callable[[], None]]:
    """Folders v1 and v2 each holding a ca.pem (roots "LABEL v1", "LABEL v2"), the symlink ``current`` to v1, and
    the switch of ``current`` to v2, atomic as rotations (Kubernetes secret volumes, ``ln -sfn``) make it."""
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        write_pem(tmp_path / version / "ca.pem", CA.root(f"{label} {version}"))
    current = tmp_path / "current"
    current.symlink_to("v1")

    def switch() -> None:
        switched = tmp_path / "switched"
        switched.symlink_to("v2")
        os.replace(switched, current)

    return current, switch


def test_a_file_swapped_while_its_settings_compile_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink switched to a file written earlier (Kubernetes secret volumes, ``ln -sfn`` rotations) moves no time of
    the file itself. Stamped after the read, a switch while the settings compiled (here during the build, which other
    threads compiling at the same time stretch to many milliseconds) put the new file's stamp beside the old file's
    context, and the old CA was trusted until the file changed again. Stamped before the read: read again."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    current, switch = rotated_ca_folders(tmp_path, "swap")
    build = context_module._build

    def build_then_switch(*args: Any, **kwargs: Any) -> CompiledContext:
        compiled = build(*args, **kwargs)
        switch()
        return compiled

    options = TLSOptions(trusted_ca=str(current / "ca.pem"))
    monkeypatch.setattr(context_module, "_build", build_then_switch)
    first = compile_settings(options, "client")
    monkeypatch.setattr(context_module, "_build", build)
    assert [c.subject.rfc4514_string() for c in first.trusted] == ["CN=swap v1"]  # what was read
    again = compile_settings(options, "client")
    assert [c.subject.rfc4514_string() for c in again.trusted] == ["CN=swap v2"]
    assert compile_settings(options, "client") is again


def test_files_changed_moments_ago_are_not_trusted_by_their_stamps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File times move in ticks of milliseconds, so a rewrite in the tick its stamp was taken in could keep the
    whole stamp: a file younger than SETTLE gets no stamp, and its settings are read in full every time."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.3)
    fresh = tmp_path / "fresh.pem"
    fresh.write_bytes(b"x")
    assert _stat_memo.settled([(fresh, _stat_memo.stamp(fresh))]) is None
    context_module.clear_cache()
    ca = write_pem(tmp_path / "ca.pem", CA.root("young"))
    options = TLSOptions(trusted_ca=str(ca))
    compile_settings(options, "client")
    reads = _reads()
    compile_settings(options, "client")
    assert _reads() == reads + 1  # young: read again
    time.sleep(0.4)
    assert _stat_memo.settled([(fresh, _stat_memo.stamp(fresh))]) is not None
    compile_settings(options, "client")  # read once more, now stamped
    reads = _reads()
    compile_settings(options, "client")
    assert _reads() == reads  # settled: the stamp stands in for the contents


def test_a_file_swapped_between_its_stamp_and_its_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp is taken before the file is read: a symlink switched just after the read (a narrower window than
    the build's, above) leaves the old stamp beside the old bytes, so the next compile reads the new file."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    current, switch = rotated_ca_folders(tmp_path, "read")
    read_file = context_module.read_file

    def read_then_switch(*args: Any, **kwargs: Any) -> bytes:
        data = read_file(*args, **kwargs)
        switch()
        return data

    options = TLSOptions(trusted_ca=str(current / "ca.pem"))
    monkeypatch.setattr(context_module, "read_file", read_then_switch)
    first = compile_settings(options, "client")
    monkeypatch.setattr(context_module, "read_file", read_file)
    assert [c.subject.rfc4514_string() for c in first.trusted] == ["CN=read v1"]
    assert [c.subject.rfc4514_string() for c in compile_settings(options, "client").trusted] == ["CN=read v2"]


def test_a_file_switched_between_its_stamp_and_its_read_then_switched_back_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink switched after the stamp was taken and before the read (v1's stamp, v2's bytes), then switched
    back (a rollback of an ``ln -sfn`` rotation): v1's stamp matched again and v2's context was served for v1's file.
    A compile in between did not help once threads compile: here another thread's compile stores v2 under its own
    stamp, and the slower one stored v1's stamp over it. A file whose stamp moved during its read is not stamped."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    current, _ = rotated_ca_folders(tmp_path, "back")

    def switch_to(version: str) -> None:
        switched = tmp_path / "switched"
        switched.symlink_to(version)
        os.replace(switched, current)

    options = TLSOptions(trusted_ca=str(current / "ca.pem"))
    read_file = context_module.read_file

    def switch_then_read(*args: Any, **kwargs: Any) -> bytes:
        monkeypatch.setattr(context_module, "read_file", read_file)  # once: the other thread reads normally
        switch_to("v2")
        other = threading.Thread(target=compile_settings, args=(options, "client"))
        other.start()
        other.join(10)
        return read_file(*args, **kwargs)

    monkeypatch.setattr(context_module, "read_file", switch_then_read)
    first = compile_settings(options, "client")
    assert [c.subject.rfc4514_string() for c in first.trusted] == ["CN=back v2"]  # what was read
    switch_to("v1")  # rolled back
    assert [c.subject.rfc4514_string() for c in compile_settings(options, "client").trusted] == ["CN=back v1"]


def test_a_symlink_switched_between_two_files_written_together_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files of equal size written in the same tick of the file-system clock (which moves in milliseconds) share
    every time; only the inode tells them apart when a symlink is switched from one to the other."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    one, two = _two_roots_of_equal_pem_size("together")
    for _ in range(50):
        first_file = write_pem(tmp_path / "v1.pem", one)
        second_file = write_pem(tmp_path / "v2.pem", two)
        for path in (first_file, second_file):
            os.utime(path, ns=(10**18, 10**18))
        a, b = first_file.stat(), second_file.stat()
        if (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns):
            break
    else:
        pytest.skip("no two files with equal times in 50 tries (a fine-grained file-system clock)")
    context_module.clear_cache()
    current = tmp_path / "current.pem"
    current.symlink_to("v1.pem")
    options = TLSOptions(trusted_ca=str(current))
    assert [c.subject.rfc4514_string() for c in compile_settings(options, "client").trusted] == ["CN=together one"]
    switched = tmp_path / "switched"
    switched.symlink_to("v2.pem")
    os.replace(switched, current)
    assert [c.subject.rfc4514_string() for c in compile_settings(options, "client").trusted] == ["CN=together two"]


def test_the_freshness_guard_reads_both_times_and_whole_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose modification time was put in the past (``touch -d``, ``cp -p``, ``rsync -t``) but that was
    written a moment ago is not stamped: its change time gives it away. SETTLE is in seconds; a file missing when
    its stamp was taken (None) is never trusted."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 5.0)
    fresh = tmp_path / "fresh.pem"
    fresh.write_bytes(b"x")
    os.utime(fresh, ns=(10**18, 10**18))  # 2001
    assert _stat_memo.settled([(fresh, _stat_memo.stamp(fresh))]) is None
    time.sleep(0.6)  # over a tenth of SETTLE
    assert _stat_memo.settled([(fresh, _stat_memo.stamp(fresh))]) is None
    assert _stat_memo.stamp(tmp_path / "gone.pem") is None
    assert _stat_memo.settled([(tmp_path / "gone.pem", None)]) is None


def test_a_certificate_store_folder_is_read_again_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store folder can gain a file with no stamped file changing: store settings are never served from stamps (a
    second file holding the served identity is refused on the next compile)."""
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    root = CA.root("store memo root")
    leaf = root.leaf("memo.test", dns=["memo.test"])
    store = tmp_path / "store"
    store.mkdir()
    write_pem(store / "a.pem", leaf.key_pem, leaf, mode=0o600)
    options = TLSOptions(certificate=leaf.thumbprint, certificate_store=str(store),
                         trusted_ca=str(write_pem(tmp_path / "ca.pem", root)))
    compile_settings(options, "server")
    write_pem(store / "copy.pem", leaf.key_pem, leaf, mode=0o600)
    with pytest.raises(ConfigError, match="two files hold the identity"):
        compile_settings(options, "server")


def test_relative_paths_in_options_follow_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context_module.clear_cache()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_pem(tmp_path / name / "ca.pem", CA.root(f"cwd {name}"))
    options = TLSOptions(trusted_ca="ca.pem")
    subjects = []
    for name in ("a", "b", "a"):
        monkeypatch.chdir(tmp_path / name)
        compiled = compile_settings(options, "client")
        subjects.append(compiled.trusted[0].subject.rfc4514_string())
    assert subjects == ["CN=cwd a", "CN=cwd b", "CN=cwd a"]


@pytest.mark.parametrize("weak", ["leaf", "intermediate"])
def test_a_weak_key_in_our_own_chain_is_a_configuration_error(tmp_path: Path, weak: str) -> None:
    """OpenSSL's security level refuses an RSA-1024 key: for our own leaf it did so with a bare library error, and
    for an intermediate only when sending it, so every handshake failed with internal_error (read by the server
    as the peer's fault). Both are a CredentialLoadError naming the certificate now, and gtls serve exits 2. With
    the chain given as a list of files, the error names the file holding the weak certificate (it said none)."""
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    root = CA.root("strength root")
    inter = root.intermediate("strength inter", key=weak_key if weak == "intermediate" else None)
    leaf = inter.leaf("localhost", dns=["localhost"], key=weak_key if weak == "leaf" else None)
    leaf_file, inter_file = write_pem(tmp_path / "leaf.pem", leaf), write_pem(tmp_path / "inter.pem", inter)
    options = {"certificate": f"{leaf_file},{inter_file}",
               "certificate-key": str(leaf.write_key(tmp_path / "key.pem")),
               "trusted-ca": str(write_pem(tmp_path / "ca.pem", root))}
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct(options, "server"))
    assert info.value.option == "certificate"
    named = "CN=strength inter" if weak == "intermediate" else "CN=localhost"
    assert named in str(info.value) and "1024-bit RSA" in str(info.value)
    weak_file = inter_file if weak == "intermediate" else leaf_file
    assert info.value.file == str(weak_file) and str(info.value).endswith(f": {weak_file}")
    flags = [item for name, value in options.items() for item in (f"--{name}", value)]
    result = run_gtls("serve", "--listen", "127.0.0.1:0", "--quiet", *flags)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # the last line; the warnings gathered on the way come first (here: the chain ends below its root)
    assert result.stderr.splitlines()[-1].startswith("gtls: config error: ") and named in result.stderr


def test_a_weak_trusted_ca_is_named_in_a_warning(tmp_path: Path) -> None:
    legacy = CA.root("legacy root", key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    current = CA.root("current root")
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "ca.pem", legacy, current))},
                                      "client"))
    (warning,) = [w for w in compiled.warnings if "legacy root" in w]
    assert warning.startswith("trusted-ca: CN=legacy root has a 1024-bit RSA key") and "untrusted" in warning
    assert warning.endswith(str(tmp_path / "ca.pem"))  # the file, as the other trusted-ca warnings name it
    assert not [w for w in compiled.warnings if "current root" in w]


def _sha1_signed_leaf(tmp_path: Path, root: CA) -> Path:
    """A leaf for localhost signed by ``root`` with SHA-1. cryptography no longer signs with SHA-1, so the openssl
    command does it, with the root's key."""
    root_cert, root_key = write_pem(tmp_path / "root.pem", root), root.write_key(tmp_path / "root-key.pem")
    leaf_key = tmp_path / "sha1-key.pem"
    leaf = tmp_path / "sha1.pem"
    csr = tmp_path / "sha1.csr"
    run = partial(subprocess.run, check=True, capture_output=True, timeout=30)
    run([OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(leaf_key), "-subj", "/CN=localhost", "-out", str(csr)])
    run([OPENSSL, "x509", "-req", "-in", str(csr), "-CA", str(root_cert), "-CAkey", str(root_key),
         "-set_serial", "7", "-days", "30", "-sha1", "-out", str(leaf)])
    os.chmod(leaf_key, 0o600)
    return leaf


def test_a_sha1_signature_in_our_chain_or_the_peers_is_weak_on_every_openssl(tmp_path: Path) -> None:
    """OpenSSL 4.0's SSL_CTX_use_certificate stopped judging signature hashes: a SHA-1-signed leaf compiled, gtls
    check said ok, and every client then refused the server ("CA signature digest algorithm too weak"); verify_chain
    accepted what the handshake refuses. SHA-1 is refused on every security level gtls can run at."""
    root = CA.root("sha1 root", key_type="rsa")
    leaf = _sha1_signed_leaf(tmp_path, root)
    options = {"certificate": str(leaf), "certificate-key": str(tmp_path / "sha1-key.pem"),
               "trusted-ca": str(tmp_path / "root.pem")}
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct(options, "server"))
    assert "CN=localhost" in str(info.value) and "signed with SHA1" in str(info.value)
    peer = x509.load_pem_x509_certificate(leaf.read_bytes())
    with pytest.raises(PeerVerificationError) as refused:
        verify_chain([peer], direct({"trusted-ca": str(tmp_path / "root.pem")}, "client"), "client")
    assert refused.value.reason == "untrusted" and refused.value.depth == 0


def test_a_sha1_self_signed_root_is_a_root(tmp_path: Path) -> None:
    """OpenSSL never judges a trust anchor's own signature, and many roots of the system bundle (DigiCert Global Root
    CA, GlobalSign Root CA, …) sign themselves with SHA-1. cryptography will not check a SHA-1 signature, so gtls took
    such a root for "not self-signed": a full chain ending in one was refused as weak, and as trusted-ca each was
    named "neither a CA nor self-signed" and "paths through it fail", though handshakes through it pass."""
    root_key, root_file = tmp_path / "root-key.pem", tmp_path / "root.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(root_key), "-sha1",
                    "-subj", "/CN=old sha1 root", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(root_file)],
                   check=True, capture_output=True, timeout=30)
    root_cert = x509.load_pem_x509_certificate(root_file.read_bytes())
    assert root_cert.signature_hash_algorithm is not None and root_cert.signature_hash_algorithm.name == "sha1"
    root = CA(root_cert, load_pem_private_key(root_key.read_bytes(), None), None)  # type: ignore[arg-type]
    inter = root.intermediate("sha256 inter")
    leaf = inter.leaf("localhost", dns=("localhost",))
    full_chain = write_pem(tmp_path / "fullchain.pem", leaf, inter, root_cert.public_bytes(Encoding.PEM))
    options = {"certificate": str(full_chain), "certificate-key": str(leaf.write_key(tmp_path / "leaf-key.pem")),
               "trusted-ca": str(root_file)}
    server = compile_context(direct(options, "server"))
    assert [c.subject for c in server.chain] == [leaf.subject, inter.subject, root_cert.subject]
    client = compile_context(direct({"trusted-ca": str(root_file)}, "client"))
    assert not [w for w in (*server.warnings, *client.warnings) if "sha1 root" in w], (server.warnings,
                                                                                         client.warnings)
    verify_chain([leaf.cert, inter.cert], direct({"trusted-ca": str(root_file)}, "client"), "client")
    with gtls_server(server) as srv:
        result = s_client(srv.port, "-CAfile", root_file, "-verify_return_error", "-servername", "localhost")
    assert result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout, result.stderr
    assert [o.ok for o in srv.outcomes] == [True]


def test_a_legacy_signature_is_checked_only_as_what_it_claims(tmp_path: Path) -> None:
    """The SHA-1 fallback above verifies what cryptography will not check, but only for the legacy algorithm the
    certificate names, with the key type it needs and the same algorithm inside and outside the signed part, as
    OpenSSL requires: a certificate whose outer algorithm was changed is not self-signed (OpenSSL: signature
    failure)."""
    from gtls.pki.certs import self_signed

    root_key, root_file = tmp_path / "root-key.pem", tmp_path / "root.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(root_key), "-sha1",
                    "-subj", "/CN=legacy root", "-days", "30", "-out", str(root_file)],
                   check=True, capture_output=True, timeout=30)
    genuine = x509.load_pem_x509_certificate(root_file.read_bytes())
    assert self_signed(genuine)
    sha1_rsa = bytes.fromhex("300d06092a864886f70d0101050500")
    der = genuine.public_bytes(Encoding.DER)
    assert der.count(sha1_rsa) == 2  # inside the signed part, and outside it
    at = der.rindex(sha1_rsa)
    for outer in ("300d06092a864886f70d01010b0500",  # sha256WithRSAEncryption: inner and outer differ
                  "300906072a8648ce3d0401"):  # ecdsa-with-SHA1, on an RSA key
        changed = der[:at] + bytes.fromhex(outer) + der[at + len(sha1_rsa):]
        changed = _fix_outer_length(changed)
        assert not self_signed(x509.load_der_x509_certificate(changed)), outer


def _fix_outer_length(der: bytes) -> bytes:
    """Re-encode the outer SEQUENCE's length after its contents changed size (a two-byte long form, 0x82)."""
    assert der[0] == 0x30 and der[1] == 0x82
    body = der[4:]
    return bytes([0x30, 0x82]) + len(body).to_bytes(2, "big") + body


SYSTEM_TRUST = "system trust store"


@pytest.mark.parametrize(
    ("role", "extra", "warned"),
    [
        ("client", {}, True),  # spec E8: a windows client with nothing configured
        ("client", {"tls-target-name-check": "host"}, False),
        ("client", {"trusted-ca": "CA"}, False),
        ("server", {"tls-mutual": "1"}, True),
        ("server", {"tls-mutual": "1", "trusted-ca": "CA"}, False),
        ("server", {}, False),  # simple TLS: clients are not verified at all
    ],
)
def test_windows_profile_warns_when_the_system_trust_store_authenticates_anyone(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    role: str, extra: dict[str, str], warned: bool
) -> None:
    """Profile windows without trusted-ca verifies peers against the system trust store (spec §1.6): hundreds of
    public CAs. A mutual-TLS server then accepts a client certificate any of them issued, to anyone; a client without
    the name check accepts any certificate they issued, for any name (E8). Both as specified, so not refused, but
    never silent: the warning says what is accepted and what to set."""
    monkeypatch.setenv("SSL_CERT_FILE", str(files["ca"]))  # the "system" store: this test's root
    monkeypatch.setenv("SSL_CERT_DIR", str(files["ca"].parent / "no-such-dir"))
    context_module.clear_cache()
    request.addfinalizer(context_module.clear_cache)
    opts = {key: str(files["ca"]) if value == "CA" else value for key, value in extra.items()}
    if role == "server":
        opts.update({"certificate": str(files["server"]), "certificate-key": str(files["server_key"])})
    compiled = compile_context(direct(opts, role, profile="windows"))
    found = [w for w in compiled.warnings if SYSTEM_TRUST in w]
    assert bool(found) is warned, compiled.warnings
    if warned:
        advice = "trusted-ca" if role == "server" else "tls-target-name-check=host"
        assert advice in found[0], found
    # The same settings under unix never mention it (a unix client or mutual server needs trusted-ca anyway).
    if "trusted-ca" in opts:
        assert not [w for w in compile_context(direct(opts, role)).warnings if SYSTEM_TRUST in w]


def test_a_windows_mutual_server_without_trusted_ca_verifies_clients_against_the_system_store(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Spec §1.6 on the wire: a windows server needs only certificate and key; with tls-mutual=1 and no trusted-ca
    its clients are verified against OpenSSL's system store (here this test's root, through SSL_CERT_FILE): a client
    of that root is accepted, one of another root refused as untrusted."""
    monkeypatch.setenv("SSL_CERT_FILE", str(files["ca"]))
    monkeypatch.setenv("SSL_CERT_DIR", str(files["ca"].parent / "no-such-dir"))
    context_module.clear_cache()
    request.addfinalizer(context_module.clear_cache)
    compiled = compile_context(direct({"certificate": str(files["server"]), "certificate-key": str(files["server_key"]),
                                       "tls-mutual": "1"}, "server", profile="windows"))
    with gtls_server(compiled) as srv:
        for name in ("client", "stranger"):
            s_client(srv.port, "-cert", files[name], "-key", files[f"{name}_key"], "-CAfile", files["ca"])
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(True, None), (False, "untrusted")]


MLDSA = Path(__file__).parent / "data" / "mldsa"  # made by its make.py (cryptography 47+)


def test_a_chain_signed_with_an_algorithm_cryptography_cannot_name_but_openssl_knows_compiles(tmp_path: Path) -> None:
    """An EC intermediate signed by an ML-DSA root: OpenSSL 3.5 knows ML-DSA, cryptography 46 cannot name it. The
    strength check took "cryptography cannot name it" for "unknown to OpenSSL too" and refused the server's own
    chain as weak; only an algorithm OpenSSL does not know either is. The ML-DSA root itself, as trusted-ca, is
    readable from cryptography 47 on; before, it is refused as unsupported, not as malformed."""
    key = tmp_path / "key.pem"
    key.write_bytes((MLDSA / "key.pem").read_bytes())
    key.chmod(0o600)
    ca = CA.root("other root")
    server = compile_context(direct({"certificate": str(MLDSA / "chain.pem"), "certificate-key": str(key),
                                     "trusted-ca": str(write_pem(tmp_path / "ca.pem", ca))}, "server"))
    assert [c.subject.rfc4514_string() for c in server.chain] == ["CN=localhost", "CN=gtls test EC intermediate"]
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa  # noqa: F401 - cryptography 47 and later
    except ImportError:
        unsupported = (r"unsupported certificate in PEM block 1 \(cryptography [0-9.]+ cannot read its key: "
                       r"Unknown key type.*newer")
        with pytest.raises(CredentialLoadError, match=unsupported):
            compile_context(direct({"trusted-ca": str(MLDSA / "root.pem")}, "client"))
    else:
        compile_context(direct({"trusted-ca": str(MLDSA / "root.pem")}, "client"))


def _system_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """An empty CA folder as the whole system store of profile windows (SSL_CERT_DIR; SSL_CERT_FILE names no file),
    with stamps trusted at once (``_stat_memo.SETTLE`` 0), so a cache hit after it is stat calls only."""
    folder = tmp_path / "certs"
    folder.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))
    monkeypatch.setattr(_stat_memo, "SETTLE", 0.0)
    context_module.clear_cache()
    request.addfinalizer(context_module.clear_cache)
    return folder


def _add_root(folder: Path, name: str) -> tuple[CA, Certified]:
    """A new root in ``folder`` (``name``.pem, then ``openssl rehash``, which links it as ``<subject hash>.0``: what
    OpenSSL's folder lookup opens), and a localhost leaf it issued."""
    time.sleep(0.05)  # past the file system's time tick: the folder's change shows in its stamp
    root = CA.root(name)
    root.write_cert(folder / f"{name}.pem")
    subprocess.run([OPENSSL, "rehash", str(folder)], check=True, capture_output=True, timeout=30)
    assert len(list(folder.glob("*.0"))) == len(list(folder.glob("*.pem")))
    return root, root.leaf("localhost", dns=["localhost"])


def _trusted_over_the_wire(compiled: CompiledContext, leaf: Certified, tmp_path: Path) -> str | None:
    """None when a gtls client on ``compiled`` accepts an openssl s_server serving ``leaf``; else the reason."""
    cert, key = leaf.write_cert(tmp_path / "leaf.pem"), leaf.write_key(tmp_path / "leaf-key.pem")
    with s_server("-cert", cert, "-key", key) as server:
        conn, error = client_handshake(compiled, server.port, server_hostname="localhost")
        close(conn)
    return error.reason if error is not None else None


def test_a_windows_handshake_reads_no_system_ca_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Spec §1.1 and §1.6: the system store's CA folder is read when the context is compiled. OpenSSL's
    set_default_verify_paths searched it by name hash during each handshake, so a root added to the folder was
    trusted by contexts compiled before (spec: changed files count only once a context is rebuilt). A root there at
    compile time is trusted over the wire and by verify_chain; one added later only by a context compiled after,
    which compile_context builds because the folder's stamp changed (an unchanged folder is a cache hit)."""
    folder = _system_folder(tmp_path, monkeypatch, request)
    first_root, first_leaf = _add_root(folder, "system root one")
    settings = direct({"tls-target-name-check": "host"}, "client", profile="windows")
    before = compile_context(settings)
    reads = context_module.STATS.file_reads
    assert compile_context(settings) is before and context_module.STATS.file_reads == reads  # stat calls only
    assert _trusted_over_the_wire(before, first_leaf, tmp_path) is None
    assert verify_chain([first_leaf.cert], before, "client", "localhost")[-1] == first_root.cert

    second_root, second_leaf = _add_root(folder, "system root two")
    assert _trusted_over_the_wire(before, second_leaf, tmp_path) == "untrusted"
    with pytest.raises(PeerVerificationError) as refused:
        verify_chain([second_leaf.cert], before, "client", "localhost")
    assert refused.value.reason == "untrusted"

    after = compile_context(settings)
    assert after is not before
    for root, leaf in ((first_root, first_leaf), (second_root, second_leaf)):
        assert _trusted_over_the_wire(after, leaf, tmp_path) is None
        assert verify_chain([leaf.cert], after, "client", "localhost")[-1] == root.cert


def test_a_windows_mutual_server_trusts_the_system_ca_folder_it_was_compiled_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The server side of the same: clients of a root of the folder are accepted, of a root added after refused."""
    folder = _system_folder(tmp_path, monkeypatch, request)
    _, known = _add_root(folder, "client root one")
    server_leaf = CA.root("server root").leaf("localhost", dns=["localhost"])
    compiled = compile_context(direct({"certificate": str(server_leaf.write_cert(tmp_path / "server.pem")),
                                       "certificate-key": str(server_leaf.write_key(tmp_path / "server-key.pem")),
                                       "tls-mutual": "1"}, "server", profile="windows"))
    _, later = _add_root(folder, "client root two")
    with gtls_server(compiled) as srv:
        for name, leaf in (("known", known), ("later", later)):
            cert, key = leaf.write_cert(tmp_path / f"{name}.pem"), leaf.write_key(tmp_path / f"{name}-key.pem")
            s_client(srv.port, "-cert", cert, "-key", key)
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(True, None), (False, "untrusted")]


def test_the_system_store_skips_what_is_not_a_certificate_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Hashed entries that hold no readable certificate are skipped, summed up in one warning; the rest is trusted.
    Files the folder lookup never opened (not named by a hash) are not read: copying a root there trusted nothing."""
    folder = _system_folder(tmp_path, monkeypatch, request)
    root, leaf = _add_root(folder, "system root")
    (folder / "deadbeef.0").write_text("not a certificate\n")
    (folder / "deadbeef.1").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    CA.root("copied root").write_cert(folder / "copied.crt")
    compiled = compile_context(direct({}, "client", profile="windows"))
    skipped = [w for w in compiled.warnings if w.startswith("system CA certificates")]
    assert len(skipped) == 1 and "skipped 2 item(s)" in skipped[0] and "deadbeef.0" in skipped[0], skipped
    assert [a.to_cryptography() for a in compiled.system_anchors] == [root.cert]
    assert verify_chain([leaf.cert], compiled, "client")[-1] == root.cert


def _anchor_names(compiled: CompiledContext) -> list[str]:
    return [a.to_cryptography().subject.rfc4514_string() for a in compiled.system_anchors]


def _skipped(compiled: CompiledContext) -> list[str]:
    return [w for w in compiled.warnings if w.startswith("system CA certificates")]


def test_the_system_store_reads_only_what_openssls_folder_lookup_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """SSL_CERT_DIR lists folders as OpenSSL splits it (``:``); of each, only ``<hash>.<n>`` entries are read: a
    root copied as a CRL entry (``.r0``) or with a suffix (``.0.bak``) is not trusted. A root in both the CA file
    and a folder is one anchor."""
    folder = _system_folder(tmp_path, monkeypatch, request)
    other = tmp_path / "more-certs"
    other.mkdir()
    _add_root(other, "second folder root")
    monkeypatch.setenv("SSL_CERT_DIR", f"{folder}{os.pathsep}{other}")
    both = CA.root("file and folder root")
    both.write_cert(folder / "0badf00d.0")
    monkeypatch.setenv("SSL_CERT_FILE", str(both.write_cert(tmp_path / "bundle.pem")))
    CA.root("crl entry root").write_cert(folder / "0badf00d.r0")
    CA.root("suffixed root").write_cert(folder / "0badf00d.0.bak")
    compiled = compile_context(direct({}, "client", profile="windows"))
    assert _anchor_names(compiled) == ["CN=file and folder root", "CN=second folder root"]
    assert _skipped(compiled) == []


def test_the_system_store_caps_the_entries_read_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    folder = _system_folder(tmp_path, monkeypatch, request)
    monkeypatch.setattr(system_trust, "MAX_ENTRIES", 2)
    for index in range(2):
        CA.root(f"capped root {index}").write_cert(folder / f"0000000{index}.0")
    compiled = compile_context(direct({}, "client", profile="windows"))
    assert len(compiled.system_anchors) == 2 and _skipped(compiled) == []  # exactly the cap: all read
    CA.root("capped root 2").write_cert(folder / "00000002.0")
    compiled = compile_context(direct({"sec-protocol": "TLSv13"}, "client", profile="windows"))
    assert _anchor_names(compiled) == ["CN=capped root 0", "CN=capped root 1"]
    assert _skipped(compiled) == [f"system CA certificates: skipped 1 item(s) (first: {folder}: only the first 2 of "
                                  "3 hashed entries read); 2 read"]


def test_the_system_store_names_what_it_could_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A CA file that cannot be read (here a folder) and an entry with only a damaged block: one item each."""
    folder = _system_folder(tmp_path, monkeypatch, request)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path))
    (folder / "0badf00d.0").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")  # truncated
    compiled = compile_context(direct({}, "client", profile="windows"))
    assert _skipped(compiled) == [f"system CA certificates: skipped 2 item(s) (first: {tmp_path}: is a directory, "
                                  "not a PEM file); 0 read"]
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    compiled = compile_context(direct({}, "client", profile="windows"))
    assert _skipped(compiled) == [f"system CA certificates: skipped 1 item(s) (first: {folder / '0badf00d.0'}: "
                                  "damaged CERTIFICATE block 1); 0 read"]


def test_a_new_system_store_location_is_other_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The cache keys on where the system store is read from: a changed SSL_CERT_FILE compiles anew, and a rewritten
    CA file (its stamp changed) too."""
    _system_folder(tmp_path, monkeypatch, request)
    settings = direct({}, "client", profile="windows")
    first = CA.root("first bundle root")
    monkeypatch.setenv("SSL_CERT_FILE", str(first.write_cert(tmp_path / "first.pem")))
    assert _anchor_names(compile_context(settings)) == ["CN=first bundle root"]
    second = tmp_path / "second.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(CA.root("second bundle root").write_cert(second)))
    assert _anchor_names(compile_context(settings)) == ["CN=second bundle root"]
    time.sleep(0.05)  # past the file system's time tick
    CA.root("rewritten bundle root").write_cert(second)
    assert _anchor_names(compile_context(settings)) == ["CN=rewritten bundle root"]


_WHEEL = (getattr(SSL, "_CRYPTOGRAPHY_MANYLINUX_CA_FILE", None), getattr(SSL, "_CRYPTOGRAPHY_MANYLINUX_CA_DIR", None))


@pytest.mark.skipif(tuple(p.encode() for p in _binding.default_ca_locations()) != _WHEEL,
                    reason="cryptography's OpenSSL is not the manylinux wheel's: pyOpenSSL adds no system paths")
def test_on_cryptographys_wheels_the_system_store_is_where_pyopenssl_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """With neither SSL_CERT_FILE nor SSL_CERT_DIR set, pyOpenSSL's set_default_verify_paths falls back to the
    first existing file and folder of its system lists (the wheel's compiled-in paths exist nowhere): so does the
    system store. With either variable set, it does not."""
    folder = _system_folder(tmp_path, monkeypatch, request)
    first, second = CA.root("first system bundle root"), CA.root("second system bundle root")
    bundles = [str(tmp_path / "missing.pem"), str(first.write_cert(tmp_path / "a.pem")),
               str(second.write_cert(tmp_path / "b.pem"))]
    monkeypatch.setattr(SSL, "_CERTIFICATE_FILE_LOCATIONS", bundles)
    monkeypatch.setattr(SSL, "_CERTIFICATE_PATH_LOCATIONS", [str(tmp_path / "missing"), str(folder)])
    _, leaf = _add_root(folder, "system folder root")
    monkeypatch.delenv("SSL_CERT_FILE")
    assert _anchor_names(compile_context(direct({}, "client", profile="windows"))) == ["CN=system folder root"]
    monkeypatch.delenv("SSL_CERT_DIR")
    compiled = compile_context(direct({}, "client", profile="windows"))
    assert _anchor_names(compiled) == ["CN=first system bundle root", "CN=system folder root"]
    assert _trusted_over_the_wire(compiled, leaf, tmp_path) is None
    assert _binding.wheel_fallback_locations()[0] == tuple(bundles)
    monkeypatch.setattr(_binding, "default_ca_locations", lambda: ("/usr/lib/ssl/cert.pem", "/usr/lib/ssl/certs"))
    assert _binding.wheel_fallback_locations() == ((), ())  # another OpenSSL's paths: pyOpenSSL adds none


def test_a_system_store_path_below_a_file_is_absent_and_the_context_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """SSL_CERT_FILE below a regular file (NotADirectoryError) is as absent as a missing one: settings whose store
    has not changed are a cache hit (stat calls), not a full compile with every file of the store read again."""
    _system_folder(tmp_path, monkeypatch, request)
    (tmp_path / "plain-file").write_text("not a folder\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "plain-file" / "bundle.pem"))
    settings = direct({}, "client", profile="windows")
    first = compile_context(settings)
    reads = context_module.STATS.file_reads
    assert compile_context(settings) is first and context_module.STATS.file_reads == reads
