"""gtls in both roles against GnuTLS, a TLS library that shares no code with OpenSSL: ``gnutls-cli`` as the client
of a gtls server and ``gnutls-serv --echo`` as the server of a gtls client (Debian's ``gnutls-bin``, GnuTLS 3.7.9),
over 127.0.0.1: TLS 1.2 and 1.3, ECDSA and RSA, simple and mutual TLS, checksummed data both ways, how each tool
ends a connection, renegotiation and KeyUpdate requests, post-handshake authentication, session resumption (tickets
and TLS 1.2 session IDs), early data, refused, untrusted and revoked certificates, the peer-name rule, ALPN, the
maximum fragment length, a HelloRetryRequest and version refusals. Skipped when either tool is not installed.

What GnuTLS does that shapes the assertions:

* ``gnutls-cli`` sends ``close_notify`` when its standard input ends and keeps reading until the peer's: a half
  close, in TLS 1.2 too, which gtls answers after. It exits once gtls closes. Killed, it leaves without
  ``close_notify``: ``truncated``. ``gnutls-serv`` answers ``close_notify`` with its own; SIGTERM ends it without.
* TLS 1.2 renegotiation, which gtls refuses with a ``no_renegotiation`` warning: ``gnutls-cli --rehandshake`` takes
  the warning as a warning and asks again, 16 times, then gives up with ``internal_error`` (``peer-alert`` on gtls,
  not ``renegotiation-refused``: gtls does not record its own refusals). ``gnutls-serv``'s HelloRequest gets the
  same warning, and gnutls-serv drops the connection without ``close_notify``: ``truncated``.
* In TLS 1.3 ``--rehandshake``, ``^rekey^`` and gnutls-serv's ``**REHANDSHAKE**`` are KeyUpdates asking for ours:
  gtls answers each. GnuTLS takes at most 8 KeyUpdates a second, the ones it asked for included: its 9th ``^rekey^``
  within a second makes it abort (``Too many handshake packets``), which gtls reads as ``truncated``.
* gnutls-serv's ``**REAUTH**`` (post-handshake authentication, which a gtls client never offers) fails inside
  gnutls-serv, which then sends ``internal_error``: ``peer-alert`` on gtls.
* ``gnutls-cli --earlydata`` sends its early data on resumption although gtls's tickets allow none: gtls skips it,
  the handler never sees those bytes, and gnutls-cli does not send them again.
* gtls's TLS 1.3 client sends the alert refusing a server's certificate before its own encrypted flight, in
  plaintext (OpenSSL's way): gnutls-serv reports ``Decryption has failed.``, not the alert (Java reports it
  similarly, see ``tests/test_interop_java.py``). gnutls-serv sends its session tickets right behind its flight,
  so it is still writing when gtls refuses it: it reads the alert because gtls's connector lingers (FIN after the
  alert, then it drains until the server closes); closed at once, gtls's socket answered with a reset, which
  gnutls-serv met first now and then (8 to 14 of 60 TLS 1.3 connections: ``The TLS connection was non-properly
  terminated.``).
* gnutls-serv refuses an empty TLS 1.2 client certificate with ``decode_error`` and an untrusted one with
  ``access_denied``: gtls's client names them (``peer-alert``).
* ``--recordsize=512`` negotiates a 512-byte maximum fragment: gtls's records then carry at most 512 bytes.
  (gnutls-cli 3.7.9 then sends only the first 512 bytes of each read from its standard input: its own limit, which
  the tests avoid.)
* Its name check takes wildcards and IP subjectAltNames (never an IP in the CN), like node's; names compare without
  case on both sides. ``gnutls-serv`` chooses the client's first ALPN protocol it has, gtls's server its own.
* ``gnutls-serv --echo`` answers line by line and stops a line at a NUL byte (its request buffer is a C string):
  the data test sends hex lines that way. It has no option for the address it listens on and binds the wildcard
  addresses (0.0.0.0 and ::): a small ``LD_PRELOAD`` library, compiled once with ``cc``, turns those binds into
  127.0.0.1 and ::1, so nothing listens beyond loopback (the gnutls-serv tests skip without a C compiler). Its output
  goes through ``stdbuf -oL`` so that lines can be awaited while it runs.
"""

from __future__ import annotations

import binascii
import hashlib
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from gtls import (
    HalfCloseUnsupported,
    HandshakeError,
    TLSOptions,
    TLSStream,
    classify_ending,
    open_tls_over_tcp_stream,
)
from tests.config_abuse_helpers import free_port
from tests.interop_gtls import (
    Served,
    answer_after_end,
    client_outcome,
    crl_options,
    exchange,
    gtls_client,
    gtls_server,
    noting_alpn,
    open_client,
    read_all,
    reap,
    server_options,
)
from tests.peers import INTEROP_MATRIX, LOCALHOST, PKI, SEC_PROTOCOL, write_pki

GNUTLS_CLI, GNUTLS_SERV, STDBUF = shutil.which("gnutls-cli"), shutil.which("gnutls-serv"), shutil.which("stdbuf")
pytestmark = pytest.mark.skipif(GNUTLS_CLI is None or GNUTLS_SERV is None, reason="the gnutls-cli and gnutls-serv "
                                "commands (GnuTLS) are not installed: apt-get install gnutls-bin to run the GnuTLS "
                                "interop tests")

BOTH = pytest.mark.parametrize("version", ["1.3", "1.2"])
#: GnuTLS priority strings that allow one TLS version.
PRIORITY = {"1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2", "1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3"}
BULK = 256 << 10  # bytes each way in the integrity tests
STEP = 15.0  # bound on any GnuTLS run


