"""The client connector: settings forms, SNI and the reference name (spec §7), deployment connections, and
configuration errors before any network I/O. Real gtls servers and scripted TCP peers over 127.0.0.1."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import gc
import logging
import math
import os
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from gtls import (
    ConfigError,
    HandshakeError,
    HandshakeEvent,
    InvalidOptionValue,
    PeerVerificationError,
    Resolved,
    TLSOptions,
    TLSStream,
    connect,
    direct,
    load_deployment,
    open_tls_over_tcp_stream,
    verify_chain,
)
from gtls.server import serve_tls_over_tcp
from gtls.stream import compile_settings
from gtls.testing import write_pem
from tests.peers import (
    PKI,
    python_context,
    python_ssl_server,
    raw_server,
    settled,
    silent,
    version_4_certificate,
    write_pki,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("client-pki"))


async def hello(stream: TLSStream) -> None:
    try:
        await stream.send_all(b"hello")
    except trio.BrokenResourceError:  # clients here may leave at once; a handler owns its errors, as in trio
        pass


@asynccontextmanager
async def server(options: object, events: list[HandshakeEvent], port: int = 0) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                hello, port, options, host="127.0.0.1", on_handshake=events.append, task_status=task_status
            )
        )
        yield listeners[0].socket.getsockname()[1]
        await settled()  # a TLS 1.3 client is done before the server has read its Finished: let it record the event
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("form", ["options", "resolved", "compiled"])
async def test_settings_forms(pki: PKI, form: str) -> None:
    options = pki.client_options(tls_target_name_check="host")
    settings = {
        "options": options,
        "resolved": direct(options, "client"),
        "compiled": compile_settings(options, "client"),
    }[form]
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, settings, server_hostname="localhost")
        async with stream:
            assert stream.handshake_done  # done before returning
            assert await stream.receive_some() == b"hello"
            assert stream.settings.role == "client"
            assert stream.peer_address == f"127.0.0.1:{port}"


async def test_a_server_certificate_cryptography_cannot_load_raises_value_error_and_keeps_its_der(
    pki: PKI, tmp_path: Path
) -> None:
    """OpenSSL verifies a certificate whose version field is 3; cryptography refuses to load it. The properties raised
    cryptography's InvalidVersion, which is not a ValueError, and getpeercert(binary_form=True) raised it too."""
    quirky = version_4_certificate(pki.server, pki.intermediate)
    chain = write_pem(tmp_path / "v4-server.pem", quirky, pki.intermediate.cert_pem)
    context = python_context(server=True, cert=chain, key=pki.server_key)
    with python_ssl_server(context) as peer:
        stream = await open_tls_over_tcp_stream("127.0.0.1", peer.port, pki.client_options(),
                                                server_hostname="localhost")
        async with stream:
            with pytest.raises(ValueError, match="cannot be loaded by cryptography"):
                stream.peer_certificate  # noqa: B018
            with pytest.raises(ValueError, match="cannot be loaded by cryptography"):
                stream.peer_chain  # noqa: B018
            der = stream.getpeercert(binary_form=True)
            assert der is not None and ssl.DER_cert_to_PEM_cert(der).encode() == quirky
            decoded = stream.getpeercert()
            assert decoded is not None and decoded["version"] == 4
            assert decoded["subject"] == ((("commonName", "localhost"),),)
            await stream.send_all(b"hi\n")
            assert await stream.receive_some() == b"hi\n"


async def test_server_settings_are_refused_for_a_client(pki: PKI) -> None:
    with pytest.raises(ValueError, match="server"):
        await open_tls_over_tcp_stream("127.0.0.1", 1, direct(pki.server_options(), "server"))


async def test_tls_target_name_is_sni_and_reference_when_dialling_an_ip(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    options = pki.client_options(tls_target_name_check="host", tls_target_name="localhost")
    async with server(pki.server_options(), events) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, options)
        await stream.aclose()
    assert events[0].server_name == "localhost"
    assert stream.server_name == "localhost"


async def test_ip_literal_reference_name_mismatches_and_sends_no_sni(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        with pytest.raises(PeerVerificationError) as caught:
            await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(tls_target_name_check="host"))
        # Without the name check the same dial succeeds, and no SNI goes out for an IP literal.
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())
        await stream.aclose()
    assert caught.value.reason == "name-mismatch"
    assert "tls-target-name" in caught.value.message  # the advice for IP literals
    assert caught.value.peer == f"127.0.0.1:{port}" and str(caught.value).endswith(f"; peer 127.0.0.1:{port}")
    assert events[-1].ok and events[-1].server_name is None


