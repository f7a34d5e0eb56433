"""Hostile peers (issue #7, part 1) against ``gtls serve`` (a subprocess; its stderr lines) and the library listener
(``serve_tls_over_tcp`` in a thread; its ``on_handshake`` events, ``gtls.server`` log and what the handler sees);
and hostile servers against the client (the end of this file).

Every case is a real connection over 127.0.0.1 (hand-built bytes on raw sockets, pyOpenSSL driven byte by byte,
Python's ssl). Each is a generator: it opens the hostile connection and yields its local port at the point where
the attack is in progress (stalled, half-sent, established); a correct client must then complete a handshake and an
echo; the case then finishes its attack and yields again with its socket still open, while the test waits for the
word the connection ends with. The two servers are shared by all cases (module scope) and told apart by peer port.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

import gtls
from gtls.ending import END_WORDS, classify_ending
from gtls.pki import hostcheck
from gtls.testing import CA, DemoPKI, write_pem
from tests import hostile as h
from tests.peers import (
    LOCALHOST,
    Running,
    error_line,
    gtls_serve,
    openssl_server,
    raw_server,
    run_gtls,
    version_4_certificate,
)

HANDSHAKE_TIMEOUT = 1.5
IDLE_TIMEOUT = 1.0
#: Enough application data that a peer which never reads fills both socket buffers and the server's send blocks.
FLOOD_LIMIT = 64 << 20

Case = Callable[[int], Iterator[int | None]]


# --- the cases -----------------------------------------------------------------------------------------------------


def raw_bytes(data: bytes, *, half_first: bool = True) -> Case:
    """Send the first half of ``data``, (in progress), the rest, then close."""

    def case(port: int) -> Iterator[int | None]:
        with h.dial(port) as sock:
            cut = len(data) // 2 if half_first else len(data)
            sock.sendall(data[:cut])
            yield h.local_port(sock)
            with contextlib.suppress(OSError):  # the server may have given up on the first half already
                sock.sendall(data[cut:])
                sock.shutdown(2)
            yield None

    return case


def truncated_record_then_eof(port: int) -> Iterator[int | None]:
    with h.dial(port) as sock:
        sock.sendall(h.truncated_record())
        yield h.local_port(sock)  # the server waits for the rest of the record
        sock.shutdown(1)  # FIN: the record will never be complete
        yield None


def stall_before_handshake(port: int) -> Iterator[int | None]:
    with h.dial(port) as sock:
        yield h.local_port(sock)
        yield None  # says nothing until the server gives up


def stall_mid_handshake(port: int) -> Iterator[int | None]:
    with h.dial(port) as sock:
        sock.sendall(h.client_hello()[:40])
        yield h.local_port(sock)
        yield None


def reset_mid_handshake(port: int) -> Iterator[int | None]:
    sock = h.dial(port)
    try:
        client = h.MemoryClient(sock)
        sock.sendall(client.hello())
        sock.recv(65536)  # the server's first flight: it now waits for our Finished
        yield h.local_port(sock)
    finally:
        h.reset(sock)
    yield None


def hello_one_byte_at_a_time(port: int) -> Iterator[int | None]:
    with h.dial(port) as sock:
        client = h.MemoryClient(sock)
        hello = client.hello()
        h.send_slowly(sock, hello[: len(hello) // 2])
        yield h.local_port(sock)
        h.send_slowly(sock, hello[len(hello) // 2 :])
        client.handshake(one_byte_writes=True)
        assert client.echo(b"slow but correct") == b"slow but correct"
        client.conn.shutdown()  # close_notify: a clean end
        client.flush()
        h.read_until_closed(sock)  # the server has finished with this connection (and logged whatever it logs)
        yield None


def established(abuse: Callable[[h.MemoryClient], None], *, max_version: int | None = None,
                first_echo: bool = True) -> Case:
    """Complete a handshake and one echo (or none), (in progress: an established idle connection), then ``abuse``.
    Without the echo the abuse hits the server's first record after the handshake."""

    def case(port: int) -> Iterator[int | None]:
        sock = h.dial(port)
        try:
            client = h.MemoryClient(sock, max_version=max_version)
            client.handshake()
            if first_echo:
                assert client.echo(b"first") == b"first"
            yield h.local_port(sock)
            abuse(client)
            yield None
        finally:
            sock.close()

    return case


def close_without_close_notify(client: h.MemoryClient) -> None:
    client.sock.close()


def reset_mid_data(client: h.MemoryClient) -> None:
    client.sock.settimeout(0.5)
    with contextlib.suppress(OSError):
        for _ in range(16):  # up to 256 KiB the server is busy echoing back to us
            client.conn.send(b"d" * 16384)
            client.sock.sendall(client.pending_output())
    h.reset(client.sock)


def garbage_record(client: h.MemoryClient) -> None:
    client.sock.sendall(h.record(0x17, h.random_bytes(7, 64), 0x0303))


def garbage_behind_a_full_record(client: h.MemoryClient) -> None:
    """A full 16 KiB record and a garbage one in one go: the server reads the garbage ahead with the good record,
    and its echo of the good record then fails; the word is still the garbage's, not the failed write's."""
    client.conn.send(b"f" * 16384)
    client.sock.sendall(client.pending_output() + h.record(0x17, h.random_bytes(9, 64), 0x0303))