#: gnutls-serv binds the wildcard addresses; preloaded, this keeps it on loopback (bind() rewritten, nothing else).
LOOPBACK_BIND_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    bind_fn real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in4;
        memcpy(&in4, addr, sizeof in4);
        if (in4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&in4, sizeof in4);
        }
    } else if (addr != NULL && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, addr, sizeof in6);
        if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) {
            in6.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&in6, sizeof in6);
        }
    }
    return real(fd, addr, len);
}
"""
CC = shutil.which("cc") or shutil.which("gcc")
_shim: list[Path] = []  # the compiled library, once per module run


@pytest.fixture(scope="module", autouse=True)
def loopback_shim(tmp_path_factory: pytest.TempPathFactory) -> None:
    if CC is None:
        return
    folder = tmp_path_factory.mktemp("loopback-bind")
    (folder / "loopback_bind.c").write_text(LOOPBACK_BIND_C)
    subprocess.run([CC, "-shared", "-fPIC", "-O1", "-o", "loopback_bind.so", "loopback_bind.c", "-ldl"],
                   cwd=folder, check=True, capture_output=True, timeout=60)
    _shim[:] = [folder / "loopback_bind.so"]


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (Linux's /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(packed)))
    return found


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PKI]:
    made = {key: write_pki(tmp_path_factory.mktemp(f"gnutls-{key}"), key_type=key) for key in ("ec", "rsa")}
    made["other"] = write_pki(tmp_path_factory.mktemp("gnutls-other"))  # another root: refused by both
    return made


async def _pump(source: trio.abc.ReceiveStream, sink: bytearray) -> None:
    while chunk := await source.receive_some():
        sink += chunk


# --- gnutls-cli ------------------------------------------------------------------------------------------------------


@dataclass
class Cli:
    """A running ``gnutls-cli``: its standard input, its output so far (stdout is the data only; its messages go to
    ``log``, its errors to ``stderr``), and once it ended, its exit code."""

    process: trio.Process
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    log: str = ""
    returncode: int | None = None

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def expect(self, data: bytes) -> None:
        """Until ``data`` is on gnutls-cli's standard output (the block's bound limits the wait)."""
        while data not in self.out:
            await trio.sleep(0.01)

    async def eof(self) -> None:
        """Ends its standard input: gnutls-cli sends close_notify and reads on until the peer's."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def wait(self) -> int:
        return await self.process.wait()

    @property
    def stdout(self) -> bytes:
        return bytes(self.out)

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err.decode(errors="replace").splitlines() if line.startswith("***")]

    def logged(self, text: str) -> list[str]:
        """Its message lines (the log file's) with ``text``."""
        return [line.strip() for line in self.log.splitlines() if text in line]


