"""Design §3: the TOML deployment file, its errors, and the committed E1/E2 samples."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtls import (
    ConfigError,
    DeploymentError,
    Endpoint,
    IncompleteTlsLevel,
    InvalidOptionValue,
    Level,
    load_deployment,
)
from gtls.context import compile_settings
from gtls.deployment import MAX_DEPLOYMENT_BYTES, Deployment
from tests.peers import FIXTURES, STEP_TIMEOUT, write_pki

BASE = """
[hosts.server-host.security]
trusted-ca = "ca/certauth.pem"
certificate = "certs/hostcert.pem"
certificate-key = "certs/privkey.pem"

[hosts.client-host.security]
trusted-ca = "/abs/ca.pem"

[applications.statserver]
host = "server-host"
certificate-source = "host"
[applications.statserver.ports.default]
address = "127.0.0.1"
port = 9443
transport = "tls=1"

[applications.reporter]
host = "client-host"
[applications.reporter.connections.stats]
server = "statserver"
port-id = "default"
"""


def write(tmp_path: Path, text: str, name: str = "deploy.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Deployment:
    return load_deployment(write(tmp_path, text))


def load_error(tmp_path: Path, text: str) -> DeploymentError:
    with pytest.raises(DeploymentError) as info:
        load(tmp_path, text)
    return info.value


# --- the committed samples (spec §3.3 E1, E2) ---


def test_simple_tls_sample_resolves_as_e1() -> None:
    deployment = load_deployment(FIXTURES / "simple-tls.toml")
    server = deployment.port("statserver", "default")
    assert (server.role, server.address, server.port) == ("server", "127.0.0.1", 9443)
    assert server.resolved.secure and server.resolved.level is Level.HOST
    options = server.resolved.options
    assert options.certificate == str(FIXTURES / "certs" / "hostcert.pem")
    assert options.certificate_key == str(FIXTURES / "certs" / "privkey.pem")
    assert options.trusted_ca == str(FIXTURES / "ca" / "certauth.pem")
    assert options.tls_mutual is False and options.tls_crl is None and options.sec_protocol is None
    assert server.resolved.sources["tls"] == "P" and server.resolved.sources["certificate"] == "H"

    client = deployment.connection("reporter", "stats")
    assert (client.role, client.address, client.port) == ("client", "127.0.0.1", 9443)
    assert client.server_hostname == "127.0.0.1"
    assert client.resolved.secure and client.resolved.sources["tls"] == "T"
    assert client.resolved.level is Level.HOST
    assert client.resolved.options.trusted_ca == str(FIXTURES / "ca" / "certauth.pem")
    assert client.resolved.options.certificate is None
    assert client.resolved.options.tls_target_name_check == "no"
    for path in (options.certificate, options.certificate_key, options.trusted_ca):
        assert path is not None and Path(path).is_file()


def test_mutual_tls_sample_resolves_as_e2() -> None:
    deployment = load_deployment(FIXTURES / "mutual-tls.toml")
    server = deployment.port("statserver", "default").resolved
    assert server.level is Level.HOST
    assert server.options.tls_mutual is True and server.sources["tls-mutual"] == "P"
    assert server.options.certificate == str(FIXTURES / "certs" / "servhostcert.pem")
    assert server.options.tls_crl is None

    client = deployment.connection("reporter", "stats").resolved
    assert client.level is Level.HOST and client.secure
    assert client.options.certificate == str(FIXTURES / "certs" / "clthostcert.pem")
    assert client.options.certificate_key == str(FIXTURES / "certs" / "cltprivkey.pem")
    assert client.options.tls_crl == str(FIXTURES / "crl" / "crllist.pem")
    assert client.sources["tls-crl"] == "H"
    assert client.warnings == () and server.warnings == ()
    for path in (client.options.certificate, client.options.certificate_key, client.options.tls_crl):
        assert path is not None and Path(path).is_file()


@pytest.mark.parametrize("name", ["simple-tls.toml", "mutual-tls.toml"])
def test_samples_list_every_endpoint(name: str) -> None:
    refs = list(load_deployment(FIXTURES / name).endpoints())
    assert [(ref.object_path, ref.role) for ref in refs] == [
        ("applications.statserver.ports.default", "server"),
        ("applications.reporter.connections.stats", "client"),
    ]
    assert all(ref.resolved.secure for ref in refs)


# --- model and lookups ---


def test_relative_paths_resolved_against_the_file_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write(
        sub,
        """
        [applications.a.security]
        certificate = "leaf.pem, ../inter.pem"
        certificate-key = "/abs/key.pem"
        trusted-ca = "ca dir/ca.pem"
        crl = "crl.pem"
        [applications.a.ports.app-level]
        port = 1
        transport = "tls=1;tls-mutual=1;backup-port=2"
        [applications.a.ports.port-level]
        port = 2
        transport = "tls=1;certificate=p/leaf.pem,,/p/inter.pem;certificate-key=p/key.pem;trusted-ca=/p/ca.pem"
        """,
    )
    deployment = load_deployment(path)
    resolved = deployment.port("a", "app-level").resolved
    assert resolved.level is Level.APPLICATION and resolved.base_dir == sub
    assert resolved.options.certificate == f"{sub / 'leaf.pem'},{sub / '../inter.pem'}"
    assert resolved.options.certificate_key == "/abs/key.pem"
    assert resolved.options.trusted_ca == str(sub / "ca dir" / "ca.pem")
    assert resolved.options.tls_crl == str(sub / "crl.pem")  # the alias too
    resolved = deployment.port("a", "port-level").resolved
    assert resolved.level is Level.PORT
    # an empty list element stays empty, so loading the chain reports it (spec §4.1)
    assert resolved.options.certificate == f"{sub / 'p/leaf.pem'},,/p/inter.pem"
    assert resolved.options.certificate_key == str(sub / "p" / "key.pem")


def test_thumbprint_is_not_a_path(tmp_path: Path) -> None:
    thumb = "89A0C1D46701935D89A0C1D46701935D89A0C1D4"
    deployment = load(
        tmp_path,
        f"""
        profile = "Windows"
        [hosts.h.security]
        certificate = "{thumb}"
        certificate-store = "store"
        [applications.a]
        host = "h"
        [applications.a.ports.p]
        port = 1
        transport = "tls=1"
        """,
    )
    resolved = deployment.port("a", "p").resolved
    assert deployment.profile == "windows" and resolved.profile == "windows"
    assert resolved.options.certificate == thumb
    assert resolved.options.certificate_store == str(tmp_path / "store")


def test_toml_arrays_integers_and_booleans(tmp_path: Path) -> None:
    deployment = load(
        tmp_path,
        """
        [applications.a.security]
        certificate = ["/c/leaf.pem", "/c/inter.pem"]
        certificate-key = "/c/key.pem"
        trusted-ca = "/c/ca.pem"
        tls-mutual = 1
        [applications.a.annex.security]
        fips140-enabled = false
        [applications.a.ports.p]
        port = 0
        transport = "tls=1"
        """,
    )
    endpoint = deployment.port("a", "p")
    assert endpoint.port == 0
    assert endpoint.resolved.options.certificate == "/c/leaf.pem,/c/inter.pem"
    assert endpoint.resolved.options.tls_mutual is True and endpoint.resolved.sources["tls-mutual"] == "A"


def test_annex_and_options_tab(tmp_path: Path) -> None:
    deployment = load(
        tmp_path,
        """
        [applications.a.security]
        certificate = "/o/c.pem"
        certificate-key = "/o/k.pem"
        [applications.a.annex.security]
        certificate = "/annex/c.pem"
        trusted-ca = "/annex/ca.pem"
        [applications.a.ports.p]
        port = 1
        transport = "tls=1"
        """,
    )
    options = deployment.port("a", "p").resolved.options
    assert (options.certificate, options.trusted_ca) == ("/o/c.pem", "/annex/ca.pem")


def test_connection_dial_address_and_server_hostname(tmp_path: Path) -> None:
    deployment = load(
        tmp_path,
        """
        [hosts.srv]
        address = "stats.example.test"
        [hosts.cli.security]
        trusted-ca = "/ca.pem"
        tls-target-name-check = "host"
        [applications.server]
        host = "srv"
        [applications.server.ports.main]
        address = "0.0.0.0"
        port = 7000
        transport = "tls=1"
        [applications.server.ports.other]
        address = "::"
        port = 7001
        [applications.client]
        host = "cli"
        [applications.client.connections.by-host]
        server = "server"
        port-id = "main"
        [applications.client.connections.by-address]
        server = "server"
        port-id = "main"
        address = "127.0.0.1"
        [applications.client.connections.both]
        server = "server"
        port-id = "main"
        address = "127.0.0.1"
        host = "localhost"
        [applications.plain]
        [applications.plain.connections.c]
        server = "nohost"
        port-id = "p"
        [applications.nohost.ports.p]
        address = "::"
        port = 7002
        """,
    )
    by_host = deployment.connection("client", "by-host")
    assert (by_host.address, by_host.server_hostname, by_host.port) == (
        "stats.example.test",
        "stats.example.test",
        7000,
    )
    by_address = deployment.connection("client", "by-address")
    assert (by_address.address, by_address.server_hostname) == ("127.0.0.1", "127.0.0.1")
    both = deployment.connection("client", "both")
    assert (both.address, both.server_hostname) == ("127.0.0.1", "localhost")
    plain = deployment.connection("plain", "c")
    assert plain.address == "::1"  # a wildcard listen address is dialled on loopback
    assert plain.resolved.secure is False
    assert deployment.port("server", "other").resolved.secure is False


def test_reference_name_with_star_raises(tmp_path: Path) -> None:
    deployment = load(
        tmp_path,
        """
        [hosts.cli.security]
        trusted-ca = "/ca.pem"
        tls-target-name-check = "host"
        [applications.server.ports.p]
        port = 1
        transport = "tls=1"
        [applications.client]
        host = "cli"
        [applications.client.connections.c]
        server = "server"
        host = "*.example.test"
        """,
    )
    with pytest.raises(InvalidOptionValue) as info:
        deployment.connection("client", "c")
    assert info.value.object_path == "applications.client.connections.c"
    assert "*.example.test" in str(info.value)


def test_thumbprint_in_trusted_ca_is_refused_as_a_thumbprint(tmp_path: Path) -> None:
    """Spec §4.4: in trusted-ca a thumbprint is InvalidOptionValue, also from a file, where relative paths are made
    absolute (it must not turn into a missing file ``<folder>/<thumbprint>``)."""
    thumb = "89A0C1D46701935D89A0C1D46701935D89A0C1D4"
    deployment = load(tmp_path, BASE.replace('trusted-ca = "/abs/ca.pem"', f'trusted-ca = "{thumb}"'))
    with pytest.raises(InvalidOptionValue) as info:
        deployment.connection("reporter", "stats")
    error = info.value
    assert (error.option, error.level) == ("trusted-ca", "Host")
    assert "thumbprint" in str(error) and str(tmp_path) not in str(error)


def test_errors_name_the_level_to_edit_when_it_is_not_the_object_itself(tmp_path: Path) -> None:
    """An error from an Application's (or a Host's) settings names that level, even though every object path
    starts with ``applications.`` (and this application's name contains "host")."""
    text = BASE.replace("[applications.statserver]", "[applications.ghost]").replace(
        "applications.statserver.", "applications.ghost."
    ).replace('server = "statserver"', 'server = "ghost"')
    deployment = load(tmp_path, text.replace('trusted-ca = "ca/certauth.pem"', 'trusted-ca = "ca/certauth.pem"\n'
                                             'sec-protocol = "TLSv1"'))
    with pytest.raises(ConfigError) as host_info:
        deployment.port("ghost", "default")
    assert str(host_info.value).startswith("applications.ghost.ports.default: level Host: sec-protocol: ")
    deployment = load(tmp_path, text.replace('certificate-source = "host"', "") + """
        [applications.ghost.security]
        sec-protocol = "TLSv1"
        """)
    with pytest.raises(ConfigError) as app_info:
        deployment.port("ghost", "default")
    assert str(app_info.value).startswith("applications.ghost.ports.default: level Application: sec-protocol: ")
    # The object's own level is not repeated: the path already says it is the port.
    deployment = load(tmp_path, text.replace('transport = "tls=1"', 'transport = "tls=1;sec-protocol=TLSv1"'))
    with pytest.raises(ConfigError) as port_info:
        deployment.port("ghost", "default")
    assert port_info.value.level == "Port"
    assert str(port_info.value).startswith("applications.ghost.ports.default: sec-protocol: ")


def test_connections_with_equal_settings_keep_their_own_provenance(tmp_path: Path) -> None:
    """Two connections with the same settings share one compiled SSL context, but each one's context (and so its
    streams' ``settings`` and its errors) names its own object."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes((FIXTURES / "ca" / "certauth.pem").read_bytes())
    client_security = 'trusted-ca = "ca.pem"\ntls-target-name-check = "host"'
    deployment = load(tmp_path, BASE.replace('trusted-ca = "/abs/ca.pem"', client_security) + """
        [applications.reporter.connections.second]
        server = "statserver"
        host = "-bad.example"
        """)
    first = compile_settings(deployment.connection("reporter", "stats").resolved, "client")
    second_endpoint = deployment.connection("reporter", "second")
    second = compile_settings(second_endpoint.resolved, "client")
    assert first.ssl_context is second.ssl_context  # compiled once
    assert first.resolved.object_path == "applications.reporter.connections.stats"
    assert second.resolved.object_path == "applications.reporter.connections.second"
    with pytest.raises(InvalidOptionValue) as info:
        second.client_names(second_endpoint.server_hostname)
    assert info.value.object_path == "applications.reporter.connections.second"


def test_empty_addresses_count_as_absent(tmp_path: Path) -> None:
    """Spec §1.1: an empty value is absent. An empty Host address falls back to the port's listen address, and an
    empty (or blank) port address listens on the default one."""
    deployment = load(
        tmp_path,
        """
        [hosts.h]
        address = ""
        [applications.s]
        host = "h"
        [applications.s.ports.p]
        address = "  "
        port = 5
        [applications.c.connections.x]
        server = "s"
        """,
    )
    assert deployment.port("s", "p").address == "127.0.0.1"
    connection = deployment.connection("c", "x")
    assert (connection.address, connection.port, connection.server_hostname) == ("127.0.0.1", 5, "127.0.0.1")


@pytest.mark.parametrize(("where", "value", "expected"), [
    ("hosts.h", "a" * 70, "label too long"),
    ("applications.s.ports.p", "two words", "space or control character"),
    ("applications.c.connections.x", "a..b", "label empty"),
])
def test_an_address_no_resolver_takes_is_a_configuration_error(
    tmp_path: Path, where: str, value: str, expected: str
) -> None:
    """Such an address loaded, and ``gtls check`` said ok; the port then failed in the resolver with a traceback.
    Now loading the file names the object and the field to fix."""
    field = "host" if where.endswith(".x") else "address"
    extra = {where: f'{field} = "{value}"'}
    text = f"""
        [hosts.h]
        {extra.get("hosts.h", "")}
        [applications.s]
        host = "h"
        [applications.s.ports.p]
        port = 5
        {extra.get("applications.s.ports.p", "")}
        [applications.c.connections.x]
        server = "s"
        {extra.get("applications.c.connections.x", "")}
        """
    with pytest.raises(DeploymentError) as caught:
        load(tmp_path, text)
    assert caught.value.object_path == where and caught.value.option == field
    assert expected in str(caught.value)


@pytest.mark.parametrize(("given", "read_as", "warned"), [
    ("HOST", "host", True), ("host", "host", True), ("hOsT", "host", True), ("Host", "host", False),
    (" Host ", "host", False), ("APPLICATION", "application", True), ("Application", "application", False),
])
def test_certificate_source_in_another_case_is_read_with_a_warning(
    tmp_path: Path, given: str, read_as: str, warned: bool
) -> None:
    """Spec §1.1: predefined values in any letter case, normalised, with a warning when the spelling differs (as
    for tls-target-name-check); it was lower-cased silently."""
    warnings: list[str] = []
    deployment = load_deployment(write(tmp_path, f"""
        [hosts.h.security]
        certificate = "/c.pem"
        [applications.s]
        host = "h"
        certificate-source = "{given}"
        [applications.s.ports.p]
        port = 5
        """), warnings=warnings)
    assert deployment.application("s").certificate_source == read_as
    canonical = read_as.title()
    expected = [f"applications.s: certificate-source: value {given.strip()!r} read as {canonical!r} "
                f"(predefined values are written {canonical!r})"] if warned else []
    assert [w for w in warnings if "certificate-source" in w] == expected


def test_a_plaintext_port_still_reports_what_its_upper_levels_get_wrong(tmp_path: Path) -> None:
    """Spec §1.4: upgrade anywhere but the Port is ignored with a warning, plaintext port or not; and a typo at the
    Application or Host is reported (as a warning: nothing there applies to a plaintext port, which still works)."""
    deployment = load(tmp_path, """
        [hosts.h.security]
        upgrade = "1"
        [applications.s]
        host = "h"
        [applications.s.security]
        sec-protocol = "bogus"
        [applications.s.annex.security]
        upgrade = "1"
        [applications.s.ports.p]
        port = 5
        transport = "tls=0"
        """)
    warnings: list[str] = []
    port = deployment.port("s", "p", warnings=warnings)
    assert not port.resolved.secure
    text = "\n".join(warnings)
    assert "Application: upgrade: ignored at this level; it is a Port mode flag" in text
    assert "Host: upgrade: ignored at this level; it is a Port mode flag" in text
    assert "sec-protocol" in text and "bogus" in text and "not applied: the endpoint is plaintext" in text


def test_home_folder_in_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~`` means the home folder in a deployment file too, as on the command line and in settings given directly
    (it was joined to the file's folder)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    deployment = load(tmp_path, BASE.replace('trusted-ca = "/abs/ca.pem"', 'trusted-ca = "~/pki/ca.pem"'))
    resolved = deployment.connection("reporter", "stats").resolved
    assert resolved.options.trusted_ca == str(tmp_path / "home" / "pki" / "ca.pem")


def test_port_id_defaults_to_the_only_port(tmp_path: Path) -> None:
    deployment = load(
        tmp_path,
        """
        [applications.s.ports.only]
        port = 5
        [applications.c.connections.x]
        server = "s"
        """,
    )
    assert deployment.connection("c", "x").port == 5


def test_missing_objects(tmp_path: Path) -> None:
    deployment = load(tmp_path, BASE)
    with pytest.raises(DeploymentError, match="no application 'nope'.*reporter, statserver"):
        deployment.port("nope", "default")
    with pytest.raises(DeploymentError, match="no port 'x'.*default") as info:
        deployment.port("statserver", "x")
    assert info.value.object_path == "applications.statserver.ports.x"
    with pytest.raises(DeploymentError, match="no connection 'x'.*stats"):
        deployment.connection("reporter", "x")
    with pytest.raises(DeploymentError, match="no port 'stats'"):
        deployment.port("reporter", "stats")


def test_resolution_errors_are_per_endpoint_and_carry_the_object_path(tmp_path: Path) -> None:
    deployment = load(
        tmp_path,
        BASE
        + """
        [applications.broken]
        [applications.broken.security]
        sec-protocol = "TLSv13"
        [applications.broken.ports.p]
        port = 1
        transport = "tls=1"
        """,
    )
    refs = {ref.object_path: ref for ref in deployment.endpoints()}
    assert set(refs) == {
        "applications.statserver.ports.default",
        "applications.reporter.connections.stats",
        "applications.broken.ports.p",
    }
    assert refs["applications.statserver.ports.default"].resolved.secure
    with pytest.raises(IncompleteTlsLevel) as info:
        _ = refs["applications.broken.ports.p"].resolved
    assert info.value.object_path == "applications.broken.ports.p" and info.value.level == "Application"
    with pytest.raises(IncompleteTlsLevel):
        deployment.port("broken", "p")
    endpoint = refs["applications.reporter.connections.stats"].endpoint()
    assert isinstance(endpoint, Endpoint) and endpoint.server_hostname == "127.0.0.1"


def test_wrongly_cased_security_section_warns_and_is_not_applied(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = write(
        tmp_path,
        """
        [hosts.h.Security]
        trusted-ca = "/ca.pem"
        [applications.a]
        host = "h"
        [applications.a.ports.p]
        port = 1
        transport = "tls=1"
        """,
    )
    deployment = load_deployment(path, warnings=warnings)
    assert any("hosts.h.Security" in w and "case-sensitive" in w for w in warnings)
    assert deployment.warnings == tuple(warnings)
    with pytest.raises(IncompleteTlsLevel):
        deployment.port("a", "p")


def test_unknown_option_inside_security_warns_at_resolution(tmp_path: Path) -> None:
    deployment = load(
        tmp_path, BASE.replace('trusted-ca = "/abs/ca.pem"', 'trusted-ca = "/abs/ca.pem"\nTrusted-CA = "x"')
    )
    resolved = deployment.connection("reporter", "stats").resolved
    assert any(
        w.startswith("applications.reporter.connections.stats: Host: Trusted-CA") and "case-sensitive" in w
        for w in resolved.warnings
    )


def test_transport_warnings_are_in_the_endpoint_warnings(tmp_path: Path) -> None:
    deployment = load(tmp_path, BASE.replace('transport = "tls=1"', 'transport = "tls=1; tls=0"'))
    warnings: list[str] = []
    resolved = deployment.port("statserver", "default", warnings=warnings).resolved
    assert resolved.secure
    assert any("repeated" in w for w in resolved.warnings)
    assert list(resolved.warnings) == warnings


# --- structural errors: each a DeploymentError naming the place ---


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="not found"):
        load_deployment(tmp_path / "absent.toml")


def test_malformed_toml(tmp_path: Path) -> None:
    error = load_error(tmp_path, "[hosts.h\nx = 1\n")
    assert "not valid TOML" in str(error) and "line 1" in str(error)
    assert error.file is not None and error.file.endswith("deploy.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'profile = "\xff"\n')
    with pytest.raises(DeploymentError, match="UTF-8"):
        load_deployment(path)


def test_a_fifo_without_a_writer_is_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO given as the deployment file blocked forever in open() (``--config`` of every command); it is opened
    without blocking, and one nobody writes to is refused at once (it reads as empty)."""
    fifo = tmp_path / "deploy.toml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            load_deployment(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(STEP_TIMEOUT)
    if worker.is_alive():  # blocked in open(): a writer appearing and leaving releases it (EOF), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(STEP_TIMEOUT)
        pytest.fail("load_deployment blocked on a FIFO")
    (error,) = outcome
    assert isinstance(error, DeploymentError) and error.file == str(fifo)
    assert str(error) == f"deployment file {fifo}: is a pipe that gave nothing (a FIFO with no writer reads as empty)"


def test_a_pipe_is_read_to_its_end(tmp_path: Path) -> None:
    """``--config <(envsubst < template)`` and ``/dev/stdin`` are pipes: refusing every non-regular file broke
    them (review); a pipe is read to its end, within a bound."""
    read_end, write_end = os.pipe()

    def write_late() -> None:
        time.sleep(0.2)  # the reader waits for it
        os.write(write_end, b'[applications.app]\nhost = "h"\n[hosts.h]\n')
        os.close(write_end)

    writer = threading.Thread(target=write_late)
    writer.start()
    try:
        deployment = load_deployment(f"/proc/self/fd/{read_end}")
    finally:
        writer.join(STEP_TIMEOUT)
        os.close(read_end)
    assert list(deployment.applications) == ["app"]
    assert deployment.warnings == ()  # no relative path in it: nothing to warn of


def test_relative_paths_in_a_piped_file_mean_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipe's folder is /dev/fd or /proc/self/fd, which holds no certificate: relative paths in a piped deployment
    file (``gtls check --config /dev/stdin < deploy.toml``, ``<(envsubst < template)``) were made absolute there and
    never found. They mean the working directory, where the command that pipes the file runs (gtls decision)."""
    monkeypatch.chdir(tmp_path)
    read_end, write_end = os.pipe()
    os.write(write_end, b'[hosts.h.security]\ntrusted-ca = "ca/ca.pem"\n[applications.app]\nhost = "h"\n'
                        b'[applications.srv.ports.p]\nport = 1\n'
                        b'[applications.app.connections.c]\nserver = "srv"\ntransport = "tls=1"\n')
    os.close(write_end)
    try:
        deployment = load_deployment(f"/proc/self/fd/{read_end}")
    finally:
        os.close(read_end)
    assert deployment.base_dir == tmp_path
    assert deployment.connection("app", "c").resolved.options.trusted_ca == str(tmp_path / "ca" / "ca.pem")
    # They depend on the working directory, as spec §4.1's relative paths do: said once.
    assert deployment.warnings == (
        f"relative paths in a piped deployment file (ca/ca.pem) are resolved against the working directory "
        f"{tmp_path}, which a pipe's folder cannot stand for; use absolute paths",)


def test_a_file_given_by_its_descriptor_means_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gtls check --config /dev/stdin < conf/deploy.toml`` reads a regular file, but through a name whose folder is
    /dev (or /proc/self/fd): its relative paths were made absolute there, with no warning. They mean the working
    directory, as a pipe's do; so do paths inside ``transport`` (they were resolved there but not listed)."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "d.toml").write_text(
        '[applications.srv.ports.p]\nport = 1\ntransport = "tls=1;certificate=c.pem;certificate-key=k.pem;'
        'trusted-ca=/abs/ca.pem"\n')
    monkeypatch.chdir(tmp_path)
    fd = os.open(tmp_path / "conf" / "d.toml", os.O_RDONLY)
    try:
        # Also through a thread's own view of the descriptors (/proc/PID/task/TID/fd).
        names = [f"/proc/self/fd/{fd}", f"/proc/self/task/{threading.get_native_id()}/fd/{fd}"]
        loaded = [load_deployment(name) for name in names]
    finally:
        os.close(fd)
    for deployment in loaded:
        assert deployment.base_dir == tmp_path
        assert deployment.port("srv", "p").resolved.options.certificate == str(tmp_path / "c.pem")
        assert deployment.warnings == (
            f"relative paths in a piped deployment file (c.pem, k.pem) are resolved against the working directory "
            f"{tmp_path}, which a pipe's folder cannot stand for; use absolute paths",)
    # The same file by its own name: its folder, no warning.
    assert load_deployment(tmp_path / "conf" / "d.toml").warnings == ()


PIPED = (b'[applications.srv.ports.p]\nport = 1\ntransport = "tls=1;certificate=srv.pem;certificate-key=k.pem"\n'
         b'[applications.bad.ports.p]\nport = 2\ntransport = "tls=1;no-such-option"\n'
         b'[applications.app.connections.c]\nserver = "srv"\ntransport = "tls=1;trusted-ca=ca.pem"\n'
         b'[applications.app.connections.d]\nserver = "srv"\ntransport = "tls=1;trusted-ca=ca.pem"\n')


def piped_warning(relative: str, cwd: Path) -> str:
    return (f"relative paths in a piped deployment file ({relative}) are resolved against the working directory "
            f"{cwd}, which a pipe's folder cannot stand for; use absolute paths")


def test_a_named_fifo_means_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO is a pipe wherever it lies (gtls decision): its relative paths mean the working directory, as those of
    /dev/stdin do, with the warning; each listed once, those of connections' transport too. An unknown option in a
    transport does not stop the file loading: its endpoint's resolution reports it, located."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "run").mkdir()
    fifo = tmp_path / "conf" / "deploy.toml"
    os.mkfifo(fifo)
    monkeypatch.chdir(tmp_path / "run")
    keep_open = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer open, and keeps what it wrote
    try:
        write_end = os.open(fifo, os.O_WRONLY)
        os.write(write_end, PIPED)
        os.close(write_end)  # the file's end: the loader reads what was written, then the end
        deployment = load_deployment(fifo)
    finally:
        os.close(keep_open)
    run = tmp_path / "run"
    assert deployment.base_dir == run
    assert deployment.warnings == (piped_warning("srv.pem, k.pem, ca.pem", run),)
    assert deployment.connection("app", "c").resolved.options.trusted_ca == str(run / "ca.pem")
    with pytest.raises(ConfigError) as caught:
        deployment.port("bad", "p").resolve()
    assert caught.value.object_path == "applications.bad.ports.p"


def test_a_regular_file_named_by_dev_fd_or_dev_stdin_means_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--config /dev/fd/3 3< conf/deploy.toml`` and ``--config /dev/stdin < conf/deploy.toml`` name a regular file
    by its descriptor (/dev/fd is a link to /proc/self/fd; /dev/stdin lies in /dev): the working directory, warned."""
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "d.toml"
    config.write_bytes(b'[applications.srv.ports.p]\nport = 1\n'
                       b'transport = "tls=1;certificate=c.pem;certificate-key=/abs/k.pem;trusted-ca=/abs/ca.pem"\n')
    monkeypatch.chdir(tmp_path)
    fd = os.open(config, os.O_RDONLY)
    try:
        deployment = load_deployment(f"/dev/fd/{fd}")
    finally:
        os.close(fd)
    assert (deployment.base_dir, deployment.warnings) == (tmp_path, (piped_warning("c.pem", tmp_path),))
    script = ("from gtls.deployment import load_deployment; d = load_deployment('/dev/stdin'); "
              "print(d.base_dir); print(d.port('srv', 'p').resolved.options.certificate)")
    with config.open("rb") as stdin:
        result = subprocess.run([sys.executable, "-c", script], stdin=stdin, capture_output=True, text=True,
                                cwd=tmp_path, timeout=60, check=False,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.stdout.splitlines() == [str(tmp_path), str(tmp_path / "c.pem")], result.stderr


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """A deployment file is read only up to MAX_DEPLOYMENT_BYTES (4 MiB): a wrong path (a log, a disk image) was
    read whole and reported as "not valid TOML". Valid TOML (comments) one byte over the limit, so only the limit
    refuses it; at the limit it loads."""
    path = tmp_path / "deploy.toml"
    line = b"#" * 1023 + b"\n"
    path.write_bytes(line * (MAX_DEPLOYMENT_BYTES // len(line)))
    assert list(load_deployment(path).endpoints()) == []
    with path.open("ab") as handle:
        handle.write(b"\n")
    with pytest.raises(DeploymentError) as info:
        load_deployment(path)
    assert str(info.value) == (f"deployment file {path}: file is {MAX_DEPLOYMENT_BYTES + 1} bytes, over gtls's "
                               "limit of 4 MiB")
    assert info.value.file == str(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="is a directory, not a deployment file"):
        load_deployment(tmp_path)


def test_a_duplicate_key_is_named(tmp_path: Path) -> None:
    """tomllib says "Cannot overwrite a value (at line 5, column 44)" and names no key; the key and its table are
    read back from that line."""
    text = BASE.replace('certificate-key = "certs/privkey.pem"\n',
                        'certificate-key = "certs/privkey.pem"\n  trusted-ca = "ca/other.pem"  # again\n')
    error = load_error(tmp_path, text)
    assert "not valid TOML: Cannot overwrite a value (at line 6" in str(error)
    assert str(error).endswith(": key 'trusted-ca' in [hosts.server-host.security] is already set above (a key "
                               "may be set once per table)")
    error = load_error(tmp_path, 'profile = "unix"\nprofile = "windows"')  # at the end of the document
    assert "key 'profile' at the top level is already set above" in str(error)
    # The table is tomllib's own reading: a "[...]" line inside a multi-line string is no header, and a table
    # opened again after another (here a sub-table of the first) is the one the key goes to.
    error = load_error(tmp_path, '[hosts.h]\nnote = """\n[applications.x]\n"""\nport = 1\nport = 2\n')
    assert "key 'port' in [hosts.h] is already set above" in str(error)
    error = load_error(tmp_path, '[hosts.h]\nx = 1\n[applications.a]\ny = 1\n[hosts.h.security]\nz = 1\nz = 2\n')
    assert "key 'z' in [hosts.h.security] is already set above" in str(error)


def test_the_duplicate_key_hint_survives_nesting_its_own_parse_cannot() -> None:
    """The hint parses the lines above the key again, inside the handler of the first parse and a few frames deeper:
    nesting just below what the first parse survives overflowed there, a RecursionError traceback from `gtls
    check` (`x = [[[...]]]` 492 deep here, then a key set twice). The hint is then left out."""
    from gtls.deployment import _table_holding

    assert _table_holding(["x = " + "[" * 3000 + "]" * 3000, "a = 1"], "a") is None


@pytest.mark.parametrize(("given", "warned"), [("WINDOWS", True), ("Unix", True), ("windows", False)])
def test_a_profile_in_another_case_is_read_with_a_warning(tmp_path: Path, given: str, warned: bool) -> None:
    """As certificate-source and predefined option values are (spec §1.1); ``WINDOWS`` was read silently."""
    warnings: list[str] = []
    deployment = load_deployment(write(tmp_path, f'profile = "{given}"\n'), warnings=warnings)
    assert deployment.profile == given.lower()
    expected = f"profile: value {given!r} read as {given.lower()!r} (profiles are written {given.lower()!r})"
    assert warnings == ([expected] if warned else [])


def test_empty_file_is_an_empty_deployment(tmp_path: Path) -> None:
    deployment = load(tmp_path, "")
    assert list(deployment.endpoints()) == [] and deployment.profile == "unix"


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ('hosts = "x"', "hosts", "must be a table"),
        ("[applications]\na = 1", "applications.a", "must be a table"),
        ('[applications.a.ports.p]\nport = "9443"', "applications.a.ports.p", "must be an integer"),
        ("[applications.a.ports.p]\nport = true", "applications.a.ports.p", "must be an integer"),
        ("[applications.a.ports.p]\nport = 70000", "applications.a.ports.p", "0-65535"),
        ('[applications.a.ports.p]\naddress = "x"', "applications.a.ports.p", "port is required"),
        ("[applications.a.ports.p]\nport = 1\ntransport = 5", "applications.a.ports.p", "must be a string"),
        ("[applications.a]\nhost = 3", "applications.a", "must be a string"),
        ("[applications.a.security]\ncertificate = 1.5", "applications.a.security", "got a float"),
        ('[applications.a.security]\ntrusted-ca = ["a", "b"]', "applications.a.security", "got an array"),
        ("[applications.a.security]\ncertificate = [1]", "applications.a.security", "must hold strings"),
        ("[hosts.h.security]\nx = { y = 1 }", "hosts.h.security", "got a table"),
        ('[applications.a]\ncertificate-source = "both"', "applications.a", "Host or Application"),
        ('profile = "solaris"', "(top level)", "unix or windows"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, where: str, words: str) -> None:
    error = load_error(tmp_path, text)
    assert error.object_path == where
    assert words in str(error)


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("colour = 1", "(top level)", "colour"),
        ('[hosts.h]\nip = "1.2.3.4"', "hosts.h", "ip"),
        ("[applications.a]\nPorts = {}", "applications.a", "Ports"),
        ('[applications.a.ports.p]\nport = 1\nmode = "tls"', "applications.a.ports.p", "mode"),
        (
            '[applications.s.ports.p]\nport = 1\n[applications.a.connections.c]\nserver = "s"\nport_id = "p"',
            "applications.a.connections.c",
            "port_id",
        ),
        ("[applications.a.annex]\noptions = {}", "applications.a.annex", "options"),
    ],
)
def test_unknown_structural_keys(tmp_path: Path, text: str, where: str, key: str) -> None:
    error = load_error(tmp_path, text)
    assert error.object_path == where and error.option == key
    assert f"unknown key {key!r}" in str(error)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('[applications.a.ports.p]\nport = 1\nadress = "127.0.0.1"', "; did you mean 'address'?"),
        ('[applications.a.ports.p]\nprot = 1', "; did you mean 'port'?"),
        ('[applications.a.ports.p]\nport = 1\nAdress = "127.0.0.1"', "; did you mean 'address'?"),  # any case
        ("[applications.a.ports.p]\nport = 1\nmode = 1", ""),  # nothing near: no guess
        ("[applications.a.ports.p]\nport = 1\npots = 1", ""),  # two edits from 'port': another word, no guess
    ],
)
def test_unknown_key_hint_for_a_typo(tmp_path: Path, text: str, hint: str) -> None:
    error = load_error(tmp_path, text)
    assert (hint in str(error)) if hint else "did you mean" not in str(error)


