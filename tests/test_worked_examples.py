"""Spec §3.3: the worked examples E1–E8 run as written, from deployment files, through ``gtls check``, ``gtls serve``
and ``gtls connect`` against real peers (``openssl s_server``/``s_client``) on 127.0.0.1. test_resolve.py checks
the same examples through ``gtls.resolve`` alone, test_deployment.py the committed E1/E2 samples as resolved.

E1 and E2 copy the committed sample files verbatim beside a fresh PKI in the Genesys sample layout (``ca/``,
``certs/``, ``crl/``), so the configuration is the sample's and the certificates are what each test needs."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gtls.testing import CA, CRL, Certified, write_pem
from tests.peers import FIXTURES, error_line, gtls_env, gtls_serve, openssl_echo, run_gtls, s_client, s_server

DAY = dt.timedelta(days=1)


def check(config: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    """``gtls check --json``: exit code and the endpoints by object path."""
    result = run_gtls("check", "--config", str(config), "--json", env=env)
    document = json.loads(result.stdout)
    return result.returncode, {endpoint["object_path"]: endpoint for endpoint in document["endpoints"]}


def shadowed(endpoint: dict[str, Any]) -> set[tuple[str, str]]:
    return {(item["level"], item["option"]) for item in endpoint["shadowed"]}


def connect(config: Path, port: int, *, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``gtls connect`` as the sample's client (Application ``reporter``, Connection ``stats``) to 127.0.0.1:port:
    the exit code and the output (stdout on success, the error line on failure)."""
    result = run_gtls("connect", f"127.0.0.1:{port}", "--config", str(config), "--app", "reporter",
                      "--connection", "stats", "--send", "worked example", env=env)
    if result.returncode == 0:
        return 0, result.stdout
    return result.returncode, error_line(result)


def sample_layout(folder: Path, sample: str) -> Path:
    """``folder`` with ``ca/``, ``certs/``, ``crl/`` and the committed sample ``sample`` copied in, unchanged."""
    for sub in ("ca", "certs", "crl"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FIXTURES / sample, folder / sample))


# --- E1: simple TLS ---


def test_e1_server_offers_tls12_and_tls13_and_requests_no_client_certificate(fixtures: Path) -> None:
    """E1 server: E = H, no client certificate requested, TLS 1.2–1.3 (the committed sample and demo PKI)."""
    ca = fixtures / "ca" / "certauth.pem"
    with gtls_serve("--config", str(fixtures / "simple-tls.toml"), "--app", "statserver", "--port-id", "default",
                    "--listen", "127.0.0.1:0") as server:
        for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            result = s_client(server.port, flag, "-msg", "-CAfile", str(ca), "-verify_return_error")
            assert result.returncode == 0, result.stdout[-800:] + result.stderr[-800:]
            assert f"New, {version}, Cipher is" in result.stdout
            assert "Verify return code: 0 (ok)" in result.stdout
            assert "CertificateRequest" not in result.stdout  # no client certificate requested
        assert server.stop() == 0


def e1_pki(folder: Path, issuer: CA) -> None:
    """The E1 server files, issued by ``issuer``, for a name the client does not dial."""
    inter = issuer.intermediate("e1 intermediate")
    leaf = inter.leaf("elsewhere.example", dns=["elsewhere.example"])
    write_pem(folder / "certs" / "hostcert.pem", leaf, inter)
    leaf.write_key(folder / "certs" / "privkey.pem")
    inter.write_cert(folder / "inter.pem")  # for s_server's -cert_chain (its -cert sends the file's first only)


def test_e1_client_verifies_the_server_against_certauth_without_a_name_check(tmp_path: Path) -> None:
    """E1 client: Connection empty, T tls=1, Host trusted-ca: secure through T, E = H; the server chain is verified
    against certauth.pem, with no name check (the server's certificate names elsewhere.example, 127.0.0.1 is
    dialled)."""
    config = sample_layout(tmp_path / "e1", "simple-tls.toml")
    root = CA.root("e1 root")
    write_pem(tmp_path / "e1" / "ca" / "certauth.pem", root)
    e1_pki(tmp_path / "e1", root)
    certs = tmp_path / "e1" / "certs"
    with s_server("-cert", certs / "hostcert.pem", "-cert_chain", tmp_path / "e1" / "inter.pem",
                  "-key", certs / "privkey.pem", "-rev") as server:
        code, out = connect(config, server.port)
        assert code == 0, out
        assert "peer chain (2 certificates, leaf first)" in out and "CN=elsewhere.example" in out
        # The same server under another root's certificate: not valid under certauth.pem.
        stranger = tmp_path / "stranger"
        (stranger / "certs").mkdir(parents=True)
        e1_pki(stranger, CA.root("stranger root"))
    with s_server("-cert", stranger / "certs" / "hostcert.pem", "-cert_chain", stranger / "inter.pem",
                  "-key", stranger / "certs" / "privkey.pem", "-rev") as server:
        code, line = connect(config, server.port)
    assert code == 1 and line.startswith("gtls: untrusted: "), line