async def test_configuration_error_before_any_network_io(pki: PKI, tmp_path: Path) -> None:
    accepted: list[socket.socket] = []
    broken = TLSOptions.from_mapping({"trusted-ca": str(tmp_path / "missing-ca.pem")})
    with raw_server(accepted.append) as port:
        fds_before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(ConfigError) as caught:
            await open_tls_over_tcp_stream("127.0.0.1", port, broken)
        assert len(os.listdir("/proc/self/fd")) == fds_before
    assert accepted == []
    assert caught.value.option == "trusted-ca"


@pytest.mark.parametrize("host", ["bad..example", "*.example.com"])
async def test_a_dialled_host_that_cannot_be_checked_is_named_as_the_caller_gave_it(pki: PKI, host: str) -> None:
    """The error names the parameter the caller used: ``host`` when no ``server_hostname`` was given (it named
    ``server_hostname``, a parameter the caller never passed), and ``target_name`` for ``verify_chain``."""
    options = pki.client_options(tls_target_name_check="host")
    with pytest.raises(InvalidOptionValue) as caught:
        await open_tls_over_tcp_stream(host, 9, options)  # refused before any connection: nothing listens on 9
    assert caught.value.option == "host" and host in str(caught.value)
    with pytest.raises(InvalidOptionValue) as caught:
        verify_chain([pki.server.cert, pki.intermediate.cert], options, "client", target_name=host)
    assert caught.value.option == "target_name"


@pytest.mark.parametrize(
    ("extra", "server_hostname", "option"),
    [
        ({"tls-target-name": "-bad.example"}, None, "tls-target-name"),
        ({"tls-target-name": "bad..example"}, None, "tls-target-name"),
        ({"tls-target-name": "a@b.example"}, None, "tls-target-name"),
        ({}, "*.example.com", "server_hostname"),
        ({}, "bad..example", "server_hostname"),
    ],
)
async def test_a_name_that_cannot_be_checked_fails_before_any_connection(
    pki: PKI, extra: dict[str, str], server_hostname: str | None, option: str
) -> None:
    """Spec §1.1 (configuration errors come before any network I/O) for the names of spec §7: a tls-target-name
    OpenSSL cannot check is refused when the settings are compiled, and so is a dialled name under the name check,
    before the connector dials."""
    accepted: list[socket.socket] = []
    options = pki.client_options(tls_target_name_check="host", **{k.replace("-", "_"): v for k, v in extra.items()})
    with raw_server(accepted.append) as port, pytest.raises(InvalidOptionValue) as caught:
        await open_tls_over_tcp_stream("127.0.0.1", port, options, server_hostname=server_hostname)
    assert accepted == []
    assert caught.value.option == option
    if extra:
        with pytest.raises(InvalidOptionValue):
            compile_settings(options, "client")


@pytest.mark.parametrize("host", [b"127.0.0.1", b"localhost", bytearray(b"localhost")])
async def test_a_bytes_host_is_dialled_as_trio_dials_it(pki: PKI, host: bytes) -> None:
    """trio's ``open_ssl_over_tcp_stream`` takes the host as bytes too (it failed in the peer-name code here)."""
    options = pki.client_options(tls_target_name_check="host", tls_target_name="localhost")
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        stream = await open_tls_over_tcp_stream(host, port, options)
        async with stream:
            assert await stream.receive_some() == b"hello"
    with pytest.raises(ValueError, match="not ASCII"):
        await open_tls_over_tcp_stream("héllo".encode(), 1, options)


@pytest.mark.parametrize("timeout", [0, -1.0, math.inf, math.nan])
async def test_a_handshake_timeout_no_handshake_can_meet_is_refused_before_dialling(pki: PKI, timeout: float) -> None:
    """The listeners' rule, for the connector and the constructor too: a positive number of seconds or None.
    Before, 0 failed every handshake as ``timeout``, inf passed, and a negative one raised after the TCP connect."""
    accepted: list[socket.socket] = []
    with raw_server(accepted.append) as port, pytest.raises(ValueError, match="handshake_timeout"):
        await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), handshake_timeout=timeout)
    assert accepted == []
    left, right = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="handshake_timeout"):
        TLSStream(left, pki.client_options(), handshake_timeout=timeout)