@asynccontextmanager
async def gnutls_cli(port: int, *args: str, name: str | None = "localhost") -> AsyncIterator[Cli]:
    """Run ``gnutls-cli ARGS 127.0.0.1`` against ``port``, checking the certificate for ``name`` (also its SNI;
    ``None``: the address). Leaving the block ends its standard input and waits for it to exit (bounded)."""
    assert GNUTLS_CLI is not None
    handle, log_name = tempfile.mkstemp(prefix="gnutls-cli-", suffix=".log")
    os.close(handle)
    log = Path(log_name)
    named = ["--sni-hostname", name, "--verify-hostname", name] if name else []
    command = [GNUTLS_CLI, "-p", str(port), "--logfile", str(log), *named, *args, LOCALHOST]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE)
    cli = Cli(process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(_pump, process.stdout, cli.out)
            nursery.start_soon(_pump, process.stderr, cli.err)
            with trio.fail_after(STEP):
                yield cli
                assert process.stdin is not None
                try:
                    await process.stdin.aclose()
                except trio.BrokenResourceError:  # it had already left
                    pass
                cli.returncode = await process.wait()
    finally:
        await reap(process)
        cli.log = log.read_text(errors="replace")
        log.unlink()


def cli_args(pki: PKI, version: str | None, *extra: str, ca: Path | None = None, mutual: bool = False) -> list[str]:
    args = ["--x509cafile", str(ca or pki.ca_file)]
    if version is not None:
        args += ["--priority", PRIORITY[version]]
    if mutual:
        args += ["--x509certfile", str(pki.client_cert), "--x509keyfile", str(pki.client_key)]
    return [*args, *extra]


async def cli_line(port: int, *args: str, name: str | None = "localhost") -> Cli:
    """gnutls-cli sends a line and waits for its echo, then ends its input."""
    async with gnutls_cli(port, *args, name=name) as cli:
        await cli.send(b"hello\n")
        await cli.expect(b"hello\n")
    return cli


async def cli_refused(port: int, *args: str) -> Cli:
    """gnutls-cli until it gives up by itself (its input stays open)."""
    async with gnutls_cli(port, *args) as cli:
        await cli.wait()
    return cli


# --- gnutls-serv ------------------------------------------------------------------------------------------------------


@dataclass
class Serv:
    """A running ``gnutls-serv``: its port and its output (stdout and stderr, line-buffered)."""

    process: trio.Process
    port: int
    out: bytearray = field(default_factory=bytearray)

    @property
    def output(self) -> str:
        return self.out.decode(errors="replace")

    async def wait_for(self, text: str) -> None:
        """Until ``text`` is in its output (the block's bound limits the wait)."""
        while text not in self.output:
            await trio.sleep(0.01)

    def lines(self, text: str) -> list[str]:
        return [line.strip() for line in self.output.splitlines() if text in line]


@asynccontextmanager
async def gnutls_serv(*args: str) -> AsyncIterator[Serv]:
    """``gnutls-serv ARGS`` on a free port, once it listens; leaving the block ends it with SIGTERM (bounded) so
    that all its output is in. It listens on loopback only (``loopback_shim``)."""
    assert GNUTLS_SERV is not None and STDBUF is not None
    if not _shim:
        pytest.skip("no C compiler (cc) to build the library that keeps gnutls-serv on loopback")
    env = {**os.environ, "LD_PRELOAD": str(_shim[0])}  # stdbuf adds its own library to it
    for _ in range(3):  # another process may take the port between the probe and gnutls-serv's bind
        port = free_port()
        process = await trio.lowlevel.open_process([STDBUF, "-oL", GNUTLS_SERV, "-p", str(port), *args],
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        serv = Serv(process, port)
        try:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                nursery.start_soon(_pump, process.stdout, serv.out)
                with trio.fail_after(STEP):
                    while f"port {port}...done" not in serv.output and process.poll() is None:
                        await trio.sleep(0.01)
                    if process.returncode is not None:
                        continue  # it could not listen: another port
                    yield serv
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                    await process.wait()
            return
        finally:
            await reap(process)
    raise AssertionError(f"gnutls-serv did not start: {serv.output}")


def serv_args(pki: PKI, version: str | None, *extra: str, mutual: bool = False, verify: bool = True,
              ca: Path | None = None) -> list[str]:
    """An echo server with the PKI's server identity; ``mutual`` demands a client certificate, which it verifies
    unless ``verify`` is false (without ``mutual`` it asks for none)."""
    args = ["--echo", "--x509certfile", str(pki.server_cert), "--x509keyfile", str(pki.server_key),
            "--x509cafile", str(ca or pki.ca_file)]
    if version is not None:
        args += ["--priority", PRIORITY[version]]
    if not mutual:
        args.append("--disable-client-cert")
    else:
        args += ["--require-client-cert", "--verify-client-cert"] if verify else ["--require-client-cert"]
    return [*args, *extra]


async def ending(stream: TLSStream) -> str | None:
    """The next read's end: ``None`` for a clean EOF, else the connection-end word (data fails the test)."""
    try:
        assert await stream.receive_some() == b""
    except trio.BrokenResourceError as exc:
        return classify_ending(exc).word
    return None


async def gtls_outcome(connect: Callable[[], Awaitable[TLSStream]]) -> tuple[str, str, str | None]:
    """How a refused gtls client learns it: ``("handshake", reason, alert)`` or, once its handshake was done (a TLS
    1.3 client), ``("read", word, alert)`` from its first read."""
    try:
        stream = await connect()
    except HandshakeError as exc:
        return "handshake", exc.reason, exc.alert
    async with stream:
        with pytest.raises(trio.BrokenResourceError) as caught:
            await stream.receive_some()
    end = classify_ending(caught.value)
    return "read", end.word, end.alert


# --- gtls server, gnutls-cli client ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gnutls_cli_with_gtls_server(pkis: dict[str, PKI], version: str, key: str, mutual: bool) -> None:
    """A line there and back; the end of gnutls-cli's input sends close_notify, gtls's echo ends cleanly and closes,
    and gnutls-cli reads gtls's close_notify."""
    pki = pkis[key]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        cli = await cli_line(served.port, *cli_args(pki, version, mutual=mutual))
    assert cli.returncode == 0 and cli.stdout == b"hello\n" and cli.errors == []
    assert cli.logged("- Status: The certificate is trusted.")
    assert cli.logged("- Description: (TLS" + version) and cli.logged("- Peer has closed the GnuTLS connection")
    [event] = served.events
    assert event.ok and event.tls_version == f"TLSv{version}" and event.server_name == "localhost"
    assert event.subject == ("CN=client.test" if mutual else None)
    assert served.ends == []


@BOTH
async def test_data_integrity_gnutls_cli(pkis: dict[str, PKI], version: str) -> None:
    """Random bytes both ways at once through gnutls-cli's standard input and output, checksummed; gtls then closes
    and gnutls-cli leaves with the peer's close_notify."""
    async def duplex(stream: TLSStream, served: Served) -> None:
        served.digests.append(await exchange(stream, BULK))
        await stream.aclose()

    pki = pkis["ec"]
    payload = os.urandom(BULK)
    async with (
        gtls_server(server_options(pki, version), duplex) as served,
        gnutls_cli(served.port, *cli_args(pki, version)) as cli,
    ):
        await cli.send(payload)
        await cli.wait()
    [(sent, got)] = served.digests
    assert got == hashlib.sha256(payload).hexdigest() and sent == hashlib.sha256(cli.stdout).hexdigest()
    assert cli.returncode == 0 and cli.logged("- Peer has closed the GnuTLS connection") and served.ends == []


@BOTH
async def test_gnutls_cli_half_close(pkis: dict[str, PKI], version: str) -> None:
    """The end of gnutls-cli's input is a close_notify, and gnutls-cli reads on: gtls answers after it."""
    pki = pkis["ec"]
    async with (
        gtls_server(server_options(pki, version), answer_after_end) as served,
        gnutls_cli(served.port, *cli_args(pki, version)) as cli,
    ):
        await cli.send(b"request\n")
    assert served.received == [b"request\n"] and cli.stdout == b"reply:request\n" and served.ends == []
    assert cli.returncode == 0


@BOTH
async def test_gtls_server_closes_first(pkis: dict[str, PKI], version: str) -> None:
    """gtls's close_notify ends gnutls-cli, its input still open, with exit code 0."""
    async def first(stream: TLSStream, served: Served) -> None:
        await stream.send_all(b"bye\n")
        await stream.aclose()

    pki = pkis["ec"]
    async with (
        gtls_server(server_options(pki, version), first) as served,
        gnutls_cli(served.port, *cli_args(pki, version)) as cli,
    ):
        assert await cli.wait() == 0
    assert cli.stdout == b"bye\n" and cli.logged("- Peer has closed the GnuTLS connection") and served.ends == []


@BOTH
async def test_killed_gnutls_cli_is_truncated(pkis: dict[str, PKI], version: str) -> None:
    pki = pkis["ec"]
    async with (
        gtls_server(server_options(pki, version)) as served,
        gnutls_cli(served.port, *cli_args(pki, version)) as cli,
    ):
        await cli.send(b"hello\n")
        await cli.expect(b"hello\n")
        cli.process.kill()
    assert served.ends == ["truncated"]


async def test_gnutls_cli_renegotiation_is_refused(pkis: dict[str, PKI]) -> None:
    """TLS 1.2 ``--rehandshake``: gtls refuses with a no_renegotiation warning; GnuTLS asks 16 times, then gives up
    with internal_error, which is what gtls reports (``peer-alert``, not ``renegotiation-refused``)."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.2"), read_all) as served:
        cli = await cli_refused(served.port, *cli_args(pki, "1.2", "--rehandshake"))
    assert cli.returncode == 1 and served.received == []
    assert cli.logged("*** Received alert [100]: No renegotiation is allowed") == [
        "*** Received alert [100]: No renegotiation is allowed"] * 16
    assert cli.errors == ["*** Non fatal error: A TLS warning alert has been received."] * 16 + [
        "*** Fatal error: GnuTLS internal error.", "*** ReHandshake has failed"]
    assert served.ends == ["peer-alert"]


async def test_gnutls_cli_rehandshake_is_a_key_update_in_tls13(pkis: dict[str, PKI]) -> None:
    """TLS 1.3 ``--rehandshake`` is a KeyUpdate asking for ours: gtls answers and the connection goes on."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3")) as served:
        cli = await cli_line(served.port, *cli_args(pki, "1.3", "--rehandshake"))
    assert cli.logged("- ReHandshake was completed") and cli.stdout == b"hello\n" and cli.errors == []
    assert served.ends == [] and cli.returncode == 0


