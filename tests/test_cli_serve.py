"""``gtls serve`` run for real, with ``openssl s_client`` (and ``gtls connect``) as peers."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from gtls.cli._common import route_library_logging
from gtls.testing import DemoPKI
from tests.peers import (
    STEP_TIMEOUT,
    LineReader,
    _server_process,
    error_line,
    gtls_env,
    gtls_serve,
    openssl_echo,
    run_gtls,
    wrap_client,
)

DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def pki(localhost_demo: DemoPKI) -> DemoPKI:
    return localhost_demo


def flag_args(pki: DemoPKI) -> list[str]:
    # The root in the list too: a complete chain, so the command starts without warnings.
    return ["--listen", "127.0.0.1:0", "--certificate", f"{pki.server_chain},{pki.root_ca}", "--certificate-key",
            str(pki.server_key), "--trusted-ca", str(pki.root_ca)]


def verifying(pki: DemoPKI) -> list[str]:
    """s_client arguments that make it verify the server like a careful client."""
    return ["-CAfile", str(pki.root_ca), "-verify_return_error", "-verify_hostname", "localhost",
            "-servername", "localhost"]


def test_serve_with_flags_echoes_logs_and_stops_on_sigterm(pki: DemoPKI) -> None:
    with gtls_serve(*flag_args(pki)) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        result = openssl_echo(server.port, "hello gtls", *verifying(pki))
        assert result.echoed, result.stdout + result.stderr
        line = server.stderr.wait_for(lambda text: text.startswith("connection from 127.0.0.1:"))
        assert "TLSv1.3" in line and "TLS_" in line
        assert server.stop(signal.SIGTERM) == 0


def test_serve_stops_cleanly_on_sigint_with_connections_open(pki: DemoPKI) -> None:
    context = ssl.create_default_context(cafile=str(pki.root_ca))
    with gtls_serve(*flag_args(pki)) as server:
        with socket.create_connection((server.host, server.port), timeout=5), \
                context.wrap_socket(socket.create_connection((server.host, server.port), timeout=5),
                                    server_hostname="localhost") as established:
            established.sendall(b"ping\n")
            assert established.recv(100) == b"ping\n"  # one connection in its echo loop, one in its handshake
            started = time.monotonic()
            assert server.stop(signal.SIGINT) == 0
            assert time.monotonic() - started < 5
        assert not any("Traceback" in line for line in server.stderr.drain())


def test_serve_mutual_tls_needs_a_client_certificate(pki: DemoPKI) -> None:
    with gtls_serve(*flag_args(pki), "--tls-mutual") as server:
        good = openssl_echo(server.port, "mutual hello", *verifying(pki), "-cert", str(pki.client_cert),
                            "-cert_chain", str(pki.intermediate_ca), "-key", str(pki.client_key))
        assert good.echoed, good.stdout + good.stderr
        server.stderr.wait_for(lambda text: text.startswith("connection from") and "TLSv1.3" in text)
        bad = openssl_echo(server.port, "no cert", *verifying(pki), timeout=5)
        assert not bad.echoed
        line = server.stderr.wait_for(lambda text: "failed" in text)
        assert line.startswith("connection from 127.0.0.1:") and "failed: no-peer-certificate" in line
        assert server.stop() == 0


def test_serve_names_the_certificate_at_fault_of_a_refused_client(pki: DemoPKI, tmp_path: Path) -> None:
    """A client whose intermediate has expired: the failure line names depth 1 and the intermediate (as gtls
    connect does), then the client's own subject, instead of reading as if the client's certificate had expired."""
    inter = pki.root.intermediate("expired client intermediate", not_before=-10 * DAY, not_after=-DAY)
    leaf = inter.leaf("client.x", eku=("client",))
    cert, key = leaf.write_cert(tmp_path / "client.pem"), leaf.write_key(tmp_path / "client.key")
    with gtls_serve(*flag_args(pki), "--tls-mutual") as server:
        result = openssl_echo(server.port, "refused", *verifying(pki), "-cert", str(cert), "-key", str(key),
                              "-cert_chain", str(inter.write_cert(tmp_path / "inter.pem")), timeout=5)
        assert not result.echoed
        line = server.stderr.wait_for(lambda text: "failed" in text)
        assert server.stop() == 0
    assert "failed: expired: " in line, line
    assert line.endswith("(depth 1; subject CN=expired client intermediate; client CN=client.x)"), line


def test_serve_logs_the_reason_word_of_failed_handshakes(pki: DemoPKI) -> None:
    with gtls_serve(*flag_args(pki), "--handshake-timeout", "0.5", "--sec-protocol", "TLSv12",
                    "--cipher-list", "ECDHE-ECDSA-AES128-GCM-SHA256") as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert "failed: not-tls" in server.stderr.wait_for(lambda text: "failed" in text)
        with socket.create_connection((server.host, server.port), timeout=5):
            assert "failed: timeout" in server.stderr.wait_for(lambda text: "failed" in text, timeout=5)
        openssl_echo(server.port, "x", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", timeout=5)
        assert "failed: no-shared-cipher" in server.stderr.wait_for(lambda text: "failed" in text)
        openssl_echo(server.port, "x", "-tls1_3", timeout=5)
        assert "failed: protocol-version" in server.stderr.wait_for(lambda text: "failed" in text)
        assert server.stop() == 0


def test_serve_marks_a_resumed_session_in_its_connection_line(pki: DemoPKI) -> None:
    """README: the connection line is VERSION CIPHER, then ` resumed` for a resumed session, then `client SUBJECT`."""
    context = ssl.create_default_context(cafile=str(pki.root_ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # a TLS 1.2 session is held as soon as the handshake ends
    context.load_cert_chain(str(pki.client_chain), str(pki.client_key))
    with gtls_serve(*flag_args(pki), "--tls-mutual") as server:
        session = None
        for _ in range(2):
            with context.wrap_socket(socket.create_connection((server.host, server.port), timeout=STEP_TIMEOUT),
                                     server_hostname="localhost", session=session) as conn:
                conn.sendall(b"ping\n")
                assert conn.recv(100) == b"ping\n"
                session, reused = conn.session, conn.session_reused
        assert reused
        lines = [server.stderr.wait_for(lambda text: ": TLSv1.2 " in text) for _ in range(2)]
        assert server.stop() == 0
    first, second = (line.split(": ", 1)[1] for line in lines)
    version, cipher, client = first.split(" ", 2)
    assert version == "TLSv1.2" and client == "client CN=gtls demo client", lines
    assert second == f"{version} {cipher} resumed {client}", lines


def test_serve_quiet_logs_nothing_per_connection(pki: DemoPKI) -> None:
    with gtls_serve(*flag_args(pki), "--quiet") as server:
        assert openssl_echo(server.port, "quiet please", *verifying(pki)).echoed
        assert server.stop() == 0
        assert not [line for line in server.stderr.drain() if line.startswith("connection from")]


def test_serve_without_arguments_uses_the_demo_pki_and_prints_how_to_connect(tmp_path: Path) -> None:
    env = gtls_env(tmp_path / "data")
    with gtls_serve("--listen", "127.0.0.1:0", env=env) as server:
        demo = tmp_path / "data" / "demo"
        assert (demo / "root-ca.pem").is_file()
        hint_gtls = server.stderr.wait_for(lambda text: text.strip().startswith("gtls connect "))
        hint_openssl = server.stderr.wait_for(lambda text: text.strip().startswith("openssl s_client "))
        assert str(demo / "root-ca.pem") in hint_gtls and str(demo / "root-ca.pem") in hint_openssl
        assert f"localhost:{server.port}" in hint_gtls
        # The printed commands work as printed.
        connect = run_gtls(*shlex.split(hint_gtls.strip())[1:], env=env)
        assert connect.returncode == 0, connect.stderr
        assert "received: hello" in connect.stdout and "sni: localhost" in connect.stdout
        assert "warning" not in connect.stderr, connect.stderr
        openssl_args = shlex.split(hint_openssl.strip())[2:]
        echo = openssl_echo(server.port, "demo echo", *openssl_args, "-verify_return_error")
        assert echo.echoed, echo.stdout + echo.stderr
        assert server.stop(signal.SIGINT) == 0
    # A second run reuses the same demo PKI.
    before = (tmp_path / "data" / "demo" / "server-cert.pem").read_bytes()
    with gtls_serve("--listen", "127.0.0.1:0", env=env) as server:
        assert server.stop() == 0
        assert not any("created the demo PKI" in line for line in server.stderr.drain())
    assert (tmp_path / "data" / "demo" / "server-cert.pem").read_bytes() == before


def test_a_bare_serve_plans_the_demo_pki_on_127_0_0_1_9443(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """design.md §6: with no arguments, the demo PKI on 127.0.0.1:9443 (planned only: the port may be in use here,
    and the tests above serve the demo on a free port)."""
    from gtls.cli import build_parser
    from gtls.cli._serve import _plan

    monkeypatch.setenv("GTLS_DATA_DIR", str(tmp_path / "data"))
    plan = _plan(build_parser().parse_args(["serve"]), [])
    assert (plan.host, plan.port) == ("127.0.0.1", 9443)
    assert plan.demo is not None and plan.demo.directory == tmp_path / "data" / "demo"
    assert plan.resolved.options.certificate_key == str(plan.demo.server_key)


def test_serve_demo_on_ipv6_loopback_prints_commands_that_work(tmp_path: Path) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    env = gtls_env(tmp_path / "data")
    with gtls_serve("--listen", "[::1]:0", env=env) as server:
        hint = server.stderr.wait_for(lambda text: text.strip().startswith("gtls connect "))
        assert f"[::1]:{server.port}" in hint and "--tls-target-name localhost" in hint
        connect = run_gtls(*shlex.split(hint.strip())[1:], env=env)
        assert connect.returncode == 0, connect.stderr
        assert "received: hello" in connect.stdout and "sni: localhost" in connect.stdout
        hint_openssl = server.stderr.wait_for(lambda text: text.strip().startswith("openssl s_client "))
        assert f"-connect [::1]:{server.port}" in hint_openssl and "-servername localhost" in hint_openssl
        assert server.stop() == 0


def test_serve_demo_with_mutual_tls_hints_include_the_client_certificate(tmp_path: Path) -> None:
    env = gtls_env(tmp_path / "data")
    with gtls_serve("--listen", "127.0.0.1:0", "--tls-mutual", env=env) as server:
        hint = server.stderr.wait_for(lambda text: text.strip().startswith("gtls connect "))
        assert "--certificate" in hint and "client-key.pem" in hint
        connect = run_gtls(*shlex.split(hint.strip())[1:], env=env)
        assert connect.returncode == 0, connect.stderr
        # As printed, with no warning (the client's list used to end at the intermediate: "chain ends at …").
        assert "warning" not in connect.stderr, connect.stderr
        assert server.stop() == 0


@pytest.mark.parametrize("sample", ["simple-tls.toml", "mutual-tls.toml"])
def test_serve_from_a_deployment_file(sample: str, fixtures: Path) -> None:
    config = fixtures / sample
    from gtls.deployment import load_deployment

    deployment = load_deployment(config)
    ports = [e for e in deployment.endpoints() if e.role == "server"]
    clients = [e for e in deployment.endpoints() if e.role == "client"]
    app, _, port_id = ports[0].object_path.removeprefix("applications.").partition(".ports.")
    ca = fixtures / "ca" / "certauth.pem"
    with gtls_serve("--config", str(config), "--app", app, "--port-id", port_id, "--listen", "127.0.0.1:0") as server:
        args = ["-CAfile", str(ca), "-verify_return_error"]
        if sample == "mutual-tls.toml":
            # clthostcert.pem holds the leaf then its intermediate; s_client's -cert sends only the first.
            client_chain = str(fixtures / "certs" / "clthostcert.pem")
            client_key = str(fixtures / "certs" / "cltprivkey.pem")
            args += ["-cert", client_chain, "-cert_chain", client_chain, "-key", client_key]
        echo = openssl_echo(server.port, f"hello {sample}", *args)
        assert echo.echoed, echo.stdout + echo.stderr
        # gtls connect from the same file, its connection pointed at this port.
        client = next(e for e in clients if e.resolved.secure)
        client_app, _, connection_id = client.object_path.removeprefix("applications.").partition(".connections.")
        connect = run_gtls("connect", f"127.0.0.1:{server.port}", "--config", str(config), "--app", client_app,
                           "--connection", connection_id, "--send", "from the file")
        assert connect.returncode == 0, connect.stderr
        assert "received: from the file" in connect.stdout
        assert server.stop() == 0


def test_serve_configuration_errors_exit_2_naming_option_level_and_file(pki: DemoPKI, tmp_path: Path) -> None:
    missing = tmp_path / "missing-key.pem"
    result = run_gtls("serve", "--listen", "127.0.0.1:0", "--certificate", str(pki.server_chain),
                      "--certificate-key", str(missing), "--trusted-ca", str(pki.root_ca))
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ")
    assert "certificate-key" in line and str(missing) in line and "Port" in line
    result = run_gtls("serve", "--listen", "127.0.0.1:0", "--certificate", str(pki.server_chain),
                      "--certificate-key", str(pki.server_key))
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and "trusted-ca" in line and "Port" in line
    result = run_gtls("serve", *flag_args(pki), "--sec-protocol", "TLSv1")
    assert result.returncode == 2 and "sec-protocol" in error_line(result)
    result = run_gtls("serve", "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 2 and error_line(result).startswith("gtls: usage error: ")
    result = run_gtls("serve", "--listen", "nonsense")
    assert result.returncode == 2 and "HOST:PORT" in error_line(result)


def test_serve_reports_a_port_in_use(pki: DemoPKI) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_gtls("serve", *flag_args(pki)[2:], "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert error_line(result).startswith(f"gtls: listen-failed: cannot listen on 127.0.0.1:{port}")


def test_serve_with_its_standard_output_closed_says_so(pki: DemoPKI) -> None:
    """Only a port that cannot be opened is listen-failed: a reader of stdout that left before the port was printed
    (``gtls serve | true``) gets its own word, and the port is not reported as unavailable."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gtls", "serve", *flag_args(pki)[2:], "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gtls_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the interpreter has even started: the first print meets a closed pipe
    try:
        code = process.wait(timeout=STEP_TIMEOUT)
    finally:
        process.kill()
    lines = process.stderr.read().splitlines()
    process.stderr.close()
    assert code == 1
    assert lines[-1].startswith("gtls: stdout-closed: ") and "Traceback" not in "\n".join(lines)
    assert not any("listen-failed" in line for line in lines)


