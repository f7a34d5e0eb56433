"""``gtls connect`` run for real against ``openssl s_server`` and raw TCP peers: success and every failure reason
that can be provoked from outside, each checked by exit code and its exact ``gtls: REASON: `` stderr line."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from gtls.testing import DemoPKI, write_pem
from tests.peers import (
    STEP_TIMEOUT,
    close_after_hello,
    closed_port,
    error_line,
    gtls_env,
    gtls_serve,
    plaintext_reply,
    raw_server,
    run_gtls,
    s_server,
    silent,
    version_4_certificate,
)
from tests.test_cli_check import _pair_config as pair_config


@pytest.fixture(scope="module")
def pki(localhost_demo: DemoPKI) -> DemoPKI:
    return localhost_demo


def server_args(pki: DemoPKI) -> list[str]:
    # s_server's -cert sends only the first certificate; -cert_chain adds the intermediate.
    return ["-cert", str(pki.server_cert), "-cert_chain", str(pki.intermediate_ca), "-key", str(pki.server_key)]


def trusting(pki: DemoPKI) -> list[str]:
    return ["--trusted-ca", str(pki.root_ca)]


def connect(port: int, *args: str, host: str = "localhost") -> tuple[int, str, str]:
    result = run_gtls("connect", f"{host}:{port}", *args)
    return result.returncode, result.stdout, result.stderr


def assert_fails_with(reason: str, port: int, *args: str, host: str = "localhost") -> str:
    result = run_gtls("connect", f"{host}:{port}", *args)
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = error_line(result)
    assert line.startswith(f"gtls: {reason}: "), line
    assert result.stdout == "", "the session is printed only on success"
    return line


def test_connect_prints_version_cipher_sni_and_chain(pki: DemoPKI) -> None:
    with s_server(*server_args(pki), "-rev") as server:
        code, out, err = connect(server.port, *trusting(pki), "--tls-target-name-check", "host",
                                 "--send", "hello gtls")
    assert code == 0, err
    assert f"connected to localhost:{server.port}" in out
    assert "version: TLSv1.3" in out and "cipher: TLS_" in out and "sni: localhost" in out
    assert "peer chain (2 certificates, leaf first):" in out
    assert "0 subject: CN=localhost" in out and "issuer:  CN=gtls demo intermediate CA" in out
    assert "1 subject: CN=gtls demo intermediate CA" in out and "valid:" in out
    assert "received: sltg olleh" in out  # s_server -rev sends each line back reversed
    assert err == ""


def test_connect_prints_a_chain_cryptography_cannot_load_as_openssl_read_it(pki: DemoPKI, tmp_path: Path) -> None:
    """A server certificate OpenSSL verifies but cryptography refuses to load (version field 3): the session printout
    read the chain through cryptography and ended in a traceback (audit 44)."""
    leaf = pki.intermediate.leaf("localhost", dns=["localhost"])
    cert = write_pem(tmp_path / "v4-cert.pem", version_4_certificate(leaf, pki.intermediate))
    key = leaf.write_key(tmp_path / "v4-key.pem")
    with s_server("-cert", str(cert), "-cert_chain", str(pki.intermediate_ca), "-key", str(key)) as server:
        code, out, err = connect(server.port, *trusting(pki))
    assert code == 0, err
    assert "Traceback" not in err
    assert "peer chain (2 certificates, leaf first, as OpenSSL read it; cryptography cannot load it:" in out
    assert "0 subject: CN=localhost" in out and "issuer:  CN=gtls demo intermediate CA" in out
    assert "1 subject: CN=gtls demo intermediate CA" in out


def test_connect_prints_a_chain_with_an_unverified_extra_certificate_cryptography_cannot_load(
        pki: DemoPKI, tmp_path: Path) -> None:
    """A server sends, after its path, a certificate OpenSSL parses but never verifies, whose time has an offset
    (cryptography refuses it): the printout read it with a strict time format and ended in a traceback."""
    from tests.test_ssl_compat import with_validity

    extra = with_validity(pki.intermediate.leaf("extra.test"), (0x17, b"261227235922Z"), (0x17, b"361228005545+0100"))
    chain = write_pem(tmp_path / "chain.pem", pki.intermediate.cert_pem, ssl.DER_cert_to_PEM_cert(extra).encode())
    with s_server("-cert", str(pki.server_cert), "-cert_chain", str(chain), "-key", str(pki.server_key)) as server:
        code, out, err = connect(server.port, *trusting(pki))
    assert code == 0 and "Traceback" not in err, err
    assert "peer chain (3 certificates, leaf first, as OpenSSL read it; cryptography cannot load it:" in out
    assert "2 subject: CN=extra.test" in out and "Dec 27 23:55:45 2036 GMT" in out, out


def test_connect_tls12_and_ip_address_sends_no_sni(pki: DemoPKI) -> None:
    with s_server(*server_args(pki), "-tls1_2") as server:
        code, out, err = connect(server.port, *trusting(pki), host="127.0.0.1")
    assert code == 0, err
    assert "version: TLSv1.2" in out and "sni: (none sent)" in out


def test_untrusted(pki: DemoPKI) -> None:
    with s_server(*server_args(pki)) as server:
        line = assert_fails_with("untrusted", server.port, "--trusted-ca", str(pki.second_root_ca))
    assert f"peer localhost:{server.port}" in line or "peer 127.0.0.1" in line


def test_expired(pki: DemoPKI, tmp_path: Path) -> None:
    old = pki.intermediate.leaf("localhost", dns=["localhost"], not_before=dt.timedelta(days=-20),
                                not_after=dt.timedelta(days=-10))
    cert = old.write_cert(tmp_path / "old-cert.pem")
    key = old.write_key(tmp_path / "old-key.pem")
    with s_server("-cert", str(cert), "-cert_chain", str(pki.intermediate_ca), "-key", str(key)) as server:
        line = assert_fails_with("expired", server.port, *trusting(pki))
    assert "depth 0" in line


def test_name_mismatch(pki: DemoPKI) -> None:
    with s_server(*server_args(pki)) as server:
        assert_fails_with("name-mismatch", server.port, *trusting(pki), "--tls-target-name-check", "host",
                          "--tls-target-name", "elsewhere.example.test")
        # Dialling the IP address: the iPAddress SAN is never consulted (spec §7).
        assert_fails_with("name-mismatch", server.port, *trusting(pki), "--tls-target-name-check", "host",
                          host="127.0.0.1")


def test_protocol_version(pki: DemoPKI) -> None:
    with s_server(*server_args(pki), "-tls1_2") as server:
        assert_fails_with("protocol-version", server.port, *trusting(pki), "--sec-protocol", "TLSv13")


def test_peer_alert_when_the_server_shares_no_cipher(pki: DemoPKI) -> None:
    with s_server(*server_args(pki), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384") as server:
        line = assert_fails_with("peer-alert", server.port, *trusting(pki), "--sec-protocol", "TLSv12",
                                 "--cipher-list", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "handshake" in line


def test_peer_alert_when_a_tls13_server_wants_a_client_certificate(pki: DemoPKI) -> None:
    # In TLS 1.3 the client finishes before the server judges it; gtls connect must still report the refusal.
    with s_server(*server_args(pki), "-Verify", "1", "-CAfile", str(pki.root_ca)) as server:
        assert_fails_with("peer-alert", server.port, *trusting(pki))
        code, out, err = connect(server.port, *trusting(pki), "--certificate", str(pki.client_chain),
                                 "--certificate-key", str(pki.client_key), host="127.0.0.1")
    assert code == 0, err


def test_not_tls(pki: DemoPKI) -> None:
    with raw_server(plaintext_reply) as port:
        assert_fails_with("not-tls", port, *trusting(pki), host="127.0.0.1")


def test_eof_in_handshake(pki: DemoPKI) -> None:
    with raw_server(close_after_hello) as port:
        assert_fails_with("eof-in-handshake", port, *trusting(pki), host="127.0.0.1")


def test_timeout_against_a_silent_server(pki: DemoPKI) -> None:
    with raw_server(silent(10)) as port:
        line = assert_fails_with("timeout", port, *trusting(pki), "--timeout", "0.5",
                                 host="127.0.0.1")
    assert "0.5" in line


def test_connect_failed_on_a_closed_port(pki: DemoPKI) -> None:
    line = assert_fails_with("connect-failed", closed_port(), *trusting(pki), host="127.0.0.1")
    assert "cannot connect to 127.0.0.1:" in line and "Connection refused" in line  # the reason, not only "failed"


def test_configuration_errors_exit_2(pki: DemoPKI, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = run_gtls("connect", "localhost:1", "--trusted-ca", str(missing))
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and "trusted-ca" in line and str(missing) in line
    assert "Connection" in line
    result = run_gtls("connect", "localhost:1")  # unix profile: a client needs trusted-ca
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and "trusted-ca" in line and "Connection" in line
    result = run_gtls("connect", "localhost:1", "--trusted-ca", str(pki.root_ca), "--tls-target-name-check", "maybe")
    assert result.returncode == 2 and "tls-target-name-check" in error_line(result)
    result = run_gtls("connect", "--trusted-ca", str(pki.root_ca))
    assert result.returncode == 2 and error_line(result).startswith("gtls: usage error: ")
    # A thumbprint in --trusted-ca is refused as one (spec §4.4), not made into a missing file of the folder.
    thumbprint = "89A0C1D46701935D89A0C1D46701935D89A0C1D4"
    result = run_gtls("connect", "localhost:1", "--trusted-ca", thumbprint)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and "looks like a thumbprint" in line and "not found" not in line
    # --crl is the alias of --tls-crl: two different files at one level conflict (spec §3.2 step 7).
    result = run_gtls("connect", "localhost:1", *trusting(pki), "--tls-crl", str(pki.crl), "--crl", str(missing))
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and "crl" in line


def test_a_connections_host_the_name_check_cannot_take_exits_2_before_dialling(fixtures: Path, tmp_path: Path) -> None:
    """A deployment connection's ``host`` the name check refuses is a configuration error naming that key (it was
    dialled first: a resolver's "Name or service not known", exit 1). The deployment is gtls check's test pair."""
    config = pair_config(fixtures, tmp_path, 'host = "my!host"')
    result = run_gtls("connect", "--config", str(config), "--app", "c", "--connection", "x")
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: InvalidOptionValue: applications.c.connections.x: host: ") and (
        "'my!host'" in line and "level" not in line)



@pytest.mark.parametrize(
    "reason",
    ["not-yet-valid", "revoked", "crl-unavailable", "crl-expired", "crl-not-yet-valid", "crl-signature", "bad-purpose",
     "bad-ca"],
)
def test_certificate_reasons(pki: DemoPKI, tmp_path: Path, reason: str) -> None:
    """One fault at a time in the server's certificate (or the client's CRL file), against openssl s_server."""
    issuer = pki.intermediate
    options: dict[str, object] = {"dns": ["localhost"]}
    if reason == "bad-ca":
        issuer = pki.root.intermediate("not a CA", ca=False)
    if reason == "not-yet-valid":
        options.update(not_before=dt.timedelta(days=5), not_after=dt.timedelta(days=30))
    if reason == "bad-purpose":
        options["eku"] = ("client",)
    leaf = issuer.leaf("localhost", **options)  # type: ignore[arg-type]
    cert, key = leaf.write_cert(tmp_path / "cert.pem"), leaf.write_key(tmp_path / "key.pem")
    chain = issuer.write_cert(tmp_path / "issuer.pem")
    client = [*trusting(pki)]
    if reason == "revoked":
        crls = write_pem(tmp_path / "crl.pem", pki.intermediate.crl(revoked=[leaf]))
        client += ["--tls-crl", str(crls)]
    if reason == "crl-unavailable":
        crls = write_pem(tmp_path / "crl.pem", pki.root.crl())  # nothing from the leaf's issuer
        client += ["--tls-crl", str(crls)]
    day = dt.timedelta(days=1)
    crl_faults = {"crl-expired": {"this_update": -10 * day, "next_update": -day},
                  "crl-not-yet-valid": {"this_update": day, "next_update": 10 * day},
                  "crl-signature": {"signer": pki.root.key}}
    if reason in crl_faults:
        crls = write_pem(tmp_path / "crl.pem", pki.intermediate.crl(**crl_faults[reason]))  # type: ignore[arg-type]
        client += ["--tls-crl", str(crls)]
    with s_server("-cert", str(cert), "-cert_chain", str(chain), "-key", str(key)) as server:
        line = assert_fails_with(reason, server.port, *client)
    assert "subject CN=" in line


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("connect", ["--config", "d.toml"], "--config needs --app NAME and --connection ID"),
        ("connect", ["--config", "d.toml", "--app", "a"], "--config needs --app NAME and --connection ID"),
        ("connect", ["h:1", "--connection", "c"], "--app and --connection need --config FILE"),
        ("connect", ["--config", "d.toml", "--app", "a", "--connection", "c", "--profile", "unix"], "(got --profile)"),
        ("connect", ["h:1", "--timeout", "0"], "--timeout must be a positive number of seconds"),
        ("serve", ["--config", "d.toml"], "--config needs --app NAME"),
        ("serve", ["--port-id", "p"], "--app and --port-id need --config FILE"),
        ("serve", ["--config", "d.toml", "--app", "a", "--trusted-ca", "ca.pem"], "(got --trusted-ca)"),
    ],
)
def test_settings_source_usage_errors(command: str, args: list[str], expected: str) -> None:
    """connect and serve check their settings source the same way, before reading any file."""
    result = run_gtls(command, *args)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: usage error: ") and expected in line


@pytest.mark.parametrize(("command", "args", "expected"), [
    ("connect", ["h:1", "--tls-mutual"], "unrecognized arguments: --tls-mutual; --tls-mutual is a server setting "
                                         "(gtls serve) (see 'gtls connect --help')"),
    ("connect", ["h:1", "--tls-mutual=1"], "unrecognized arguments: --tls-mutual=1; --tls-mutual is a server "
                                           "setting (gtls serve) (see 'gtls connect --help')"),
    ("serve", ["--bogus"], "unrecognized arguments: --bogus (see 'gtls serve --help')"),
    ("check", ["--config", "d.toml", "extra"], "unrecognized arguments: extra (see 'gtls check --help')"),
    ("", ["--bogus"], "unrecognized arguments: --bogus (see 'gtls --help')"),
    ("--bogus", ["connect", "h:1"], "unrecognized arguments: --bogus (see 'gtls --help')"),
])
def test_an_unknown_flag_points_to_the_subcommands_help(command: str, args: list[str], expected: str) -> None:
    """argparse reported flags a subcommand does not take from the top parser, pointing to ``gtls --help``, which
    does not list them; ``--tls-mutual`` on connect (a server-only flag) also says where it belongs. A flag given
    before the subcommand's name is the top parser's (``gtls --bogus connect``)."""
    result = run_gtls(*([command] if command else []), *args)
    assert result.returncode == 2
    assert error_line(result) == f"gtls: usage error: {expected}"


@pytest.mark.parametrize(("args", "expected"), [
    (["serve", "--listen", "nothere"], "--listen must be HOST:PORT, got 'nothere' (see 'gtls serve --help')"),
    (["connect"], "give HOST:PORT to connect to, or --config FILE --app NAME --connection ID "
                  "(see 'gtls connect --help')"),
    (["pki", "/nonexistent-gtls-dir/pki", "--days", "0"], "--days must be from 1 to 36500 (see 'gtls pki --help')"),
])
def test_a_usage_error_found_after_parsing_points_to_the_subcommands_help(args: list[str], expected: str) -> None:
    """README: every usage error names the help of the subcommand given; those the subcommand finds itself (a bad
    --listen, a missing target) said nothing of it (audit 51)."""
    result = run_gtls(*args)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: usage error: ") and line.endswith(expected), line


def test_config_connection_keeps_its_reference_name_when_the_target_is_overridden(fixtures: Path) -> None:
    """``HOST:PORT`` beside ``--config`` changes only where to dial: the connection's ``host`` (localhost in the
    sample) stays the reference name and SNI, so dialling 127.0.0.1 on another port still passes the name check."""
    config = fixtures / "samples" / "name-check.toml"
    with gtls_serve("--config", str(config), "--app", "statserver", "--listen", "127.0.0.1:0") as server:
        result = run_gtls("connect", "--config", str(config), "--app", "reporter", "--connection", "stats",
                          f"127.0.0.1:{server.port}", "--send", "hi")
        assert server.stop() == 0
    assert result.returncode == 0, result.stderr
    assert "sni: localhost" in result.stdout and "received: hi" in result.stdout


def test_warnings_behind_a_configuration_error_are_printed(fixtures: Path, tmp_path: Path) -> None:
    """A miscased option name is not applied (spec §1.1), which then makes the level incomplete: the warning that
    says why comes before the error line, from connect and serve alike, and in gtls check's report."""
    config = tmp_path / "miscased.toml"
    config.write_text(f"""
[applications.app.security]
Trusted-ca = "{fixtures / 'ca' / 'certauth.pem'}"
certificate = "{fixtures / 'demo' / 'server-chain.pem'}"
certificate-key = "{fixtures / 'demo' / 'server-key.pem'}"
[applications.app.ports.p]
port = 1
transport = "tls=1"
[applications.app.connections.c]
server = "app"
""")
    for args in (("connect", "--config", str(config), "--app", "app", "--connection", "c"),
                 ("serve", "--config", str(config), "--app", "app")):
        result = run_gtls(*args)
        lines = result.stderr.splitlines()
        assert result.returncode == 2, result.stderr
        assert "case-sensitive" in lines[0] and lines[0].startswith("gtls: warning: ")
        assert lines[-1].startswith("gtls: config error: ") and "trusted-ca" in lines[-1]
    result = run_gtls("check", "--config", str(config), "--json")
    document = json.loads(result.stdout)
    (endpoint,) = [e for e in document["endpoints"] if e["object_path"].endswith("ports.p")]
    assert endpoint["error"] is not None and any("case-sensitive" in w for w in endpoint["warnings"])