def oversized_record(client: h.MemoryClient) -> None:
    client.sock.sendall(h.oversized_record(0x17))


def truncated_record(client: h.MemoryClient) -> None:
    client.sock.sendall(h.record(0x17, h.random_bytes(8, 200), 0x0303)[:60])
    client.sock.shutdown(1)


def corrupted_server_record(client: h.MemoryClient) -> None:
    client.send(b"echo me")
    error = client.receive_corrupted()  # the client answers with a fatal bad_record_mac alert
    assert "bad record mac" in str(error)


def unrecognized_name_alert(client: h.MemoryClient) -> None:
    """TLS 1.3 unrecognized_name (112; fatal in TLS 1.3 whatever its level), whose OpenSSL text lacks "alert"."""
    client.send_tls13_alerts(112)


def tls13_no_renegotiation_alert(client: h.MemoryClient) -> None:
    """no_renegotiation (100) in TLS 1.3, which has no renegotiation: just an alert (fatal in TLS 1.3)."""
    client.send_tls13_alerts(100)


def tls12_unprompted_no_renegotiation(client: h.MemoryClient) -> None:
    """A no_renegotiation warning gtls never asked for: OpenSSL ends the connection on it all the same."""
    client.send_tls12_alert(1, 100)


def tls12_fatal_close_notify(client: h.MemoryClient) -> None:
    """close_notify sent at fatal level: OpenSSL reports it with an empty reason text."""
    client.send_tls12_alert(2, 0)


def renegotiate(client: h.MemoryClient) -> None:
    error = client.renegotiate()
    assert error is not None and "no renegotiation" in str(error), error  # OpenSSL gave up: gtls refused


def trickle_record(client: h.MemoryClient) -> None:
    """Slowloris inside a record: one byte of a record every 0.2 s, never a whole record, past the idle limit."""
    client.conn.send(b"never complete")
    data = client.pending_output()
    with contextlib.suppress(OSError):  # the server hangs up while we trickle
        h.send_slowly(client.sock, data[: int((IDLE_TIMEOUT + 0.6) / 0.2)], pause=0.2)


def say_nothing(client: h.MemoryClient) -> None:
    """Slowloris after the handshake: the connection stays open and silent."""


def never_read(client: h.MemoryClient) -> None:
    """Send until our send blocks (the server's echo of it fills our receive buffer; we never read)."""
    client.sock.settimeout(0.3)
    sent = 0
    with contextlib.suppress(TimeoutError):
        while sent < FLOOD_LIMIT:
            client.conn.send(b"w" * 16384)
            chunk = client.pending_output()
            client.sock.sendall(chunk)
            sent += len(chunk)
    assert sent < FLOOD_LIMIT, "the server kept reading without being able to write back"


#: OpenSSL 3.x still parses an SSLv2-compatible ClientHello and refuses its version; OpenSSL 4.0 no longer reads
#: SSLv2 framing at all, so the same bytes are simply not TLS to it. Either way the peer is refused at once.
SSLV2_WORD = "protocol-version" if SSL.OPENSSL_VERSION_NUMBER < 0x40000000 else "not-tls"

#: (id, outcome, word, case): outcome "failed" = the handshake failed with word; "ended" = the established
#: connection ended with word; "ok" = a clean connection (nothing logged beyond its handshake line).
CASES: list[tuple[str, str, str, Case]] = [
    ("random-bytes", "failed", "not-tls", raw_bytes(h.random_bytes(1))),
    ("plaintext-http", "failed", "not-tls", raw_bytes(h.http_request())),
    ("sslv2-client-hello", "failed", SSLV2_WORD, raw_bytes(h.sslv2_client_hello())),
    ("tls1.0-client-hello", "failed", "protocol-version", raw_bytes(h.legacy_client_hello(0x0301))),
    ("tls1.1-client-hello", "failed", "protocol-version", raw_bytes(h.legacy_client_hello(0x0302))),
    ("oversized-record", "failed", "not-tls", raw_bytes(h.oversized_record(), half_first=False)),
    # OpenSSL has no text for an alert number it does not know: the message was pyOpenSSL's raw error queue
    ("nameless-fatal-alert", "failed", "not-tls",
     raw_bytes(h.client_hello() + h.record(0x15, b"\x02\xff", 0x0303), half_first=False)),
    ("truncated-record-then-eof", "failed", "eof-in-handshake", truncated_record_then_eof),
    ("stall-before-handshake", "failed", "timeout", stall_before_handshake),
    ("stall-mid-handshake", "failed", "timeout", stall_mid_handshake),
    ("reset-mid-handshake", "failed", "eof-in-handshake", reset_mid_handshake),
    ("client-hello-1-byte-writes", "ok", "", hello_one_byte_at_a_time),
    ("close-without-close-notify", "ended", "truncated", established(close_without_close_notify)),
    ("reset-mid-data", "ended", "reset", established(reset_mid_data)),
    ("garbage-record-after-handshake", "ended", "bad-record", established(garbage_record)),
    ("garbage-behind-a-full-record", "ended", "bad-record", established(garbage_behind_a_full_record)),
    ("oversized-record-after-handshake", "ended", "bad-record", established(oversized_record)),
    ("truncated-record-after-handshake", "ended", "truncated", established(truncated_record)),
    ("fatal-alert-after-handshake", "ended", "peer-alert", established(corrupted_server_record)),
    ("unrecognized-name-alert-after-handshake", "ended", "peer-alert", established(unrecognized_name_alert)),
    ("tls1.3-no-renegotiation-alert", "ended", "peer-alert", established(tls13_no_renegotiation_alert)),
    ("tls1.2-unprompted-no-renegotiation-warning", "ended", "peer-alert",
     established(tls12_unprompted_no_renegotiation, max_version=SSL.TLS1_2_VERSION)),
    ("tls1.2-fatal-close-notify", "ended", "bad-record",
     established(tls12_fatal_close_notify, max_version=SSL.TLS1_2_VERSION)),
    ("tls1.2-renegotiation", "ended", "renegotiation-refused",
     established(renegotiate, max_version=SSL.TLS1_2_VERSION)),
    ("garbage-as-first-record", "ended", "bad-record", established(garbage_record, first_echo=False)),
    ("tls1.2-renegotiation-before-any-data", "ended", "renegotiation-refused",
     established(renegotiate, max_version=SSL.TLS1_2_VERSION, first_echo=False)),
    ("silent-after-handshake", "ended", "idle-timeout", established(say_nothing)),
    ("record-trickled-after-handshake", "ended", "idle-timeout", established(trickle_record)),
    ("never-reads-while-server-writes", "ended", "idle-timeout", established(never_read)),
]
CASE_IDS = [case[0] for case in CASES]


