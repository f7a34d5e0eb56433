"""Thumbprint `certificate` values and `certificate-store` (spec §4.4), and `trusted-ca` (spec §6)."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from gtls import _sessions
from gtls.context import CompiledContext, compile_context
from gtls.errors import CredentialLoadError, InvalidOptionValue, PeerVerificationError, UnsupportedFeature
from gtls.options import TLSOptions, is_thumbprint
from gtls.pki.store import thumbprint
from gtls.resolve import Level, Resolved, direct, resolve_server
from gtls.testing import CA, Certified, generate_key, write_pem
from gtls.verify import verify_chain
from tests.config_abuse_helpers import deployment_toml, run_cli
from tests.peers import (
    OPENSSL,
    STEP_TIMEOUT,
    client_handshake,
    close,
    gtls_server,
    last_error_line,
    s_client,
    s_server,
)


def by_hand(role: str = "server", **fields: object) -> Resolved:
    """A Resolved built directly, so this layer's own checks are what is tested."""
    return Resolved(role=role, secure=True, options=TLSOptions(**fields), level=Level.PORT,  # type: ignore[arg-type]
                    object_path="applications.app.ports.default")


def identity(path: Path, leaf: Certified, *extra: Certified) -> Path:
    path = write_pem(path, leaf.key_pem, *extra, leaf, mode=0o600)
    return path


@pytest.fixture(scope="module")
def pki() -> dict[str, Certified]:
    root = CA.root("store root")
    inter = root.intermediate("store inter")
    return {"root": root, "inter": inter, "a": inter.leaf("a.test"), "b": root.leaf("b.test")}


def test_thumbprint_detection() -> None:
    value = "ab cd" + "0" * 36 + "\u200e"
    assert thumbprint(value) == "ABCD" + "0" * 36
    assert thumbprint("\u200f" + "F" * 40) == "F" * 40
    assert thumbprint("f" * 39) is None
    assert thumbprint("f" * 41) is None
    assert thumbprint("f" * 36 + ".pem") is None
    assert thumbprint("/etc/" + "f" * 40) is None
    assert thumbprint("g" * 40) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("\t" + "ab" * 20 + "\n", "AB" * 20),  # any whitespace goes, tabs and line ends too
    ("ab" * 10 + "\u00a0" + "ab" * 10, "AB" * 20),  # a no-break space is whitespace
    ("ab" * 10 + "\u200b" + "ab" * 10, None),  # a zero-width space is not: only U+200E and U+200F are named
    ("C:\\" + "ab" * 20, None),  # a backslash makes it a path
    ("0x" + "ab" * 20, None),
    ("\uff41" * 40, None),  # fullwidth letters are no hexadecimal digits
])
def test_thumbprint_detection_table(value: str, expected: str | None) -> None:
    """Spec §4.4 detection, read the same by resolution (``options.is_thumbprint``) and by the store."""
    assert thumbprint(value) == expected
    assert is_thumbprint(value) is (expected is not None)