def test_connect_whose_output_reader_left_says_so_in_one_line(pki: DemoPKI) -> None:
    """``gtls connect … | head -1``: the connection went through, but the session cannot all be printed. One
    ``stdout-closed`` line and exit 1, as ``gtls serve`` does, not a BrokenPipeError traceback."""
    with s_server(*server_args(pki)) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "gtls", "connect", f"localhost:{server.port}", *trusting(pki)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gtls_env(),
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader leaves before anything is printed
        try:
            code = process.wait(timeout=STEP_TIMEOUT)
        finally:
            process.kill()
        err = process.stderr.read()
        process.stderr.close()
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gtls: stdout-closed: "), lines


def test_connect_to_a_name_no_resolver_takes_is_one_usage_line(pki: DemoPKI) -> None:
    """A label over 63 characters failed in the resolver with a 35-line traceback."""
    result = run_gtls("connect", "a" * 70 + ":443", *trusting(pki))
    assert result.returncode == 2, result.stderr
    assert error_line(result).startswith("gtls: usage error: HOST:PORT: ") and "label too long" in result.stderr


def test_a_connection_that_breaks_after_its_handshake_reports_its_ending_word(pki: DemoPKI) -> None:
    """A Python-ssl server completes the handshake, reads the line, and drops TCP without close_notify: the command
    says ``truncated`` (the connection-end word), not ``connect-failed``, which means no TCP connection at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_chain, pki.server_key)

    def answer_then_drop(raw: socket.socket) -> None:
        conn = context.wrap_socket(raw, server_side=True)
        conn.recv(100)
        socket.socket(fileno=conn.detach()).close()  # no close_notify

    with raw_server(answer_then_drop) as port:
        line = assert_fails_with("truncated", port, *trusting(pki), "--send", "hello")
    assert f"connection to localhost:{port} ended after the handshake" in line and "close_notify" in line


def test_connect_offers_alpn_and_prints_what_was_agreed(pki: DemoPKI) -> None:
    with s_server(*server_args(pki), "-alpn", "http/1.1") as server:
        code, out, err = connect(server.port, *trusting(pki), "--alpn", "h2, http/1.1")
        assert code == 0, err
        assert "alpn: http/1.1" in out.splitlines()
        # s_server refuses a client with nothing in common (gtls's own server goes on without ALPN instead)
        line = assert_fails_with("peer-alert", server.port, *trusting(pki), "--alpn", "h2")
        assert "no_application_protocol" in line
    with s_server(*server_args(pki)) as server:  # no ALPN at all
        code, out, err = connect(server.port, *trusting(pki), "--alpn", "h2")
        assert code == 0, err
        assert "alpn: (none agreed)" in out.splitlines()
        code, out, _ = connect(server.port, *trusting(pki))
        assert code == 0 and not [line for line in out.splitlines() if line.startswith("alpn:")]  # none offered
    result = run_gtls("connect", "localhost:1", *trusting(pki), "--alpn", "h2,,http/1.1")
    assert result.returncode == 2 and error_line(result).startswith("gtls: usage error: --alpn: ")


def test_connect_whose_stdout_cannot_take_the_session_says_so_in_one_line(pki: DemoPKI) -> None:
    """A full disk (or a closed stdout) behind gtls connect gave an OSError (or AttributeError) traceback: only a
    reader that left was handled."""
    with s_server(*server_args(pki)) as server, open("/dev/full", "w") as full:  # noqa: PTH123 - a device
        result = subprocess.run(
            [sys.executable, "-m", "gtls", "connect", f"localhost:{server.port}", *trusting(pki)],
            stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE, text=True, env=gtls_env(),
            timeout=STEP_TIMEOUT,
        )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and lines == [
        "gtls: stdout-closed: standard output could not take the session (No space left on device)"], lines


@pytest.mark.parametrize("after", [(0x18, b"99991231235959-1200"), (0x18, b"00010101000000+0100")])
def test_connect_prints_an_unverified_extra_certificate_whose_time_overflows(
        pki: DemoPKI, tmp_path: Path, after: tuple[int, bytes]) -> None:
    """A time at the very edge of the calendar with an offset that carries it past year 9999 (or before year 1):
    OpenSSL reads 'Bad time value'; the reader's offset arithmetic raised OverflowError, which the printout does
    not catch (review2)."""
    from tests.test_ssl_compat import with_validity

    extra = with_validity(pki.intermediate.leaf("extra.test"), (0x17, b"261227235922Z"), after)
    chain = write_pem(tmp_path / "chain.pem", pki.intermediate.cert_pem, ssl.DER_cert_to_PEM_cert(extra).encode())
    with s_server("-cert", str(pki.server_cert), "-cert_chain", str(chain), "-key", str(pki.server_key)) as server:
        code, out, err = connect(server.port, *trusting(pki))
    assert code == 0 and "Traceback" not in err, err
    assert "2 subject: CN=extra.test" in out and "Bad time value" in out, out