# --- the servers ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(localhost_demo: DemoPKI) -> DemoPKI:
    return localhost_demo


@pytest.fixture(scope="module")
def cli_server(pki: DemoPKI) -> Iterator[Running]:
    with gtls_serve("--listen", f"{LOCALHOST}:0", "--certificate", f"{pki.server_chain},{pki.root_ca}",
                    "--certificate-key", str(pki.server_key), "--trusted-ca", str(pki.root_ca),
                    "--handshake-timeout", str(HANDSHAKE_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT)) as server:
        yield server


#: What the library handler saw, per peer ("host:port" -> end word, "clean" for a peer that closed properly).
HANDLER_SAW: dict[str, str] = {}


async def library_echo(stream: gtls.TLSStream) -> None:
    """Echo with the handler's own idle limit; the stream's failures are recorded and then left to the listener
    (its policy: log them with their word and go on)."""
    peer = stream.peer_address or "?"
    try:
        while True:
            with trio.fail_after(IDLE_TIMEOUT):
                data = await stream.receive_some()
            if not data:
                HANDLER_SAW[peer] = "clean"
                return
            with trio.fail_after(IDLE_TIMEOUT):
                await stream.send_all(data)
    except trio.TooSlowError as exc:
        HANDLER_SAW[peer] = classify_ending(exc).word
    except Exception as exc:
        HANDLER_SAW[peer] = classify_ending(exc).word
        raise


@pytest.fixture(scope="module")
def library(pki: DemoPKI) -> Iterator[h.LibraryServer]:
    settings = gtls.TLSOptions.from_mapping({"certificate": str(pki.server_chain),
                                             "certificate-key": str(pki.server_key),
                                             "trusted-ca": str(pki.root_ca)})
    with h.library_server(library_echo, settings, handshake_timeout=HANDSHAKE_TIMEOUT) as server:
        yield server


@contextlib.contextmanager
def run_case(case: Case, port: int, ca: Path) -> Iterator[int]:
    """Start ``case``; while its attack is in progress, a correct client must complete a handshake and an echo.
    Yields the hostile peer's port after the attack, with its socket still open; closes it afterwards."""
    steps = case(port)
    try:
        peer = next(steps)
        assert peer is not None
        assert h.correct_echo(port, ca) == b"ping\n"
        next(steps)
        yield peer
    finally:
        steps.close()


# --- the tests -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "outcome", "word", "case"), CASES, ids=CASE_IDS)
def test_gtls_serve_survives(cli_server: Running, pki: DemoPKI, name: str, outcome: str, word: str,
                             case: Case) -> None:
    with run_case(case, cli_server.port, pki.root_ca) as peer:
        if outcome == "ok":
            assert "TLSv1.3" in h.peer_line(cli_server.stderr, peer, "TLSv")
            # A clean close logs nothing more: a later connection's line comes after anything logged for this one.
            sentinel = h.dial(cli_server.port)
            with sentinel:
                sentinel.sendall(h.http_request())
                h.peer_line(cli_server.stderr, h.local_port(sentinel), "failed: not-tls")
            assert not [line for line in cli_server.stderr.lines if f":{peer}: ended" in line]
        else:
            line = h.peer_line(cli_server.stderr, peer, f"{outcome}: {word}: ")
            assert line.split(": ", 3)[3].strip(), f"no detail in {line!r}"
            assert "('SSL routines'" not in line, f"OpenSSL's raw error queue in {line!r}"
    assert cli_server.process.poll() is None
    assert not [line for line in cli_server.stderr.lines if "Traceback" in line]


