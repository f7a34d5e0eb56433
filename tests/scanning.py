"""sslyze against a real ``gtls serve`` process (no tests here; used by ``tests/test_scanner.py``).

* ``serve_scanned(*flags)``: ``gtls serve --listen 127.0.0.1:0 FLAGS``, killed on exit;
* ``scan(port, commands, ...)``: one sslyze scan in-process, bounded in time, returning its ``ServerScanResult``;
* ``accepted(result, command)``: the OpenSSL names of the suites a cipher-suite scan saw accepted;
* ``stop_and_read_log(running)``: stop the server (SIGTERM, exit 0 asserted) and parse its per-connection lines.

sslyze runs its scan jobs in worker threads and brings its own OpenSSL builds through nassl (a legacy one offers
SSL 2.0/3.0 and TLS 1.0/1.1 hellos), so it probes what gtls's own OpenSSL would never send.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
from sslyze.plugins.openssl_cipher_suites.implementation import CipherSuitesScanResult
from sslyze.plugins.scan_commands import ScanCommand
from sslyze.scanner.models import (
    ScanCommandsExtraArguments,
    ServerConnectivityStatusEnum,
    ServerScanRequest,
    ServerScanResult,
)
from sslyze.scanner.scan_command_attempt import ScanCommandAttempt, ScanCommandAttemptStatusEnum
from sslyze.scanner.scanner import Scanner
from sslyze.server_setting import ClientAuthenticationCredentials, ServerNetworkConfiguration, ServerNetworkLocation

from tests.peers import LOCALHOST, Running, gtls_serve

#: Upper bound for one whole scan (a scan of a local gtls serve takes well under 2 s).
SCAN_TIMEOUT = 60.0

#: The cipher-suite scan command of each protocol version, in sslyze's version order.
VERSION_SCANS: dict[str, ScanCommand] = {
    "SSLv2": ScanCommand.SSL_2_0_CIPHER_SUITES,
    "SSLv3": ScanCommand.SSL_3_0_CIPHER_SUITES,
    "TLSv1": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLSv1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
    "TLSv1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLSv1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}


def serve_scanned(*flags: str | Path) -> contextlib.AbstractContextManager[Running]:
    """``gtls serve`` on a free loopback port with ``flags`` (TLS option flags); killed on exit."""
    return gtls_serve("--listen", f"{LOCALHOST}:0", *map(str, flags))


def scan(
    port: int,
    commands: Iterable[ScanCommand],
    *,
    server_name: str = "localhost",
    ca_file: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    timeout: float = SCAN_TIMEOUT,
) -> ServerScanResult:
    """Scan 127.0.0.1:``port`` (SNI ``server_name``) with ``commands``. ``ca_file`` is the trust store the
    certificate-info scan validates against; ``client_cert``/``client_key`` make sslyze present a client certificate.
    Raises AssertionError if the scan does not finish within ``timeout``."""
    credentials = None
    if client_cert is not None:
        assert client_key is not None, "a client certificate needs its key"
        credentials = ClientAuthenticationCredentials(certificate_chain_path=client_cert, key_path=client_key)
    commands = set(commands)
    extra = ScanCommandsExtraArguments()
    if ca_file is not None:
        assert ScanCommand.CERTIFICATE_INFO in commands, "ca_file is only used by CERTIFICATE_INFO"
        extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file))
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(server_name, port, ip_address=LOCALHOST),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=server_name, tls_client_auth_credentials=credentials
        ),
        scan_commands=commands,
        scan_commands_extra_arguments=extra,
    )
    results: list[ServerScanResult] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            scanner = Scanner()
            scanner.queue_scans([request])
            results.extend(scanner.get_results())
        except BaseException as exc:  # handed to the test thread below
            failures.append(exc)

    # sslyze has no overall deadline of its own: run it in a thread the test can stop waiting for.
    worker = threading.Thread(target=run, name="sslyze-scan", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise AssertionError(f"sslyze scan of 127.0.0.1:{port} did not finish within {timeout} s")
    if failures:
        raise failures[0]
    assert len(results) == 1, results
    result = results[0]
    if result.connectivity_status != ServerConnectivityStatusEnum.COMPLETED:
        trace = "".join(result.connectivity_error_trace.format()) if result.connectivity_error_trace else ""
        raise AssertionError(f"sslyze could not connect to 127.0.0.1:{port}: {trace}")
    return result


def attempt(result: ServerScanResult, command: ScanCommand) -> ScanCommandAttempt[Any]:
    """The scan command's attempt (``.status``, ``.error_reason``, ``.error_trace``, ``.result``)."""
    assert result.scan_result is not None
    tried: ScanCommandAttempt[Any] = getattr(result.scan_result, command.value)
    return tried