@pytest.mark.parametrize("timeout", [0, -1.0, math.inf, math.nan])
async def test_a_connect_timeout_no_connect_can_meet_is_refused_before_dialling(pki: PKI, timeout: float) -> None:
    """The same rule for ``connect_timeout`` (audit 58: unchecked, 0 dialled and failed as TimeoutError, inf waited
    as long as the kernel)."""
    accepted: list[socket.socket] = []
    with raw_server(accepted.append) as port, pytest.raises(ValueError, match="connect_timeout"):
        await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), connect_timeout=timeout)
    assert accepted == []


@pytest.mark.parametrize("timeout", ["10", True, b"1"])
async def test_a_handshake_timeout_that_is_not_a_number_is_a_type_error(pki: PKI, timeout: object) -> None:
    with pytest.raises(TypeError, match="handshake_timeout must be a number"):
        await open_tls_over_tcp_stream("127.0.0.1", 1, pki.client_options(), handshake_timeout=timeout)  # type: ignore[arg-type]


async def test_plaintext_settings_are_refused(pki: PKI) -> None:
    plaintext = dataclasses.replace(direct(pki.client_options(), "client"), secure=False)
    with pytest.raises(ConfigError, match="not secure"):
        await open_tls_over_tcp_stream("127.0.0.1", 1, plaintext)


async def test_connection_refused_is_an_os_error(pki: PKI) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    with pytest.raises(OSError):
        await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())


async def test_ip_literal_is_dialled_on_a_bare_socket(pki: PKI) -> None:
    """An IP literal skips trio's socket wrappers; the stream still answers for its transport (made when asked for,
    with trio's TCP options) and works on after that."""
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())
        async with stream:
            assert stream.socket_bound
            assert stream.peer_address == f"127.0.0.1:{port}"
            transport = stream.transport_stream
            assert isinstance(transport, trio.SocketStream)
            assert transport.socket.getpeername() == ("127.0.0.1", port)
            assert transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert await stream.receive_some() == b"hello"
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
    assert events[0].ok


def _ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_literal_is_dialled_directly(pki: PKI) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(hello, 0, pki.server_options(), host="::1", task_status=task_status)
        )
        port = listeners[0].socket.getsockname()[1]
        stream = await open_tls_over_tcp_stream("::1", port, pki.client_options())
        async with stream:
            assert stream.peer_address == f"[::1]:{port}"
            assert await stream.receive_some() == b"hello"
        nursery.cancel_scope.cancel()


async def test_cancelled_while_connecting_leaves_no_descriptor(pki: PKI) -> None:
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # never accepts: one connection fills the queue, the next one's SYN goes unanswered
        port = full.getsockname()[1]
        with socket.socket() as first:
            first.connect(("127.0.0.1", port))
            fds_before = len(os.listdir("/proc/self/fd"))
            with trio.move_on_after(0.3) as scope:
                await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())
            assert scope.cancelled_caught
            assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_dialled_host_name_goes_through_happy_eyeballs(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        stream = await open_tls_over_tcp_stream(
            "localhost", port, pki.client_options(tls_target_name_check="host"), happy_eyeballs_delay=0.05
        )
        await stream.aclose()
    assert events[0].server_name == "localhost"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connect_deployment_connection(pki: PKI, tmp_path: Path) -> None:
    port = free_port()
    deploy = tmp_path / "deploy.toml"
    deploy.write_text(
        f"""
[hosts.server-host.security]
trusted-ca = "{pki.ca_file}"
certificate = "{pki.server_cert}"
certificate-key = "{pki.server_key}"

[hosts.client-host.security]
trusted-ca = "{pki.ca_file}"
tls-target-name-check = "host"

[applications.statserver]
host = "server-host"
certificate-source = "Host"
[applications.statserver.ports.default]
address = "127.0.0.1"
port = {port}
transport = "tls=1"

[applications.reporter]
host = "client-host"
certificate-source = "Host"
[applications.reporter.connections.stats]
server = "statserver"
port-id = "default"
address = "127.0.0.1"
host = "localhost"
"""
    )
    deployment = load_deployment(deploy)
    port_endpoint = deployment.port("statserver", "default")
    conn_endpoint = deployment.connection("reporter", "stats")
    events: list[HandshakeEvent] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                hello,
                port_endpoint.port,
                port_endpoint.resolved,
                host=port_endpoint.address,
                on_handshake=events.append,
                task_status=task_status,
            )
        )
        stream = await connect(conn_endpoint)
        async with stream:
            assert await stream.receive_some() == b"hello"
            assert stream.peer_certificate == pki.server.cert
            assert not stream._https_compatible
        lenient = await connect(conn_endpoint, https_compatible=True)  # the keyword open_tls_over_tcp_stream has
        async with lenient:
            assert await lenient.receive_some() == b"hello" and lenient._https_compatible
        await settled()
        nursery.cancel_scope.cancel()
    assert events[0].server_name == "localhost"  # the connection's host: SNI and reference name