async def test_gnutls_cli_key_updates(pkis: dict[str, PKI]) -> None:
    """TLS 1.3, ``--inline-commands``: 200 lines, each followed by a KeyUpdate of GnuTLS's own keys (``^rekey1^``),
    and 8 asking for gtls's too (``^rekey^``), while gtls echoes: every byte comes back."""
    pki = pkis["ec"]
    lines = [binascii.hexlify(os.urandom(random.randint(1, 1500))) + b"\n" for _ in range(200)]
    script = b"".join(line + (b"^rekey^\n" if index % 25 == 0 else b"^rekey1^\n") for index, line in enumerate(lines))
    async with (
        gtls_server(server_options(pki, "1.3")) as served,
        gnutls_cli(served.port, *cli_args(pki, "1.3", "--inline-commands")) as cli,
    ):
        await cli.send(script + b"done\n")  # not hex: the last line's echo
        await cli.expect(b"done\n")
    assert cli.stdout == b"".join(lines) + b"done\n" and len(cli.logged("- Rekey was completed")) == 200
    assert cli.returncode == 0 and cli.errors == [] and served.ends == []


async def test_gnutls_takes_8_key_updates_a_second(pkis: dict[str, PKI]) -> None:
    """GnuTLS counts the KeyUpdates it receives, those it asked for included: gtls answers 9 ``^rekey^`` sent at once,
    GnuTLS aborts on the 9th answer and leaves without close_notify (``truncated``)."""
    pki = pkis["ec"]
    async with (
        gtls_server(server_options(pki, "1.3")) as served,
        gnutls_cli(served.port, *cli_args(pki, "1.3", "--inline-commands")) as cli,
    ):
        await cli.send(b"hello\n" + b"^rekey^\n" * 9 + b"bye\n")  # GnuTLS counts as it reads the answers
        await cli.wait()
    assert cli.errors == ["*** Fatal error: Too many handshake packets have been received.",
                          "*** Server has terminated the connection abnormally."]
    assert cli.returncode == 1 and served.ends == ["truncated"]


@BOTH
@pytest.mark.parametrize("mutual", [False, True], ids=["simple", "mutual"])
async def test_gnutls_cli_resumes_sessions(pkis: dict[str, PKI], version: str, mutual: bool) -> None:
    """``--resume``: a second connection with the first one's ticket. A resumed TLS 1.2 connection has no
    server_name on a gtls server (README: OpenSSL keeps it only for a servername callback)."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        cli = await cli_line(served.port, *cli_args(pki, version, "--resume", mutual=mutual))
    assert cli.logged("*** This is a resumed session") and cli.returncode == 0
    assert [event.session_reused for event in served.events] == [False, True]
    assert [event.subject for event in served.events] == (["CN=client.test"] * 2 if mutual else [None, None])
    assert [event.server_name for event in served.events] == ["localhost", "localhost" if version == "1.3" else None]
    assert served.ends == []


async def test_gnutls_cli_resumes_by_session_id(pkis: dict[str, PKI]) -> None:
    """TLS 1.2 without tickets (``--noticket``): gtls's server resumes from its session cache."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.2")) as served:
        cli = await cli_line(served.port, *cli_args(pki, "1.2", "--resume", "--noticket"))
    assert cli.logged("*** This is a resumed session")
    assert [event.session_reused for event in served.events] == [False, True]


async def test_gnutls_cli_early_data_never_reaches_the_handler(pkis: dict[str, PKI], tmp_path: Path) -> None:
    """GnuTLS sends its early data on resumption although gtls's tickets allow none: gtls skips those records, the
    handshake resumes, and the handler reads only what came after it. (Its debug log at level 4 shows the resumed
    ClientHello offering early data, so the test cannot pass by GnuTLS not trying.)"""
    pki = pkis["ec"]
    early = tmp_path / "early.txt"
    early.write_bytes(b"early\n")
    async with (
        gtls_server(server_options(pki, "1.3"), read_all) as served,
        gnutls_cli(served.port, *cli_args(pki, "1.3", "--resume", f"--earlydata={early}", "-d", "4")) as cli,
    ):
        await cli.send(b"late\n")
    assert [event.session_reused for event in served.events] == [False, True]
    assert b"Sending extension Early Data" in cli.err
    assert served.received == [b"", b"late\n"] and cli.errors == []


