"""Regressions from the configuration fuzzer of audit 43: inputs that made gtls raise something other than a
``ConfigError`` (a traceback from ``gtls serve``, "a gtls bug" from ``gtls check``) or left a TLS setting
silently unapplied. Each case is a minimal, deterministic form of what the fuzzer found."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import gtls
from gtls.context import clear_cache, compile_context
from gtls.errors import CredentialLoadError, CrlLoadError, DeploymentError, InvalidOptionValue
from gtls.resolve import direct, resolve_client, resolve_server
from gtls.testing import write_pem
from tests.config_abuse_helpers import GoodFiles, good_files, run_cli, toml_string

#: DER fragments the edits below change.
_P256 = bytes.fromhex("06082a8648ce3d030107")  # the prime256v1 curve OID in a certificate's public key
_ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")  # ecdsa-with-SHA256, in the TBS and outer signature fields
_CN_UTF8 = bytes.fromhex("0603550403") + b"\x0c"  # commonName followed by a UTF8String tag


def _replace(der: bytes, old: bytes, new: bytes, count: int = -1) -> bytes:
    assert old in der
    return der.replace(old, new, count)


def _invalid_utf8_in_last_cn(der: bytes) -> bytes:
    """The subject's commonName (the last one in the DER) with its first byte made invalid UTF-8."""
    first = der.rindex(_CN_UTF8) + len(_CN_UTF8) + 1  # after the tag and the one-byte length
    return der[:first] + b"\xff" + der[first + 1:]


#: Damage inside a well-formed PEM block (valid base64, DER that still loads): each made cryptography fail later,
#: far from the file, with ValueError, KeyError, InvalidVersion or UnsupportedAlgorithm.
CERT_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "unknown-curve": lambda der: _replace(der, _P256, _P256[:-1] + b"\x63"),  # UnsupportedAlgorithm
    "bad-version": lambda der: _replace(der, bytes.fromhex("a003020102"), bytes.fromhex("a003020105"), 1),
    "unknown-string-tag": lambda der: _replace(der, _CN_UTF8, _CN_UTF8[:-1] + b"\x08"),  # KeyError: 8
    "bad-utf8-name": lambda der: _invalid_utf8_in_last_cn(der),  # ValueError only when the subject is read
}
CRL_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "bad-version": lambda der: _replace(der, bytes.fromhex("020101"), bytes.fromhex("020105"), 1),  # InvalidVersion
    "unknown-string-tag": lambda der: _replace(der, _CN_UTF8, _CN_UTF8[:-1] + b"\x08"),  # KeyError: 8
}


def _pem(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> GoodFiles:
    return good_files(tmp_path_factory.mktemp("good"))


def _damaged_file(good: GoodFiles, option: str, damage: str, directory: Path) -> Path:
    """The file for ``option`` with one certificate (or CRL) damaged inside its DER, the rest intact."""
    leaf, inter, root = good.leaf.cert_der, good.inter.cert_der, good.root.cert_der
    if option == "tls-crl":
        content = [_pem(CRL_DAMAGE[damage](good.root.crl().der), "X509 CRL"), good.inter.crl().pem]
    elif option == "certificate":
        content = [_pem(CERT_DAMAGE[damage](leaf), "CERTIFICATE"), good.inter.cert_pem]
    elif option == "trusted-ca":
        content = [_pem(CERT_DAMAGE[damage](root), "CERTIFICATE")]
    else:  # certificate-store: one identity file whose intermediate is damaged
        content = [good.leaf.key_pem, good.leaf.cert_pem, _pem(CERT_DAMAGE[damage](inter), "CERTIFICATE")]
    return write_pem(directory / f"{option}-{damage}.pem", *content, mode=0o600)


CASES = [(option, damage) for option in ("certificate", "trusted-ca", "certificate-store") for damage in CERT_DAMAGE
         ] + [("tls-crl", damage) for damage in CRL_DAMAGE]


@pytest.mark.parametrize(("option", "damage"), CASES)
def test_a_certificate_or_crl_damaged_inside_its_der_is_a_config_error(
    good: GoodFiles, tmp_path: Path, option: str, damage: str
) -> None:
    """A bit flipped in a certificate's curve OID, version or name tag loaded (cryptography parses lazily) and then
    failed deep in the chain, trust or strength code: ``gtls serve`` printed a traceback, ``gtls check`` "a gtls
    bug". Now it is the option's load error naming the file, like a damaged PEM block."""
    bad = _damaged_file(good, option, damage, tmp_path)
    error = CrlLoadError if option == "tls-crl" else CredentialLoadError
    clear_cache()
    with pytest.raises(error) as info:
        compile_context(direct(good.with_file(option, bad), "server"))
    assert (info.value.option, info.value.level, info.value.file) == (option, "Port", str(bad))
    assert "malformed" in str(info.value)

    flags = [item for name, value in good.with_file(option, bad).items() for item in (f"--{name}", value)]
    result = run_cli("serve", "--listen", "127.0.0.1:0", "--quiet", *flags)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err_lines[-1].startswith("gtls: config error: ") and str(bad) in result.err_lines[-1]


def test_a_chain_certificate_signed_with_an_unknown_algorithm_is_named(good: GoodFiles, tmp_path: Path) -> None:
    """An intermediate whose signature algorithm OID cryptography does not know, which OpenSSL's security level
    refuses: describing the refusal asked cryptography for the hash and raised UnsupportedAlgorithm."""
    inter = _replace(good.inter.cert_der, _ECDSA_SHA256, _ECDSA_SHA256[:-1] + b"\x12")
    chain = write_pem(tmp_path / "chain.pem", good.leaf.cert_pem, _pem(inter, "CERTIFICATE"))
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct(good.with_file("certificate", chain), "server"))
    assert "unknown signature algorithm (1.2.840.10045.4.3.18)" in str(info.value)


