"""Configuration abuse (issue #7 part 4): every way a configured file can be wrong is a clean ``ConfigError`` of
spec §10 naming the option, the level and the file, through the library, ``gtls check`` and ``gtls serve`` (exit 2,
one ``gtls:`` line, no traceback), and no port opens. Hypothesis drives random option values, transport strings,
deployment documents and file contents through the same paths."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gtls.context import clear_cache, compile_context
from gtls.errors import ConfigError, CredentialLoadError, CrlLoadError, KeyMismatch
from gtls.resolve import direct
from gtls.testing import CA, write_pem
from tests.config_abuse_helpers import (
    FILE_ABUSES,
    FILE_OPTIONS,
    GoodFiles,
    deployment_toml,
    free_port,
    good_files,
    good_pem,
    port_is_closed,
    run_cli,
    toml_string,
    unreadable_wrapper,
    write_abuse,
)
from tests.peers import REPO, STEP_TIMEOUT, error_line, gtls_env, last_error_line, run_gtls

#: What each abuse must say (a fragment of the message), whatever the option.
EXPECTED_WORDS = {
    "missing": "file not found",
    "directory": "is a directory",
    "empty": "no PEM data",
    "binary": "no PEM data",
    "bad-base64": "not valid base64",
    "cut-mid-body": "truncated",
    "cut-before-end": "truncated",
    "wrong-kind": "no PEM",
    "junk-50mb": "no PEM data",
    "over-limit": "over gtls's limit of 64 MiB",
    "fifo": "not a regular file",
    "unreadable": "Permission denied",
}


def error_class(option: str) -> type[ConfigError]:
    return CrlLoadError if option == "tls-crl" else CredentialLoadError


def cases() -> list[tuple[str, str]]:
    return [(option, abuse) for option in FILE_OPTIONS for abuse in FILE_ABUSES
            if not (option == "certificate-store" and abuse == "directory")]  # a store may be a directory


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> GoodFiles:
    return good_files(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def junk_50mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("junk") / "junk-50mb.pem"
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for _ in range(50):  # 50 MiB of binary junk, under the 64 MiB limit: read and refused as "no PEM data"
            handle.write(block)
    path.chmod(0o600)
    return path


def test_the_good_configuration_compiles(good: GoodFiles) -> None:
    """The baseline each abuse breaks in one place (so each error below is caused by that place alone)."""
    for option in ("certificate", "certificate-store"):
        compiled = compile_context(direct(good.with_file(option, getattr(good, "chain" if option == "certificate"
                                                                            else "store")), "server"))
        assert len(compiled.chain) == 2


@pytest.mark.parametrize(("option", "abuse"), cases())
def test_file_abuse_is_a_config_error_naming_option_level_and_file(
    good: GoodFiles, junk_50mb: Path, tmp_path: Path, option: str, abuse: str
) -> None:
    bad = write_abuse(good, option, abuse, tmp_path, junk_50mb)
    settings_ = direct(good.with_file(option, bad), "server")
    with pytest.raises(error_class(option)) as info:
        compile_context(settings_)
    error = info.value
    assert (error.option, error.level, error.file) == (option, "Port", str(bad))
    assert str(bad) in str(error) and EXPECTED_WORDS[abuse] in str(error)

    # gtls serve with the same flags: exit 2 and one config-error line naming the three; the port never opens.
    port = free_port()
    flags = [item for name, value in good.with_file(option, bad).items() for item in (f"--{name}", value)]
    result = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--quiet", *flags)
    assert result.code == 2 and result.out == ""
    line = last_error_line(result.err_lines)  # after any warnings gathered on the way
    assert line.startswith("gtls: config error: ") and "Traceback" not in result.err
    assert option in line and "level Port" in line and str(bad) in line
    assert port_is_closed(port)


@pytest.mark.parametrize("abuse", FILE_ABUSES)
def test_gtls_check_reports_each_bad_file_with_option_level_and_file(
    good: GoodFiles, junk_50mb: Path, tmp_path: Path, abuse: str
) -> None:
    """One deployment per abuse with one server per option, the bad file at the Host level: ``gtls check`` reports
    every endpoint's error (text and JSON) and exits 1."""
    bad = {option: write_abuse(good, option, abuse, tmp_path, junk_50mb) for option, kind in cases() if kind == abuse}
    config = tmp_path / "deployment.toml"
    entries = [(f"app-{option}", good.with_file(option, path)) for option, path in bad.items()]
    config.write_text(deployment_toml(entries))
    result = run_cli("check", "--config", str(config), "--json")
    assert result.code == 1 and "Traceback" not in result.err
    document = json.loads(result.out)
    errors = {endpoint["object_path"]: endpoint["error"] for endpoint in document["endpoints"]}
    assert document["errors"] == len(bad)
    for option, path in bad.items():
        error = errors[f"applications.app-{option}.ports.default"]
        assert error is not None and error["type"] == error_class(option).__name__
        assert (error["option"], error["level"], error["file"]) == (option, "Host", str(path))
        assert EXPECTED_WORDS[abuse] in error["message"]
    text = run_cli("check", "--config", str(config))
    assert text.code == 1 and f"{len(bad)} endpoints, {len(bad)} errors" in text.out
    for option, path in bad.items():
        assert f"error: {error_class(option).__name__}: " in text.out and str(path) in text.out