@pytest.mark.parametrize(("name", "outcome", "word", "case"), CASES, ids=CASE_IDS)
def test_library_listener_survives(library: h.LibraryServer, pki: DemoPKI, name: str, outcome: str, word: str,
                                   case: Case) -> None:
    with run_case(case, library.port, pki.root_ca) as peer:
        address = f"{LOCALHOST}:{peer}"
        event = library.event(peer)
        if outcome == "failed":
            assert not event.ok and event.reason == word, event
            assert event.error is not None and event.error.reason == word
            library.log_line(f"handshake failed: {word} peer={address}:")
        else:
            assert event.ok, event
            saw = library.wait_for(lambda: HANDLER_SAW.get(address))
            assert saw == ("clean" if outcome == "ok" else word)
            if outcome == "ended" and word != "idle-timeout":
                # The handler re-raised the stream's error: the listener logged it with its word and went on.
                library.log_line(f"connection ended: {word} peer={address}:")
    assert not library.failure
    assert h.correct_echo(library.port, pki.root_ca) == b"ping\n"


def test_end_words_are_the_documented_set() -> None:
    words = {case[2] for case in CASES if case[1] == "ended"}
    assert words <= set(END_WORDS)
    assert words == set(END_WORDS) - {"closed", "error"}  # every word a peer can cause, each provoked above


# --- the library listener's policy for handler exceptions ----------------------------------------------------------


async def _start_library_server(nursery: trio.Nursery, handler: Callable[[gtls.TLSStream], object],
                                pki: DemoPKI) -> int:
    """Start ``serve_tls_over_tcp(handler)`` with the demo server credentials in ``nursery``; returns its port."""
    settings = gtls.TLSOptions.from_mapping({"certificate": str(pki.server_chain),
                                             "certificate-key": str(pki.server_key),
                                             "trusted-ca": str(pki.root_ca)})
    listeners = await nursery.start(lambda task_status: gtls.serve_tls_over_tcp(
        handler, 0, settings, host=LOCALHOST, task_status=task_status))  # type: ignore[arg-type]
    return int(listeners[0].socket.getsockname()[1])


async def _serve_with(handler: Callable[[gtls.TLSStream], object], pki: DemoPKI,
                      peer: Callable[[int], None]) -> None:
    """Serve ``handler`` and run the blocking client ``peer(port)`` against it, then a correct client."""
    async with trio.open_nursery() as nursery:
        port = await _start_library_server(nursery, handler, pki)
        with trio.fail_after(20):
            await trio.to_thread.run_sync(peer, port)
            assert await trio.to_thread.run_sync(h.correct_echo, port, pki.root_ca) == b"ping\n"
        nursery.cancel_scope.cancel()


def _reset_after_echo(port: int) -> None:
    sock = h.dial(port)
    client = h.MemoryClient(sock)
    client.handshake()
    assert client.echo(b"x") == b"x"
    h.reset(sock)
    time.sleep(0.2)  # the server notices the reset before the correct client arrives


async def test_handler_forgetting_broken_resource_error_does_not_stop_the_server(
        pki: DemoPKI, caplog: pytest.LogCaptureFixture) -> None:
    async def careless(stream: gtls.TLSStream) -> None:
        while data := await stream.receive_some():  # no except: a reset escapes the handler
            await stream.send_all(data)

    caplog.set_level("WARNING", logger="gtls.server")
    await _serve_with(careless, pki, _reset_after_echo)
    ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connection ended:")]
    assert len(ended) == 1 and ended[0].startswith("connection ended: reset peer=127.0.0.1:"), ended


async def test_handler_nursery_group_of_stream_failures_does_not_stop_the_server(
        pki: DemoPKI, caplog: pytest.LogCaptureFixture) -> None:
    async def with_nursery(stream: gtls.TLSStream) -> None:
        async def pump() -> None:
            while data := await stream.receive_some():
                await stream.send_all(data)

        async with trio.open_nursery() as nursery:  # strict exception groups: a reset arrives as a group
            nursery.start_soon(pump)

    caplog.set_level("WARNING", logger="gtls.server")
    await _serve_with(with_nursery, pki, _reset_after_echo)
    assert any(r.getMessage().startswith("connection ended: reset ") for r in caplog.records)


def _echo_attempt(port: int, *, ca: Path) -> None:
    """A correct client against a server whose handler is about to crash: whatever happens to it is fine."""
    with contextlib.suppress(OSError):
        h.correct_echo(port, ca)


async def _crash_with(handler: Callable[[gtls.TLSStream], object], pki: DemoPKI) -> None:
    """Serve ``handler`` and send one client at it; returns only by the server's own exception (the client's
    outcome is irrelevant). No second client: it could start before the crash stops the listener and then time
    out against it, adding its own error to the group."""
    async with trio.open_nursery() as nursery:
        port = await _start_library_server(nursery, handler, pki)
        with trio.fail_after(20):
            await trio.to_thread.run_sync(functools.partial(_echo_attempt, port, ca=pki.root_ca))
            await trio.sleep_forever()  # the handler's exception cancels this; fail_after if it never comes