def completed(result: ServerScanResult, command: ScanCommand) -> Any:
    """The result of a scan command that must have completed (AssertionError with sslyze's trace otherwise)."""
    tried = attempt(result, command)
    if tried.status != ScanCommandAttemptStatusEnum.COMPLETED:
        details = "".join(tried.error_trace.format()) if tried.error_trace is not None else ""
        raise AssertionError(f"{command.value}: {tried.status} {tried.error_reason}: {details}")
    return tried.result


def accepted(result: ServerScanResult, command: ScanCommand) -> set[str]:
    """OpenSSL names of the cipher suites the server accepted in a cipher-suite scan."""
    suites: CipherSuitesScanResult = completed(result, command)
    return {s.cipher_suite.openssl_name for s in suites.accepted_cipher_suites}


# --- the server's log ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedHandshake:
    """A ``connection from PEER: VERSION CIPHER [resumed] [client SUBJECT]`` or ``...: failed: REASON: ...`` line."""

    peer: str
    ok: bool
    version: str | None  # "TLSv1.3" for a completed handshake
    cipher: str | None  # its OpenSSL cipher name
    reason: str | None  # the failure word (spec §10) for a failed one
    client: str | None  # the client certificate's subject in mutual TLS
    text: str


@dataclass(frozen=True)
class LoggedEnding:
    """A ``connection from PEER: ended: WORD: ...`` line: a connection that ended abnormally after its handshake."""

    peer: str
    word: str  # a gtls.ending word
    text: str


@dataclass(frozen=True)
class ServerLog:
    handshakes: list[LoggedHandshake]
    endings: list[LoggedEnding]

    def texts(self) -> list[str]:
        return [entry.text for entry in self.handshakes] + [entry.text for entry in self.endings]


_LINE = re.compile(r"^connection from (?P<peer>\S+): (?P<rest>.*)$")


def parse_log(lines: Iterable[str]) -> ServerLog:
    """The per-connection lines of a ``gtls serve`` stderr, parsed (other lines are skipped)."""
    log = ServerLog([], [])
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        peer, rest = match["peer"], match["rest"]
        if rest.startswith("failed: "):
            reason = rest.removeprefix("failed: ").split(":", 1)[0]
            log.handshakes.append(LoggedHandshake(peer, False, None, None, reason, None, line))
        elif rest.startswith("ended: "):
            log.endings.append(LoggedEnding(peer, rest.removeprefix("ended: ").split(":", 1)[0], line))
        else:
            words = rest.split()
            _, _, client = rest.partition(" client ")
            log.handshakes.append(LoggedHandshake(peer, True, words[0], words[1], None, client or None, line))
    return log


def stop_and_read_log(running: Running, *, after: Callable[[str], bool] | None = None) -> ServerLog:
    """Stop the server with SIGTERM (it must exit 0) and return every connection line it logged. With ``after``,
    first wait (bounded) for a line it accepts: the server logs a connection's end when it reads the peer's last
    bytes, which may be just after the scan returned, and stopping it earlier would lose the line."""
    if after is not None:
        running.stderr.wait_for(after)
    code = running.stop()
    lines = running.stderr.drain()
    assert code == 0, f"gtls serve exited {code}; stderr: {lines}"
    return parse_log(lines)