def test_unknown_key_hint_for_wrong_case(tmp_path: Path) -> None:
    error = load_error(tmp_path, "[applications.a]\nPorts = {}")
    assert "did you mean 'ports'" in str(error)


@pytest.mark.parametrize(
    ("text", "where", "option", "words"),
    [
        ('[applications.a]\nhost = "ghost"', "applications.a", "host", "'ghost' is not defined"),
        (
            '[applications.a.connections.c]\nserver = "ghost"',
            "applications.a.connections.c",
            "server",
            "'ghost' is not an application",
        ),
        (
            '[applications.s.ports.p]\nport = 1\n[applications.a.connections.c]\nserver = "s"\nport-id = "q"',
            "applications.a.connections.c",
            "port-id",
            "no port 'q'",
        ),
        (
            '[applications.s]\n[applications.a.connections.c]\nserver = "s"',
            "applications.a.connections.c",
            "port-id",
            "port-id is required",
        ),
        (
            '[applications.a.connections.c]\nport-id = "p"',
            "applications.a.connections.c",
            "server",
            "server is required",
        ),
    ],
)
def test_dangling_references(tmp_path: Path, text: str, where: str, option: str, words: str) -> None:
    error = load_error(tmp_path, text)
    assert (error.object_path, error.option) == (where, option)
    assert words in str(error)
    assert where in str(error)