@BOTH
@pytest.mark.parametrize(("certificate", "reason", "alert"), [
    pytest.param("other", "untrusted", "*** Received alert [48]: CA is unknown", id="other"),
    pytest.param("none", "no-peer-certificate", {"1.3": "*** Received alert [116]: Certificate is required",
                                                 "1.2": "*** Received alert [40]: Handshake failed"}, id="none"),
    pytest.param("revoked", "revoked", "*** Received alert [44]: Certificate was revoked", id="revoked"),
])
async def test_gtls_server_refuses_gnutls_cli_certificate(pkis: dict[str, PKI], version: str, certificate: str,
                                                          reason: str, alert: str | dict[str, str]) -> None:
    """The event has the reason word and the client's subject; gnutls-cli names the alert it received."""
    pki, other = pkis["ec"], pkis["other"]
    options = server_options(pki, version, mutual=True)
    cert: list[str] = []
    if certificate == "other":
        cert = ["--x509certfile", str(other.client_cert), "--x509keyfile", str(other.client_key)]
    elif certificate == "revoked":
        cert = ["--x509certfile", str(pki.client_cert), "--x509keyfile", str(pki.client_key)]
        options = crl_options(pki, version, "client-revoked", server=True)
    async with gtls_server(options, read_all) as served:
        cli = await cli_refused(served.port, *cli_args(pki, version, *cert))
    [event] = served.events
    assert not event.ok and event.reason == reason, event.describe()
    assert event.subject == (None if certificate == "none" else "CN=client.test")
    assert cli.logged(alert if isinstance(alert, str) else alert[version]) and cli.returncode == 1
    assert cli.errors[0] == "*** Fatal error: A TLS fatal alert has been received."
    assert served.received == []


@BOTH
@pytest.mark.parametrize(("case", "status"), [
    pytest.param("other-ca", "The certificate is NOT trusted. The certificate issuer is unknown.", id="other-ca"),
    pytest.param("other-name", "The certificate is NOT trusted. The name in the certificate does not match the "
                 "expected.", id="other-name"),
])
async def test_gnutls_cli_refuses_gtls_server(pkis: dict[str, PKI], version: str, case: str, status: str) -> None:
    """gnutls-cli verifies inside the handshake and refuses with bad_certificate: gtls's event is ``peer-alert``."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), read_all) as served:
        if case == "other-ca":
            cli = await cli_refused(served.port, *cli_args(pki, version, ca=pkis["other"].ca_file))
        else:
            async with gnutls_cli(served.port, *cli_args(pki, version), name="other.example") as cli:
                await cli.wait()
    assert cli.logged(f"- Status: {status}") and cli.returncode == 1
    assert cli.errors == ["*** Fatal error: Error in the certificate."]
    [event] = served.events
    assert (event.reason, event.error and event.error.alert) == ("peer-alert", "bad_certificate")
    assert served.received == []


@pytest.mark.parametrize("flag", ["--no-ca-verification", "--insecure"])
async def test_gnutls_cli_without_verification(pkis: dict[str, PKI], flag: str) -> None:
    """Without verification gnutls-cli connects to a server it cannot verify (``--insecure`` still says so)."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3")) as served:
        cli = await cli_line(served.port, *cli_args(pki, "1.3", flag, ca=pkis["other"].ca_file))
    assert cli.stdout == b"hello\n" and cli.returncode == 0 and served.ends == []
    assert bool(cli.logged("The certificate is NOT trusted")) == (flag == "--insecure")


@BOTH
async def test_gnutls_cli_record_size_limit(pkis: dict[str, PKI], version: str) -> None:
    """``--recordsize=512``: gtls sends 64 KiB in records of at most 512 bytes of data (GnuTLS's debug log names
    each record's length: 512 plus the AEAD's overhead, 17 bytes in TLS 1.3, 24 in TLS 1.2)."""
    async def download(stream: TLSStream, served: Served) -> None:
        await stream.send_all(payload)
        await stream.aclose()

    pki = pkis["ec"]
    payload = os.urandom(64 << 10)
    async with (
        gtls_server(server_options(pki, version), download) as served,
        gnutls_cli(served.port, *cli_args(pki, version, "--recordsize=512", "-d", "5")) as cli,
    ):
        assert await cli.wait() == 0
    assert cli.stdout == payload
    lengths = [int(size) for size in re.findall(rb"Received Packet Application Data\(23\) with length: (\d+)", cli.err)]
    assert len(lengths) >= len(payload) // 512 and max(lengths) == 512 + (17 if version == "1.3" else 24)


@pytest.mark.parametrize(("priority", "reason", "alert"), [
    pytest.param("NORMAL:-VERS-ALL:+VERS-TLS1.1", "protocol-version", "[70]: Error in protocol version", id="tls1.1"),
    pytest.param("NORMAL:-VERS-ALL:+VERS-TLS1.2:%FALLBACK_SCSV", "protocol-version", "[86]: Inappropriate fallback",
                 id="fallback-scsv"),
    pytest.param("NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-CCM", "no-shared-cipher",
                 "[40]: Handshake failed", id="ccm-only"),
])
async def test_gtls_server_refuses_gnutls_cli_offer(pkis: dict[str, PKI], priority: str, reason: str,
                                                    alert: str) -> None:
    """TLS 1.1; a TLS 1.2 ClientHello with TLS_FALLBACK_SCSV to a server that has TLS 1.3 (a downgraded retry);
    only TLS 1.3 suites OpenSSL does not enable by default."""
    pki = pkis["ec"]
    async with gtls_server(pki.server_options()) as served:
        cli = await cli_refused(served.port, "--x509cafile", str(pki.ca_file), "--priority", priority)
    [event] = served.events
    assert event.reason == reason and cli.logged(f"*** Received alert {alert}")