async def test_a_deployment_connection_reconnects_on_the_context_it_was_set_up_with(
    pki: PKI, tmp_path: Path
) -> None:
    """Spec §1.1: the context compiled when a connection is set up "is reused by every handshake on that port or
    connection, reconnects included". A trusted-ca file rewritten (or caught half-written) between two connects of
    one Endpoint changes nothing; a connection set up again (``deployment.connection``) reads the new file."""
    stranger = write_pki(tmp_path / "stranger")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_file.read_bytes())
    deploy = tmp_path / "deploy.toml"
    deploy.write_text(
        f"""
[applications.statserver.ports.default]
port = 1
[applications.reporter.security]
trusted-ca = "{ca}"
[applications.reporter.connections.stats]
server = "statserver"
host = "localhost"
transport = "tls=1"
"""
    )
    deployment = load_deployment(deploy)
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        endpoint = dataclasses.replace(deployment.connection("reporter", "stats"), address="127.0.0.1", port=port)
        for alpn in (None, ["h2"]):  # one context per ALPN list offered
            async with await connect(endpoint, alpn_protocols=alpn) as stream:
                assert await stream.receive_some() == b"hello"
        with pytest.raises(TypeError, match="list of protocol names"):  # not "h" and "2"
            await connect(endpoint, alpn_protocols="h2")
        ca.write_bytes(stranger.ca_file.read_bytes())  # a CA that does not sign our server
        for alpn in (None, ["h2"]):  # a reconnect: still the context it was set up with
            async with await connect(endpoint, alpn_protocols=alpn) as stream:
                assert await stream.receive_some() == b"hello"
        ca.write_bytes(pki.ca_file.read_bytes()[:40])  # half-written: a reconnect does not read it
        async with await connect(endpoint) as stream:
            assert await stream.receive_some() == b"hello"
        with pytest.raises(ConfigError, match="trusted-ca"):  # set up again: the file is read again
            await connect(dataclasses.replace(deployment.connection("reporter", "stats"), address="127.0.0.1",
                                              port=port))
        ca.write_bytes(stranger.ca_file.read_bytes())
        again = dataclasses.replace(deployment.connection("reporter", "stats"), address="127.0.0.1", port=port)
        with pytest.raises(PeerVerificationError) as refused:
            await connect(again)
    assert refused.value.reason == "untrusted"
    assert [e.ok for e in events[:5]] == [True] * 5


@pytest.fixture
def jumping_clock() -> trio.testing.MockClock:
    """Virtual time that jumps to the next deadline once every task has waited 0.3 s of real time (TCP on
    loopback is done by then)."""
    return trio.testing.MockClock(autojump_threshold=0.3)


async def test_a_dialled_host_name_keeps_its_handshake_timeout(pki: PKI) -> None:
    """The happy-eyeballs path (a name, not an IP literal) bounds the handshake too (audit 58)."""
    with raw_server(silent(30)) as port, trio.fail_after(10), pytest.raises(HandshakeError) as info:
        await open_tls_over_tcp_stream("localhost", port, pki.client_options(), handshake_timeout=0.5)
    assert info.value.reason == "timeout"


async def test_the_connector_gives_up_on_a_silent_server_after_10_seconds_by_default(
    pki: PKI, jumping_clock: trio.testing.MockClock
) -> None:
    """A server that accepts TCP and never answers must not hold a caller forever: both client entry points bound
    the handshake by default (10 s, as the listeners; virtual time here)."""

    @dataclasses.dataclass
    class Target:
        address: str
        port: int
        resolved: Resolved
        server_hostname: str | None = None

    with raw_server(silent(30)) as port:
        for opening in (
            lambda: open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options()),
            lambda: connect(Target("127.0.0.1", port, direct(pki.client_options(), "client"))),
        ):
            started = trio.current_time()
            with pytest.raises(HandshakeError) as info:
                await opening()
            assert info.value.reason == "timeout"
            assert 10 <= trio.current_time() - started < 11