async def test_other_handler_exceptions_still_stop_the_server(pki: DemoPKI) -> None:
    _, other_receive = trio.testing.memory_stream_pair()

    async def uses_another_stream(stream: gtls.TLSStream) -> None:
        await stream.receive_some()
        await other_receive.aclose()
        await other_receive.send_all(b"x")  # ClosedResourceError from a stream that is not this connection's

    with pytest.RaisesGroup(trio.ClosedResourceError, flatten_subgroups=True):
        await _crash_with(uses_another_stream, pki)

    async def buggy(stream: gtls.TLSStream) -> None:
        raise ValueError("a bug in the handler")

    with pytest.RaisesGroup(ValueError, flatten_subgroups=True):
        await _crash_with(buggy, pki)

    async def fails_while_handling_its_stream(stream: gtls.TLSStream) -> None:
        await stream.aclose()
        try:
            await stream.receive_some()  # this stream's own ClosedResourceError...
        except trio.ClosedResourceError:
            await other_receive.send_all(b"x")  # ...then another stream's: only its context, not this peer's failure

    with pytest.RaisesGroup(trio.ClosedResourceError, flatten_subgroups=True):
        await _crash_with(fails_while_handling_its_stream, pki)

    async def buggy_in_a_nursery(stream: gtls.TLSStream) -> None:
        async def fails() -> None:
            raise ValueError("a bug in the handler's own task")

        async with trio.open_nursery() as nursery:  # a group that is not only this stream's failures (audit 58)
            nursery.start_soon(fails)

    with pytest.RaisesGroup(ValueError, flatten_subgroups=True):
        await _crash_with(buggy_in_a_nursery, pki)