def test_a_thumbprint_is_the_sha1_fingerprint_openssl_shows(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §4.4 meaning: the SHA-1 of the DER form, checked against OpenSSL's own reading, not gtls's."""
    shown = subprocess.run([OPENSSL, "x509", "-in", str(write_pem(tmp_path / "a.pem", pki["a"])), "-noout",
                            "-fingerprint", "-sha1"], capture_output=True, text=True, check=True, timeout=30)
    fingerprint = shown.stdout.strip().split("=", 1)[1].replace(":", "")
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "a.pem", pki["a"], pki["inter"])
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    compiled = compile_context(by_hand(certificate=fingerprint.lower(), certificate_store=str(store), trusted_ca=ca))
    assert compiled.chain[0] == pki["a"].cert


def test_a_thumbprint_needs_its_store_at_the_same_level(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §4.4 No store: a certificate-store at another level is shadowed, not borrowed."""
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    with pytest.raises(UnsupportedFeature) as info:
        resolve_server(port=f"tls=1;certificate={pki['a'].thumbprint};trusted-ca={ca}",
                       host={"certificate-store": str(tmp_path), "trusted-ca": ca})
    assert (info.value.level, info.value.option) == ("Port", "certificate")
    assert "certificate-store" in str(info.value)


def test_directory_store_lookup(tmp_path: Path, pki: dict[str, Certified]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "a.pem", pki["a"], pki["inter"])
    identity(store / "b.pem", pki["b"])
    write_pem(store / "junk.pem", pki["root"])  # no key: skipped with a warning
    (store / "notes.txt").write_text("ignored: not *.pem")
    spaced = " ".join(pki["a"].thumbprint.lower()[i:i + 2] for i in range(0, 40, 2))
    compiled = compile_context(by_hand(certificate=spaced, certificate_store=str(store),
                                       certificate_key="/ignored.pem", trusted_ca=str(write_pem(
                                           tmp_path / "ca.pem", pki["root"]))))
    assert list(compiled.chain) == [pki["a"].cert, pki["inter"].cert]
    text = "\n".join(compiled.warnings)
    assert "junk.pem" in text and "certificate-key is ignored" in text


def test_a_directory_store_reads_only_pem_files_directly_inside(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §4.4: a directory store is every regular ``*.pem`` file directly inside: not a sub-folder's files."""
    store = tmp_path / "store"
    (store / "sub").mkdir(parents=True)
    identity(store / "a.pem", pki["a"], pki["inter"])
    identity(store / "sub" / "b.pem", pki["b"])
    identity(store / "b.key", pki["b"])
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    with pytest.raises(CredentialLoadError) as info:
        compile_context(by_hand(certificate=pki["b"].thumbprint, certificate_store=str(store), trusted_ca=ca))
    assert f"it holds: {pki['a'].thumbprint} (CN=a.test)" in str(info.value)


def test_a_store_servers_ticket_key_renewal_keeps_only_its_own_identity_file(
    tmp_path: Path, pki: dict[str, Certified], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server context is built anew hourly from what it was built from (a fresh session-ticket key,
    gtls._sessions). Of a certificate-store folder only the served identity's file is kept for that: the others hold
    other identities' private keys, which must not stay in memory for the renewals' sake. The renewed context serves
    the same certificate."""
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "a.pem", pki["a"], pki["inter"])
    identity(store / "b.pem", pki["b"])
    ca = write_pem(tmp_path / "ca.pem", pki["root"])
    now = 1000.0
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = compile_context(by_hand(certificate=pki["a"].thumbprint, certificate_store=str(store),
                                       trusted_ca=str(ca)))
    renew = compiled._slot._renew
    assert renew is not None
    kept = inspect.getclosurevars(renew).nonlocals["kept"]
    assert set(kept.files) == {store / "a.pem", ca}
    before = compiled.ssl_context
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    served = compiled.new_connection().get_certificate()
    assert compiled.ssl_context is not before
    assert served is not None and served.to_cryptography() == pki["a"].cert


def renewed(compiled: CompiledContext, monkeypatch: pytest.MonkeyPatch, now: float) -> x509.Certificate:
    """The certificate a server context serves once its ticket key is due, checking the context was built anew."""
    before = compiled.ssl_context
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    served = compiled.new_connection().get_certificate()
    assert compiled.ssl_context is not before, "the ticket key was not renewed"
    assert served is not None
    return served.to_cryptography()


@pytest.mark.parametrize("other", ["a certificate-only copy", "an identity sharing the intermediate"])
def test_a_store_servers_renewal_keeps_the_file_it_serves_from(
    tmp_path: Path, pki: dict[str, Certified], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    other: str
) -> None:
    """The file kept for the renewals is the one the identity was loaded from. It was the first file of the folder
    holding the served certificate (or, sorted first, another identity holding the same intermediate): a copy of the
    certificate without its key (skipped with a warning) sorted before the identity file, and every hourly renewal
    failed ("thumbprint ... not found"), so the TLS 1.2 ticket key was never renewed."""
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "b.pem", pki["a"], pki["inter"])
    if other == "a certificate-only copy":
        write_pem(store / "a-cert.pem", pki["a"], pki["inter"])
    else:
        identity(store / "a-other.pem", pki["inter"].leaf("other.test"), pki["inter"])
    now = 1000.0
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = compile_context(by_hand(certificate=pki["a"].thumbprint, certificate_store=str(store),
                                       trusted_ca=str(write_pem(tmp_path / "ca.pem", pki["root"]))))
    caplog.set_level("WARNING", logger="gtls.server")
    assert renewed(compiled, monkeypatch, now) == pki["a"].cert
    assert not [r.getMessage() for r in caplog.records if "not renewed" in r.getMessage()]


def test_a_store_servers_renewal_keeps_its_crl(
    tmp_path: Path, pki: dict[str, Certified], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server verifying clients against a CRL is built anew from the CRL it was built with."""
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "a.pem", pki["a"], pki["inter"])
    ca = write_pem(tmp_path / "ca.pem", pki["root"])
    crl = pki["inter"].crl().write(tmp_path / "crl.pem")
    now = 1000.0
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = compile_context(by_hand(certificate=pki["a"].thumbprint, certificate_store=str(store),
                                       trusted_ca=str(ca), tls_crl=str(crl), tls_mutual=True))
    assert renewed(compiled, monkeypatch, now) == pki["a"].cert


def test_a_thumbprint_names_the_certificate_the_identity_serves(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §4.4 then §4.2: a CA certificate sharing the leaf's key, listed first in the identity file, took the
    thumbprint; the leaf's own thumbprint was "not found", and the CA's served the leaf (another certificate)."""
    key = generate_key()
    same_key_ca = pki["root"].intermediate("same-key CA", key=key)
    leaf = pki["inter"].leaf("leaf.test", dns=["leaf.test"], key=key)
    store = tmp_path / "store"
    store.mkdir()
    write_pem(store / "id.pem", leaf.key_pem, same_key_ca, leaf, pki["inter"], mode=0o600)
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    compiled = compile_context(by_hand(certificate=leaf.thumbprint, certificate_store=str(store), trusted_ca=ca))
    assert compiled.chain[0] == leaf.cert
    with pytest.raises(CredentialLoadError, match=f"holds: {leaf.thumbprint} \\(CN=leaf.test\\)"):
        compile_context(by_hand(certificate=same_key_ca.thumbprint, certificate_store=str(store), trusted_ca=ca))


def test_store_errors(tmp_path: Path, pki: dict[str, Certified]) -> None:
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    a = identity(tmp_path / "a.pem", pki["a"], pki["inter"])
    a2 = identity(tmp_path / "a-again.pem", pki["a"])
    junk = write_pem(tmp_path / "junk.pem", pki["root"])
    with pytest.raises(CredentialLoadError) as info:  # unknown thumbprint lists the store
        compile_context(by_hand(certificate="0" * 40, certificate_store=str(a), trusted_ca=ca))
    assert pki["a"].thumbprint in str(info.value) and "CN=a.test" in str(info.value)
    with pytest.raises(CredentialLoadError) as info:  # a listed file that is not an identity
        compile_context(by_hand(certificate=pki["a"].thumbprint, certificate_store=f"{a},{junk}", trusted_ca=ca))
    assert info.value.file == str(junk)
    with pytest.raises(CredentialLoadError) as info:  # two files, one fingerprint
        compile_context(by_hand(certificate=pki["a"].thumbprint, certificate_store=f"{a},{a2}", trusted_ca=ca))
    assert str(a) in str(info.value) and str(a2) in str(info.value)
    with pytest.raises(UnsupportedFeature) as unsupported:
        compile_context(by_hand(certificate=pki["a"].thumbprint, trusted_ca=ca))
    assert "certificate-store" in str(unsupported.value) and unsupported.value.option == "certificate"
    assert unsupported.value.object_path == "applications.app.ports.default"
    with pytest.raises(InvalidOptionValue) as invalid:
        compile_context(by_hand(role="client", trusted_ca=pki["root"].thumbprint))
    assert invalid.value.option == "trusted-ca"


def misfit(path: Path, kind: str, pki: dict[str, Certified]) -> Path:
    """A store file that does not hold one identity (spec §4.4)."""
    a = pki["a"]
    if kind == "no key":
        return write_pem(path, a, pki["inter"])
    if kind == "encrypted key":
        encrypted = a.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"secret"))
        return write_pem(path, encrypted, a, mode=0o600)
    if kind == "two keys":
        return write_pem(path, a.key_pem, pki["b"].key_pem, a, mode=0o600)
    return write_pem(path, pki["b"].key_pem, a, mode=0o600)  # "no certificate for the key"


MISFITS = ["no key", "encrypted key", "two keys", "no certificate for the key"]


@pytest.mark.parametrize("kind", MISFITS)
def test_a_store_file_that_is_no_identity_is_skipped_in_a_folder_and_refused_when_listed(
    tmp_path: Path, pki: dict[str, Certified], kind: str
) -> None:
    """Spec §4.4 Store: skipped with a warning naming it in a directory, CredentialLoadError naming it in a list."""
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "b.pem", pki["b"])
    bad = misfit(store / "bad.pem", kind, pki)
    compiled = compile_context(by_hand(certificate=pki["b"].thumbprint, certificate_store=str(store), trusted_ca=ca))
    assert compiled.chain[0] == pki["b"].cert
    assert [w for w in compiled.warnings if w.startswith(f"certificate-store: skipped {bad}: ")], compiled.warnings
    with pytest.raises(CredentialLoadError) as info:
        compile_context(by_hand(certificate=pki["b"].thumbprint, certificate_store=f"{store / 'b.pem'},{bad}",
                                trusted_ca=ca))
    assert info.value.file == str(bad) and info.value.option == "certificate-store"


def test_a_thumbprint_client_presents_its_store_identity(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §4.4 and §1.5: a client's thumbprint certificate takes key and chain from the store; a server demanding
    a certificate (openssl s_server -Verify) accepts it, sent leaf first whatever the file's order."""
    server = pki["inter"].leaf("localhost", dns=["localhost"])
    client_leaf = pki["inter"].leaf("client.test", eku=("client",))
    write_pem(tmp_path / "srv.pem", server, pki["inter"])
    server.write_key(tmp_path / "srv.key")
    ca = write_pem(tmp_path / "ca.pem", pki["root"])
    store = tmp_path / "store"
    store.mkdir()
    write_pem(store / "client.pem", pki["inter"], client_leaf.key_pem, client_leaf, mode=0o600)
    compiled = compile_context(direct({"certificate": client_leaf.thumbprint.lower(), "certificate-store": str(store),
                                       "trusted-ca": str(ca)}, "client"))
    with s_server("-cert", tmp_path / "srv.pem", "-cert_chain", tmp_path / "srv.pem", "-key", tmp_path / "srv.key",
                  "-CAfile", ca, "-Verify", "2", "-verify_return_error", "-www") as server_process:
        conn, error = client_handshake(compiled, server_process.port)
        assert conn is not None and error is None, error
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")  # TLS 1.3: a refusal of the client comes with the first read
        page = b""
        for _ in range(100):  # -www closes (close_notify) after its page
            try:
                page += conn.recv(65536)
            except SSL.ZeroReturnError:
                break
        close(conn)
    assert page.startswith(b"HTTP/1.0 200") and b"CN=client.test" in page, page[:300]
    assert list(compiled.chain) == [client_leaf.cert, pki["inter"].cert]


def test_a_store_whose_identities_were_all_refused_says_why(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """An identity file readable by all users is skipped with a warning; the lookup then failed with "it holds:
    nothing", and the warning that said why was dropped with the failed compile (audit 41). The error carries it:
    as ``warnings``, as notes in a traceback, and before the error line in the commands."""
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "a.pem", pki["a"], pki["inter"]).chmod(0o644)
    ca = str(write_pem(tmp_path / "ca.pem", pki["root"]))
    with pytest.raises(CredentialLoadError) as info:
        compile_context(by_hand(certificate=pki["a"].thumbprint, certificate_store=str(store), trusted_ca=ca))
    assert "it holds: nothing" in str(info.value)
    [skipped] = info.value.warnings
    assert "skipped" in skipped and "readable by all users" in skipped and "chmod 600" in skipped
    assert info.value.__notes__ == [f"warning: {skipped}"]
    located = "applications.app.ports.default: Port: "  # which endpoint, as every compile warning says it
    assert skipped.startswith(located + "certificate-store: skipped ")
    bare = skipped.removeprefix(located)
    config = tmp_path / "deployment.toml"
    config.write_text(deployment_toml([("app", {"certificate": pki["a"].thumbprint, "certificate-store": str(store),
                                                 "trusted-ca": ca})]))
    served = run_cli("serve", "--config", str(config), "--app", "app")
    assert served.code == 2 and served.err_lines[0] == f"gtls: warning: applications.app.ports.default: Host: {bare}"
    assert last_error_line(served.err_lines).startswith("gtls: config error: ")
    checked = json.loads(run_cli("check", "--config", str(config), "--json").out)
    assert any(w.endswith(bare) for w in checked["endpoints"][0]["warnings"]) and checked["endpoints"][0]["error"]


def test_path_certificate_with_store_warns(tmp_path: Path, pki: dict[str, Certified]) -> None:
    cert = write_pem(tmp_path / "b.pem", pki["b"])
    key = pki["b"].write_key(tmp_path / "b.key")
    warnings: list[str] = []
    compiled = compile_context(direct({"certificate": str(cert), "certificate-key": str(key),
                                       "certificate-store": str(tmp_path),
                                       "trusted-ca": str(write_pem(tmp_path / "ca.pem", pki["root"]))}, "server",
                                      warnings=warnings))
    # Said once, by resolution (naming the level), not again in other words when the context is built.
    assert [w for w in (*warnings, *compiled.warnings) if "certificate-store" in w] == [
        "Port: certificate-store: unused; it is read only when certificate is a thumbprint"]


def client(ca_file: Path) -> CompiledContext:
    return compile_context(by_hand(role="client", trusted_ca=str(ca_file)))


def test_trusted_ca_file(tmp_path: Path, pki: dict[str, Certified]) -> None:
    other = CA.root("other root")
    old = CA.root("old root", not_before=dt.timedelta(days=-30), not_after=dt.timedelta(days=-1))
    ca_file = write_pem(tmp_path / "cas.pem", other, pki["root"].cert_pem, pki["root"].crl().pem, old)
    compiled = client(ca_file)
    assert len(compiled.trusted) == 3
    text = "\n".join(compiled.warnings)
    assert "skipped PEM blocks X509 CRL" in text and f"CA CN=old root in {ca_file} expired" in text  # the file too
    assert verify_chain([pki["a"].cert, pki["inter"].cert], compiled, "client")[-1] == pki["root"].cert
    with pytest.raises(PeerVerificationError) as info:  # a path through the expired CA fails as expired
        verify_chain([old.leaf("x.test").cert], compiled, "client")
    assert info.value.reason == "expired" and info.value.depth == 1


def test_crl_blocks_in_trusted_ca_are_not_used(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §6: CRL blocks in trusted-ca are skipped: they revoke nothing without tls-crl, and with tls-crl only
    that file's CRLs count (the intermediate's CRL in trusted-ca does not make it available)."""
    revoked = pki["inter"].crl(revoked=[pki["a"]])
    ca_file = write_pem(tmp_path / "cas.pem", pki["root"], revoked.pem, pki["root"].crl().pem)
    chain = [pki["a"].cert, pki["inter"].cert]
    assert verify_chain(chain, client(ca_file), "client")[-1] == pki["root"].cert
    root_crl_only = write_pem(tmp_path / "crl.pem", pki["root"].crl().pem)
    with pytest.raises(PeerVerificationError) as info:
        verify_chain(chain, compile_context(by_hand(role="client", trusted_ca=str(ca_file),
                                                    tls_crl=str(root_crl_only))), "client")
    assert info.value.reason == "crl-unavailable" and info.value.depth == 0


def test_other_blocks_in_trusted_ca_are_named_without_a_crl_note_unless_a_crl_is_there(
    tmp_path: Path, pki: dict[str, Certified]
) -> None:
    """Spec §6: other PEM blocks are skipped with a warning; the note that CRLs there are not used belongs to a file
    holding a CRL, not to one holding, say, a private key."""
    with_key = write_pem(tmp_path / "with-key.pem", pki["root"], pki["a"].key_pem)
    assert client(with_key).warnings == (f"trusted-ca: skipped PEM blocks PRIVATE KEY in {with_key}",)
    with_crl = write_pem(tmp_path / "with-crl.pem", pki["root"], pki["root"].crl().pem)
    assert client(with_crl).warnings == (
        f"trusted-ca: skipped PEM blocks X509 CRL in {with_crl} (CRLs here are not used; tls-crl names the CRL file)",)


def self_signed_server(name: str) -> x509.Certificate:
    """A self-signed certificate that is not a CA: a server pinned by trusting exactly it."""
    key = generate_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def test_a_trusted_ca_that_can_vouch_for_nothing_is_named_in_a_warning(
    tmp_path: Path, pki: dict[str, Certified]
) -> None:
    """A leaf put into trusted-ca by mistake (neither a CA nor self-signed) makes nothing trusted, silently before;
    a self-signed server certificate pinned there is a legitimate trust anchor for itself and is not warned about."""
    pinned = self_signed_server("pinned.test")
    ca_file = write_pem(tmp_path / "cas.pem", pki["root"], pki["a"], pinned.public_bytes(serialization.Encoding.PEM))
    warnings = "\n".join(client(ca_file).warnings)
    assert f"CN=a.test in {ca_file} is neither a CA nor self-signed" in warnings
    assert "pinned.test" not in warnings and "store root" not in warnings


def test_no_partial_chain_trust(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """An intermediate in trusted-ca cannot stand in for its root."""
    compiled = client(write_pem(tmp_path / "inter.pem", pki["inter"]))
    with pytest.raises(PeerVerificationError) as info:
        verify_chain([pki["a"].cert], compiled, "client")
    assert info.value.reason == "untrusted"
    # ... so the file is named at load time as making nothing trusted; beside its root the intermediate is fine.
    assert [w for w in compiled.warnings if "not a root" in w] == [
        f"trusted-ca: CA {pki['inter'].subject.rfc4514_string()} in {tmp_path / 'inter.pem'} is not a root and its "
        f"issuer {pki['root'].subject.rfc4514_string()} is not in the file: chains through it fail (untrusted); add "
        "the root it chains to"]
    assert not [w for w in client(write_pem(tmp_path / "both.pem", pki["inter"], pki["root"])).warnings
                if "not a root" in w]


def test_no_root_warning_for_what_verifies(tmp_path: Path) -> None:
    """The "not a root" warning is for a CA whose path cannot end in the file. A cross-signed copy of a root the
    file holds (same name and key, issued by an older root) and an intermediate whose issuer is the root's name in
    another letter case and spacing (OpenSSL matches names canonically) both verify: no warning for them."""
    new_root = CA.root("New Root")
    cross = CA.root("Old Root").intermediate("New Root", key=new_root.key)
    inter = new_root.intermediate("Issuing CA", issuer_name="new  ROOT")
    leaf = inter.leaf("site.test", dns=("site.test",))
    compiled = client(write_pem(tmp_path / "cas.pem", new_root, cross, inter))
    assert not [w for w in compiled.warnings if "not a root" in w], compiled.warnings
    assert [c.subject for c in verify_chain([leaf.cert], compiled, "client")] == [
        leaf.subject, inter.subject, new_root.subject]
    # OpenSSL folds case in ASCII only: an issuer name that differs from the root's beyond that does not chain, and
    # the warning stands (names are compared by OpenSSL's own canonical hash).
    ecole = CA.root("\u00e9cole root")
    stray = ecole.intermediate("Stray CA", issuer_name="\u00c9COLE ROOT")
    warned = client(write_pem(tmp_path / "ecole.pem", ecole, stray)).warnings
    assert [w for w in warned if "CN=Stray CA" in w and "not a root" in w], warned
    # A multi-valued RDN is a set: its values match in any order once folded, as OpenSSL sorts them after folding.
    pair = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "a     b"),
                                                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccc")])])
    twin = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "A b"),
                                                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccc")])])
    multi = CA.root(pair)
    below = multi.intermediate("Below CA", issuer_name=twin)
    quiet = client(write_pem(tmp_path / "multi.pem", multi, below)).warnings
    assert not [w for w in quiet if "not a root" in w], quiet
    assert verify_chain([below.leaf("m.test", dns=["m.test"]).cert], client(tmp_path / "multi.pem"), "client")


@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # cryptography's own, in this process (README)
def test_serial_zero_roots_are_counted_in_one_warning(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """A few roots of the system bundles have serial 0: OpenSSL takes them, cryptography warns on every load that a
    future release will not. gtls says so once per file, naming the first (the command line prints nothing else)."""
    from tests.peers import run_gtls, serial_zero_identity

    zero, _ = serial_zero_identity(tmp_path, "serial zero root")
    bundle = write_pem(tmp_path / "bundle.pem", pki["root"], zero.read_bytes())
    lines = [w for w in client(bundle).warnings if "serial number" in w]
    assert lines == [f"trusted-ca: 1 certificate(s) in {bundle} have a serial number of 0 or below, which RFC 5280 "
                     "forbids (first: CN=serial zero root); OpenSSL accepts them, but a future cryptography release "
                     "will refuse this file"]
    result = run_gtls("connect", "127.0.0.1:9", "--trusted-ca", str(bundle), "--timeout", "2")
    assert "CryptographyDeprecationWarning" not in result.stderr
    assert "have a serial number of 0 or below" in result.stderr, result.stderr


def test_trusted_ca_errors(tmp_path: Path, pki: dict[str, Certified]) -> None:
    with pytest.raises(CredentialLoadError) as info:
        client(tmp_path / "a.pem,b.pem")
    assert "exactly one file" in str(info.value) and info.value.option == "trusted-ca"
    with pytest.raises(CredentialLoadError) as info:
        client(write_pem(tmp_path / "crl-only.pem", pki["root"].crl().pem))
    assert "no PEM CERTIFICATE block in file (it holds X509 CRL)" in str(info.value)
    assert info.value.file == str(tmp_path / "crl-only.pem")
    trusted_form = pki["root"].cert_pem.replace(b" CERTIFICATE-----", b" TRUSTED CERTIFICATE-----")
    with pytest.raises(CredentialLoadError) as info:
        client(write_pem(tmp_path / "trusted-form.pem", trusted_form))
    assert "no PEM CERTIFICATE block in file (it holds TRUSTED CERTIFICATE)" in str(info.value)
    for bad, why in ((tmp_path / "missing.pem", "file not found"), (tmp_path, "is a directory")):
        with pytest.raises(CredentialLoadError) as info:
            client(bad)
        assert why in str(info.value) and info.value.option == "trusted-ca" and info.value.file == str(bad)


def test_a_ca_labelled_x509_certificate_is_trusted_as_openssl_trusts_it(tmp_path: Path) -> None:
    """"X509 CERTIFICATE" is OpenSSL's older label for a certificate, which load_verify_locations and -CAfile read:
    gtls skipped such a root and refused every server it issued (audit 69)."""
    root = CA.root("x509-label root")
    leaf = root.leaf("x.test", dns=["x.test"])
    write_pem(tmp_path / "server.pem", leaf)
    leaf.write_key(tmp_path / "server.key")
    old_label = root.cert_pem.replace(b" CERTIFICATE-----", b" X509 CERTIFICATE-----")
    compiled = compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "ca.pem", old_label)),
                                       "tls-target-name-check": "host"}, "client"))
    assert compiled.warnings == ()
    with s_server("-cert", tmp_path / "server.pem", "-key", tmp_path / "server.key") as server:
        conn, error = client_handshake(compiled, server.port, server_hostname="x.test")
        close(conn)
    assert error is None, error


def test_pkcs7_and_pkcs12_files_are_named_with_how_to_convert_them(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """What `openssl crl2pkcs7` and `openssl pkcs12 -export` write is refused naming the format and the openssl
    command that turns it into PEM; a PKCS#12 file was called plain DER (audit 69)."""
    import subprocess

    bundle = write_pem(tmp_path / "ca.pem", pki["root"])
    key = pki["b"].write_key(tmp_path / "key.pem")
    write_pem(tmp_path / "b.pem", pki["b"])

    def openssl(*args: str | Path) -> None:
        subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=STEP_TIMEOUT)

    openssl("crl2pkcs7", "-nocrl", "-certfile", bundle, "-out", tmp_path / "ca.p7b")
    openssl("pkcs12", "-export", "-in", tmp_path / "b.pem", "-inkey", key, "-passout", "pass:", "-out",
            tmp_path / "id.p12")
    with pytest.raises(CredentialLoadError) as info:
        client(tmp_path / "ca.p7b")
    assert "(it holds PKCS7); PKCS7 blocks are not read: openssl pkcs7 -in FILE -print_certs writes" in str(info.value)
    with pytest.raises(CredentialLoadError) as info:
        client(tmp_path / "id.p12")
    assert str(info.value).endswith(
        "trusted-ca: PKCS#12 (binary) data; export PEM with openssl pkcs12 -in FILE -nodes (-nokeys for the "
        f"certificates, -nocerts for the key), expected PEM CERTIFICATE blocks: {tmp_path / 'id.p12'}")
    assert info.value.file == str(tmp_path / "id.p12")


def test_a_windows_store_servers_renewal_keeps_the_system_trust_store(
    tmp_path: Path, pki: dict[str, Certified], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Profile windows: a certificate-store identity, tls-mutual=1 and no trusted-ca verify clients against the
    system store. The hourly renewal is built from the files kept for it, the system store's among them: a client
    of a system root is accepted after it as before."""
    from gtls import context as context_module

    system_root = CA.root("system client root")
    monkeypatch.setenv("SSL_CERT_FILE", str(system_root.write_cert(tmp_path / "system.pem")))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    context_module.clear_cache()
    request.addfinalizer(context_module.clear_cache)
    store = tmp_path / "store"
    store.mkdir()
    identity(store / "a.pem", pki["a"], pki["inter"])
    client = system_root.leaf("client.test", eku=("client",))
    cert, key = client.write_cert(tmp_path / "client.pem"), client.write_key(tmp_path / "client.key")
    now = 1000.0
    monkeypatch.setattr("gtls._sessions.clock", lambda: now)
    compiled = compile_context(direct({"certificate": pki["a"].thumbprint, "certificate-store": str(store),
                                       "tls-mutual": "1"}, "server", profile="windows"))
    with gtls_server(compiled) as srv:
        s_client(srv.port, "-cert", cert, "-key", key)
        assert renewed(compiled, monkeypatch, now) == pki["a"].cert
        s_client(srv.port, "-cert", cert, "-key", key)
    assert [(o.ok, o.error and o.error.reason) for o in srv.outcomes] == [(True, None), (True, None)]


def test_a_der_key_is_called_der_not_pkcs12(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """A DER private key (PKCS#8 or traditional: a SEQUENCE starting INTEGER 0 or 1) is no PKCS#12 file (INTEGER 3):
    the advice is to convert it to PEM, not to export from PKCS#12."""
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        der = pki["b"].key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        key = tmp_path / "key.der"
        key.write_bytes(der)
        key.chmod(0o600)
        with pytest.raises(CredentialLoadError) as info:
            compile_context(by_hand(certificate=str(pki["b"].write_cert(tmp_path / "b.pem")),
                                    certificate_key=str(key), trusted_ca=str(write_pem(tmp_path / "ca.pem",
                                                                                      pki["root"]))))
        assert "DER (binary) data; convert it to PEM" in str(info.value) and "PKCS#12" not in str(info.value), fmt


def test_a_file_of_several_unread_forms_gets_every_conversion(tmp_path: Path, pki: dict[str, Certified]) -> None:
    import subprocess

    bundle = write_pem(tmp_path / "root.pem", pki["root"])
    pkcs7 = subprocess.run([OPENSSL, "crl2pkcs7", "-nocrl", "-certfile", str(bundle)], check=True,
                           capture_output=True, timeout=STEP_TIMEOUT).stdout
    trusted = pki["root"].cert_pem.replace(b" CERTIFICATE-----", b" TRUSTED CERTIFICATE-----")
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct({"trusted-ca": str(write_pem(tmp_path / "mixed.pem", trusted, pkcs7))}, "client"))
    message = str(info.value)
    assert "(it holds PKCS7, TRUSTED CERTIFICATE); TRUSTED CERTIFICATE blocks (openssl x509 -trustout) are not " \
           "read" in message and "; PKCS7 blocks are not read: openssl pkcs7 -in FILE -print_certs" in message, message