# --- E2: mutual TLS ---


def test_e2_server_requires_a_client_certificate_valid_under_certauth(fixtures: Path, tmp_path: Path) -> None:
    """E2 server: tls-mutual=1 from P: a client certificate valid under certauth.pem is required."""
    ca = fixtures / "ca" / "certauth.pem"
    client_chain = fixtures / "certs" / "clthostcert.pem"
    stranger = CA.root("e2 stranger").leaf("client.gtls.test", eku=("client",))
    stranger_cert, stranger_key = stranger.write_cert(tmp_path / "c.pem"), stranger.write_key(tmp_path / "k.pem")
    with gtls_serve("--config", str(fixtures / "mutual-tls.toml"), "--app", "statserver", "--port-id", "default",
                    "--listen", "127.0.0.1:0") as server:
        base = ("-CAfile", str(ca), "-verify_return_error")
        good = openssl_echo(server.port, "e2 good", *base, "-cert", str(client_chain), "-cert_chain",
                            str(client_chain), "-key", str(fixtures / "certs" / "cltprivkey.pem"))
        assert good.echoed, good.stdout + good.stderr
        server.stderr.wait_for(lambda text: text.startswith("connection from") and "TLSv1.3" in text)
        none = openssl_echo(server.port, "e2 none", *base, timeout=5)
        assert not none.echoed
        line = server.stderr.wait_for(lambda text: "failed" in text)
        assert "failed: no-peer-certificate" in line, line
        other = openssl_echo(server.port, "e2 other", *base, "-cert", str(stranger_cert), "-key", str(stranger_key),
                             timeout=5)
        assert not other.echoed
        line = server.stderr.wait_for(lambda text: "failed" in text)
        assert "failed: untrusted" in line, line
        assert server.stop() == 0


class E2Pki:
    """The E2 files from a fresh root: the server's chain and the client's identity."""

    def __init__(self, folder: Path) -> None:
        self.root = CA.root("e2 root")
        self.inter = self.root.intermediate("e2 intermediate")
        self.server: Certified = self.inter.leaf("localhost", dns=["localhost"])
        client = self.inter.leaf("client.e2", eku=("client",))
        certs = folder / "certs"
        write_pem(folder / "ca" / "certauth.pem", self.root)
        write_pem(certs / "servhostcert.pem", self.server, self.inter)
        self.inter_file = self.inter.write_cert(folder / "inter.pem")
        self.server.write_key(certs / "servprivkey.pem")
        write_pem(certs / "clthostcert.pem", client, self.inter)
        client.write_key(certs / "cltprivkey.pem")
        self.crl_file = folder / "crl" / "crllist.pem"

    def crls(self, *crls: CRL) -> None:
        write_pem(self.crl_file, *(crl.pem for crl in crls))


def test_e2_client_needs_a_current_crl_from_the_server_certificates_issuer(tmp_path: Path) -> None:
    """E2 client: E = H, it presents its chain (the server verifies it), and crllist.pem MUST hold a current CRL from
    the server certificate's issuer, else crl-unavailable or crl-expired."""
    folder = tmp_path / "e2"
    config = sample_layout(folder, "mutual-tls.toml")
    pki = E2Pki(folder)
    certs = folder / "certs"
    cases: list[tuple[tuple[CRL, ...], str | None]] = [
        ((pki.inter.crl(), pki.root.crl()), None),
        ((pki.root.crl(),), "crl-unavailable"),  # nothing from the server certificate's issuer
        ((pki.inter.crl(this_update=-3 * DAY, next_update=-DAY), pki.root.crl()), "crl-expired"),
        ((pki.inter.crl(revoked=[pki.server]),), "revoked"),
    ]
    with s_server("-cert", certs / "servhostcert.pem", "-cert_chain", pki.inter_file,
                  "-key", certs / "servprivkey.pem", "-CAfile", folder / "ca" / "certauth.pem",
                  "-Verify", "1", "-verify_return_error", "-rev") as server:
        for crls, reason in cases:
            pki.crls(*crls)
            code, out = connect(config, server.port)
            if reason is None:
                assert code == 0 and "received: " in out, out
            else:
                assert code == 1 and out.startswith(f"gtls: {reason}: "), (reason, out)


# --- E3–E7 through gtls check ---


