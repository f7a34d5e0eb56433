"""``gtls pki``, ``gtls chain`` and the demo PKI folder, through the real command and ``openssl verify``."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from gtls.demo import DemoFiles, data_dir, ensure_demo_pki
from gtls.testing import CA, write_pem
from tests.peers import STEP_TIMEOUT, error_line, gtls_env, run_gtls


def openssl_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", *args], capture_output=True, text=True, timeout=20)


def test_pki_writes_a_pki_openssl_verifies(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    result = run_gtls("pki", str(out), "--server-name", "svc.example.test", "--server-name", "alt.example.test",
                      "--client-name", "reporter.example.test", "--key-type", "rsa")
    assert result.returncode == 0, result.stderr
    assert f"wrote 11 files to {out}" in result.stdout
    root, inter = str(out / "root-ca.pem"), str(out / "intermediate-ca.pem")
    ok = openssl_verify("-CAfile", root, "-untrusted", inter, "-purpose", "sslserver", str(out / "server-cert.pem"))
    assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr
    ok = openssl_verify("-CAfile", root, "-untrusted", inter, "-purpose", "sslclient", str(out / "client-cert.pem"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The CRLs are current and signed by root and intermediate: a CRL check across the whole chain passes.
    ok = openssl_verify("-CAfile", root, "-untrusted", inter, "-CRLfile", str(out / "crl.pem"), "-crl_check_all",
                        str(out / "server-cert.pem"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The unrelated second root does not verify the server.
    bad = openssl_verify("-CAfile", str(out / "second-root-ca.pem"), "-untrusted", inter, str(out / "server-cert.pem"))
    assert bad.returncode != 0

    server = x509.load_pem_x509_certificate((out / "server-cert.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"svc.example.test", "alt.example.test"} <= set(names.get_values_for_type(x509.DNSName))
    assert server.public_key().key_size == 2048  # type: ignore[union-attr]
    client = x509.load_pem_x509_certificate((out / "client-cert.pem").read_bytes())
    assert client.subject.rfc4514_string() == "CN=reporter.example.test"
    assert stat.S_IMODE(os.stat(out / "server-key.pem").st_mode) == 0o600


def test_pki_always_names_localhost_and_127_0_0_1_and_days_sets_the_validity(tmp_path: Path) -> None:
    """README: --server-name adds to localhost and 127.0.0.1; --days is the leaves' and CRLs' validity, CAs twice."""
    out = tmp_path / "pki"
    result = run_gtls("pki", str(out), "--server-name", "svc.example.test", "--days", "10")
    assert result.returncode == 0, result.stderr
    server = x509.load_pem_x509_certificate((out / "server-cert.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["svc.example.test", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    root, inter = str(out / "root-ca.pem"), str(out / "intermediate-ca.pem")
    for check in (["-verify_hostname", "localhost"], ["-verify_ip", "127.0.0.1"]):
        ok = openssl_verify("-CAfile", root, "-untrusted", inter, *check, str(out / "server-cert.pem"))
        assert ok.returncode == 0, ok.stdout + ok.stderr

    def lifetime(cert: x509.Certificate) -> float:
        return (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400

    assert round(lifetime(server)) == 10
    assert round(lifetime(x509.load_pem_x509_certificate((out / "root-ca.pem").read_bytes()))) == 20
    crls = (out / "crl.pem").read_text().split("-----END X509 CRL-----")[:-1]
    assert len(crls) == 2
    for text in crls:
        crl = x509.load_pem_x509_crl((text + "-----END X509 CRL-----\n").encode())
        assert crl.next_update_utc is not None
        assert round((crl.next_update_utc - crl.last_update_utc).total_seconds() / 86400) == 10


def test_pki_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert run_gtls("pki", str(tmp_path)).returncode == 0
    before = (tmp_path / "root-ca.pem").read_bytes()
    again = run_gtls("pki", str(tmp_path))
    assert again.returncode == 2
    assert error_line(again).startswith("gtls: usage error: ") and "--force" in again.stderr
    assert (tmp_path / "root-ca.pem").read_bytes() == before
    forced = run_gtls("pki", str(tmp_path), "--force")
    assert forced.returncode == 0 and (tmp_path / "root-ca.pem").read_bytes() != before


def test_pki_unwritable_folder_is_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_gtls("pki", str(blocker / "sub"))
    assert result.returncode == 1
    assert error_line(result).startswith(f"gtls: pki: cannot write {blocker / 'sub'}: ")


def test_usage_errors_exit_2_with_one_line() -> None:
    result = run_gtls("pki")
    assert result.returncode == 2
    assert error_line(result).startswith("gtls: usage error: ")
    result = run_gtls("frobnicate")
    assert result.returncode == 2 and error_line(result).startswith("gtls: usage error: ")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """root → intermediate → leaf, plus an unrelated certificate."""
    folder = tmp_path_factory.mktemp("chain")
    root = CA.root("chain test root")
    inter = root.intermediate("chain test intermediate")
    leaf = inter.leaf("leaf.example.test", dns=["leaf.example.test"])
    stray = CA.root("unrelated root").leaf("stray.example.test")
    return {
        "dir": folder, "root": root, "inter": inter, "leaf": leaf,
        "key": leaf.write_key(folder / "leaf-key.pem"),
        "scrambled_a": write_pem(folder / "a.pem", root, leaf),
        "scrambled_b": write_pem(folder / "b.pem", stray, inter),
        "no_root": write_pem(folder / "noroot.pem", inter, leaf),
    }


def subjects_in_order(output: str) -> list[str]:
    return [line.split("subject: ", 1)[1] for line in output.splitlines() if " subject: " in line]


def test_chain_orders_a_scrambled_list_leaf_first_and_says_why(pki: dict[str, object]) -> None:
    listing = f"{pki['scrambled_a']},{pki['scrambled_b']}"
    result = run_gtls("chain", listing, "--key", str(pki["key"]))
    assert result.returncode == 0, result.stderr
    assert subjects_in_order(result.stdout) == [
        "CN=leaf.example.test", "CN=chain test intermediate", "CN=chain test root"]
    assert "matches the private key" in result.stdout
    assert "issued certificate 0" in result.stdout and "issued certificate 1" in result.stdout
    assert "reordered" in result.stdout and "self-signed" in result.stdout
    # The unrelated certificate is named in a warning and not sent.
    assert "stray.example.test" in result.stderr and "not in the chain" in result.stderr


def test_chain_without_key_picks_the_certificate_that_issued_nothing(pki: dict[str, object]) -> None:
    result = run_gtls("chain", f"{pki['scrambled_a']},{pki['scrambled_b']}")
    assert result.returncode == 0, result.stderr
    # Two candidates issued nothing (the real leaf and the stray leaf): the first in load order wins.
    assert subjects_in_order(result.stdout)[0] == "CN=leaf.example.test"
    assert "no --key given" in result.stdout


def test_chain_without_root_says_the_peer_needs_the_ca(pki: dict[str, object]) -> None:
    result = run_gtls("chain", str(pki["no_root"]), "--key", str(pki["key"]))
    assert result.returncode == 0, result.stderr
    assert subjects_in_order(result.stdout) == ["CN=leaf.example.test", "CN=chain test intermediate"]
    assert "top: chain ends at CN=chain test intermediate, which is not self-signed; the peer must hold its issuer " \
        in result.stdout
    assert "not self-signed" not in result.stderr  # said once, in the report (it was a warning too)


@pytest.mark.parametrize(("dates", "problem"), [
    ({"not_before": -dt.timedelta(days=10), "not_after": -dt.timedelta(days=1)}, "expired on "),
    ({"not_before": dt.timedelta(days=1), "not_after": dt.timedelta(days=10)}, "not valid before "),
])
def test_chain_warns_of_a_leaf_outside_its_dates(tmp_path: Path, dates: dict[str, dt.timedelta], problem: str) -> None:
    """A port compiled from this list warns of its leaf's dates; gtls chain, the tool for checking such a list before
    a port uses it, said nothing of them (only of its issuers')."""
    chain = CA.root("r").intermediate("i").leaf("leaf.example.test", **dates).write_chain(tmp_path / "chain.pem")
    result = run_gtls("chain", str(chain))
    assert result.returncode == 0, result.stderr
    assert f"gtls: warning: certificate: certificate CN=leaf.example.test {problem}" in result.stderr
    assert "warning" not in run_gtls("chain", str(CA.root("r").leaf("fine").write_chain(tmp_path / "ok.pem"))).stderr


def test_chain_relative_paths_are_from_the_working_directory(pki: dict[str, object]) -> None:
    folder = Path(str(pki["dir"]))
    result = run_gtls("chain", "noroot.pem", "--key", "leaf-key.pem", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "relative path" not in result.stderr


def test_chain_errors_are_config_errors_naming_option_and_file(pki: dict[str, object], tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = run_gtls("chain", f"{pki['no_root']},{missing}")
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("gtls: config error: ") and "certificate" in line and str(missing) in line
    other_key = CA.root("other").leaf("other").write_key(tmp_path / "other-key.pem")
    result = run_gtls("chain", str(pki["no_root"]), "--key", str(other_key))
    assert result.returncode == 2 and "private key" in error_line(result)


def test_demo_folder_location_honours_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GTLS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "gtls"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert data_dir() == Path.home() / ".local" / "share" / "gtls"
    monkeypatch.setenv("GTLS_DATA_DIR", str(tmp_path / "override"))
    assert data_dir() == tmp_path / "override"


def test_an_empty_home_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME="" made the folder /.local/share/gtls (Python reads an empty HOME as /): root's demo keys at the root."""
    monkeypatch.delenv("GTLS_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", "")
    account_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert data_dir() == account_home / ".local" / "share" / "gtls"


def test_demo_pki_is_made_once_then_reused_and_renewed_near_expiry(tmp_path: Path) -> None:
    files, created = ensure_demo_pki(tmp_path / "demo")
    assert created and all(path.is_file() for path in files.required())
    assert stat.S_IMODE(os.stat(files.directory).st_mode) == 0o700
    first = files.server_cert.read_bytes()
    again, created_again = ensure_demo_pki(tmp_path / "demo")
    assert not created_again and again.server_cert.read_bytes() == first
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=364)
    renewed, created_late = ensure_demo_pki(tmp_path / "demo", now=later)
    assert created_late and renewed.server_cert.read_bytes() != first
    ok = openssl_verify("-CAfile", str(renewed.root_ca), "-untrusted", str(renewed.server_chain),
                        str(renewed.server_cert))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_demo_pki_broken_file_is_remade(tmp_path: Path) -> None:
    files, _ = ensure_demo_pki(tmp_path / "demo")
    files.server_cert.write_text("garbage")
    _, created = ensure_demo_pki(tmp_path / "demo")
    assert created
    assert DemoFiles(tmp_path / "demo").server_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_bench_subcommand_hands_over_or_says_it_is_missing() -> None:
    result = run_gtls("bench", "--help", env=gtls_env())
    try:
        import gtls.bench as bench
    except ModuleNotFoundError:
        assert result.returncode == 1 and "gtls.bench is not installed" in error_line(result)
        return
    if not callable(getattr(bench, "main", None)):
        assert result.returncode == 1 and "no main(argv)" in error_line(result)
    else:
        assert "usage" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("damage", ["empty-key", "foreign-key", "key-readable-by-others", "empty-chain",
                                    "no-crl", "junk-crl", "no-ca-bundle", "no-second-root"])
def test_a_damaged_or_exposed_demo_set_is_made_anew(tmp_path: Path, damage: str) -> None:
    """Any damage a bare gtls serve could not run with (or a demo key others may have read) makes a new set,
    instead of a configuration error naming options the user never gave."""
    files, _ = ensure_demo_pki(tmp_path / "demo")
    before = files.root_ca.read_bytes()
    if damage == "empty-key":
        files.server_key.write_text("")
    elif damage == "foreign-key":
        files.client_key.write_bytes(CA.root("other").key_pem)
        files.client_key.chmod(0o600)
    elif damage == "key-readable-by-others":
        files.server_key.chmod(0o644)
    elif damage == "no-crl":  # the README's examples use every file of the set, not only what serve needs
        files.crl.unlink()
    elif damage == "junk-crl":
        files.crl.write_text("junk")
    elif damage == "no-ca-bundle":
        files.ca_bundle.unlink()
    elif damage == "no-second-root":
        files.second_root_ca.unlink()
    else:
        files.server_chain.write_text("")
    again, created = ensure_demo_pki(tmp_path / "demo")
    assert created and again.root_ca.read_bytes() != before
    assert stat.S_IMODE(os.stat(again.server_key).st_mode) & 0o077 == 0


def test_two_first_runs_at_once_make_one_demo_set(tmp_path: Path) -> None:
    """Two gtls serve started together on an empty data folder: one makes the set, the other waits for it and uses
    it (before, the later one replaced the set under the first, whose printed commands then failed)."""
    env = gtls_env(tmp_path / "data")
    servers = [subprocess.Popen([sys.executable, "-m", "gtls", "serve", "--listen", "127.0.0.1:0", "--quiet"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for _ in range(2)]
    try:
        ports = []
        for server in servers:
            assert server.stdout is not None
            line = server.stdout.readline()  # blocks until listening (or EOF on failure)
            assert line.startswith("listening on 127.0.0.1:"), line
            ports.append(line.strip().rsplit(":", 1)[1])
        root = tmp_path / "data" / "demo" / "root-ca.pem"
        for port in ports:
            connect = run_gtls("connect", f"localhost:{port}", "--trusted-ca", str(root), "--send", "hi", env=env)
            assert connect.returncode == 0 and "received: hi" in connect.stdout, connect.stderr
    finally:
        errors = []
        for server in servers:
            server.terminate()
            errors.append(server.communicate(timeout=STEP_TIMEOUT)[1])
    assert sum("created the demo PKI" in text for text in errors) == 1


def test_an_unusable_data_folder_is_one_config_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = run_gtls("serve", "--listen", "127.0.0.1:0", env=gtls_env(blocker))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = error_line(result)
    assert line.startswith("gtls: config error: DemoUnavailable: cannot create the demo PKI in ")
    assert "GTLS_DATA_DIR" in line
    assert f"{blocker} is not a folder" in line  # not "File exists"
    nested = run_gtls("serve", "--listen", "127.0.0.1:0", env=gtls_env(blocker / "sub" / "deeper"))
    assert nested.returncode == 2 and f"({blocker} is not a folder)" in error_line(nested)  # the file in the way


@pytest.mark.parametrize("args", [
    ["--server-name", "a-name-longer-than-sixty-four-characters.internal.prod.cluster.example.com"],
    ["--server-name", "é.example"],
    ["--days", "3000000"],
])
def test_pki_names_and_days_no_certificate_can_carry_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = run_gtls("pki", str(tmp_path / "pki"), *args, env=gtls_env())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_line(result).startswith("gtls: usage error: ")


def test_printed_commands_survive_a_space_in_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "my pki"
    written = run_gtls("pki", str(folder), env=gtls_env())
    assert written.returncode == 0, written.stderr
    connect_hint = next(line for line in written.stdout.splitlines() if line.strip().startswith("gtls connect"))
    assert shlex.split(connect_hint.strip())[4] == str((folder / "root-ca.pem").resolve())


def test_version_names_gtls_and_the_libraries_it_runs_on() -> None:
    import OpenSSL
    import trio

    import gtls

    result = run_gtls("--version", env=gtls_env())
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"gtls {gtls.__version__} (pyOpenSSL {OpenSSL.__version__}, OpenSSL ")
    assert line.endswith(f"trio {trio.__version__})")
    from importlib.metadata import version

    assert gtls.__version__ == version("gtls")  # one version, written once (gtls/_version.py)


def test_names_the_output_encoding_lacks_are_escaped_not_fatal(tmp_path: Path) -> None:
    """On an ASCII locale a subject like 'zoë' made the command stop as stdout-closed (the encoding error was taken
    for a closed output); it is printed escaped and the command succeeds."""
    root = CA.root("Zo\u00eb root")
    listing = write_pem(tmp_path / "chain.pem", root.leaf("zo\u00eb.test"), root)
    env = {**gtls_env(), "PYTHONIOENCODING": "ascii"}
    result = run_gtls("chain", str(listing), env=env)
    assert result.returncode == 0, result.stderr
    assert "CN=zo\\xeb.test" in result.stdout and "stdout-closed" not in result.stderr
