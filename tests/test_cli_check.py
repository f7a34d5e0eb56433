"""``gtls check``: every endpoint resolved and compiled, options with their levels, shadowed options, warnings,
errors that do not stop the report; text and JSON; exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gtls.testing import CA, DemoPKI, write_pem
from tests.peers import STEP_TIMEOUT, error_line, gtls_env, gtls_serve, run_gtls


@pytest.fixture(scope="module")
def pki(localhost_demo: DemoPKI) -> DemoPKI:
    return localhost_demo


def check_json(config: Path) -> tuple[int, dict[str, Any]]:
    result = run_gtls("check", "--config", str(config), "--json")
    return result.returncode, json.loads(result.stdout)


def by_path(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {endpoint["object_path"]: endpoint for endpoint in document["endpoints"]}


def test_check_simple_tls_sample_text(fixtures: Path) -> None:
    result = run_gtls("check", "--config", str(fixtures / "simple-tls.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "applications.statserver.ports.default  (server on 127.0.0.1:9443)  ok" in out
    assert "applications.reporter.connections.stats  (client to 127.0.0.1:9443" in out
    assert "secure: yes, settings from level Host" in out
    certificate_line = next(line for line in out.splitlines() if line.strip().startswith("certificate "))
    assert certificate_line.endswith("[Host]") and "hostcert.pem" in certificate_line
    assert any(line.strip().startswith("tls ") and line.endswith("[Target port]") for line in out.splitlines())
    assert "chain sent: CN=localhost" in out
    assert "2 endpoints, 0 errors" in out


def test_check_mutual_tls_sample_json(fixtures: Path) -> None:
    code, document = check_json(fixtures / "mutual-tls.toml")
    assert code == 0 and document["ok"] is True and document["errors"] == 0
    endpoints = by_path(document)
    port = endpoints["applications.statserver.ports.default"]
    assert port["role"] == "server" and port["secure"] is True and port["level"] == "Host"
    assert port["options"]["tls-mutual"] == {"value": "1", "source": "P", "level": "Port"}
    assert port["options"]["certificate"]["source"] == "H"
    assert [c["subject"] for c in port["chain"]][0] == "CN=localhost"
    client = endpoints["applications.reporter.connections.stats"]
    assert client["role"] == "client" and client["error"] is None
    assert client["options"]["tls-crl"]["level"] == "Host"
    assert client["chain"], "the client presents its certificate in mutual TLS"


def write_deployment(folder: Path, text: str) -> Path:
    path = folder / "deploy.toml"
    path.write_text(text)
    return path


def test_check_reports_every_endpoint_and_fails_on_errors(pki: DemoPKI, tmp_path: Path) -> None:
    missing = tmp_path / "missing-key.pem"
    config = write_deployment(tmp_path, f"""
[hosts.h.security]
trusted-ca = "{pki.root_ca}"
certificate = "{pki.server_chain}"
certificate-key = "{pki.server_key}"

[applications.good]
host = "h"
[applications.good.ports.main]
address = "127.0.0.1"
port = 9001
transport = "tls=1"

[applications.broken]
host = "h"
[applications.broken.ports.main]
address = "127.0.0.1"
port = 9002
transport = "tls=1;certificate={pki.server_chain};certificate-key={missing};trusted-ca={pki.root_ca}"

[applications.split]
host = "h"
[applications.split.security]
sec-protocol = "TLSv13"
[applications.split.ports.main]
address = "127.0.0.1"
port = 9003
transport = "tls=1"