def write_credentials(folder: Path, name: str) -> dict[str, Path]:
    """A leaf, intermediate, key and CA under ``folder/name``, as E4 lists them."""
    root = CA.root(f"{name} root")
    inter = root.intermediate(f"{name} inter")
    leaf = inter.leaf(f"{name}.example", dns=[f"{name}.example"])
    where = folder / name
    where.mkdir(parents=True)
    return {"leaf": leaf.write_cert(where / "leaf.pem"), "inter": inter.write_cert(where / "inter.pem"),
            "key": leaf.write_key(where / "key.pem"), "ca": write_pem(where / "ca.pem", root),
            "crl": write_pem(where / "list.pem", inter.crl().pem, root.crl().pem)}


def test_e3_to_e7_from_a_deployment_file_through_gtls_check(tmp_path: Path) -> None:
    p = write_credentials(tmp_path, "p")
    h = write_credentials(tmp_path, "h")
    host = f'certificate = "{h["leaf"]},{h["inter"]}"\ncertificate-key = "{h["key"]}"\ntrusted-ca = "{h["ca"]}"\n'
    e4 = f"tls=1;certificate={p['leaf']},{p['inter']};certificate-key={p['key']};trusted-ca={p['ca']}"
    config = tmp_path / "examples.toml"
    config.write_text(f"""
[hosts.full.security]
{host}
[hosts.key-and-ca.security]
certificate-key = "{h["key"]}"
trusted-ca = "{h["ca"]}"
[hosts.ca-only.security]
trusted-ca = "{h["ca"]}"
[hosts.alias.security]
{host}crl = "{h["crl"]}"
[hosts.conflict.security]
{host}crl = "/c/a.pem"
tls-crl = "/c/b.pem"

[applications.e3]
host = "full"
[applications.e3.security]
sec-protocol = "TLSv13"
[applications.e3.ports.default]
port = 1
transport = "tls=1"

[applications.e4]
host = "full"
[applications.e4.ports.default]
port = 2
transport = "{e4}"

[applications.e5]
host = "key-and-ca"
[applications.e5.ports.default]
port = 3
transport = "tls=1;certificate={p['leaf']}"

[applications.e6]
host = "ca-only"
[applications.e6.connections.c]
server = "e4"
port-id = "default"
transport = "tls-target-name-check=host"

[applications.e7]
host = "alias"
[applications.e7.connections.c]
server = "e4"
port-id = "default"

[applications.e7conflict]
host = "conflict"
[applications.e7conflict.connections.c]
server = "e4"
port-id = "default"
""")
    code, endpoints = check(config)
    assert code == 1
    host_copies = {("Host", "certificate"), ("Host", "certificate-key"), ("Host", "trusted-ca")}

    e3 = endpoints["applications.e3.ports.default"]
    assert (e3["error"]["type"], e3["error"]["level"]) == ("IncompleteTlsLevel", "Application")
    assert "lacks certificate, certificate-key, trusted-ca" in e3["error"]["message"]
    assert "cannot be split across levels" in e3["error"]["message"]
    assert shadowed(e3) == host_copies

    e4_port = endpoints["applications.e4.ports.default"]
    assert e4_port["error"] is None and e4_port["level"] == "Port"
    assert e4_port["options"]["certificate"]["value"] == f"{p['leaf']},{p['inter']}"
    assert [c["subject"] for c in e4_port["chain"]] == ["CN=p.example", "CN=p inter"]
    assert shadowed(e4_port) == host_copies

    e5 = endpoints["applications.e5.ports.default"]
    assert (e5["error"]["type"], e5["error"]["level"]) == ("IncompleteTlsLevel", "Port")
    assert "lacks certificate-key, trusted-ca" in e5["error"]["message"]
    assert shadowed(e5) == {("Host", "certificate-key"), ("Host", "trusted-ca")}

    e6 = endpoints["applications.e6.connections.c"]
    assert (e6["error"]["type"], e6["error"]["level"]) == ("IncompleteTlsLevel", "Connection")
    assert "lacks trusted-ca" in e6["error"]["message"]
    assert shadowed(e6) == {("Host", "trusted-ca")}

    e7 = endpoints["applications.e7.connections.c"]
    assert e7["error"] is None and e7["level"] == "Host"
    assert e7["options"]["tls-crl"] == {"value": str(h["crl"]), "source": "H", "level": "Host"}
    assert "crl" not in e7["options"]
    conflict = endpoints["applications.e7conflict.connections.c"]["error"]
    assert (conflict["type"], conflict["level"], conflict["option"]) == ("ConflictingOptions", "Host", "tls-crl")
    assert "/c/a.pem" in conflict["message"] and "/c/b.pem" in conflict["message"]


# --- E8: the Windows sample ---


def e8_config(folder: Path, certificate: str, *, store: bool, profile: str = "windows") -> Path:
    config = folder / f"e8-{profile}-{'store' if store else 'none'}.toml"
    config.write_text(f"""
profile = "{profile}"
[hosts.server-host.security]
certificate = "{certificate}"
{'certificate-store = "store"' if store else ''}
[applications.statserver]
host = "server-host"
certificate-source = "Host"
[applications.statserver.ports.default]
address = "127.0.0.1"
port = 9447
transport = "tls=1"

[hosts.client-host]                   # nothing configured

[applications.reporter]
host = "client-host"
[applications.reporter.connections.stats]
server = "statserver"
port-id = "default"
""")
    return config


