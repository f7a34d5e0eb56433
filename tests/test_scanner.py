"""sslyze scans of ``gtls serve`` (issue #7 part 5): versions, ciphers, compression, renegotiation, the chain sent
and mutual TLS, each judged by a real scanner over 127.0.0.1 and cross-checked against the server's own log.

Run alone with ``python3 -m pytest tests/test_scanner.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sslyze", reason="the scanner tests need sslyze: pip install -e '.[scan]' (CI runs them)")

from OpenSSL import SSL
from sslyze.plugins.certificate_info.implementation import CertificateInfoScanResult
from sslyze.plugins.compression_plugin import CompressionScanResult
from sslyze.plugins.scan_commands import ScanCommand
from sslyze.plugins.session_renegotiation_plugin import SessionRenegotiationScanResult
from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum, ScanCommandErrorReasonEnum
from sslyze.server_connectivity import ClientAuthRequirementEnum

from gtls.context import compile_context
from gtls.ending import END_WORDS, RENEGOTIATION_REFUSED
from gtls.errors import REASONS
from gtls.resolve import direct
from gtls.testing import CA, Certified
from tests.peers import PKI, write_pki
from tests.scanning import (
    VERSION_SCANS,
    ServerLog,
    accepted,
    attempt,
    completed,
    scan,
    serve_scanned,
    stop_and_read_log,
)

# sslyze's bundled platform trust stores hold a CA with a non-positive serial; cryptography warns when it loads them.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

#: What OpenSSL 3 offers for TLS 1.3 when gtls leaves the TLS 1.3 list alone (spec §8.2 item 5).
OPENSSL_TLS13_DEFAULTS = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("scanner-pki"))


def server_flags(pki: PKI, *extra: str) -> list[str]:
    """The credential flags of ``gtls serve`` (the chain split over two files, intermediate first) plus ``extra``."""
    return ["--certificate", ",".join(map(str, pki.server_chain_files)), "--certificate-key", str(pki.server_key),
            "--trusted-ca", str(pki.ca_file), *extra]


def assert_failures_have_reason_words(logged: ServerLog) -> None:
    """Every failed handshake was logged with a failure word of spec §10, every abnormal end with a gtls.ending word
    (or the handshake reason, for a handshake that failed on first use)."""
    unknown = [entry.text for entry in logged.handshakes if not entry.ok and entry.reason not in REASONS]
    unknown += [entry.text for entry in logged.endings if entry.word not in (*END_WORDS, *REASONS)]
    assert not unknown, unknown


# --- 1. versions -------------------------------------------------------------------------------------------------

# SSLv23 is TLS 1.1-1.3 on paper, but OpenSSL 3 allows TLS 1.0/1.1 only at security level 0 and gtls never lowers
# the security level (spec §8.1), so TLS 1.1 is refused there too.
ALLOWED_VERSIONS = {
    "": {"TLSv1.2", "TLSv1.3"},
    "SSLv23": {"TLSv1.2", "TLSv1.3"},
    "TLSv12": {"TLSv1.2"},
    "TLSv13": {"TLSv1.3"},
}


@pytest.mark.parametrize("sec_protocol", list(ALLOWED_VERSIONS), ids=lambda value: value or "empty")
def test_only_the_versions_sec_protocol_allows(pki: PKI, sec_protocol: str) -> None:
    allowed = ALLOWED_VERSIONS[sec_protocol]
    flags = ["--sec-protocol", sec_protocol] if sec_protocol else []
    with serve_scanned(*server_flags(pki, *flags)) as running:
        result = scan(running.port, VERSION_SCANS.values())
        logged = stop_and_read_log(running)

    by_version = {version: accepted(result, command) for version, command in VERSION_SCANS.items()}
    assert {version for version, suites in by_version.items() if suites} == allowed, by_version
    # The server's side of the same story: every completed handshake used an allowed version, and the legacy
    # hellos (SSL 3.0, TLS 1.0/1.1) were refused as protocol-version.
    assert {entry.version for entry in logged.handshakes if entry.ok} <= allowed
    assert any(entry.reason == "protocol-version" for entry in logged.handshakes), logged.texts()
    assert_failures_have_reason_words(logged)


# An SSL 2.0 hello is not a TLS record at all; SSL 3.0 and TLS 1.0/1.1 hellos are TLS-shaped but below the range.
# sslyze also opens connections it then closes without a complete hello (suites its own OpenSSL cannot offer at
# that version): the server sees the peer leave mid-handshake.
LEGACY_REASONS = {
    "SSLv2": ({"not-tls"}, "not-tls"),
    "SSLv3": ({"protocol-version", "eof-in-handshake"}, "protocol-version"),
    "TLSv1": ({"protocol-version", "eof-in-handshake"}, "protocol-version"),
    "TLSv1.1": ({"protocol-version", "eof-in-handshake"}, "protocol-version"),
}


@pytest.mark.parametrize("version", list(LEGACY_REASONS))
def test_legacy_hellos_are_logged_with_their_reason(pki: PKI, version: str) -> None:
    allowed_reasons, required_reason = LEGACY_REASONS[version]
    with serve_scanned(*server_flags(pki)) as running:
        result = scan(running.port, [VERSION_SCANS[version]])
        logged = stop_and_read_log(running)

    assert accepted(result, VERSION_SCANS[version]) == set()
    failures = [entry for entry in logged.handshakes if not entry.ok]
    assert {entry.reason for entry in failures} <= allowed_reasons, [entry.text for entry in failures]
    assert any(entry.reason == required_reason for entry in failures), logged.texts()
    # Only sslyze's connectivity probe (TLS 1.3 first) gets through.
    assert {entry.version for entry in logged.handshakes if entry.ok} <= {"TLSv1.3"}


# --- 2. ciphers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cipher_list", "sec_protocol", "tls12", "tls13"),
    [
        pytest.param("ECDHE-ECDSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384", "",
                     {"ECDHE-ECDSA-AES256-GCM-SHA384"}, {"TLS_AES_256_GCM_SHA384"}, id="one-each"),
        pytest.param("ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-CHACHA20-POLY1305 TLS_CHACHA20_POLY1305_SHA256",
                     "", {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
                     {"TLS_CHACHA20_POLY1305_SHA256"}, id="mixed-separators"),
        # No TLS 1.3 names: the TLS 1.3 list keeps OpenSSL's defaults (spec §8.2 item 5).
        pytest.param("ECDHE-ECDSA-AES256-GCM-SHA384", "", {"ECDHE-ECDSA-AES256-GCM-SHA384"},
                     OPENSSL_TLS13_DEFAULTS, id="tls12-only-list"),
        pytest.param("TLS_AES_128_GCM_SHA256", "TLSv13", set(), {"TLS_AES_128_GCM_SHA256"}, id="tls13-pinned"),
    ],
)
def test_only_the_configured_ciphers(pki: PKI, cipher_list: str, sec_protocol: str, tls12: set[str],
                                     tls13: set[str]) -> None:
    flags = ["--cipher-list", cipher_list] + (["--sec-protocol", sec_protocol] if sec_protocol else [])
    with serve_scanned(*server_flags(pki, *flags)) as running:
        result = scan(running.port, VERSION_SCANS.values())
        logged = stop_and_read_log(running)

    expected: dict[str, set[str]] = {version: set() for version in VERSION_SCANS} | {"TLSv1.2": tls12, "TLSv1.3": tls13}
    assert {version: accepted(result, command) for version, command in VERSION_SCANS.items()} == expected
    assert {entry.cipher for entry in logged.handshakes if entry.ok} <= tls12 | tls13
    assert_failures_have_reason_words(logged)


# --- 3. compression and renegotiation ------------------------------------------------------------------------------


def test_no_compression_and_no_client_renegotiation(pki: PKI) -> None:
    with serve_scanned(*server_flags(pki)) as running:
        result = scan(running.port, [ScanCommand.TLS_COMPRESSION, ScanCommand.SESSION_RENEGOTIATION])
        logged = stop_and_read_log(running, after=lambda line: "ended:" in line and "handshake_failure" in line)

    compression: CompressionScanResult = completed(result, ScanCommand.TLS_COMPRESSION)
    assert compression.supports_compression is False
    renegotiation: SessionRenegotiationScanResult = completed(result, ScanCommand.SESSION_RENEGOTIATION)
    assert renegotiation.is_vulnerable_to_client_renegotiation_dos is False
    assert renegotiation.client_renegotiations_success_count == 0
    # Secure renegotiation (RFC 5746) is only signalled, so that a client can tell it is not talking to an old
    # server; gtls refuses the renegotiation itself.
    assert renegotiation.supports_secure_renegotiation is True
    # The renegotiation was really tried: sslyze's legacy client completed TLS 1.2 handshakes first (renegotiation
    # does not exist in TLS 1.3, so sslyze downgrades for this test).
    assert any(entry.ok and entry.version == "TLSv1.2" for entry in logged.handshakes), logged.texts()
    # gtls answered the renegotiation hello with a no_renegotiation warning and sslyze's legacy client gave up with
    # a fatal handshake_failure, which ends that connection: gtls.ending calls this renegotiation-refused.
    refused = [entry for entry in logged.endings
               if entry.word == RENEGOTIATION_REFUSED and "handshake_failure" in entry.text]
    assert refused, logged.texts()
    assert_failures_have_reason_words(logged)

    # What gtls guarantees behind those answers: every compiled context refuses renegotiation and compression.
    options = compile_context(direct(pki.server_options(), "server")).ssl_context.set_options(0)
    assert options & SSL.OP_NO_RENEGOTIATION
    assert options & SSL.OP_NO_COMPRESSION


# --- 4. chain order ------------------------------------------------------------------------------------------------


def test_chain_sent_in_valid_order_from_scrambled_files(tmp_path: Path) -> None:
    root = CA.root("scanner chain root")
    upper = root.intermediate("scanner chain upper intermediate")
    lower = upper.intermediate("scanner chain lower intermediate")
    leaf = lower.leaf("localhost", dns=["localhost"])
    # root, leaf, then the intermediates upper-first: nothing is where a server would send it.
    scrambled: list[Certified] = [root, leaf, upper, lower]
    files = [item.write_cert(tmp_path / f"{index}.pem") for index, item in enumerate(scrambled)]
    key = leaf.write_key(tmp_path / "leaf-key.pem")
    ca_file = root.write_cert(tmp_path / "root-ca.pem")

    flags = ["--certificate", ",".join(map(str, files)), "--certificate-key", str(key), "--trusted-ca", str(ca_file)]
    with serve_scanned(*flags) as running:
        result = scan(running.port, [ScanCommand.CERTIFICATE_INFO], ca_file=ca_file)
        logged = stop_and_read_log(running)

    info: CertificateInfoScanResult = completed(result, ScanCommand.CERTIFICATE_INFO)
    expected = [leaf.cert, lower.cert, upper.cert, root.cert]
    deployments = [*info.certificate_deployments, info.certificate_deployment_with_sni_disabled]
    assert len(info.certificate_deployments) == 1  # one leaf, whatever the client offers
    for deployment in deployments:
        assert deployment is not None
        chain = deployment.received_certificate_chain
        assert chain == expected, [c.subject.rfc4514_string() for c in chain]
        for cert, issuer in zip(chain, chain[1:]):
            cert.verify_directly_issued_by(issuer)  # raises if the next certificate did not issue this one
        assert deployment.received_chain_has_valid_order is True
        assert deployment.received_chain_contains_anchor_certificate is True
        supplied = [p for p in deployment.path_validation_results if p.trust_store.path == ca_file]
        assert len(supplied) == 1 and supplied[0].was_validation_successful, supplied
        assert supplied[0].verified_certificate_chain == expected
    assert_failures_have_reason_words(logged)


# --- 5. mutual TLS -------------------------------------------------------------------------------------------------


# TLS 1.3 and TLS 1.2 ask for the client certificate at different points of the handshake; both must refuse.
@pytest.mark.parametrize("sec_protocol", ["", "TLSv12"], ids=["default", "TLSv12"])
def test_mutual_tls_scan_without_client_certificate_is_refused(pki: PKI, sec_protocol: str) -> None:
    flags = ["--tls-mutual"] + (["--sec-protocol", sec_protocol] if sec_protocol else [])
    with serve_scanned(*server_flags(pki, *flags)) as running:
        result = scan(running.port, [ScanCommand.SESSION_RENEGOTIATION])
        logged = stop_and_read_log(running)

    assert result.connectivity_result is not None
    assert result.connectivity_result.client_auth_requirement == ClientAuthRequirementEnum.REQUIRED
    tried = attempt(result, ScanCommand.SESSION_RENEGOTIATION)
    assert tried.status == ScanCommandAttemptStatusEnum.ERROR
    assert tried.error_reason == ScanCommandErrorReasonEnum.CLIENT_CERTIFICATE_NEEDED
    # No connection got through; a client that finished its side without a certificate is logged as
    # no-peer-certificate, one that hung up on the certificate request as eof-in-handshake.
    assert logged.handshakes and not [entry.text for entry in logged.handshakes if entry.ok]
    reasons = {entry.reason for entry in logged.handshakes}
    assert "no-peer-certificate" in reasons
    # (A TLSv12 server also refuses sslyze's first probe, a TLS 1.3 hello, as protocol-version.)
    expected = {"no-peer-certificate", "eof-in-handshake"} | ({"protocol-version"} if sec_protocol else set())
    assert reasons <= expected, logged.texts()
    assert not logged.endings, logged.texts()  # nothing got past a handshake, so nothing ended after one


def test_mutual_tls_scan_with_client_certificate_succeeds(pki: PKI) -> None:
    with serve_scanned(*server_flags(pki, "--tls-mutual")) as running:
        result = scan(running.port, [ScanCommand.SESSION_RENEGOTIATION], client_cert=pki.client_cert,
                      client_key=pki.client_key)
        logged = stop_and_read_log(running)

    renegotiation: SessionRenegotiationScanResult = completed(result, ScanCommand.SESSION_RENEGOTIATION)
    assert renegotiation.client_renegotiations_success_count == 0
    assert logged.handshakes, "the scan made no connection"
    assert [entry.text for entry in logged.handshakes if not (entry.ok and entry.client == "CN=client.test")] == []
