"""Secrets (issue #7 part 6): a private key's PEM body, its base64 lines and its raw numbers never appear in log
lines, exception messages or reprs, ``gtls check`` text or JSON, ``gtls serve`` stderr or handshake errors, also
when the key is wrong (mismatched, corrupt, encrypted, put into another option's file, pasted as a value); and a
key file other users can read is refused (all users) or warned about (group), naming the file."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gtls.client import open_tls_over_tcp_stream
from gtls.context import compile_context
from gtls.errors import CipherListError, ConfigError, CredentialLoadError, HandshakeError
from gtls.options import TLSOptions
from gtls.resolve import direct, resolve_server
from gtls.testing import CA, Certified, write_pem
from tests.config_abuse_helpers import GoodFiles, deployment_toml, good_files, run_cli, toml_string
from tests.peers import error_line, gtls_serve, last_error_line, run_gtls


def secret_fragments(holder: Certified) -> list[str]:
    """Text that would reveal the key: each base64 line of its PEM body, its DER in base64 and hex, and its private
    numbers in decimal and hex (any case is checked by the caller)."""
    pem_lines = [line for line in holder.key_pem.decode().splitlines() if line and not line.startswith("-----")]
    der = base64.b64decode("".join(pem_lines))
    fragments = [*pem_lines, base64.b64encode(der).decode()[:48], der.hex()[:48]]
    key = holder.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = [key.private_numbers().private_value]
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        private = key.private_numbers()
        numbers = [private.d, private.p, private.q, private.dmp1, private.dmq1, private.iqmp]
    for number in numbers:
        fragments += [str(number)[:40], f"{number:x}"[:40]]
    return [fragment for fragment in fragments if len(fragment) >= 16]


def assert_no_secret(text: str, holder: Certified) -> None:
    lowered = text.lower()
    for fragment in secret_fragments(holder):
        assert fragment.lower() not in lowered, f"key material {fragment[:12]}... leaked into: {text[:300]}"


@pytest.fixture(scope="module", params=["ec", "rsa"])
def good(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> GoodFiles:
    files = good_files(tmp_path_factory.mktemp(f"secrets-{request.param}"))
    if request.param == "ec":
        return files
    leaf = files.inter.leaf("localhost", dns=["localhost"], ips=["127.0.0.1"], key_type="rsa")
    return GoodFiles(files.dir, files.root, files.inter, leaf, leaf.write_chain(files.dir / "rsa-chain.pem"),
                     leaf.write_key(files.dir / "rsa-key.pem"), files.ca, files.crl,
                     write_pem(files.dir / "rsa-identity.pem", leaf.key_pem, leaf, files.inter, mode=0o600))


def corrupt_key_pem(holder: Certified) -> bytes:
    """The key's PEM with valid base64 but a damaged DER (most of the key text still there, as in a bad copy)."""
    lines = holder.key_pem.decode().splitlines()
    der = bytearray(base64.b64decode("".join(lines[1:-1])))
    der[2:6] = b"\xff\xff\xff\xff"
    body = base64.encodebytes(bytes(der)).decode()
    return f"{lines[0]}\n{body}{lines[-1]}\n".encode()


def wrong_key_cases(good: GoodFiles, directory: Path) -> dict[str, dict[str, str]]:
    """Server settings where the key is wrong in one way each; every one still involves ``good.leaf``'s key."""
    key_pem = good.leaf.key_pem
    other = good.inter.leaf("other.test", key_type="ec")
    mismatch_chain = write_pem(directory / "other-chain.pem", other, good.inter)
    corrupt = write_pem(directory / "corrupt-key.pem", corrupt_key_pem(good.leaf), mode=0o600)
    encrypted = write_pem(directory / "encrypted-key.pem", good.leaf.encrypted_key_pem(b"pass"), mode=0o600)
    key_only = write_pem(directory / "key-as-file.pem", key_pem, mode=0o600)
    key_and_cert = write_pem(directory / "key-and-cert.pem", key_pem, good.leaf, mode=0o600)
    two_keys = write_pem(directory / "two-keys.pem", key_pem, other.key_pem, mode=0o600)
    base = good.server_options()
    return {
        "mismatch": {**base, "certificate": str(mismatch_chain)},
        "corrupt": {**base, "certificate-key": str(corrupt)},
        "encrypted": {**base, "certificate-key": str(encrypted)},
        "two-keys": {**base, "certificate-key": str(two_keys)},
        "key-in-certificate": {**base, "certificate": str(key_only)},
        "key-in-trusted-ca": {**base, "trusted-ca": str(key_only)},
        "key-in-tls-crl": {**base, "tls-crl": str(key_and_cert)},
        "key-pasted-as-value": {**base, "certificate-key": key_pem.decode()},
        "key-pasted-into-certificate": {**base, "certificate": key_pem.decode()},
    }