def test_a_store_path_too_long_for_the_system_is_a_config_error(good: GoodFiles, tmp_path: Path) -> None:
    """``certificate-store`` with a name over 255 bytes: ``Path.is_dir`` raised OSError (ENAMETOOLONG)."""
    store = f"/tmp/{'a' * 300}"
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct(good.with_file("certificate-store", store), "server"))
    assert info.value.option == "certificate-store" and "File name too long" in str(info.value)
    config = tmp_path / "deployment.toml"
    config.write_text(f'[hosts.h.security]\ncertificate = "{good.leaf.thumbprint}"\ncertificate-store = "{store}"\n'
                      f'trusted-ca = {toml_string(str(good.ca))}\n[applications.app]\nhost = "h"\n'
                      '[applications.app.ports.p]\nport = 0\ntransport = "tls=1"\n')
    result = run_cli("check", "--config", str(config), "--json")
    assert result.code == 1
    error = json.loads(result.out)["endpoints"][0]["error"]
    assert error["type"] == "CredentialLoadError" and error["option"] == "certificate-store"


@pytest.mark.parametrize("value", ["array", "inline-table"])
def test_a_deeply_nested_toml_value_is_a_deployment_error(tmp_path: Path, value: str) -> None:
    """``x = [[[[…]]]]`` a few hundred deep exhausted tomllib's recursion: RecursionError, a traceback from
    ``gtls check``."""
    depth = 5000
    nested = "[" * depth + "]" * depth if value == "array" else "{a = " * depth + "1" + "}" * depth
    config = tmp_path / "deployment.toml"
    config.write_text(f"x = {nested}\n")
    with pytest.raises(DeploymentError, match="nested too deeply"):
        gtls.load_deployment(config)
    for args in (("check", "--config", str(config)), ("check", "--config", str(config), "--json")):
        result = run_cli(*args)
        assert result.code == 2 and "Traceback" not in result.err


@pytest.mark.parametrize("option", ["certificate", "certificate-key", "trusted-ca", "tls-crl", "certificate-store"])
def test_a_lone_surrogate_in_a_path_is_an_invalid_value(good: GoodFiles, option: str) -> None:
    """A Python caller's ``"/etc/\\ud800.pem"``: the file calls raised UnicodeEncodeError. (A command line's
    undecodable bytes arrive as U+DC80-U+DCFF, which encode back, and stay file names.)"""
    with pytest.raises(InvalidOptionValue) as info:
        compile_context(direct(good.with_file(option, "/tmp/\ud800.pem"), "server"))
    assert info.value.option == option and "U+D800" in str(info.value)


def test_only_path_options_must_fit_the_file_name_encoding() -> None:
    """Under a file-name encoding that is not UTF-8 (the C locale without Python's UTF-8 mode), a path with "é" is
    refused naming that encoding; an internationalised tls-target-name is no path and was refused the same way. A
    lone surrogate is refused in any option (it is no character)."""
    script = textwrap.dedent("""
        import sys
        from gtls.errors import InvalidOptionValue
        from gtls.options import parse_options
        assert sys.getfilesystemencoding() == "ascii", sys.getfilesystemencoding()
        parse_options({"tls-target-name": "b\\u00fccher.example"})
        for options in ({"trusted-ca": "/tmp/caf\\u00e9.pem"}, {"tls-target-name": "a\\ud800b"}):
            try:
                parse_options(options)
            except InvalidOptionValue as exc:
                print(exc)
            else:
                raise SystemExit(f"accepted: {options}")
    """)
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    refused = result.stdout.splitlines()
    assert "U+00E9, which this system's file-name encoding (ascii) cannot hold" in refused[0], refused
    assert refused[1].endswith("tls-target-name: value contains U+D800, a lone surrogate"), refused


@pytest.mark.parametrize("path", ["/tmp/\ud800.toml", "/tmp/a\x00b.toml"])
def test_a_deployment_path_no_file_can_have_is_a_deployment_error(path: str) -> None:
    with pytest.raises(DeploymentError):
        gtls.load_deployment(path)


@pytest.mark.parametrize(("transport", "meant"), [
    ("tls=1;ｔｌｓ-mutual=1", "tls-mutual"),  # fullwidth letters (an East Asian input method)
    ("tls=1;tlѕ-mutual=1", "tls-mutual"),  # a Cyrillic dze for the s
    ("ｔｌｓ=1", "tls"),
])
def test_a_non_ascii_look_alike_key_in_transport_parameters_warns(transport: str, meant: str) -> None:
    """Transport parameters pass unknown keys silently (``port``, ``backup-port``), so ``ｔｌｓ-mutual=1`` left a
    mutual-TLS port asking for no client certificate, and ``ｔｌｓ=1`` a port plaintext, without a word."""
    warnings: list[str] = []
    resolved = resolve_server(port=transport, warnings=warnings,
                              host={"certificate": "/c.pem", "certificate-key": "/k.pem", "trusted-ca": "/ca.pem"})
    assert not resolved.options.tls_mutual
    warned = [w for w in warnings if "unknown option, ignored (it holds non-ASCII characters" in w]
    assert len(warned) == 1, warnings
    if "ｔ" in transport:
        assert f"did you mean {meant!r}" in warned[0]
    client: list[str] = []
    resolve_client(connection="ｔｌｓ-target-name-check=host", target="tls=1", host={"trusted-ca": "/ca.pem"},
                   warnings=client)
    assert any("did you mean 'tls-target-name-check'" in w for w in client), client