[applications.misnamed.security]
trusted-ca = "{pki.root_ca}"
tls-target-name-check = "host"
tls-target-name = "-bad.example"
[applications.misnamed.connections.c]
server = "good"
""")
    code, document = check_json(config)
    assert code == 1 and document["ok"] is False and document["errors"] == 3
    endpoints = by_path(document)
    assert endpoints["applications.good.ports.main"]["error"] is None
    broken = endpoints["applications.broken.ports.main"]["error"]
    assert broken["type"] == "CredentialLoadError" and broken["option"] == "certificate-key"
    assert broken["level"] == "Port" and broken["file"] == str(missing)
    split = endpoints["applications.split.ports.main"]
    assert split["error"]["type"] == "IncompleteTlsLevel" and split["error"]["level"] == "Application"
    # A reference name OpenSSL could not check is a configuration error here, not at the first connection.
    misnamed = endpoints["applications.misnamed.connections.c"]["error"]
    assert misnamed["type"] == "InvalidOptionValue" and misnamed["option"] == "tls-target-name"
    assert misnamed["level"] == "Application"
    # The text report says the same, per endpoint, and keeps going after an error.
    result = run_gtls("check", "--config", str(config))
    assert result.returncode == 1
    assert "applications.good.ports.main  (server on 127.0.0.1:9001)  ok" in result.stdout
    assert "error: CredentialLoadError:" in result.stdout and str(missing) in result.stdout
    assert "error: IncompleteTlsLevel:" in result.stdout
    assert "4 endpoints, 3 errors" in result.stdout


def shadowed_of(endpoint: dict[str, Any]) -> set[tuple[str, str]]:
    return {(item["level"], item["option"]) for item in endpoint["shadowed"]}


def test_check_shows_shadowed_options(pki: DemoPKI, tmp_path: Path) -> None:
    config = write_deployment(tmp_path, f"""
[hosts.h.security]
trusted-ca = "/elsewhere/ca.pem"
sec-protocol = "TLSv12"

[applications.app]
host = "h"
[applications.app.security]
trusted-ca = "{pki.root_ca}"
certificate = "{pki.server_chain},{pki.root_ca}"
certificate-key = "{pki.server_key}"
[applications.app.ports.main]
address = "127.0.0.1"
port = 9001
transport = "tls=1"
""")
    code, document = check_json(config)
    assert code == 0, document
    port = document["endpoints"][0]
    assert port["level"] == "Application"
    assert {("Host", "trusted-ca"), ("Host", "sec-protocol")} <= shadowed_of(port)
    text = run_gtls("check", "--config", str(config)).stdout
    assert "shadowed: sec-protocol = TLSv12  [Host, not used]" in text


def test_check_lists_shadowed_options_beside_a_resolution_error(pki: DemoPKI, tmp_path: Path) -> None:
    """The Port holds only a certificate, so it is the effective level and incomplete; the Application's full set
    is what the user likely meant, and the report lists it as shadowed beside the error (it was [] before)."""
    config = write_deployment(tmp_path, f"""