def test_e8_windows_sample(tmp_path: Path) -> None:
    """E8: a thumbprint written as the Windows dialog shows it; without certificate-store at H UnsupportedFeature;
    with a store holding the identity, the server runs without trusted-ca. The client has nothing configured: secure
    through T, no effective level, so system trust (OpenSSL's, here pointed at a file by SSL_CERT_FILE) and no name
    check. Under unix that client raises IncompleteTlsLevel(level=None, missing=[trusted-ca])."""
    root = CA.root("e8 root")
    leaf = root.leaf("elsewhere.example", dns=["elsewhere.example"])
    (tmp_path / "store").mkdir()
    write_pem(tmp_path / "store" / "server.pem", leaf.key_pem, leaf, mode=0o600)
    trust = write_pem(tmp_path / "system-trust.pem", root)
    other = write_pem(tmp_path / "other-trust.pem", CA.root("e8 other root"))
    thumb = " ".join(leaf.thumbprint[i:i + 2] for i in range(0, 40, 2))

    code, endpoints = check(e8_config(tmp_path, thumb, store=False))
    error = endpoints["applications.statserver.ports.default"]["error"]
    assert code == 1 and (error["type"], error["level"], error["option"]) == (
        "UnsupportedFeature", "Host", "certificate")
    assert "certificate-store" in error["message"]
    client = endpoints["applications.reporter.connections.stats"]
    assert client["error"] is None and client["secure"] and client["level"] is None
    assert client["options"]["tls"]["level"] == "Target port" and "trusted-ca" not in client["options"]

    config = e8_config(tmp_path, thumb, store=True)
    system_trust = gtls_env()
    system_trust["SSL_CERT_FILE"] = str(trust)
    code, endpoints = check(config, env=system_trust)
    port = endpoints["applications.statserver.ports.default"]
    assert code == 0 and port["level"] == "Host" and "trusted-ca" not in port["options"]
    assert [c["subject"] for c in port["chain"]] == ["CN=elsewhere.example"]
    assert endpoints["applications.reporter.connections.stats"]["handshake"]["ok"]
    # gtls check tries the pair: where the system's trust does not hold the server's root, the client would refuse
    code, endpoints = check(config)
    handshake = endpoints["applications.reporter.connections.stats"]["handshake"]
    assert code == 1 and (handshake["ok"], handshake["side"], handshake["reason"]) == (False, "client", "untrusted")
    with gtls_serve("--config", str(config), "--app", "statserver", "--listen", "127.0.0.1:0") as server:
        result = s_client(server.port, "-CAfile", str(trust), "-verify_return_error")
        assert result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout, result.stdout[-800:]
        env = gtls_env()
        env["SSL_CERT_FILE"] = str(trust)
        code, out = connect(config, server.port, env=env)
        assert code == 0 and "received: worked example" in out, out  # no name check: elsewhere.example
        env["SSL_CERT_FILE"] = str(other)
        code, line = connect(config, server.port, env=env)
        assert code == 1 and line.startswith("gtls: untrusted: "), line
        assert server.stop() == 0

    code, endpoints = check(e8_config(tmp_path, thumb, store=True, profile="unix"))
    error = endpoints["applications.reporter.connections.stats"]["error"]
    assert (error["type"], error["level"]) == ("IncompleteTlsLevel", None)
    assert "no level has TLS settings" in error["message"] and "trusted-ca" in error["message"]


@pytest.mark.parametrize("spelling", ["lower", "invisible-marks"])
def test_e8_thumbprint_spellings_from_the_windows_dialog(tmp_path: Path, spelling: str) -> None:
    """§4.4 detection in a deployment file: either case, and U+200E/U+200F marks as the dialog copies them."""
    leaf = CA.root("e8 spelling root").leaf("spelled.example")
    (tmp_path / "store").mkdir()
    write_pem(tmp_path / "store" / "server.pem", leaf.key_pem, leaf, mode=0o600)
    thumb = leaf.thumbprint.lower() if spelling == "lower" else "\u200e" + leaf.thumbprint[:20] + "\u200f " + (
        leaf.thumbprint[20:])
    code, endpoints = check(e8_config(tmp_path, thumb, store=True))
    port = endpoints["applications.statserver.ports.default"]
    assert port["error"] is None and [c["subject"] for c in port["chain"]] == ["CN=spelled.example"], port["error"]
    # the client trusts the system's roots, which do not hold this test root: its handshake fails, the port is fine
    assert code == 1 and endpoints["applications.reporter.connections.stats"]["handshake"]["reason"] == "untrusted"