async def test_stream_used_after_close_ends_with_closed(pki: DemoPKI, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def closes_then_reads(stream: gtls.TLSStream) -> None:
        await stream.send_all(await stream.receive_some())
        await stream.aclose()
        try:
            await stream.receive_some()
        except trio.ClosedResourceError as exc:
            seen.append(classify_ending(exc).word)
            raise  # this connection's own stream: the listener logs it and goes on

    caplog.set_level("WARNING", logger="gtls.server")
    await _serve_with(closes_then_reads, pki, functools.partial(_echo_attempt, ca=pki.root_ca))
    assert seen == ["closed", "closed"]  # the echo attempt and the correct client
    assert any(r.getMessage().startswith("connection ended: closed peer=") for r in caplog.records)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_idle_timeout_must_be_positive(value: str) -> None:
    result = run_gtls("serve", "--listen", f"{LOCALHOST}:0", "--idle-timeout", value)
    assert result.returncode == 2
    assert "--idle-timeout" in error_line(result)


# --- log injection through a refused client certificate (audit a81) -------------------------------------------------

#: What a hostile client puts in its certificate's names: a forged second log line, a terminal escape, a bell, a
#: Unicode line separator and a right-to-left override.
FORGED = "\nhandshake failed: forged peer=10.0.0.1:1\x1b[2J\r\x07\u2028\u202e"
#: Characters that break or repaint a log line.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")


def forged_client(directory: Path) -> tuple[Path, Path]:
    """A client certificate from an unknown CA, both names carrying ``FORGED``; the leaf is sent alone, so the
    refusal names the issuer too ("its issuer … is neither sent by the client nor in trusted-ca")."""
    leaf = CA.root(f"evil root{FORGED}").leaf(f"evil{FORGED}", eku=("client",))
    return leaf.write_cert(directory / "forged.pem"), leaf.write_key(directory / "forged.key")


def present_certificate(port: int, cert: Path, key: Path) -> int:
    """A Python ssl client presenting ``cert`` (not verifying the server); returns its local port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(cert), str(key))
    with socket.create_connection((LOCALHOST, port), timeout=h.IO_TIMEOUT) as raw:
        local = h.local_port(raw)
        with contextlib.suppress(ssl.SSLError, OSError), context.wrap_socket(raw) as conn:
            conn.recv(100)  # TLS 1.3: the server's refusal arrives with the first read
    return local


def test_refused_client_certificate_cannot_forge_library_log_lines(pki: DemoPKI, tmp_path: Path) -> None:
    """Any client can present a self-made certificate whose subject holds a newline and escape sequences; the
    refusal logged its subject, issuer and message as they were: a forged ``handshake failed`` line of another peer
    in the server's log, and a repainted terminal. They are escaped (\\0A), and the line stays one line."""
    cert, key = forged_client(tmp_path)
    settings = gtls.TLSOptions.from_mapping({"certificate": str(pki.server_chain),
                                             "certificate-key": str(pki.server_key),
                                             "trusted-ca": str(pki.root_ca), "tls-mutual": "1"})
    with h.library_server(library_echo, settings, handshake_timeout=HANDSHAKE_TIMEOUT) as server:
        peer = present_certificate(server.port, cert, key)
        event = server.event(peer)
        assert event.reason == "untrusted" and event.error is not None
        line = server.log_line(f"handshake failed: untrusted peer={LOCALHOST}:{peer}")
        time.sleep(0.2)  # a second line for this peer would come now
        assert [r.getMessage() for r in server.records].count(line) == 1
        assert len([r for r in server.records if f"peer={LOCALHOST}:{peer}" in r.getMessage()]) == 1
    assert not UNPRINTABLE.search(line), line
    assert "CN=evil\\0Ahandshake failed: forged peer=10.0.0.1:1" in line and "\\1B[2J\\0D\\07\\E2\\80\\A8" in line
    assert "its issuer CN=evil root\\0Ahandshake failed" in line, line
    for text in (event.subject, event.error.subject, event.error.message, str(event.error), event.describe()):
        assert text is None or not UNPRINTABLE.search(text), text


def test_refused_client_certificate_cannot_forge_gtls_serve_lines(pki: DemoPKI, tmp_path: Path) -> None:
    """The same through ``gtls serve``: one ``connection from`` line, no forged one, no escape sequence."""
    cert, key = forged_client(tmp_path)
    with gtls_serve("--listen", f"{LOCALHOST}:0", "--certificate", f"{pki.server_chain},{pki.root_ca}",
                    "--certificate-key", str(pki.server_key), "--trusted-ca", str(pki.root_ca),
                    "--tls-mutual") as server:
        peer = present_certificate(server.port, cert, key)
        line = h.peer_line(server.stderr, peer, "failed: untrusted: ")
        h.peer_line(server.stderr, present_certificate(server.port, cert, key), "failed: ")  # a later line
        assert server.stop() == 0
    assert not UNPRINTABLE.search(line), line
    assert "subject CN=evil\\0Ahandshake failed" in line, line
    assert not [text for text in server.stderr.lines if "forged" in text and not text.startswith("connection from")]


# --- TLS that breaks mid-hello is not plaintext (audit a81) ---------------------------------------------------------


def hello_then_bad_record_version() -> bytes:
    """A real ClientHello in two records, the second with a record version no TLS peer uses: its first record was
    TLS, so OpenSSL answers with a protocol_version alert (plaintext gets none) and reports "wrong version number"."""
    message = h.client_hello()[5:]
    return h.record(0x16, message[:40]) + h.record(0x16, message[40:], version=0x0000)


def test_tls_broken_after_its_first_record_is_not_called_plaintext(library: h.LibraryServer) -> None:
    """OpenSSL's "wrong version number" read as plaintext: the line said the client sent "bytes that are not TLS (a
    plaintext or other protocol on this port?)", and the server skipped its linger for plaintext, closing with the
    hello's rest unread, so the client was reset right after the alert it should read. OpenSSL had sent that alert
    (s_server too): a TLS peer's broken record, "invalid TLS from the peer", and the peer reads the alert then EOF."""
    with h.dial(library.port) as sock:
        peer = h.local_port(sock)
        sock.sendall(hello_then_bad_record_version())
        answer = b""
        for _ in range(10):  # until EOF; a reset raises
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer == h.record(0x15, b"\x02\x46", 0x0303)  # fatal protocol_version, then a clean EOF
    event = library.event(peer)
    assert event.reason == "not-tls" and event.error is not None
    assert event.error.message.startswith("invalid TLS from the peer: wrong version number"), event.error.message
    line = library.log_line(f"handshake failed: not-tls peer={LOCALHOST}:{peer}:")
    assert "plaintext" not in line, line


# --- hostile servers against the client (audit 82) -----------------------------------------------------------------

#: The client's three ways onto a socket: the connector dialling an IP address (a bare socket), a TLSStream over a
#: trio.SocketStream (socket-bound) and the same stream with memory BIOs.
CLIENT_PATHS = ["ip-literal", "socket-stream", "memory-bio"]


async def _client(path: str, port: int, ca: Path, *, timeout: float) -> gtls.TLSStream:
    """A handshaken client stream to 127.0.0.1:port by ``path``, verifying ``localhost`` against ``ca``."""
    settings = gtls.TLSOptions.from_mapping({"trusted-ca": str(ca)})
    if path == "ip-literal":
        return await gtls.open_tls_over_tcp_stream(LOCALHOST, port, settings, server_hostname="localhost",
                                                   handshake_timeout=timeout)
    transport = await trio.open_tcp_stream(LOCALHOST, port)
    stream = gtls.TLSStream(transport, settings, server_hostname="localhost", handshake_timeout=timeout,
                            driver="bio" if path == "memory-bio" else "auto")
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _longest_stall(run: Callable[[], Awaitable[object]]) -> float:
    """Run ``run()`` beside a task that wakes every 10 ms; the longest the event loop kept that task waiting."""
    longest = 0.0
    last = time.monotonic()

    async def tick() -> None:
        nonlocal longest, last
        while True:
            await trio.sleep(0.01)
            now = time.monotonic()
            longest, last = max(longest, now - last), now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await trio.sleep(0.02)
        try:
            await run()
        finally:
            longest = max(longest, time.monotonic() - last)
            nursery.cancel_scope.cancel()
    return longest


@pytest.mark.parametrize("path", CLIENT_PATHS)
async def test_client_handshake_deadline_holds_against_endless_hello_requests(pki: DemoPKI, path: str) -> None:
    """A client skips each HelloRequest that comes before the server's Finished. Reading the socket itself, OpenSSL
    went on as long as they kept coming: one SSL_do_handshake call held the event loop (every task) for the whole
    flood, and the handshake deadline fired only after it (eof-in-handshake after 5 s, not timeout after 0.5 s)."""
    failure: list[BaseException] = []

    async def handshake() -> None:
        try:
            await _client(path, port, pki.root_ca, timeout=0.5)
        except gtls.HandshakeError as exc:
            failure.append(exc)

    with raw_server(h.flood_after_hello(h.record(0x16, h.hello_request(), 0x0303))) as port:
        started = time.monotonic()
        stall = await _longest_stall(handshake)
        elapsed = time.monotonic() - started
    assert failure and isinstance(failure[0], gtls.HandshakeError) and failure[0].reason == "timeout", failure
    assert elapsed < 2.0, elapsed
    assert stall < 0.3, f"the event loop stalled for {stall:.2f} s"


@pytest.mark.parametrize("path", CLIENT_PATHS)
@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3-session-tickets", "tls1.2-hello-requests"])
async def test_client_reads_give_the_event_loop_back_under_a_flood(pki: DemoPKI, path: str, tls12: bool) -> None:
    """After the handshake, records without data (TLS 1.3 session tickets; TLS 1.2 HelloRequests, each refused)
    kept one socket-bound SSL_read running while they came: a cancelled receive_some returned, and other tasks ran,
    only when the server stopped."""
    message = h.hello_request() if tls12 else h.session_ticket()
    with raw_server(h.flood_after_handshake(pki.server_chain, pki.server_key, message, tls12=tls12)) as port:
        stream = await _client(path, port, pki.root_ca, timeout=5)

        async def read() -> None:
            with trio.move_on_after(0.5), contextlib.suppress(trio.BrokenResourceError):
                await stream.receive_some()

        try:
            assert stream.tls_version == ("TLSv1.2" if tls12 else "TLSv1.3")
            started = time.monotonic()
            stall = await _longest_stall(read)
            elapsed = time.monotonic() - started
        finally:
            await trio.aclose_forcefully(stream)
    assert elapsed < 1.5, elapsed
    assert stall < 0.3, f"the event loop stalled for {stall:.2f} s"


@pytest.mark.parametrize("path", ["ip-literal", "memory-bio"])
@pytest.mark.parametrize("alert", [b"\x02\xff", b"\x02\x00"], ids=["unknown-number", "fatal-close_notify"])
async def test_client_failure_for_a_nameless_alert_is_words(pki: DemoPKI, path: str, alert: bytes) -> None:
    """A fatal alert OpenSSL has no name for (an unknown number, close_notify at fatal level) answering our
    ClientHello: OpenSSL gives no reason text, and the message was the raw "Error([('SSL routines', '', '')])"."""
    with raw_server(h.answer_hello_with(h.record(0x15, alert, 0x0303))) as port, \
            pytest.raises(gtls.HandshakeError) as caught:
        await _client(path, port, pki.root_ca, timeout=5)
    assert caught.value.reason == "not-tls"
    assert "OpenSSL gave no reason" in caught.value.message, caught.value.message
    assert "SSL routines" not in str(caught.value) and "Error(" not in str(caught.value), str(caught.value)


@pytest.mark.parametrize("version", [0x0301, 0x0302, 0x0305, 0x7F1C], ids=["tls1.0", "tls1.1", "unknown", "draft"])
async def test_client_refuses_a_version_selected_by_supported_versions_as_protocol_version(
        pki: DemoPKI, version: int) -> None:
    """A ServerHello whose supported_versions extension selects a version we do not allow is a version failure, as
    the same choice in its legacy version field is (it read not-tls: "bad protocol version number")."""
    with raw_server(h.answer_with_server_hello(version)) as port, pytest.raises(gtls.HandshakeError) as caught:
        await _client("ip-literal", port, pki.root_ca, timeout=5)
    assert caught.value.reason == "protocol-version", caught.value


@pytest.mark.parametrize("path", CLIENT_PATHS)
async def test_client_reason_is_the_refused_flight_not_the_reset_behind_it(pki: DemoPKI, path: str) -> None:
    """A server that resets the connection right behind a flight we refuse: our alert then meets the reset, and the
    failure is still the refusal (the first version of audit 82's bounded handshake reported the reset)."""
    with raw_server(h.answer_with_server_hello(0x0301, then_reset=True)) as port, \
            pytest.raises(gtls.HandshakeError) as caught:
        await _client(path, port, pki.root_ca, timeout=5)
    assert caught.value.reason == "protocol-version", caught.value


@pytest.mark.parametrize("reference", ["localhost", "other.example"])
async def test_client_name_check_without_the_private_api_reads_any_certificate_openssl_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str) -> None:
    """Without pyOpenSSL's private API the name is checked after the handshake, on cryptography's reading of the
    certificate: one with a version field of 3 (OpenSSL accepts it) raised cryptography's InvalidVersion out of the
    handshake, whatever the name. Its names are read from the DER instead, and the verdict is OpenSSL's."""
    monkeypatch.setattr(hostcheck, "AVAILABLE", False)
    root = CA.root("v4 root")
    leaf = root.leaf("localhost", dns=["localhost"])
    cert = write_pem(tmp_path / "leaf.pem", version_4_certificate(leaf, root))
    settings = gtls.TLSOptions.from_mapping({"trusted-ca": str(root.write_cert(tmp_path / "root.pem")),
                                             "tls-target-name-check": "host"})
    with openssl_server(cert=cert, key=leaf.write_key(tmp_path / "leaf.key")) as server:
        if reference == "localhost":
            stream = await gtls.open_tls_over_tcp_stream(LOCALHOST, server.port, settings, server_hostname=reference,
                                                         handshake_timeout=5)
            await stream.aclose()
            return
        with pytest.raises(gtls.PeerVerificationError) as caught:
            await gtls.open_tls_over_tcp_stream(LOCALHOST, server.port, settings, server_hostname=reference,
                                                handshake_timeout=5)
    assert caught.value.reason == "name-mismatch"
    assert "['localhost']" in caught.value.message and caught.value.subject == "CN=localhost", caught.value