[applications.app.security]
trusted-ca = "{pki.root_ca}"
certificate = "{pki.server_chain}"
certificate-key = "{pki.server_key}"
[applications.app.ports.main]
address = "127.0.0.1"
port = 9001
transport = "tls=1;certificate={pki.server_chain}"
""")
    code, document = check_json(config)
    assert code == 1, document
    port = document["endpoints"][0]
    assert port["error"]["type"] == "IncompleteTlsLevel" and port["error"]["level"] == "Port"
    assert shadowed_of(port) == {("Application", "trusted-ca"), ("Application", "certificate"),
                                 ("Application", "certificate-key")}
    text = run_gtls("check", "--config", str(config)).stdout
    assert "shadowed: certificate-key = " in text and "[Application, not used]" in text


def test_check_keeps_shadowed_options_beside_a_load_error(pki: DemoPKI, tmp_path: Path) -> None:
    """Resolution succeeds and a file then fails to load: the shadowed options found by resolution stay in the report
    (the error's own list, empty for a load error, must not replace them)."""
    config = write_deployment(tmp_path, f"""
[hosts.h.security]
sec-protocol = "TLSv12"
[applications.app]
host = "h"
[applications.app.security]
trusted-ca = "{pki.root_ca}"
certificate = "{tmp_path / 'missing.pem'}"
certificate-key = "{pki.server_key}"
[applications.app.ports.main]
address = "127.0.0.1"
port = 9001
transport = "tls=1"
""")
    code, document = check_json(config)
    assert code == 1, document
    port = document["endpoints"][0]
    assert port["error"]["type"] == "CredentialLoadError"
    assert shadowed_of(port) == {("Host", "sec-protocol")}


def test_check_warnings(pki: DemoPKI, tmp_path: Path) -> None:
    soon = pki.intermediate.leaf("soon.example.test", dns=["soon.example.test"], not_after=dt.timedelta(days=10))
    soon_key = soon.write_key(tmp_path / "soon-key.pem")
    # Scrambled across files (root, leaf, then intermediate) plus an unrelated certificate.
    scrambled = write_pem(tmp_path / "scrambled.pem", pki.root, soon, pki.second_root, pki.intermediate)
    group_key = pki.server.write_key(tmp_path / "group-key.pem")
    group_key.chmod(0o640)
    due_crl = write_pem(tmp_path / "due-crl.pem", pki.root.crl(next_update=dt.timedelta(days=3)),
                        pki.intermediate.crl(next_update=dt.timedelta(days=3)))
    old = pki.intermediate.leaf("old.example.test", not_before=dt.timedelta(days=-10), not_after=dt.timedelta(days=-1))
    old_chain = write_pem(tmp_path / "old.pem", old, pki.intermediate)
    old_key = old.write_key(tmp_path / "old-key.pem")
    short_ca = write_pem(tmp_path / "short-ca.pem", CA.root("short root", not_after=dt.timedelta(days=5)))
    config = write_deployment(tmp_path, f"""
[applications.app.ports.soon]
address = "127.0.0.1"
port = 9001
transport = "tls=1;certificate={scrambled};certificate-key={soon_key};trusted-ca={pki.root_ca}"
[applications.app.ports.group]
address = "127.0.0.1"
port = 9002
transport = "tls=1;certificate={pki.server_chain};certificate-key={group_key};trusted-ca={pki.root_ca}"
[applications.app.ports.old]
address = "127.0.0.1"
port = 9003
transport = "tls=1;certificate={old_chain};certificate-key={old_key};trusted-ca={short_ca}"
[applications.app.connections.crl]
server = "app"
port-id = "soon"
transport = "tls=1;trusted-ca={pki.root_ca};tls-crl={due_crl}"
""")
    code, document = check_json(config)
    assert code == 0, document
    endpoints = by_path(document)
    soon_warnings = " | ".join(endpoints["applications.app.ports.soon"]["warnings"])
    assert "CN=soon.example.test (depth 0) expires on" in soon_warnings
    assert "another order" in soon_warnings and "second root" in soon_warnings
    assert [c["subject"] for c in endpoints["applications.app.ports.soon"]["chain"]] == [
        "CN=soon.example.test", "CN=gtls demo intermediate CA", "CN=gtls demo root CA"]
    assert "readable by its group" in " | ".join(endpoints["applications.app.ports.group"]["warnings"])
    old_warnings = " | ".join(endpoints["applications.app.ports.old"]["warnings"])
    assert "certificate: certificate CN=old.example.test expired on" in old_warnings
    assert old_warnings.count("CN=old.example.test") == 1, old_warnings  # said once, by the compilation
    assert "trusted-ca: CN=short root expires on" in old_warnings and "days left" in old_warnings
    crl_warnings = " | ".join(endpoints["applications.app.connections.crl"]["warnings"])
    assert "due for update" in crl_warnings
    text = run_gtls("check", "--config", str(config)).stdout
    assert "warning: certificate CN=soon.example.test (depth 0) expires on" in text


def test_check_unloadable_file_exits_2(tmp_path: Path) -> None:
    config = write_deployment(tmp_path, "[applications.app\nbroken = ")
    result = run_gtls("check", "--config", str(config))
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and str(config) in line and "TOML" in line
    code, document = check_json(config)
    assert code == 2 and document["ok"] is False and document["error"]["type"] == "DeploymentError"
    result = run_gtls("check")
    assert result.returncode == 2 and error_line(result).startswith("gtls: usage error: ")


def test_check_refuses_a_fifo_or_oversized_config_at_once(tmp_path: Path) -> None:
    """``--config`` naming a FIFO hung the command forever (now: opened without blocking, refused); a 100 MB file
    was read whole and called "not valid TOML" (now: refused unread, over the 4 MiB limit). One line each, exit 2."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: costs no disk
    for config, words in ((fifo, "is a pipe that gave nothing"), (huge, "over gtls's limit of 4 MiB")):
        result = run_gtls("check", "--config", str(config))  # killed, failing the test, after STEP_TIMEOUT
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert error_line(result) == f"gtls: config error: DeploymentError: deployment file {config}: " + (
            "is a pipe that gave nothing (a FIFO with no writer reads as empty)" if config == fifo
            else f"file is {100 * 1024 * 1024} bytes, over gtls's limit of 4 MiB")
        assert words in error_line(result)


def test_check_reads_a_config_from_standard_input(tmp_path: Path) -> None:
    """``gtls check --config /dev/stdin`` with the file piped in (review: refused as not a regular file)."""
    config = tmp_path / "ok.toml"
    config.write_text('[applications.app]\nhost = "h"\n[hosts.h]\n')
    result = subprocess.run([sys.executable, "-m", "gtls", "check", "--config", "/dev/stdin"], input=config.read_text(),
                            capture_output=True, text=True, timeout=STEP_TIMEOUT, env=gtls_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deployment /dev/stdin\n")


def test_check_json_on_a_file_that_cannot_be_loaded_keeps_the_document_shape(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[x")
    code, document = check_json(config)
    assert code == 2
    assert document["ok"] is False and document["errors"] == 1 and document["warnings"] == []
    assert document["endpoints"] == [] and document["error"]["type"] == "DeploymentError"


def test_check_json_stays_json_where_values_need_escapes(pki: DemoPKI, tmp_path: Path) -> None:
    """Key material was left out of the serialized JSON text, so an escape's letter went with the run after it:
    a thumbprint copied with U+200E (spec §4.4) printed as ``\\u200eA8AD…``, whose ``u200eA8AD…`` looked like key
    base64 and was cut to ``\\[base64 not shown…``, an invalid escape; so did a pasted key body after ``\\n``.
    Values are now redacted before serializing (audit 83)."""
    thumbprint = "\u200e" + "A8AD624A214D3F69F536F141E4EE54C26851CE31"
    key_body = "\n".join(line for line in pki.server.key_pem.decode().splitlines() if not line.startswith("-----"))
    pasted = json.dumps("\n" + key_body)
    config = tmp_path / "escapes.toml"
    config.write_text(textwrap.dedent(f"""
        [hosts.h.security]
        certificate = {json.dumps(str(pki.server_chain))}
        certificate-key = {json.dumps(str(pki.server_key))}
        trusted-ca = {json.dumps(str(pki.root_ca))}
        [applications.app]
        host = "h"
        certificate-source = "Host"
        [applications.app.security]
        certificate = {json.dumps(thumbprint)}
        cipher-list = {pasted}
        [applications.app.ports.default]
        port = 0
        transport = "tls=1"
        """))
    code, document = check_json(config)
    port = by_path(document)["applications.app.ports.default"]
    shadowed = {item["option"]: item["value"] for item in port["shadowed"]}
    assert shadowed["certificate"] == thumbprint
    assert shadowed["cipher-list"] == "[base64 not shown: it may be key material]"
    assert code == 0


def test_security_no_endpoint_reads_is_named_with_what_is_wrong_in_it(tmp_path: Path) -> None:
    """Settings are resolved per endpoint (spec §3), so a Host no application runs on, or an Application without
    ports or connections, had its [security] checked by nothing: ``trusted-ca = 5`` and a misspelt option passed
    ``gtls check`` without a word. Now a warning names the table, why it is unused and what is wrong in it."""
    config = tmp_path / "unused.toml"
    config.write_text(textwrap.dedent("""
        [hosts.used]
        [hosts.spare.security]
        trusted-ca = 5
        [hosts.typo.security]
        tls-mutal = "1"
        [hosts.bare]
        [applications.idle]
        host = "used"
        [applications.idle.security]
        sec-protocol = "TLSv13"
        """))
    code, document = check_json(config)
    assert code == 0 and document["endpoints"] == []
    assert sorted(document["warnings"]) == [
        "applications.idle.security is never used: the application has no ports or connections",
        "hosts.spare.security is never used: no application runs on this host; trusted-ca: expected a string, "
        "got int 5",
        "hosts.typo.security is never used: no application runs on this host; tls-mutal: unknown option, ignored; "
        "did you mean 'tls-mutual'?",
    ]


def test_check_tries_each_connection_against_the_port_it_targets(fixtures: Path, tmp_path: Path) -> None:
    """A deployment whose ends cannot meet passed gtls check: every endpoint compiled, and the pair failed only when
    deployed. Now each connection makes one handshake with its target port (over a local socket pair, the runtime's
    own streams) and a failure is the connection's error, with the reason word and the end that refused."""
    config = tmp_path / "pairs.toml"
    config.write_text(textwrap.dedent(f"""
        [hosts.srv.security]
        trusted-ca = "{fixtures}/ca/certauth.pem"
        certificate = "{fixtures}/certs/servhostcert.pem"
        certificate-key = "{fixtures}/certs/servprivkey.pem"
        sec-protocol = "TLSv13"
        [hosts.cli.security]
        trusted-ca = "{fixtures}/ca/certauth.pem"
        [applications.s]
        host = "srv"
        certificate-source = "Host"
        [applications.s.ports.mutual]
        port = 0
        transport = "tls=1;tls-mutual=1"
        [applications.s.ports.plain]
        port = 0
        transport = "tls=1"
        [applications.c]
        host = "cli"
        certificate-source = "Host"
        [applications.c.connections.fine]
        server = "s"
        port-id = "plain"
        [applications.c.connections.no-certificate]
        server = "s"
        port-id = "mutual"
        [applications.c.connections.other-name]
        server = "s"
        port-id = "plain"
        transport = "trusted-ca={fixtures}/ca/certauth.pem;tls-target-name-check=host;tls-target-name=stats.example"
        [applications.c.connections.old-protocol]
        server = "s"
        port-id = "plain"
        transport = "trusted-ca={fixtures}/ca/certauth.pem;sec-protocol=TLSv12"
        """))
    code, document = check_json(config)
    endpoints = by_path(document)
    handshakes = {path.rsplit(".", 1)[1]: (e["handshake"]["ok"], e["handshake"]["side"], e["handshake"]["reason"])
                  for path, e in endpoints.items() if e["role"] == "client"}
    assert handshakes == {
        "fine": (True, None, None),
        "no-certificate": (False, "server", "no-peer-certificate"),
        "other-name": (False, "client", "name-mismatch"),
        "old-protocol": (False, "server", "protocol-version"),
    }
    assert code == 1 and document["errors"] == 3 and not document["ok"]
    fine = endpoints["applications.c.connections.fine"]["handshake"]
    assert fine["with"] == "applications.s.ports.plain" and fine["tls_version"] == "TLSv1.3" and fine["cipher"]
    assert all(e["handshake"] is None for e in endpoints.values() if e["role"] == "server")
    text = run_gtls("check", "--config", str(config)).stdout
    assert "applications.c.connections.fine  (client to 127.0.0.1:0)  ok\n" in text
    assert "applications.c.connections.no-certificate  (client to 127.0.0.1:0)  ERROR\n" in text
    assert ("  handshake with applications.s.ports.mutual: FAILED: no-peer-certificate (the server refused the client "
            "(peer did not return a certificate): it sent no certificate, and tls-mutual=1 (level Port of "
            "applications.s.ports.mutual) requires one" in text), text
    assert "FAILED: name-mismatch (the client refused the server's certificate: certificate names" in text, text
    assert "  handshake with applications.s.ports.plain: ok (TLSv1.3, TLS_" in text


def _pair_config(fixtures: Path, folder: Path, connection: str) -> Path:
    config = folder / "pair.toml"
    config.write_text(textwrap.dedent(f"""
        [hosts.srv.security]
        trusted-ca = "{fixtures}/ca/certauth.pem"
        certificate = "{fixtures}/certs/servhostcert.pem"
        certificate-key = "{fixtures}/certs/servprivkey.pem"
        [hosts.cli.security]
        trusted-ca = "{fixtures}/ca/certauth.pem"
        tls-target-name-check = "host"
        [applications.s]
        host = "srv"
        certificate-source = "Host"
        [applications.s.ports.p]
        port = 0
        transport = "tls=1"
        [applications.c]
        host = "cli"
        certificate-source = "Host"
        [applications.c.connections.fine]
        server = "s"
        host = "localhost"
        [applications.c.connections.x]
        server = "s"
        {connection}
        """))
    return config


def test_a_dialled_name_the_name_check_cannot_take_is_the_connections_error(fixtures: Path, tmp_path: Path) -> None:
    """A connection dialling a name the name check refuses ('my!host': gtls connect refuses it before dialling)
    passed compilation, then made the handshake's stream raise inside gtls check: the whole report was lost (no JSON
    document, every other endpoint unreported), exit 2 for one connection's fault, and the socket pair leaked. Now it
    is that connection's error, found with its other checks, and the report goes on."""
    config = _pair_config(fixtures, tmp_path, 'host = "my!host"')
    warn = {**gtls_env(), "PYTHONWARNINGS": "always::ResourceWarning"}
    result = run_gtls("check", "--config", str(config), "--json", env=warn)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "ResourceWarning" not in result.stderr
    endpoints = by_path(json.loads(result.stdout))
    error = endpoints["applications.c.connections.x"]["error"]
    assert (error["type"], error["option"]) == ("InvalidOptionValue", "host") and "my!host" in error[
        "message"]
    assert endpoints["applications.c.connections.x"]["handshake"] is None
    assert endpoints["applications.c.connections.fine"]["handshake"]["ok"]


def test_an_end_refusing_without_an_alert_is_named_at_once(fixtures: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pyOpenSSL's private API the client checks the server's name after the handshake and refuses without
    an alert: the server then waited for the probe byte until the rehearsal's 5 s timeout, and the outcome read
    'timeout' with no refusing end. The refusing end now closes at once: name-mismatch, refused by the client."""
    from gtls import _rehearsal
    from gtls.context import compile_context
    from gtls.deployment import load_deployment
    from gtls.pki import hostcheck

    monkeypatch.setattr(hostcheck, "AVAILABLE", False)
    deployment = load_deployment(_pair_config(fixtures, tmp_path, 'host = "stats.example"'))
    client = deployment.connection("c", "x")
    server = compile_context(deployment.port("s", "p").resolved)
    outcome = _rehearsal.rehearse(compile_context(client.resolved), server, client.server_hostname, timeout=3)
    assert (outcome.ok, outcome.side, outcome.reason) == (False, "client", "name-mismatch"), outcome


def test_an_end_refusing_without_an_alert_ends_the_rehearsal_at_once(fixtures: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same refusal with a long timeout: the refusing end closes its stream, so the outcome comes at once, not
    when the wait ends (the outcome alone cannot tell: at the timeout the refusing end is still named; audit 61)."""
    import time

    from gtls import _rehearsal
    from gtls.context import compile_context
    from gtls.deployment import load_deployment
    from gtls.pki import hostcheck

    monkeypatch.setattr(hostcheck, "AVAILABLE", False)
    deployment = load_deployment(_pair_config(fixtures, tmp_path, 'host = "stats.example"'))
    client = deployment.connection("c", "x")
    server = compile_context(deployment.port("s", "p").resolved)
    started = time.monotonic()
    outcome = _rehearsal.rehearse(compile_context(client.resolved), server, client.server_hostname, timeout=60)
    assert (outcome.ok, outcome.side, outcome.reason) == (False, "client", "name-mismatch"), outcome
    assert time.monotonic() - started < 20


def test_a_rehearsal_that_cannot_start_leaves_no_socket_open(fixtures: Path, tmp_path: Path) -> None:
    """rehearse() makes its socket pair before its streams: a stream that cannot be made (a dialled name the name
    check refuses) raises, and both sockets are closed, not left to the garbage collector (audit 61)."""
    import gc
    import warnings

    from gtls import _rehearsal
    from gtls.context import compile_context
    from gtls.deployment import load_deployment
    from gtls.errors import InvalidOptionValue

    deployment = load_deployment(_pair_config(fixtures, tmp_path, 'host = "localhost"'))
    client = compile_context(deployment.connection("c", "x").resolved)
    server = compile_context(deployment.port("s", "p").resolved)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InvalidOptionValue):
            _rehearsal.rehearse(client, server, "my!host")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]


def test_a_connection_to_a_port_with_an_error_is_not_rehearsed(fixtures: Path, tmp_path: Path) -> None:
    """A port that does not compile has no context to meet: its connection keeps its own outcome (no error, no
    handshake), and only the port counts as an error; it must not read as a gtls bug of the connection (audit 61)."""
    config = _pair_config(fixtures, tmp_path, 'host = "localhost"')
    config.write_text(config.read_text().replace('transport = "tls=1"',
                                                 f'transport = "tls=1;certificate-key={tmp_path}/none.pem"'))
    code, document = check_json(config)
    endpoints = by_path(document)
    assert endpoints["applications.s.ports.p"]["error"] is not None
    for conn in ("fine", "x"):
        assert endpoints[f"applications.c.connections.{conn}"]["error"] is None
        assert endpoints[f"applications.c.connections.{conn}"]["handshake"] is None
    assert code == 1 and document["errors"] == 1




def test_an_unexpected_error_in_a_rehearsal_is_that_connections_error(
        fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug inside one connection's handshake rehearsal is that connection's error, named a gtls bug; the report
    goes on with the other connections and exits 1 (the same rule as for a bug while compiling; audit 61)."""
    from gtls import _rehearsal

    real = _rehearsal.rehearse

    def rehearse(client: Any, server: Any, server_hostname: str | None, *args: Any) -> Any:
        if server_hostname == "127.0.0.1":  # connection x: dialled by address
            raise RuntimeError("rehearsal broke")
        return real(client, server, server_hostname, *args)

    monkeypatch.setattr(_rehearsal, "rehearse", rehearse)
    monkeypatch.setenv("GTLS_DATA_DIR", str(tmp_path))
    config = _pair_config(fixtures, tmp_path, 'host = "127.0.0.1"')
    from gtls.cli import main

    code = main(["check", "--config", str(config), "--json"])
    endpoints = by_path(json.loads(capsys.readouterr().out))
    error = endpoints["applications.c.connections.x"]["error"]
    assert (error["type"], error["message"]) == ("RuntimeError", "unexpected error (a gtls bug): rehearsal broke")
    assert endpoints["applications.c.connections.x"]["handshake"] is None
    assert endpoints["applications.c.connections.fine"]["handshake"]["ok"]
    assert code == 1


def test_a_rehearsal_without_an_outcome_names_no_refusing_end(
        fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A handshake with no outcome in time is a timeout refused by neither end: the text says so without naming
    one (audit 61)."""
    import functools

    from gtls import _rehearsal

    monkeypatch.setattr(_rehearsal, "rehearse", functools.partial(_rehearsal.rehearse, timeout=0))
    monkeypatch.setenv("GTLS_DATA_DIR", str(tmp_path))
    from gtls.cli import main

    code = main(["check", "--config", str(_pair_config(fixtures, tmp_path, 'host = "localhost"'))])
    text = capsys.readouterr().out
    assert "  handshake with applications.s.ports.p: FAILED: timeout (no outcome within 0 s)\n" in text, text
    assert code == 1


def test_check_warnings_read_as_the_runtime_logs_them(pki: DemoPKI, tmp_path: Path) -> None:
    """Audit 71: the warnings of reading the files (a group-readable key, a chain without its root) came in the
    report without the endpoint and level gtls serve and gtls connect print them with (and the report gives them
    itself when the endpoint then fails), so a line of the report could not be found in the runtime's log."""
    group_key = pki.server.write_key(tmp_path / "group-key.pem")
    group_key.chmod(0o640)
    config = write_deployment(tmp_path, f"""
[hosts.h.security]
certificate = "{pki.server_chain}"
certificate-key = "{group_key}"
trusted-ca = "{pki.root_ca}"
[applications.app]
host = "h"
[applications.app.ports.p]
address = "127.0.0.1"
port = 0
transport = "tls=1;tls-mutal=1"
""")
    code, document = check_json(config)
    assert code == 0, document
    reported = document["endpoints"][0]["warnings"]
    head = "applications.app.ports.p: Host: "
    assert f"{head}certificate-key: private key file {group_key} is readable by its group (mode 640); " \
           "consider chmod 600" in reported, reported
    assert any(w.startswith(f"{head}certificate: chain ends at CN=gtls demo intermediate CA") for w in reported)
    with gtls_serve("--config", str(config), "--app", "app") as server:
        server.stop()
        logged = [line.removeprefix("gtls: warning: ") for line in server.stderr.drain()
                  if line.startswith("gtls: warning: ")]
    assert sorted(logged) == sorted([*document["warnings"], *reported])