async def test_gnutls_cli_hello_retry_request(pkis: dict[str, PKI]) -> None:
    """One key share, for ffdhe2048, with secp256r1 also offered: gtls's server asks again for secp256r1."""
    pki = pkis["ec"]
    priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-FFDHE2048:+GROUP-SECP256R1"
    async with (
        gtls_server(pki.server_options()) as served,
        gnutls_cli(served.port, "--x509cafile", str(pki.ca_file), "--priority", priority, "--single-key-share",
                   "-d", "4") as cli,
    ):
        await cli.send(b"hello\n")
        await cli.expect(b"hello\n")
    assert b"HRR key share with SECP256R1" in cli.err and cli.returncode == 0
    assert [event.ok for event in served.events] == [True]


async def test_alpn_gtls_server_gnutls_cli(pkis: dict[str, PKI]) -> None:
    seen: list[str | None] = []
    pki = pkis["ec"]
    async with gtls_server(pki.server_options(), noting_alpn(seen), alpn=["h2", "http/1.1"]) as served:
        cli = await cli_line(served.port, "--x509cafile", str(pki.ca_file), "--alpn=http/1.1", "--alpn=h2")
    assert seen == ["h2"] and cli.logged("- Application protocol: h2")


# --- gtls client, gnutls-serv server --------------------------------------------------------------------------------


async def test_gnutls_serv_listens_on_loopback_only(pkis: dict[str, PKI]) -> None:
    """gnutls-serv binds the wildcard addresses itself; the preloaded library keeps every one of its listening sockets
    on 127.0.0.1 or ::1, and it still serves."""
    async with gnutls_serv(*serv_args(pkis["ec"], "1.3")) as serv:
        listening = _listening_addresses(serv.port)
        assert await client_outcome(lambda: gtls_client(pkis["ec"], "1.3", serv.port)) == "ok"
    assert listening and listening <= {"127.0.0.1", "::1"}, listening


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_gnutls_serv(pkis: dict[str, PKI], version: str, key: str, mutual: bool) -> None:
    """A line there and back; gtls's close_notify gets gnutls-serv's."""
    pki = pkis[key]
    async with (
        gnutls_serv(*serv_args(pki, version, mutual=mutual)) as serv,
        await gtls_client(pki, version, serv.port, mutual=mutual) as stream,
    ):
        await stream.send_all(b"hello\n")
        assert await stream.receive_some() == b"hello\n"
        assert stream.tls_version == f"TLSv{version}" and stream.server_name == "localhost"
        assert stream.peer_chain == [pki.server.cert, pki.intermediate.cert]
        if version == "1.3":  # TLS 1.2 has no half close: there gtls's close_notify ends it
            await stream.send_eof()
            assert await ending(stream) is None
    assert serv.lines(f"- Version: TLS{version}") and serv.lines("- Given server name[1]: localhost")
    assert bool(serv.lines("- Client Signature:")) == mutual