def test_serve_deployment_port_choice_and_plaintext_ports(pki: DemoPKI, tmp_path: Path) -> None:
    config = tmp_path / "two-ports.toml"
    config.write_text(f"""
[applications.app.security]
certificate = "{pki.server_chain},{pki.root_ca}"
certificate-key = "{pki.server_key}"
trusted-ca = "{pki.root_ca}"
[applications.app.ports.secure]
port = 0
transport = "tls=1"
[applications.app.ports.plain]
port = 0
transport = ""
""")
    checked = run_gtls("check", "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    plain = "applications.app.ports.plain  (server on 127.0.0.1:0)  ok\n  secure: no (plaintext: gtls serve and gtls"
    assert plain + " connect refuse it)" in checked.stdout
    result = run_gtls("serve", "--config", str(config), "--app", "app")
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: DeploymentError: applications.app: ") and "--port-id" in line
    assert "secure, plain" in line and str(config) in line
    result = run_gtls("serve", "--config", str(config), "--app", "app", "--port-id", "plain")
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: DeploymentError: applications.app.ports.plain: tls: ")
    assert "not secure" in line
    result = run_gtls("serve", "--config", str(config), "--app", "app", "--port-id", "secure", "--sec-protocol",
                      "TLSv13")
    assert result.returncode == 2 and "cannot be combined with --config" in error_line(result)
    with gtls_serve("--config", str(config), "--app", "app", "--port-id", "secure") as server:
        assert server.port > 0  # port 0 in the file: a free port, reported on stdout
        assert openssl_echo(server.port, "from the file", *verifying(pki)).echoed
        assert server.stop() == 0


def test_serve_runtime_flag_checks() -> None:
    for flags, word in ((["--max-handshakes", "0"], "--max-handshakes"), (["--handshake-timeout", "-1"],
                                                                          "--handshake-timeout"),
                        (["--handshake-timeout", "nan"], "--handshake-timeout"),
                        (["--listen", "[::1]x"], "HOST:PORT"), (["--listen", "::1:80"], "brackets"),
                        (["--listen", "a" * 70 + ":0"], "label too long")):  # was a 50-line traceback
        result = run_gtls("serve", *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert error_line(result).startswith("gtls: usage error: ") and word in result.stderr


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_while_stopping_still_exits_0(pki: DemoPKI, second: signal.Signals) -> None:
    """``timeout(1)`` signals gtls serve and then its whole process group, a supervisor may repeat itself, a user
    presses Ctrl-C twice: a second signal, arriving while the first one's stop is under way, must not turn the clean
    stop into exit 143 or 130. Open connections make the stop take long enough for it to land there (it was
    re-sent under the default action once trio's receiver had given the default handlers back)."""
    context = ssl.create_default_context(cafile=str(pki.root_ca))
    for gap in (0.002, 0.01, 0.03, 0.06):  # the stop's length varies with the machine: land in it somewhere
        process = subprocess.Popen(
            [sys.executable, "-m", "gtls", "serve", *flag_args(pki)[2:], "--listen", "127.0.0.1:0", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gtls_env(),
        )
        stop = threading.Event()

        def churn(port: int, stop: threading.Event) -> None:  # handshakes going on while the server stops
            for _ in range(500):
                if stop.is_set():
                    return
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                            wrap_client(context, raw) as conn:
                        conn.sendall(b"x\n")
                        conn.recv(10)
                except OSError:  # the server stopped: this socket is closed by its with, the thread ends
                    return

        with contextlib.ExitStack() as connections:
            try:
                assert process.stdout is not None
                port = int(process.stdout.readline().rsplit(":", 1)[1])
                for index in range(40):
                    raw = connections.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
                    if index % 2:  # half in their echo loop, half waiting in their handshake
                        connections.enter_context(context.wrap_socket(raw, server_hostname="localhost"))
                churners = [threading.Thread(target=churn, args=(port, stop)) for _ in range(4)]
                for thread in churners:
                    thread.start()
                time.sleep(0.2)
                process.send_signal(signal.SIGTERM)
                time.sleep(gap)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(second)
                _, err = process.communicate(timeout=STEP_TIMEOUT)
            finally:
                stop.set()
                process.kill()
            for thread in churners:
                thread.join(timeout=STEP_TIMEOUT)
        assert process.returncode == 0, (gap, err)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, wait for the exit (killed after STEP_TIMEOUT), close the stdout pipe."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STEP_TIMEOUT)
    finally:
        process.kill()
        assert process.stdout is not None
        process.stdout.close()


def test_serve_goes_on_when_its_log_lines_cannot_be_written(pki: DemoPKI) -> None:
    """stderr on a full disk (or a log reader that left): the per-connection lines are lost, the port is not. The
    first connection that ended abnormally after its handshake used to stop the server (exit 1)."""
    with open("/dev/full", "w") as full:  # noqa: PTH123 - a device, not a file
        process = subprocess.Popen(
            [sys.executable, "-m", "gtls", "serve", *flag_args(pki)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=full, text=True, env=gtls_env(),
        )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(pki.root_ca))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")  # failed: not-tls
            with contextlib.suppress(OSError):
                plain.recv(100)
        for _ in range(2):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                conn.sendall(b"hello\n")
                assert conn.recv(100) == b"hello\n"
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            # closed with a reset: ended: reset
        time.sleep(0.5)
        assert process.poll() is None, "the server stopped"
        assert openssl_echo(port, "still here", *verifying(pki)).echoed
    finally:
        _stop(process)
    assert process.returncode == 0


def test_library_errors_print_as_errors_and_leave_key_material_out() -> None:
    """The command routes gtls's own log records to stderr: ERROR records (EMFILE on accept, a raising hook) read
    ``gtls: error:``, not ``gtls: warning:``, and no record prints a key."""
    package = logging.getLogger("gtls")
    saved = (list(package.handlers), package.level, package.propagate)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            package.handlers.clear()
            route_library_logging()
            logging.getLogger("gtls.server").warning("a warning")
            logging.getLogger("gtls.server").error("accept returned %s", "EMFILE")
            logging.getLogger("gtls.config").warning("value %r", "-----BEGIN PRIVATE KEY-----\nMIIE\n")
    finally:
        package.handlers[:], package.level, package.propagate = saved
    assert err.getvalue().splitlines() == [
        "gtls: warning: a warning",
        "gtls: error: accept returned EMFILE",
        "gtls: warning: value '[PEM content not shown]'",
    ]


def _run_to_full_stdout(*args: str) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:  # noqa: PTH123 - a device, not a file
        return subprocess.run([sys.executable, "-m", "gtls", *args], stdin=subprocess.DEVNULL, stdout=full,
                              stderr=subprocess.PIPE, text=True, env=gtls_env(), timeout=STEP_TIMEOUT)


def test_a_stdout_that_cannot_take_the_output_is_one_stdout_closed_line(pki: DemoPKI) -> None:
    """Only a reader that left (EPIPE) was handled: a full disk, or a closed stdout, gave a traceback (serve,
    check, --version) and gtls serve exited 1 with an ExceptionGroup printed."""
    config = str(Path(__file__).resolve().parents[1] / "certs-fixtures" / "simple-tls.toml")
    cases = {("serve", *flag_args(pki)): "the port", ("check", "--config", config): "the command's output",
             ("--version",): "the command's output"}
    for args, what in cases.items():
        result = _run_to_full_stdout(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and lines == [
            f"gtls: stdout-closed: standard output could not take {what} (No space left on device); stopping"
        ], (args, result.stderr)
    closed = subprocess.run([sys.executable, "-m", "gtls", "serve", *flag_args(pki)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=gtls_env(),
                            timeout=STEP_TIMEOUT, preexec_fn=lambda: os.close(1))  # noqa: PLW1509 - closes fd 1
    assert closed.returncode == 1 and "stdout-closed" in closed.stderr and "Traceback" not in closed.stderr


def test_serve_starts_when_stderr_cannot_take_its_start_up_warnings(pki: DemoPKI) -> None:
    """A start-up warning (here a chain that does not end at a root) written to a full stderr raised, and the
    server never listened: warnings are lost there, the port is not."""
    leaf_only = ["--listen", "127.0.0.1:0", "--certificate", str(pki.server_chain), "--certificate-key",
                 str(pki.server_key), "--trusted-ca", str(pki.root_ca)]
    with open("/dev/full", "w") as full:  # noqa: PTH123 - a device, not a file
        process = subprocess.Popen([sys.executable, "-m", "gtls", "serve", *leaf_only], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=full, text=True, env=gtls_env())
    try:
        assert process.stdout is not None
        line = LineReader(process.stdout).wait_for(lambda text: text.startswith("listening on "))
        assert openssl_echo(int(line.rsplit(":", 1)[1]), "hi", *verifying(pki)).echoed
    finally:
        _stop(process)
    assert process.returncode == 0


@pytest.mark.parametrize("listen", ["127.0.0.1:\u00b2", "127.0.0.1:\u0663"])
def test_a_port_in_other_digits_is_a_usage_error(pki: DemoPKI, listen: str) -> None:
    """str.isdigit() took '²' (then a ValueError traceback) and the Arabic-Indic '٣', which int() reads as 3: the
    server listened on port 3."""
    result = run_gtls("serve", *flag_args(pki)[2:], "--listen", listen)
    assert result.returncode == 2 and result.stderr.startswith("gtls: usage error: --listen must be HOST:PORT")


def test_a_name_with_two_addresses_prints_each_listening_socket(pki: DemoPKI) -> None:
    """A --listen name with two addresses (localhost: ::1 and 127.0.0.1 on many systems) listens on each, and with
    port 0 each socket gets its own port: only the first was printed, and a client dialling the other address with
    that port was refused."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    dual = (
        "import socket, sys\n"
        "real = socket.getaddrinfo\n"
        "def lookup(host, *rest, **named):\n"
        "    if host in ('dual.test', b'dual.test'):\n"
        "        return real('::1', *rest, **named) + real('127.0.0.1', *rest, **named)\n"
        "    return real(host, *rest, **named)\n"
        "socket.getaddrinfo = lookup\n"
        "from gtls.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    with _server_process([sys.executable, "-c", dual, "serve", *flag_args(pki)[2:], "--listen", "dual.test:0"],
                         "listening on ", env=gtls_env()) as server:
        second = server.stdout.wait_for(lambda text: text.startswith("listening on "))
        ports = {server.port, int(second.rsplit(":", 1)[1])}
        hosts = {server.host, second.removeprefix("listening on ").rpartition(":")[0].strip("[]")}
        assert hosts == {"::1", "127.0.0.1"}, (server.host, second)
        assert all(port > 0 for port in ports)
        assert server.stop(signal.SIGTERM) == 0


def test_a_serve_that_fails_gives_back_the_signal_handlers_and_the_log_level(pki: DemoPKI) -> None:
    """gtls serve ignores SIGINT/SIGTERM from before its port opens (a second signal while stopping must not kill
    it). When it fails instead (here: the port is taken), a process that goes on, like this one running the command
    in-process, must still stop on Ctrl-C: the handlers it found come back. So does the level of the gtls.server
    logger, which the command raises to ERROR (it prints each handshake itself): left raised, the process's server
    warnings were lost from then on."""
    from tests.config_abuse_helpers import run_cli  # in this process, with its logging restored afterwards

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    level = logging.getLogger("gtls.server").level
    with socket.create_server(("127.0.0.1", 0)) as taken:
        result = run_cli("serve", "--quiet", *flag_args(pki)[2:], "--listen", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.code == 1 and "listen-failed" in result.err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert logging.getLogger("gtls.server").level == level