# "utf-16" and "utf-32" write a byte-order mark (PowerShell's >); UTF-32-LE's begins with UTF-16-LE's.
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("option", ["certificate", "certificate-key", "trusted-ca", "tls-crl"])
def test_a_utf16_pem_file_is_named_as_such(good: GoodFiles, tmp_path: Path, option: str, encoding: str) -> None:
    """PEM saved as UTF-16 (Windows PowerShell's ``>``, with or without byte-order mark) was reported as
    "no PEM data", which sends the user looking for the wrong problem: say what it is and how to save it. UTF-32
    was called UTF-16."""
    bad = tmp_path / f"{option}-{encoding}.pem"
    bad.write_bytes(good_pem(good, option).decode("ascii").encode(encoding))
    bad.chmod(0o600)
    with pytest.raises(error_class(option)) as info:
        compile_context(direct(good.with_file(option, bad), "server"))
    assert (info.value.option, info.value.file) == (option, str(bad))
    assert encoding[:6].upper() in str(info.value) and "save it as ASCII or UTF-8" in str(info.value)


def test_real_gtls_serve_processes_exit_2_and_leave_the_port_closed(good: GoodFiles, tmp_path: Path) -> None:
    """The command as users run it, one bad file per option: exit 2, one stderr line, nothing listening."""
    for option in FILE_OPTIONS:
        bad = write_abuse(good, option, "cut-mid-body", tmp_path, tmp_path / "unused")
        port = free_port()
        flags = [item for name, value in good.with_file(option, bad).items() for item in (f"--{name}", value)]
        result = run_gtls("serve", "--listen", f"127.0.0.1:{port}", *flags)
        assert result.returncode == 2 and result.stdout == ""
        line = error_line(result)
        assert line.startswith("gtls: config error: ") and option in line and "Port" in line and str(bad) in line
        assert port_is_closed(port)