async def test_no_descriptor_or_task_left_behind(pki: PKI, tmp_path: Path) -> None:
    other = write_pki(tmp_path / "other")
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        fds_before = len(os.listdir("/proc/self/fd"))
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        for _ in range(20):
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options(), server_hostname="x")
            await stream.aclose()
        for _ in range(5):
            with pytest.raises(PeerVerificationError):
                await open_tls_over_tcp_stream("127.0.0.1", port, other.client_options())
        with raw_server(lambda conn: None) as closing_port:  # closes at once: eof-in-handshake
            for _ in range(3):
                with pytest.raises(HandshakeError):
                    await open_tls_over_tcp_stream("127.0.0.1", closing_port, pki.client_options())
        await trio.sleep(0.1)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        assert len(os.listdir("/proc/self/fd")) == fds_before
        assert trio.lowlevel.current_statistics().tasks_living == tasks_before


def _malloc_in_use() -> int:
    """Bytes of glibc's heap in use (``mallinfo2``): OpenSSL's allocations, which RSS shows only coarsely."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                         "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
@pytest.mark.parametrize("version", ["TLSv13", "TLSv12"])
async def test_a_connector_keeps_no_session_of_the_connections_it_made(pki: PKI, version: str) -> None:
    """Connections are freed when they end, their sessions too: OpenSSL's client session cache kept each one
    (~12 KB) until its 20,480-session limit, and nothing read them back."""
    client = compile_settings(pki.client_options(sec_protocol=version), "client")
    events: list[HandshakeEvent] = []

    async def one() -> None:
        stream = await open_tls_over_tcp_stream("127.0.0.1", port, client, server_hostname="localhost")
        async with stream:
            assert await stream.receive_some() == b"hello"  # the TLS 1.3 tickets arrive with it

    async with server(pki.server_options(sec_protocol=version), events) as port:
        for _ in range(30):
            await one()
        gc.collect()
        before = _malloc_in_use()
        for _ in range(500):
            await one()
        gc.collect()
        grown = _malloc_in_use() - before
    assert grown < 1_500_000, f"{grown / 500:.0f} bytes kept per connection"


@pytest.mark.parametrize("address", ["127.1", "0x7f.0.0.1"])
async def test_a_short_or_hex_ipv4_address_is_never_sent_as_sni(pki: PKI, address: str) -> None:
    """``127.1`` and ``0x7f.0.0.1`` reach 127.0.0.1 through the resolver, so they are addresses, not names: no SNI
    (spec §7; README names both forms)."""
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        stream = await open_tls_over_tcp_stream(address, port, pki.client_options())
        await stream.aclose()
        await settled()
    assert events[0].ok and events[0].server_name is None


async def test_the_connector_logs_load_and_handshake_warnings(pki: PKI, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Spec §5: with tls-crl-expired=warn an expired CRL is logged when the settings are compiled and on every
    handshake it lets through; a library user (no gtls command around) sees both in the log."""
    expired = pki.intermediate.crl(this_update=-10 * dt.timedelta(days=1), next_update=-5 * dt.timedelta(days=1))
    crl = tmp_path / "expired-crl.pem"
    crl.write_bytes(expired.pem)
    options = pki.client_options(tls_crl=str(crl), tls_crl_expired="warn")
    caplog.set_level(logging.WARNING, logger="gtls")
    events: list[HandshakeEvent] = []
    async with server(pki.server_options(), events) as port:
        for _ in range(2):
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, options)
            await stream.aclose()
    at_load = [r for r in caplog.records if r.name == "gtls.config" and "expired" in r.getMessage()]
    per_handshake = [r for r in caplog.records if r.name == "gtls.client"]
    assert len(at_load) == 1  # once, though compiled for each connection
    assert len(per_handshake) == 2 and all("expired" in r.getMessage() for r in per_handshake)
    # As README says: the load-time warning is not located here (settings given directly), the handshake's names
    # the peer it was given for.
    assert all(r.getMessage().endswith(f"; peer 127.0.0.1:{port}") for r in per_handshake), per_handshake