def test_wrong_keys_never_echo_key_material(good: GoodFiles, tmp_path: Path) -> None:
    cases = wrong_key_cases(good, tmp_path)
    for name, options in cases.items():
        with pytest.raises(ConfigError) as info:
            compile_context(direct(options, "server"))
        error = info.value
        assert_no_secret(f"{error}\n{error!r}\n{error.message}\n{error.args}", good.leaf)
        if name.startswith("key-pasted"):
            assert "PEM content" in str(error) and error.file is None
        else:
            assert error.file is not None and error.file in str(error), name  # the file named, not its content
        flags = [item for option, value in options.items() for item in (f"--{option}", value)]
        served = run_cli("serve", "--listen", "127.0.0.1:0", *flags)
        assert served.code == 2 and last_error_line(served.err_lines).startswith("gtls: config error: "), name
        assert_no_secret(served.out + served.err, good.leaf)
    # The same settings in one deployment file: gtls check, text and JSON.
    config = tmp_path / "deployment.toml"
    config.write_text(deployment_toml([(f"app-{name}", options) for name, options in cases.items()]))
    for args in ((), ("--json",)):
        checked = run_cli("check", "--config", str(config), *args)
        assert checked.code == 1
        assert_no_secret(checked.out + checked.err, good.leaf)
    document = json.loads(run_cli("check", "--config", str(config), "--json").out)
    assert document["errors"] == len(cases)


def test_a_working_server_and_its_handshakes_never_show_the_key(good: GoodFiles, tmp_path: Path) -> None:
    """``gtls check`` of a good deployment, ``gtls serve`` stderr across good and failed handshakes, and the
    handshake errors clients get, in the command's output and from the library."""
    options = good.server_options()
    del options["tls-mutual"], options["tls-crl"]
    config = tmp_path / "deployment.toml"
    config.write_text(deployment_toml([("app", options)]))
    for args in ((), ("--json",)):
        checked = run_cli("check", "--config", str(config), *args)
        assert checked.code == 0, checked.out
        assert str(good.key) in checked.out  # the key file's path is shown ...
        assert_no_secret(checked.out + checked.err, good.leaf)  # ... never its content
    compiled = compile_context(direct(options, "server"))
    assert_no_secret(repr(compiled) + repr(compiled.resolved) + "\n".join(compiled.warnings), good.leaf)

    stranger = CA.root("stranger root")
    wrong_ca = stranger.write_cert(tmp_path / "wrong-ca.pem")
    flags = [item for option, value in options.items() for item in (f"--{option}", value)]
    with gtls_serve("--listen", "127.0.0.1:0", *flags) as server:
        ok = run_gtls("connect", f"localhost:{server.port}", "--trusted-ca", str(good.ca), "--send", "hi")
        assert ok.returncode == 0, ok.stderr
        refused = run_gtls("connect", f"localhost:{server.port}", "--trusted-ca", str(wrong_ca))
        assert refused.returncode == 1 and error_line(refused).startswith("gtls: untrusted: ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with contextlib.suppress(OSError):  # the server may answer with an alert or a reset
                plain.recv(100)
        server.stderr.wait_for(lambda line: "not-tls" in line)

        async def library_client() -> HandshakeError:
            client = direct({"trusted-ca": str(wrong_ca)}, "client")
            with pytest.raises(HandshakeError) as info:
                await open_tls_over_tcp_stream("127.0.0.1", server.port, client, server_hostname="localhost")
            return info.value

        error = trio.run(library_client)
        assert error.reason == "untrusted"
        assert server.stop() == 0
        stderr = "\n".join(server.stderr.drain())
    for text in (ok.stdout + ok.stderr, refused.stdout + refused.stderr, stderr, f"{error}\n{error!r}"):
        assert_no_secret(text, good.leaf)
    assert "connection from 127.0.0.1" in stderr and "not-tls" in stderr


def test_key_readable_by_all_users_is_refused_naming_the_file(good: GoodFiles, tmp_path: Path) -> None:
    key = good.leaf.write_key(tmp_path / "open-key.pem")
    key.chmod(0o644)
    options = {**good.server_options(), "certificate-key": str(key)}
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct(options, "server"))
    assert (info.value.option, info.value.file) == ("certificate-key", str(key))
    assert "readable by all users" in str(info.value) and "chmod 600" in str(info.value)
    flags = [item for option, value in options.items() for item in (f"--{option}", value)]
    served = run_cli("serve", "--listen", "127.0.0.1:0", *flags)
    assert served.code == 2 and last_error_line(served.err_lines).startswith("gtls: config error: ")
    assert "readable by all users" in served.err and str(key) in served.err
    config = tmp_path / "deployment.toml"
    config.write_text(deployment_toml([("app", options)]))
    error = json.loads(run_cli("check", "--config", str(config), "--json").out)["endpoints"][0]["error"]
    assert (error["type"], error["option"], error["level"], error["file"]) == (
        "CredentialLoadError", "certificate-key", "Host", str(key))
    assert_no_secret(served.err + json.dumps(error), good.leaf)