def test_unreadable_files_name_option_level_and_file(good: GoodFiles, tmp_path: Path) -> None:
    """A mode-000 file for each option. Root reads any file, so the commands run without the capabilities that
    allow it (``setpriv``); the uid stays 0, so gtls itself and the other files stay readable."""
    prefix = unreadable_wrapper()
    if prefix is None:
        pytest.skip("cannot make a file unreadable here: running as root without setpriv to drop CAP_DAC_OVERRIDE")
    bad: dict[str, Path] = {}
    for option in FILE_OPTIONS:
        path = tmp_path / f"{option}-unreadable.pem"
        path.write_bytes(good_pem(good, option))
        path.chmod(0)
        bad[option] = path
    config = tmp_path / "deployment.toml"
    entries = [(f"app-{option}", good.with_file(option, path)) for option, path in bad.items()]
    config.write_text(deployment_toml(entries))
    command = [*prefix, sys.executable, "-m", "gtls"]
    checked = subprocess.run([*command, "check", "--config", str(config), "--json"], capture_output=True, text=True,
                             timeout=STEP_TIMEOUT, env=gtls_env(), cwd=REPO, stdin=subprocess.DEVNULL)
    assert checked.returncode == 1, checked.stderr
    errors = {e["object_path"]: e["error"] for e in json.loads(checked.stdout)["endpoints"]}
    for option, path in bad.items():
        error = errors[f"applications.app-{option}.ports.default"]
        assert (error["type"], error["option"], error["level"], error["file"]) == (
            error_class(option).__name__, option, "Host", str(path))
        assert "cannot read file (Permission denied)" in error["message"]
    port = free_port()
    served = subprocess.run([*command, "serve", "--config", str(config), "--app", "app-certificate-key", "--listen",
                             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=STEP_TIMEOUT,
                            env=gtls_env(), cwd=REPO, stdin=subprocess.DEVNULL)
    assert served.returncode == 2
    line = error_line(served)
    assert line.startswith("gtls: config error: CredentialLoadError: applications.app-certificate-key.ports.default: "
                           "level Host: ")
    assert "certificate-key" in line and str(bad["certificate-key"]) in line and "Permission denied" in line
    assert port_is_closed(port)


@pytest.mark.parametrize("pair", ["ec-key-rsa-cert", "two-ec-keys", "rsa-key-ec-cert"])
def test_key_and_certificate_mismatch(good: GoodFiles, tmp_path: Path, pair: str) -> None:
    key_type, cert_type = {"ec-key-rsa-cert": ("ec", "rsa"), "two-ec-keys": ("ec", "ec"),
                           "rsa-key-ec-cert": ("rsa", "ec")}[pair]
    cert_owner = good.inter.leaf("cert.test", key_type=cert_type)
    key_owner = good.inter.leaf("key.test", key_type=key_type)
    chain = write_pem(tmp_path / "chain.pem", cert_owner, good.inter)
    key = key_owner.write_key(tmp_path / "key.pem")
    options = {**good.server_options(), "certificate": str(chain), "certificate-key": str(key)}
    with pytest.raises(KeyMismatch) as info:
        compile_context(direct(options, "server"))
    assert (info.value.option, info.value.level, info.value.file) == ("certificate", "Port", str(key))
    assert "CN=cert.test" in str(info.value)  # names what was loaded, so the user sees which pair is wrong
    flags = [item for name, value in options.items() for item in (f"--{name}", value)]
    result = run_cli("serve", "--listen", "127.0.0.1:0", *flags)
    assert result.code == 2 and last_error_line(result.err_lines).startswith("gtls: config error: ")
    assert "no loaded certificate matches the private key" in result.err and str(key) in result.err


def test_twenty_thousand_certificates_load_and_are_summarised(good: GoodFiles, tmp_path: Path) -> None:
    """A bundle of 20,000 real certificates as ``certificate`` and as ``trusted-ca``: accepted (it is valid), the
    chain still found, and the unrelated certificates reported in 21 warnings, not 20,000."""
    filler_ca = CA.root("filler issuer")
    fillers = b"".join(filler_ca.leaf(f"filler {i}").cert_pem for i in range(200))
    # 200 distinct signed leaves repeated with distinct bodies would be duplicates; sign 20,000 cheaply instead:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    template = filler_ca.leaf("template").cert
    builder = (x509.CertificateBuilder().issuer_name(filler_ca.cert.subject).public_key(template.public_key())
               .not_valid_before(template.not_valid_before_utc).not_valid_after(template.not_valid_after_utc))
    many = b"".join(
        builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bulk {i}")])).serial_number(i + 1)
        .sign(filler_ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        for i in range(20_000 - 200)
    )
    bundle = write_pem(tmp_path / "bundle.pem", fillers, many)
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 20_000
    options = {**good.server_options(), "certificate": f"{good.chain},{bundle}",
               "trusted-ca": f"{bundle}"}
    write_pem(tmp_path / "trust.pem", good.root.cert_pem, bundle.read_bytes())
    options["trusted-ca"] = str(tmp_path / "trust.pem")
    compiled = compile_context(direct(options, "server"))
    assert [c.subject.rfc4514_string() for c in compiled.chain] == ["CN=localhost", "CN=abuse inter"]
    assert len(compiled.trusted) == 20_001
    dropped = [w for w in compiled.warnings if "not in the chain" in w]
    assert len(dropped) == 21 and "19980 more certificates are not in the chain" in dropped[-1]


def test_lone_begin_lines_are_scanned_in_linear_time(good: GoodFiles, tmp_path: Path) -> None:
    """200,000 BEGIN lines without END (5.6 MB): a BEGIN..END regex took minutes here; now one damaged block."""
    path = write_pem(tmp_path / "begins.pem", b"-----BEGIN CERTIFICATE-----\n" * 200_000)
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct(good.with_file("trusted-ca", path), "server"))
    assert "PEM CERTIFICATE block 1 is damaged (BEGIN CERTIFICATE without END before the next BEGIN line)" in str(
        info.value)


def test_a_damaged_block_among_good_ones_is_an_error_not_a_silent_drop(good: GoodFiles, tmp_path: Path) -> None:
    """A chain file whose intermediate was cut short would silently lose it; a CA bundle likewise. Fail closed."""
    inter_pem = good.inter.cert_pem
    chain = write_pem(tmp_path / "chain.pem", good.leaf.cert_pem, inter_pem[: len(inter_pem) // 2])
    with pytest.raises(CredentialLoadError, match="block 2 is damaged"):
        compile_context(direct(good.with_file("certificate", chain), "server"))
    bundle = write_pem(tmp_path / "bundle.pem", b"-----BEGIN CERTIFICATE-----\n@@\n-----END CERTIFICATE-----\n",
                       good.root.cert_pem)
    with pytest.raises(CredentialLoadError, match="block 1 is damaged"):
        compile_context(direct(good.with_file("trusted-ca", bundle), "server"))
    # A damaged block of another kind is skipped with a warning, as other blocks are (spec §4.1 step 5).
    mixed = write_pem(tmp_path / "mixed.pem", good.leaf.cert_pem, good.inter.cert_pem,
                      b"-----BEGIN PRIVATE KEY-----\n%%\n-----END PRIVATE KEY-----\n")
    compiled = compile_context(direct(good.with_file("certificate", mixed), "server"))
    assert any("PRIVATE KEY (damaged" in w for w in compiled.warnings)


# --- hypothesis: random input end to end ------------------------------------------------------------------------

OPTION_NAMES = ("certificate", "certificate-key", "trusted-ca", "tls-crl", "crl", "tls-mutual", "tls-target-name-check",
                "tls-target-name", "sec-protocol", "cipher-list", "tls-crl-scope", "tls-crl-expired",
                "certificate-store", "Certificate", "upgrade", "fips140-enabled", "tls", "bogus")
#: Options ``gtls serve`` has flags for.
SERVER_FLAGS = ("certificate", "certificate-key", "trusted-ca", "tls-crl", "crl", "tls-mutual", "sec-protocol",
                "cipher-list", "tls-crl-scope", "tls-crl-expired", "certificate-store")
text_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1", "0", "yes", "host", "HOST", "TLSv13", "SSLv23", "TLSv1", "ALL:!aNULL", "@SECLEVEL=0",
                     "TLS_AES_128_GCM_SHA256", "chain", "warn", "-----BEGIN PRIVATE KEY-----", "a.pem,,b.pem",
                     "/nonexistent/x.pem", "0123456789abcdef0123456789ABCDEF01234567", "*.example", "::1"]),
)
toml_values = st.one_of(text_values.map(toml_string), st.integers(-3, 3).map(str), st.booleans().map(str).map(
    str.lower), st.lists(text_values.map(toml_string), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"))


@st.composite
def deployment_documents(draw: st.DrawFn) -> str:
    """Mostly well-formed deployment files with random options, transports and references; sometimes raw text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    lines = []
    for level in ("hosts.h.security", "applications.app.security", "applications.cli.security"):
        lines.append(f"[{level}]")
        for name in draw(st.lists(st.sampled_from(OPTION_NAMES), max_size=4, unique=True)):
            lines.append(f"{toml_string(name)} = {draw(toml_values)}")
    transport = draw(st.one_of(st.text(max_size=40), st.sampled_from(["tls=1", "tls=1;tls-mutual=1", "tls=yes;x",
                                                                      "tls = 1", "tls=1;tls=0", ";;", "tls"])))
    source = draw(st.sampled_from(['"Host"', '"App"', "1"]))
    port = draw(st.sampled_from(["0", "-1", "70000", '"x"']))
    host = draw(st.sampled_from(['"h"', '"missing"']))
    lines += ["[applications.app]", 'host = "h"', f"certificate-source = {source}",
              "[applications.app.ports.default]", f"port = {port}", f"transport = {toml_string(transport)}",
              "[applications.cli]", f"host = {host}",
              "[applications.cli.connections.c]", 'server = "app"', f"transport = {toml_string(transport)}"]
    if draw(st.booleans()):
        lines.append(f"{draw(st.sampled_from(['extra', 'address', 'port-id']))} = {draw(toml_values)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=deployment_documents())
def test_random_deployments_through_gtls_check_never_raise(document: str, tmp_path_factory: pytest.TempPathFactory
                                                           ) -> None:
    config = tmp_path_factory.mktemp("fuzz") / "deployment.toml"
    config.write_text(document)
    for args in (("check", "--config", str(config)), ("check", "--config", str(config), "--json")):
        result = run_cli(*args)  # an exception escaping main fails here: it would be a traceback for the user
        assert result.code in (0, 1, 2)
        assert "Traceback" not in result.err and "a gtls bug" not in result.out
        if result.code == 2:
            assert result.err_lines[-1].startswith("gtls: config error: ")
        if "--json" in args and result.code != 2:
            for endpoint in json.loads(result.out)["endpoints"]:
                if endpoint["error"] is not None:
                    assert endpoint["error"]["type"].endswith(("Error", "Level", "Options", "Value", "Protocol",
                                                               "Feature", "Mismatch"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.sampled_from(SERVER_FLAGS), text_values, max_size=4))
@example(values={"certificate": "~0"})  # no such user: a file name (pathlib's expanduser raised RuntimeError)
@example(values={"certificate": "~\x00"})  # the command line expanded it before the NUL check (ValueError)
def test_random_option_flags_through_gtls_serve_fail_closed(values: dict[str, str], good: GoodFiles) -> None:
    """Random values on top of a good configuration, given to the library and as ``gtls serve`` flags: both refuse
    (exit 2, one config or usage error line) or both accept. The port handed to ``serve`` is already taken, so an
    accepted configuration ends as listen-failed (exit 1) instead of serving."""
    options = {**good.server_options(), **values}
    try:
        compile_context(direct(options, "server"))
        refused = False
    except ConfigError as exc:
        refused = True
        assert exc.option is None or exc.option in OPTION_NAMES
    flags = [item for name, value in options.items() for item in (f"--{name}", value)]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        result = run_cli("serve", "--quiet", "--listen", f"127.0.0.1:{taken.getsockname()[1]}", *flags)
    assert "Traceback" not in result.err
    if any(value.startswith("-") for value in values.values()):
        assert result.code == 2  # argparse reads such a value as a flag: a usage error, never a started server
        return
    assert result.code == (2 if refused else 1), (result.code, result.err)
    assert result.err_lines[-1].startswith("gtls: config error: " if refused else "gtls: listen-failed: ")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=300).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + b + b"\n-----END CERTIFICATE-----\n"),
    st.binary(max_size=300).map(lambda b: b"-----BEGIN PRIVATE KEY-----\n" + b + b"\n-----END PRIVATE KEY-----\n"),
    st.binary(max_size=300).map(lambda b: b"-----BEGIN X509 CRL-----\n" + b + b"\n-----END X509 CRL-----\n"),
), option=st.sampled_from(FILE_OPTIONS), cut=st.integers(0, 2000), truncate=st.booleans())
def test_random_bytes_as_pem_name_the_option(content: bytes, option: str, cut: int, truncate: bool,
                                             good: GoodFiles, tmp_path_factory: pytest.TempPathFactory) -> None:
    if truncate:  # a prefix of the valid file, ending before its END line is complete
        pem = good_pem(good, option)
        content = pem[: min(cut, pem.rindex(b"-----") - 1)]
    path = tmp_path_factory.mktemp("bytes") / "file.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    clear_cache()
    with pytest.raises(ConfigError) as info:
        compile_context(direct(good.with_file(option, path), "server"))
    assert isinstance(info.value, error_class(option))
    assert (info.value.option, info.value.level, info.value.file) == (option, "Port", str(path))