async def test_a_handshakes_warning_names_the_deployment_endpoint(pki: PKI, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """With settings from a deployment file, a handshake's warning is headed by the endpoint and level, as the
    load-time warnings are, so a program with many connections tells which one let the expired CRL through."""
    expired = pki.intermediate.crl(this_update=-10 * dt.timedelta(days=1), next_update=-5 * dt.timedelta(days=1))
    crl = tmp_path / "expired-crl.pem"
    crl.write_bytes(expired.pem)
    deploy = tmp_path / "deploy.toml"
    deploy.write_text(f"""
[applications.statserver.ports.default]
port = 1
[applications.reporter.security]
trusted-ca = "{pki.ca_file}"
tls-crl = "{crl}"
tls-crl-expired = "warn"
[applications.reporter.connections.stats]
server = "statserver"
host = "localhost"
transport = "tls=1"
""")
    caplog.set_level(logging.WARNING, logger="gtls")
    async with server(pki.server_options(), []) as port:
        endpoint = dataclasses.replace(load_deployment(deploy).connection("reporter", "stats"), address="127.0.0.1",
                                       port=port)
        async with await connect(endpoint) as stream:
            assert await stream.receive_some() == b"hello"
            located = stream.handshake_warnings
    per_handshake = [r.getMessage() for r in caplog.records if r.name == "gtls.client"]
    assert per_handshake == located and len(located) == 1
    assert located[0].startswith("applications.reporter.connections.stats: Application: tls-crl: accepted the expired")
    assert located[0].endswith(f"; peer 127.0.0.1:{port}")


@contextlib.contextmanager
def dropping_port() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, so a TCP connect waits (minutes)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(5):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            time.sleep(0.2)
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_tcp_connect_has_its_own_deadline(pki: PKI, host: str) -> None:
    """handshake_timeout starts with the handshake: against an address that drops SYNs the call waited for the
    kernel (135 s here) and raised a bare OSError. connect_timeout bounds resolution and the TCP connect, with a
    TimeoutError (an OSError, like every TCP failure)."""
    with dropping_port() as port, trio.fail_after(10):
        started = trio.current_time()
        with pytest.raises(TimeoutError, match=f"no TCP connection to {host}:{port} within 0.5 s"):
            await open_tls_over_tcp_stream(host, port, pki.client_options(), connect_timeout=0.5)
        assert trio.current_time() - started < 3


@pytest.mark.parametrize(("port", "error"),
                         [(70000, ValueError), (0, ValueError), (True, TypeError), ("443", TypeError)])
async def test_a_port_out_of_range_is_refused_before_dialling(pki: PKI, port: object, error: type[Exception]) -> None:
    """On the IP-literal path port 70000 raised OverflowError from the socket layer and True dialled port 1."""
    with pytest.raises(error):
        await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())  # type: ignore[arg-type]


def test_a_link_local_peer_address_keeps_its_zone() -> None:
    """fe80:: addresses need their zone to be dialled back; peer_address and error peers dropped it."""
    from gtls.engine import format_address

    index = socket.if_nametoindex("lo")
    assert format_address(("fe80::1", 443, 0, index)) == "[fe80::1%lo]:443"
    assert format_address(("::1", 443, 0, 0)) == "[::1]:443"
    assert format_address(("127.0.0.1", 80)) == "127.0.0.1:80"


@contextlib.contextmanager
def refusing_python_server(pki: PKI, hold: float) -> Iterator[int]:
    """A Python-ssl TLS 1.2 server demanding a client certificate: it refuses a client without one with its
    handshake_failure alert, then keeps the connection open for ``hold`` seconds before closing it."""
    context = python_context(server=True, ca=pki.ca_file, cert=pki.server_cert, key=pki.server_key,
                             require_client_cert=True, version="1.2")

    def refuse_and_hold(conn: socket.socket) -> None:
        kept = conn.dup()  # the refused handshake closes its SSLSocket: this keeps the connection open meanwhile
        try:
            with contextlib.suppress(OSError):
                context.wrap_socket(conn, server_side=True)
            time.sleep(hold)
        finally:
            kept.close()

    with raw_server(refuse_and_hold) as port:
        yield port


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_refusal_by_the_server_is_raised_at_once(pki: PKI, host: str) -> None:
    """trio raises a server's fatal alert at once; the connector lingered up to 1 s after it, reading for a server
    that had refused it and may keep the socket (audit 70). Lingering serves only a refusal of ours (our alert must
    be read before our close resets the connection); after the peer's own alert it knows why."""
    with refusing_python_server(pki, hold=1.5) as port, trio.fail_after(10):
        started = trio.current_time()
        with pytest.raises(HandshakeError) as caught:
            await open_tls_over_tcp_stream(host, port, pki.client_options())
        elapsed = trio.current_time() - started
    assert caught.value.reason == "peer-alert" and caught.value.alert == "handshake_failure"
    assert elapsed < 0.5, f"raised after {elapsed:.2f} s"