def test_key_readable_by_the_group_is_warned_about_naming_the_file(good: GoodFiles, tmp_path: Path) -> None:
    key = good.leaf.write_key(tmp_path / "group-key.pem")
    key.chmod(0o640)
    options = {**good.server_options(), "certificate-key": str(key)}
    compiled = compile_context(direct(options, "server"))
    warning = next(w for w in compiled.warnings if "readable by its group" in w)
    assert str(key) in warning and "chmod 600" in warning
    flags = [item for option, value in options.items() for item in (f"--{option}", value)]
    with socket.create_server(("127.0.0.1", 0)) as taken:  # the warning is printed before listening; this stops it
        served = run_cli("serve", "--listen", f"127.0.0.1:{taken.getsockname()[1]}", *flags)
    assert served.code == 1 and "listen-failed" in served.err_lines[-1]
    assert any(line.startswith("gtls: warning: certificate-key: private key file " + str(key))
               and "readable by its group" in line for line in served.err_lines)
    config = tmp_path / "deployment.toml"
    config.write_text(deployment_toml([("app", options)]))
    checked = run_cli("check", "--config", str(config))
    # gtls check words it as gtls serve logs it, with the endpoint and level (audit 71).
    assert checked.code == 0 and (f"warning: applications.app.ports.default: Host: certificate-key: private key file "
                                  f"{key} is readable by its group") in checked.out
    # Served from the deployment, the warning names the endpoint and level to fix, as resolution warnings do: a
    # service with several ports printed "certificate-key: …" alone (audit 41).
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config.write_text(deployment_toml([("app", options)]).replace("port = 0", f"port = {taken.getsockname()[1]}"))
        from_file = run_cli("serve", "--config", str(config), "--app", "app")
    assert from_file.code == 1 and any(
        line.startswith(f"gtls: warning: applications.app.ports.default: Host: certificate-key: private key file {key}")
        for line in from_file.err_lines), from_file.err_lines
    assert_no_secret(served.err + checked.out + from_file.err, good.leaf)


def _host_settings_deployment(tmp_path: Path, good: GoodFiles, certificate: str, transport: str) -> Path:
    """A deployment whose port takes its settings from its Host, with ``certificate`` (TOML) and the port's
    ``transport`` as given."""
    config = tmp_path / "deployment.toml"
    config.write_text(
        "[hosts.h.security]\n"
        f"certificate = {certificate}\n"
        f"certificate-key = {toml_string(str(good.key))}\ntrusted-ca = {toml_string(str(good.ca))}\n"
        '[applications.app]\nhost = "h"\ncertificate-source = "Host"\n'
        f"[applications.app.ports.default]\nport = 0\ntransport = {toml_string(transport)}\n"
    )
    return config


def test_a_pasted_key_in_a_toml_array_or_transport_is_not_echoed(good: GoodFiles, tmp_path: Path) -> None:
    """Other places a pasted key could travel: a TOML array value and a transport-parameter string."""
    pasted = toml_string(good.leaf.key_pem.decode())
    config = _host_settings_deployment(tmp_path, good, f"[{pasted}]", "tls=1;" + good.leaf.key_pem.decode())
    for args in ((), ("--json",)):
        checked = run_cli("check", "--config", str(config), *args)
        assert checked.code in (1, 2) and "Traceback" not in checked.err
        assert_no_secret(checked.out + checked.err, good.leaf)


def test_a_key_pasted_into_a_working_ports_transport_is_not_echoed(good: GoodFiles, tmp_path: Path) -> None:
    """The port still resolves (its settings come from the Host), so the transport's warnings are printed: the
    pasted piece they name must not be."""
    transport = "tls=1;" + good.leaf.key_pem.decode() + ";tls=1"
    config = _host_settings_deployment(tmp_path, good, toml_string(str(good.chain)), transport)
    for args in ((), ("--json",)):
        checked = run_cli("check", "--config", str(config), *args)
        assert checked.code in (0, 1) and "Traceback" not in checked.err
        assert "not shown: it may hold key material" in checked.out
        assert_no_secret(checked.out + checked.err, good.leaf)