def test_gtls_connect_times_out_against_endless_hello_requests(pki: DemoPKI) -> None:
    with raw_server(h.flood_after_hello(h.record(0x16, h.hello_request(), 0x0303))) as port:
        result = run_gtls("connect", f"{LOCALHOST}:{port}", "--trusted-ca", str(pki.root_ca), "--timeout", "1")
    assert result.returncode == 1
    assert error_line(result).startswith("gtls: timeout: the handshake did not complete within 1 s"), result.stderr


#: What must never reach a message, a log line or the terminal from a peer's certificate: C0/C1 controls, DEL, line
#: and paragraph separators, bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: A subject a hostile server chose: a line break, an ANSI colour, a bell, a carriage return, a C1 CSI, a
#: right-to-left override and a line separator.
_HOSTILE_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ok\n\x1b[31mred\x07\rx\x9b"),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "\u202eevil\u2028x")])


@pytest.fixture(scope="module")
def hostile_names(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A root and a localhost leaf whose names hold control characters; and a leaf with no SAN for the CN check."""
    folder = tmp_path_factory.mktemp("hostile-names")
    root = CA.root("root\n\x1b]0;retitled\x07")
    leaf = root.leaf(subject=_HOSTILE_SUBJECT, dns=["localhost"])
    bare = root.leaf(subject=_HOSTILE_SUBJECT)  # no subjectAltName: its CN is the name checked
    return {"root": write_pem(folder / "root.pem", root.cert_pem), "leaf": leaf.write_cert(folder / "leaf.pem"),
            "key": leaf.write_key(folder / "leaf.key"), "bare": bare.write_cert(folder / "bare.pem"),
            "bare_key": bare.write_key(folder / "bare.key")}


def _unescaped(text: str | None) -> list[str]:
    return sorted({f"U+{ord(char):04X}" for char in _CONTROL.findall(text or "")})


@pytest.mark.parametrize("case", ["untrusted", "name-mismatch"])
async def test_client_errors_escape_control_characters_of_the_server_certificate(
        pki: DemoPKI, hostile_names: dict[str, Path], case: str) -> None:
    """A server's certificate names reach PeerVerificationError (subject, issuer advice, presented names), and from
    there log lines and the terminal: a newline or an escape sequence in them acted there as one (audit 82)."""
    untrusted = case == "untrusted"
    cert, key = (hostile_names["leaf"], hostile_names["key"]) if untrusted else (hostile_names["bare"],
                                                                                 hostile_names["bare_key"])
    settings = gtls.TLSOptions.from_mapping(
        {"trusted-ca": str(pki.root_ca)} if untrusted
        else {"trusted-ca": str(hostile_names["root"]), "tls-target-name-check": "host"})
    with openssl_server(cert=cert, key=key, chain=hostile_names["root"]) as server, \
            pytest.raises(gtls.PeerVerificationError) as caught:
        await gtls.open_tls_over_tcp_stream(LOCALHOST, server.port, settings, server_hostname="localhost",
                                            handshake_timeout=5)
    error = caught.value
    assert error.reason == case
    for text in (str(error), error.message, error.subject, str(trio.BrokenResourceError(error))):
        assert not _unescaped(text), (_unescaped(text), text)
    assert "\\1B" in str(error)  # shown, as an RFC 4514 hex escape


def test_gtls_connect_escapes_control_characters_of_the_server_certificate(
        pki: DemoPKI, hostile_names: dict[str, Path]) -> None:
    """The failure line on stderr, and the peer chain printed on success (both the server's names)."""
    with openssl_server(cert=hostile_names["leaf"], key=hostile_names["key"], chain=hostile_names["root"]) as server:
        refused = run_gtls("connect", f"{LOCALHOST}:{server.port}", "--trusted-ca", str(pki.root_ca),
                           "--tls-target-name", "localhost")
        accepted = run_gtls("connect", f"{LOCALHOST}:{server.port}", "--trusted-ca", str(hostile_names["root"]),
                            "--tls-target-name", "localhost")
    assert refused.returncode == 1 and error_line(refused).startswith("gtls: untrusted: "), refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    printed = "subject: O=\\E2\\80\\AEevil\\E2\\80\\A8x,CN=ok\\0A\\1B[31mred\\07\\0Dx\\C2\\9B"  # RFC 4514 hex pairs
    assert printed in accepted.stdout, accepted.stdout
    for output in (refused.stderr, accepted.stdout, accepted.stderr):
        assert not _unescaped(output.replace("\n", "")), output