@BOTH
async def test_data_integrity_gtls_client(pkis: dict[str, PKI], version: str) -> None:
    """Hex lines (gnutls-serv's echo is for text) in random chunks while reading the echo, checksummed."""
    pki = pkis["ec"]
    text = binascii.hexlify(os.urandom(BULK // 2))
    data = b"".join(text[at:at + 1000] + b"\n" for at in range(0, len(text), 1000))
    got = hashlib.sha256()

    async def send(stream: TLSStream) -> None:
        at = 0
        while at < len(data):
            step = random.randint(1, 65536)
            await stream.send_all(data[at:at + step])
            at += step

    async with (
        gnutls_serv(*serv_args(pki, version)) as serv,
        await gtls_client(pki, version, serv.port) as stream, trio.open_nursery() as nursery,
    ):
        nursery.start_soon(send, stream)
        count = 0
        while count < len(data):
            chunk = await stream.receive_some()
            assert chunk, f"EOF after {count} of {len(data)} bytes"
            got.update(chunk)
            count += len(chunk)
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()


@BOTH
async def test_gnutls_serv_ends_without_close_notify(pkis: dict[str, PKI], version: str) -> None:
    """SIGTERM ends gnutls-serv at once: its connections end without close_notify."""
    pki = pkis["ec"]
    async with (
        gnutls_serv(*serv_args(pki, version)) as serv,
        await gtls_client(pki, version, serv.port) as stream,
    ):
        await stream.send_all(b"hello\n")
        assert await stream.receive_some() == b"hello\n"
        serv.process.send_signal(signal.SIGTERM)
        assert await ending(stream) == "truncated"


async def test_gtls_client_send_eof_to_gnutls_serv(pkis: dict[str, PKI]) -> None:
    """TLS 1.3: gnutls-serv echoes the line before gtls's close_notify, then answers it with its own."""
    pki = pkis["ec"]
    async with (
        gnutls_serv(*serv_args(pki, "1.3")) as serv,
        await gtls_client(pki, "1.3", serv.port) as stream,
    ):
        await stream.send_all(b"request\n")
        await stream.send_eof()
        assert await stream.receive_some() == b"request\n"
        assert await ending(stream) is None


async def test_gtls_client_send_eof_is_refused_on_tls12(pkis: dict[str, PKI]) -> None:
    pki = pkis["ec"]
    async with (
        gnutls_serv(*serv_args(pki, "1.2")) as serv,
        await gtls_client(pki, "1.2", serv.port) as stream,
    ):
        with pytest.raises(HalfCloseUnsupported):
            await stream.send_eof()
        await stream.send_all(b"still\n")  # the stream is unchanged
        assert await stream.receive_some() == b"still\n"


async def test_gnutls_serv_renegotiation_is_refused(pkis: dict[str, PKI]) -> None:
    """TLS 1.2 ``**REHANDSHAKE**``: gnutls-serv's HelloRequest gets gtls's no_renegotiation warning; gnutls-serv
    then drops the connection without close_notify (``truncated``)."""
    pki = pkis["ec"]
    async with (
        gnutls_serv(*serv_args(pki, "1.2")) as serv,
        await gtls_client(pki, "1.2", serv.port) as stream,
    ):
        await stream.send_all(b"**REHANDSHAKE**\n")
        assert await stream.receive_some() == b"Successfully executed command\n"
        assert await ending(stream) == "truncated"
        await serv.wait_for("Error: A TLS warning alert has been received.")
    assert serv.lines("*** Sending rehandshake request")


async def test_gnutls_serv_key_update(pkis: dict[str, PKI]) -> None:
    """TLS 1.3 ``**REHANDSHAKE**`` is a KeyUpdate asking for ours: gtls answers (gnutls-serv's debug log says so)
    and data flows on with the new keys both ways."""
    pki = pkis["ec"]
    async with (
        gnutls_serv(*serv_args(pki, "1.3", "-d", "4")) as serv,
        await gtls_client(pki, "1.3", serv.port) as stream,
    ):
        await stream.send_all(b"**REHANDSHAKE**\n")
        assert await stream.receive_some() == b"Successfully executed command\n"
        await stream.send_all(b"after\n")
        assert await stream.receive_some() == b"after\n"
        await serv.wait_for("received TLS 1.3 key update (0)")
    assert len(serv.lines("sending key update (1)")) == 1 and len(serv.lines("received TLS 1.3 key update (0)")) == 1


async def test_gnutls_serv_post_handshake_auth(pkis: dict[str, PKI]) -> None:
    """``**REAUTH**``: a gtls client never offers post-handshake authentication, gnutls-serv's request fails on its
    side and it sends internal_error."""
    pki = pkis["ec"]
    async with (
        gnutls_serv(*serv_args(pki, "1.3")) as serv,
        await gtls_client(pki, "1.3", serv.port, mutual=True) as stream,
    ):
        await stream.send_all(b"**REAUTH**\n")
        with pytest.raises(trio.BrokenResourceError) as caught:
            await stream.receive_some()
    end = classify_ending(caught.value)
    assert (end.word, end.alert) == ("peer-alert", "internal_error")
    assert serv.lines("reauth: The request is invalid.")


@BOTH
@pytest.mark.parametrize(("case", "reason", "message"), [
    pytest.param("other-ca", "untrusted", "A TLS fatal alert has been received.", id="other-ca"),
    pytest.param("other-name", "name-mismatch", "A TLS fatal alert has been received.", id="other-name"),
    pytest.param("revoked", "revoked", "A TLS fatal alert has been received.", id="revoked"),
])
async def test_gtls_client_refuses_gnutls_serv(pkis: dict[str, PKI], version: str, case: str, reason: str,
                                               message: str) -> None:
    """gtls's reason word; gnutls-serv reads the alert in TLS 1.2 and fails to decrypt it in TLS 1.3 (sent in
    plaintext), every time: gtls lingers after its alert (module docstring). Three servers each, since the reset of
    an unlingering close lost the alert only now and then."""
    pki = pkis["ec"]
    checked: dict[str, Any] = {"sec_protocol": SEC_PROTOCOL[version], "tls_target_name_check": "host"}
    if case == "other-ca":
        options = pki.client_options(**checked, trusted_ca=str(pkis["other"].ca_file))
    elif case == "other-name":
        options = pki.client_options(**checked, tls_target_name="other.example")
    else:
        options = crl_options(pki, version, "server-revoked", server=False)
    expected = "Error in handshake: " + (message if version == "1.2" else "Decryption has failed.")
    said = []
    for _ in range(3):  # a fresh gnutls-serv each time: its first connection is its slowest to write its tickets
        async with gnutls_serv(*serv_args(pki, version)) as serv:
            with pytest.raises(HandshakeError) as caught:
                await open_client(options, serv.port)
            assert caught.value.reason == reason
            if case != "other-ca":  # there the intermediate is the certificate at fault (depth 1)
                assert (caught.value.depth, caught.value.subject) == (0, "CN=localhost")
            await serv.wait_for("Error in handshake:")
        said += serv.lines("Error in handshake:")
    assert said == [expected] * 3


@BOTH
@pytest.mark.parametrize(("certificate", "alerts", "message"), [
    pytest.param("none", {"1.3": "certificate_required", "1.2": "decode_error"},
                 {"1.3": "Certificate is required.", "1.2": "No certificate was found."}, id="none"),
    pytest.param("other", {"1.3": "access_denied", "1.2": "access_denied"},
                 {"1.3": "Error in the certificate.", "1.2": "Error in the certificate."}, id="other"),
])
async def test_gnutls_serv_refuses_gtls_client(pkis: dict[str, PKI], version: str, certificate: str,
                                               alerts: dict[str, str], message: dict[str, str]) -> None:
    """``peer-alert`` naming gnutls-serv's alert: a HandshakeError in TLS 1.2, the first read's end in TLS 1.3 (gtls's
    client was done before gnutls-serv judged its certificate)."""
    pki, other = pkis["ec"], pkis["other"]
    mutual = certificate == "other"
    async with gnutls_serv(*serv_args(pki, version, mutual=True, ca=other.ca_file if mutual else None)) as serv:
        got = await gtls_outcome(lambda: gtls_client(pki, version, serv.port, mutual=mutual))
        await serv.wait_for(f"Error in handshake: {message[version]}")
    assert got == ("read" if version == "1.3" else "handshake", "peer-alert", alerts[version])


@BOTH
async def test_gnutls_serv_without_client_verification(pkis: dict[str, PKI], version: str) -> None:
    """``--require-client-cert`` without ``--verify-client-cert`` takes a certificate from another root."""
    pki, other = pkis["ec"], pkis["other"]
    async with gnutls_serv(*serv_args(pki, version, mutual=True, verify=False, ca=other.ca_file)) as serv:
        assert await client_outcome(lambda: gtls_client(pki, version, serv.port, mutual=True)) == "ok"
    assert serv.lines("- Peer's certificate was NOT verified.")


@BOTH
async def test_gnutls_serv_sni_refusal(pkis: dict[str, PKI], version: str) -> None:
    """``--sni-hostname-fatal``: a name gnutls-serv does not serve is refused with unrecognized_name."""
    pki = pkis["ec"]
    async with gnutls_serv(*serv_args(pki, version, "--sni-hostname=other.example", "--sni-hostname-fatal")) as serv:
        got = await gtls_outcome(lambda: gtls_client(pki, version, serv.port))
    assert got == ("handshake", "peer-alert", "unrecognized_name")


@pytest.mark.parametrize(("served", "expected"), [
    pytest.param(["h2", "http/1.1"], "http/1.1", id="client-preference"),
    pytest.param(["x"], None, id="none-shared"),
])
async def test_alpn_gtls_client_gnutls_serv(pkis: dict[str, PKI], served: list[str], expected: str | None) -> None:
    """gnutls-serv chooses the client's first protocol it has (gtls's server its own); with none shared it goes on
    without ALPN, and with ``--alpn-fatal`` refuses."""
    pki = pkis["ec"]
    offers = [f"--alpn={protocol}" for protocol in served]
    for fatal in (False, True):
        async with gnutls_serv(*serv_args(pki, None, *offers, *(["--alpn-fatal"] if fatal else []))) as serv:
            try:
                stream = await open_tls_over_tcp_stream(LOCALHOST, serv.port, pki.client_options(),
                                                        server_hostname="localhost", alpn_protocols=["http/1.1", "h2"])
            except HandshakeError as exc:
                assert fatal and expected is None
                assert (exc.reason, exc.alert) == ("peer-alert", "no_application_protocol")
            else:
                async with stream:
                    assert stream.alpn_protocol == expected


# --- the peer-name rule: gtls's (SAN DNS names, else CN; no wildcards) beside GnuTLS's ------------------------------


NAME_CASES = [  # (certificate, reference name, gtls client, gnutls-cli)
    pytest.param({"common_name": "localhost"}, "localhost", "ok", "ok", id="cn-only"),
    pytest.param({"common_name": "localhost", "dns": ["other.test"]}, "localhost", "name-mismatch", "mismatch",
                 id="san-hides-cn"),
    pytest.param({"common_name": "w", "dns": ["*.example.test"]}, "a.example.test", "name-mismatch", "ok",
                 id="wildcard"),
    pytest.param({"common_name": "s", "ips": [ipaddress.ip_address("127.0.0.1")]}, "127.0.0.1", "name-mismatch", "ok",
                 id="ip-san"),
    pytest.param({"common_name": "127.0.0.1"}, "127.0.0.1", "ok", "mismatch", id="ip-in-cn"),
    pytest.param({"common_name": "GnuTLS.Example.Test", "dns": ["GnuTLS.Example.Test"]}, "gnutls.example.TEST", "ok",
                 "ok", id="case"),
]


@pytest.mark.parametrize(("names", "reference", "gtls_says", "gnutls_says"), NAME_CASES)
async def test_peer_name_rule_beside_gnutls(pkis: dict[str, PKI], tmp_path: Path, names: dict[str, Any],
                                            reference: str, gtls_says: str, gnutls_says: str) -> None:
    """Where the two rules differ, each side keeps its own: GnuTLS accepts wildcards and IP subjectAltNames (never an
    IP in the CN); gtls compares DNS subjectAltNames, else the CN, without wildcards. Both ignore case."""
    pki = pkis["ec"]
    leaf = pki.intermediate.leaf(**names)
    cert, key = leaf.write_chain(tmp_path / "leaf.pem"), leaf.write_key(tmp_path / "leaf.key")
    ip = reference[0].isdigit()
    async with gnutls_serv("--echo", "--disable-client-cert", "--x509certfile", str(cert),
                           "--x509keyfile", str(key)) as serv:
        options = pki.client_options(tls_target_name_check="host")
        gtls_word = await client_outcome(lambda: open_tls_over_tcp_stream(
            LOCALHOST, serv.port, options, server_hostname=None if ip else reference))
    assert gtls_word == gtls_says
    served_options = TLSOptions.from_mapping({"certificate": str(cert), "certificate-key": str(key),
                                              "trusted-ca": str(pki.ca_file)})
    async with (
        gtls_server(served_options) as served,
        gnutls_cli(served.port, "--x509cafile", str(pki.ca_file), name=None if ip else reference) as cli,
    ):
        pass  # its input ends at once: connected, it closes; refused, it leaves
    mismatch = cli.logged("The name in the certificate does not match the expected.")
    assert ("mismatch" if mismatch else "ok") == gnutls_says
    if not ip and gnutls_says == "ok":
        assert [event.server_name for event in served.events] == [reference]  # the SNI as GnuTLS sent it