def pasted_forms(holder: Certified) -> dict[str, str]:
    """A key as users paste it: the whole PEM, its body without the header (what secret stores and base64
    environment variables hold), and two lines of the body's random part (one line alone is caught 998 times in
    1,000, which a test must not leave to chance; the first line is mostly the ASN.1 header every key has)."""
    pem = holder.key_pem.decode()
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return {"pem": pem, "body": "\n".join(lines), "lines": "\n".join(lines[1:3])}


def test_a_key_pasted_into_any_command_argument_is_not_echoed(good: GoodFiles, tmp_path: Path) -> None:
    """Where a path, address, name or number belongs, every message that quotes the argument (usage errors,
    missing files, unknown names, bad host names) leaves the key out; always one line, never a traceback."""
    config = tmp_path / "ok.toml"
    config.write_text(deployment_toml([("app", good.server_options())]))
    for form, pasted in pasted_forms(good.leaf).items():
        runs = [
            ("chain", pasted), ("chain", str(good.chain), "--key", pasted),
            ("serve", "--listen", pasted), ("serve", "--listen", f"{pasted}:443"), ("connect", f"{pasted}:443"),
            ("serve", "--handshake-timeout", pasted), ("serve", "--max-handshakes", pasted),
            ("serve", "--profile", pasted), ("check", "--config", pasted), ("check", "--config", pasted, "--json"),
            ("serve", "--config", str(config), "--app", pasted), ("pki", f"/proc/{pasted}"),
            ("connect", "127.0.0.1:1", "--tls-target-name", pasted), ("serve", "--cipher-list", pasted),
            ("serve", "--tls-mutual", pasted), ("serve", "--certificate-key", pasted),
        ]
        for args in runs:
            ran = run_cli(*args)
            assert ran.code in (1, 2) and len(ran.err_lines) >= 1, (form, args[0], ran.err)
            assert "Traceback" not in ran.err, (form, args[0], ran.err)
            assert_no_secret(ran.out + ran.err, good.leaf)
            assert_no_secret((ran.out + ran.err).lower(), good.leaf)  # nor lower-cased (as host names are)


def test_a_key_as_a_deployment_address_or_host_is_refused_without_being_shown(good: GoodFiles, tmp_path: Path) -> None:
    """An address or host holding a key was accepted (``gtls check`` printed it in full, text and JSON) and then
    failed in the resolver with a traceback; now it is a configuration error naming the field, key left out."""
    for form, pasted in pasted_forms(good.leaf).items():
        for field in ("address", "host"):
            port_extra = f"address = {toml_string(pasted)}\n" if field == "address" else ""
            conn_extra = f"host = {toml_string(pasted)}\n" if field == "host" else ""
            config = tmp_path / f"{form}-{field}.toml"
            config.write_text(
                f"[applications.app.ports.p]\nport = 0\ntransport = \"tls=1\"\n{port_extra}"
                f"[applications.app.connections.c]\nserver = \"app\"\n{conn_extra}"
            )
            for args in ((), ("--json",)):
                checked = run_cli("check", "--config", str(config), *args)
                assert checked.code == 2, (form, field, checked.out, checked.err)
                assert f": {field}: it holds what looks like key material" in checked.err
                assert_no_secret(checked.out + checked.err, good.leaf)


@pytest.mark.parametrize("option", ["certificate", "certificate-key", "trusted-ca", "tls-crl", "cipher-list",
                                    "sec-protocol", "tls-mutual", "tls-crl-scope", "tls-target-name"])
def test_a_key_body_without_its_header_is_not_echoed_by_the_library(good: GoodFiles, option: str) -> None:
    """Detection looked for ``-----BEGIN`` only: a key's base64 body, pasted as a value, came back whole in the
    error (``file not found: …``, ``… selects no cipher``, ``… is not a boolean``)."""
    role = "client" if option == "tls-target-name" else "server"
    for form, pasted in pasted_forms(good.leaf).items():
        options = {**good.server_options(), option: pasted} if role == "server" else {
            "trusted-ca": str(good.ca), "tls-target-name-check": "host", option: pasted}
        with pytest.raises(ConfigError) as info:
            compile_context(direct(options, role))
        error = info.value
        shown = f"{error}\n{error!r}\n{error.message}\n{error.args}"
        assert_no_secret(shown, good.leaf)
        assert_no_secret(shown.lower(), good.leaf)
        assert "not shown" in str(error), (form, str(error))