def test_every_error_is_a_config_error(tmp_path: Path) -> None:
    # Garbage never escapes as a traceback from inside gtls.
    for text in ("[[applications]]\nx=1", "applications = []", "[applications.a.connections]\nc = 3", "a = 1\na = 2"):
        with pytest.raises(ConfigError):
            load(tmp_path, text)


# --- further samples (certs-fixtures/samples/) ---

SAMPLES = sorted((FIXTURES / "samples").glob("*.toml"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_sample_resolves_and_points_at_existing_files(path: Path) -> None:
    deployment = load_deployment(path)
    refs = list(deployment.endpoints())
    assert refs
    for ref in refs:
        resolved = ref.resolved
        assert resolved.secure and resolved.warnings == ()
        options = resolved.options
        files = [options.certificate_key, options.trusted_ca, options.tls_crl]
        files += (options.certificate or "").split(",")
        for file in filter(None, files):
            assert Path(file).is_file(), f"{ref.object_path}: {file}"


def test_port_override_sample_is_e4() -> None:
    deployment = load_deployment(FIXTURES / "samples" / "port-override.toml")
    default = deployment.port("statserver", "default").resolved
    override = deployment.port("statserver", "override").resolved
    assert default.level is Level.HOST and default.shadowed == ()
    assert override.level is Level.PORT and override.options.sec_protocol == "TLSv13"
    assert {(s.level, s.option) for s in override.shadowed} == {
        (Level.HOST, "certificate"),
        (Level.HOST, "certificate-key"),
        (Level.HOST, "trusted-ca"),
    }


def test_name_check_sample() -> None:
    client = load_deployment(FIXTURES / "samples" / "name-check.toml").connection("reporter", "stats")
    assert (client.address, client.server_hostname, client.port) == ("127.0.0.1", "localhost", 9447)
    assert client.resolved.level is Level.APPLICATION
    assert client.resolved.options.tls_target_name_check == "host"
    assert client.resolved.options.tls_crl_scope == "chain"


# --- robustness: any document gives a Deployment or a ConfigError, never another exception ---

_KEYS = st.sampled_from(
    [
        "profile",
        "hosts",
        "applications",
        "security",
        "annex",
        "ports",
        "connections",
        "host",
        "address",
        "port",
        "transport",
        "server",
        "port-id",
        "certificate-source",
        "certificate",
        "certificate-key",
        "trusted-ca",
        "tls",
        "tls-mutual",
        "tls-crl",
        "crl",
        "sec-protocol",
        "Security",
        "h",
        "a",
        "p",
        "c",
    ]
) | st.text(max_size=6)
_SCALARS = (
    st.sampled_from(["tls=1", "tls=1;tls-mutual=1", "h", "a", "p", "host", "Application", "1", "TLSv13", "x.pem", ""])
    | st.text(max_size=8)
    | st.integers(-2, 70000)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=20
)


def _toml(value: object) -> str:
    """A TOML literal (inline tables and arrays), enough to feed the loader arbitrary shapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _load_and_resolve_all(document: dict[str, object]) -> int:
    """Load a document and resolve every endpoint; only ``ConfigError`` may come out. Returns endpoints resolved."""
    resolved = 0
    text = "\n".join(f"{json.dumps(key)} = {_toml(value)}" for key, value in document.items())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_text(text, encoding="utf-8")
        try:
            deployment = load_deployment(path, warnings=[])
        except ConfigError as exc:
            assert str(exc)
            return resolved
        for ref in deployment.endpoints():
            try:
                ref.resolve(warnings=[])
                resolved += 1
            except ConfigError as exc:
                assert exc.object_path == ref.object_path
    return resolved


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_arbitrary_documents_never_crash(document: dict[str, object]) -> None:
    _load_and_resolve_all(document)


_NAMES = st.sampled_from(["a", "b", "h"])
_SECURITY = st.dictionaries(
    st.sampled_from(
        [
            "certificate",
            "certificate-key",
            "trusted-ca",
            "tls-mutual",
            "tls-crl",
            "crl",
            "sec-protocol",
            "tls-target-name-check",
            "tls-target-name",
            "provider",
            "Certificate",
            "bogus",
        ]
    ),
    _SCALARS,
    max_size=5,
)
_PORT = st.fixed_dictionaries({"port": st.integers(0, 65535)}, optional={"transport": _SCALARS, "address": _SCALARS})
_CONNECTION = st.fixed_dictionaries(
    {"server": _NAMES}, optional={"port-id": _NAMES, "transport": _SCALARS, "host": _SCALARS, "address": _SCALARS}
)
_APPLICATION = st.fixed_dictionaries(
    {},
    optional={
        "host": _NAMES,
        "certificate-source": st.sampled_from(["host", "Application", "HOST", "x"]),
        "security": _SECURITY,
        "annex": st.fixed_dictionaries({"security": _SECURITY}),
        "ports": st.dictionaries(_NAMES, _PORT, max_size=2),
        "connections": st.dictionaries(_NAMES, _CONNECTION, max_size=2),
    },
)
_DOCUMENT = st.fixed_dictionaries(
    {"applications": st.dictionaries(_NAMES, _APPLICATION, max_size=3)},
    optional={
        "hosts": st.dictionaries(_NAMES, st.fixed_dictionaries({"security": _SECURITY}), max_size=2),
        "profile": st.sampled_from(["unix", "windows", "Windows"]),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENT)
def test_schema_shaped_documents_resolve_or_fail_cleanly(document: dict[str, object]) -> None:
    _load_and_resolve_all(document)


async def test_ports_of_one_host_that_cannot_listen_together_are_named(tmp_path: Path) -> None:
    """Two ports of applications on one host with the same number, on the same address or on an address and its
    family's wildcard, cannot both listen: the second fails at run time (listen-failed), and nothing said so before.
    Loading warns; applications on other hosts (other machines), IPv6's wildcard beside IPv4 addresses (trio
    listens IPv6-only), port 0 and names written differently do not."""
    import trio

    from gtls.server import open_tls_over_tcp_listeners

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        number = probe.getsockname()[1]
    ports = {"a": ("h", "127.0.0.1", number), "b": ("h", "127.0.0.1", number), "c": ("h", "0.0.0.0", number),
             "d": ("h", "::", number), "e": ("elsewhere", "127.0.0.1", number), "f": ("h", "127.0.0.1", 0),
             "g": ("h", "127.0.0.1", 0), "i": ("h", "localhost", number), "j": ("h", "127.0.0.2", number)}
    text = "[hosts.h]\n[hosts.elsewhere]\n" + "".join(
        f'[applications.{app}]\nhost = "{host}"\n[applications.{app}.ports.p]\naddress = "{address}"\n'
        f'port = {port}\ntransport = "tls=1"\n' for app, (host, address, port) in ports.items())
    deployment = load(tmp_path, text)
    clashes = [w for w in deployment.warnings if "only one can be open at a time" in w]
    assert clashes == [
        f"applications.b.ports.p and applications.a.ports.p both listen on port {number} (127.0.0.1, 127.0.0.1) "
        "of one host: only one can be open at a time",
        f"applications.c.ports.p and applications.a.ports.p both listen on port {number} (0.0.0.0, 127.0.0.1) "
        "of one host: only one can be open at a time",
        f"applications.c.ports.p and applications.b.ports.p both listen on port {number} (0.0.0.0, 127.0.0.1) "
        "of one host: only one can be open at a time",
        # an address after the wildcard clashes with it, not with another address of the family (audit 61)
        f"applications.j.ports.p and applications.c.ports.p both listen on port {number} (127.0.0.2, 0.0.0.0) "
        "of one host: only one can be open at a time",
    ]
    # What the warning says, for real (on loopback: a wildcard clashes the same way, as the kernel refuses a
    # wildcard bind beside a listening address of its family): with a's port open, b's cannot open.
    pki = write_pki(tmp_path / "pki")
    with trio.fail_after(10):
        first = await open_tls_over_tcp_listeners(number, pki.server_options(), host="127.0.0.1")
        try:
            with pytest.raises(OSError, match="in use"):
                await open_tls_over_tcp_listeners(number, pki.server_options(), host="127.0.0.1")
        finally:
            for listener in first:
                await listener.aclose()


def test_security_of_an_application_with_connections_only_is_used(tmp_path: Path) -> None:
    """An application with connections and no ports reads its [security] for them: no 'never used' warning (that
    is for one with neither; audit 61)."""
    deployment = load(tmp_path, """
[hosts.h]
[applications.srv]
host = "h"
[applications.srv.ports.p]
port = 0
[applications.caller]
host = "h"
[applications.caller.security]
sec-protocol = "TLSv13"
[applications.caller.connections.c]
server = "srv"
""")
    assert not [w for w in deployment.warnings if "never used" in w], deployment.warnings


def test_security_of_a_host_whose_applications_have_no_endpoints_is_never_used(tmp_path: Path) -> None:
    """A Host whose only application has neither ports nor connections: no endpoint reads its [security] either, so
    its misspelt option is named too, not only the application's table."""
    deployment = load(tmp_path, """
[hosts.h.security]
tls-mutal = "1"
[applications.idle]
host = "h"
""")
    assert [w for w in deployment.warnings if "never used" in w] == [
        "hosts.h.security is never used: no application on this host has ports or connections; tls-mutal: unknown "
        "option, ignored; did you mean 'tls-mutual'?"
    ], deployment.warnings


def test_one_ipv6_address_written_two_ways_is_one_address(tmp_path: Path) -> None:
    """'::1' and '0:0:0:0:0:0:0:1' are one address: the kernel refuses the second bind (EADDRINUSE), but the clash
    check compared the spellings and said nothing (audit 61). Shown on loopback: both spellings bind the same."""
    with socket.socket(socket.AF_INET6) as first:
        first.bind(("::1", 0))
        number = first.getsockname()[1]
        first.listen()
        with socket.socket(socket.AF_INET6) as second, pytest.raises(OSError):
            second.bind(("0:0:0:0:0:0:0:1", number))
    text = "[hosts.h]\n" + "".join(
        f'[applications.{app}]\nhost = "h"\n[applications.{app}.ports.p]\naddress = "{address}"\nport = {number}\n'
        for app, address in (("k", "::1"), ("l", "0:0:0:0:0:0:0:1"), ("m", "::2")))
    clashes = [w for w in load(tmp_path, text).warnings if "only one can be open at a time" in w]
    assert clashes == [f"applications.l.ports.p and applications.k.ports.p both listen on port {number} "
                       "(0:0:0:0:0:0:0:1, ::1) of one host: only one can be open at a time"]


def test_an_application_skipped_by_certificate_source_host_names_its_unused_options(tmp_path: Path) -> None:
    """Certificate Source = Host skips the Application level (spec §3.2 step 2), so its TLS options do nothing: a
    client's tls-target-name-check = host there left the name check off with no word at run time (audit 64). Each
    table is named with what it holds that goes unused; tls-mutual is read at every level (step 6), so it is not."""
    deployment = load(tmp_path, """
[hosts.h]
[applications.srv]
host = "h"
certificate-source = "Host"
[applications.srv.security]
tls-mutual = "1"
sec-protocol = "TLSv13"
tls-target-name-check = "host"
[applications.srv.ports.p]
port = 0
[applications.caller]
host = "h"
certificate-source = "Host"
[applications.caller.security]
tls-target-name-check = "host"
[applications.caller.annex.security]
cipher-list = "HIGH"
trusted-ca = "ca.pem"
[applications.caller.connections.c]
server = "srv"
[applications.own]
host = "h"
[applications.own.security]
tls-target-name-check = "host"
[applications.own.connections.c]
server = "srv"
""")
    assert [w for w in deployment.warnings if "certificate-source is Host" in w] == [
        "applications.srv.security: sec-protocol is not used: certificate-source is Host, so this application's "
        "ports and connections take TLS settings from their own transport or hosts.h.security (spec §3.2); move it "
        "there",
        "applications.caller.security: tls-target-name-check is not used: certificate-source is Host, so this "
        "application's ports and connections take TLS settings from their own transport or hosts.h.security (spec "
        "§3.2); move it there",
        "applications.caller.annex.security: trusted-ca, cipher-list are not used: certificate-source is Host, so "
        "this application's ports and connections take TLS settings from their own transport or hosts.h.security "
        "(spec §3.2); move them there",
    ], deployment.warnings