def test_a_key_pasted_as_an_option_name_stays_out_of_library_warnings(
    good: GoodFiles, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown option names are warned about, name included: a key pasted where a name goes (a TOML table edited in
    a hurry, a transport parameter) must not reach ``Resolved.warnings`` or the ``gtls.config`` log, which a library
    caller prints or ships as is (the command line redacts its output again; these are the library's own)."""
    from gtls import options as options_module

    caplog.set_level("WARNING", logger="gtls.config")
    for form, pasted in pasted_forms(good.leaf).items():
        monkeypatch.setattr(options_module, "_LOGGED", set())  # each message is logged once per process
        name = pasted.replace("\n", "").replace("=", "").replace(";", "")  # a name has no line breaks, '=' or ';'
        warnings: list[str] = []
        resolve_server(port=f"tls=1;{name}=1", host={**good.server_options(), name: "1"}, warnings=warnings)
        TLSOptions.from_mapping({name: "1"})  # no list given: logged once on gtls.config
        shown = "\n".join(warnings + [record.getMessage() for record in caplog.records])
        assert warnings and caplog.records, form
        assert_no_secret(shown, good.leaf)


def test_a_key_pasted_beside_a_valid_cipher_stays_out_of_the_compiled_warnings(good: GoodFiles) -> None:
    """A cipher-list with one valid name and a pasted key compiles, warning that the rest selects no cipher: the
    log and the commands redacted that warning, but ``CompiledContext.warnings``, which a library caller prints
    (the README does), held the key verbatim (audit 41)."""
    valid = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    compiled_forms: list[str] = []
    # Now and then a random key's tokens make OpenSSL's parser refuse the whole list (about 1 form in 40): then a
    # further key, so that the warning path is always reached.
    holders = [good.leaf, *(good.inter.leaf(f"paste{n}.test") for n in range(4))]
    for holder in holders:
        for form, pasted in pasted_forms(holder).items():
            if form == "pem":
                continue  # a PEM block is refused outright, before any cipher is read
            value = ":".join([valid, *pasted.split("\n")])  # a body split into cipher-list tokens
            try:
                compiled = compile_context(direct({**good.server_options(), "cipher-list": value}, "server"))
            except CipherListError as exc:
                assert_no_secret(str(exc), holder)
                continue
            compiled_forms.append(form)
            shown = "\n".join(compiled.warnings)
            assert "no cipher" in shown and "not shown" in shown, form
            assert_no_secret(shown, holder)
            assert_no_secret("\n".join(compiled.located_warnings), holder)
        if compiled_forms:
            break
    assert compiled_forms  # the warning path was reached


def test_the_leak_detector_finds_every_form_of_the_key(good: GoodFiles) -> None:
    """The checks above are only as good as this detector: it must catch the PEM, one base64 line of it, and the
    private numbers in decimal or hex, inside other text."""
    pem = good.leaf.key_pem.decode()
    key = good.leaf.key
    number = key.private_numbers().private_value if isinstance(key, ec.EllipticCurvePrivateKey) else (
        key.private_numbers().d)
    for leaked in (pem, pem.splitlines()[2], str(number), f"{number:X}", f"file not found: /etc/{pem}"):
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_secret(f"gtls: config error: {leaked} (mode 644)", good.leaf)


def test_a_loaded_deployment_never_shows_a_pasted_key_in_its_repr(good: GoodFiles, tmp_path: Path) -> None:
    """The deployment model holds option values as the file wrote them (a pasted key is refused only when an
    endpoint is resolved): its reprs, which debug logs and traceback locals show, leave key material out."""
    from gtls.deployment import load_deployment

    pem = good.leaf.key_pem.decode()
    config = tmp_path / "pasted.toml"
    config.write_text(
        "[hosts.h.security]\n"
        f"certificate = {toml_string(str(good.chain))}\ncertificate-key = {toml_string(pem)}\n"
        f"trusted-ca = {toml_string(str(good.ca))}\nCertificate-Key = {toml_string(pem)}\n"
        '[applications.app]\nhost = "h"\ncertificate-source = "Host"\n'
        f"[applications.app.security]\nmy-secret = {toml_string(pem)}\n"
        f"[applications.app.ports.default]\nport = 0\ntransport = {toml_string('tls=1;' + pem)}\n"
    )
    deployment = load_deployment(config)
    application = deployment.application("app")
    shown = [repr(deployment), repr(deployment.hosts["h"]), repr(application), repr(application.ports["default"])]
    for text in shown:
        assert "[PEM content not shown]" in text, text[:200]
        assert_no_secret(text, good.leaf)
