"""`certificate` / `certificate-key` loading, leaf selection and chain assembly (spec §4.1–§4.3)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gtls.context import CompiledContext, compile_context
from gtls.errors import CredentialLoadError, KeyMismatch
from gtls.pki import explain_chain
from gtls.resolve import direct
from gtls.testing import CA, Certified, generate_key, write_pem
from tests.peers import client_handshake, close, gtls_server, s_client, s_server


@pytest.fixture(scope="module")
def pki() -> dict[str, Certified]:
    root = CA.root("chain root")
    inter1 = root.intermediate("chain inter 1")
    inter2 = inter1.intermediate("chain inter 2")
    leaf = inter2.leaf("server.test", dns=["server.test"])
    stranger = CA.root("stranger root").leaf("stranger.test")
    return {"root": root, "inter1": inter1, "inter2": inter2, "leaf": leaf, "stranger": stranger}


def subjects(chain: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> list[str]:
    return [c.subject.rfc4514_string() for c in chain]


def server(tmp: Path, certificate: str, key: Path, *, trusted: Path | None = None, base_dir: Path | None = None):
    trusted = trusted or write_pem(tmp / "trusted.pem", CA.root("unused trust").cert_pem)
    return compile_context(
        direct({"certificate": certificate, "certificate-key": str(key), "trusted-ca": str(trusted)}, "server",
               base_dir=base_dir)
    )


def test_scrambled_within_one_file(tmp_path: Path, pki: dict[str, Certified]) -> None:
    p = pki
    write_pem(tmp_path / "all.pem", p["inter1"], p["root"], p["leaf"], p["inter2"])
    p["leaf"].write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "all.pem"), tmp_path / "key.pem")
    assert list(compiled.chain) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert, p["root"].cert]
    assert compiled.warnings == ()


def test_scrambled_across_files_with_stranger_and_duplicates(tmp_path: Path, pki: dict[str, Certified]) -> None:
    p = pki
    write_pem(tmp_path / "a.pem", p["root"], p["stranger"])
    write_pem(tmp_path / "b.pem", p["inter1"], p["leaf"], p["root"])  # root twice: exact duplicate dropped
    write_pem(tmp_path / "c.pem", p["inter2"])
    p["leaf"].write_key(tmp_path / "key.pem")
    listing = f" {tmp_path / 'a.pem'} ,{tmp_path / 'b.pem'},{tmp_path / 'c.pem'}"
    compiled = server(tmp_path, listing, tmp_path / "key.pem")
    assert list(compiled.chain) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert, p["root"].cert]
    dropped = [w for w in compiled.warnings if "not in the chain" in w]
    assert len(dropped) == 1 and "CN=stranger.test" in dropped[0] and "a.pem" in dropped[0]


def test_root_absent_warns_but_works(tmp_path: Path, pki: dict[str, Certified]) -> None:
    p = pki
    write_pem(tmp_path / "c.pem", p["inter1"], p["leaf"], p["inter2"])
    p["leaf"].write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    assert list(compiled.chain) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert]
    assert any("not self-signed" in w and "chain inter 1" in w for w in compiled.warnings)


def test_an_open_top_names_the_issuer_the_peer_needs(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Audit 64: a leaf sent without its intermediate (a common slip) got the same warning as the usual chain
    without its root, "the peer must hold the missing CA certificate", naming neither; it names the issuer now."""
    p = pki
    write_pem(tmp_path / "leaf.pem", p["leaf"])
    p["leaf"].write_key(tmp_path / "key.pem")
    alone = [w for w in server(tmp_path, str(tmp_path / "leaf.pem"), tmp_path / "key.pem").warnings
             if "not self-signed" in w]
    assert alone == ["certificate: chain ends at CN=server.test, which is not self-signed; the peer must hold its "
                     "issuer CN=chain inter 2 (the leaf is sent alone: add CN=chain inter 2's certificate to "
                     "certificate unless every peer holds it)"]
    write_pem(tmp_path / "chain.pem", p["leaf"], p["inter2"], p["inter1"])
    usual = [w for w in server(tmp_path, str(tmp_path / "chain.pem"), tmp_path / "key.pem").warnings
             if "not self-signed" in w]
    assert usual == ["certificate: chain ends at CN=chain inter 1, which is not self-signed; the peer must hold its "
                     "issuer CN=chain root"]


def test_issuer_chosen_by_signature_among_same_named_cas(tmp_path: Path) -> None:
    root = CA.root("twin root")
    decoy = root.intermediate("twin inter")  # same subject, other key
    real = root.intermediate("twin inter")
    leaf = real.leaf("twin.test", dns=["twin.test"])
    write_pem(tmp_path / "c.pem", leaf, decoy, real)
    leaf.write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    assert list(compiled.chain) == [leaf.cert, real.cert]
    assert any("not in the chain" in w for w in compiled.warnings)


@pytest.mark.parametrize("twin", ["not-a-ca", "other-key-id"])
def test_issuer_twins_lose_to_the_real_issuer_on_the_wire(tmp_path: Path, twin: str) -> None:
    """Spec §4.3 step 1: among certificates with the issuer's name and key, a CA:TRUE one wins, and one whose
    SubjectKeyIdentifier differs from the leaf's AuthorityKeyIdentifier is no candidate; listed first, the twin
    would be sent, and a verifying peer refuses it (checked with s_client -verify_return_error)."""
    root = CA.root("twin root")
    real = root.intermediate("twin inter")
    if twin == "not-a-ca":
        decoy = root.intermediate("twin inter", key=real.key, ca=False)
    else:  # a re-issue with the same name and key but another key identifier
        decoy = root.intermediate("twin inter", key=real.key, key_ids=False,
                                  extensions=(x509.SubjectKeyIdentifier(b"\x42" * 20),))
    leaf = real.leaf("twin.test", dns=["twin.test"])
    write_pem(tmp_path / "c.pem", leaf, decoy, real)
    leaf.write_key(tmp_path / "key.pem")
    trusted = write_pem(tmp_path / "root.pem", root)
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem", trusted=trusted)
    assert list(compiled.chain) == [leaf.cert, real.cert]
    with gtls_server(compiled) as srv:
        result = s_client(srv.port, "-CAfile", str(trusted), "-verify_return_error", "-servername", "twin.test")
    assert result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout, result.stdout[-600:]


def test_leaf_is_non_ca_certificate_matching_key(tmp_path: Path) -> None:
    root = CA.root("shared-key root")
    key = generate_key()
    ca_twin = root.intermediate("ca with leaf key", key=key)
    leaf = root.leaf("leaf.test", key=key, dns=["leaf.test"])
    write_pem(tmp_path / "c.pem", ca_twin, leaf)  # the CA comes first in load order
    leaf.write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    assert compiled.chain[0] == leaf.cert


def test_among_several_leaves_for_the_key_the_first_loaded_wins(tmp_path: Path) -> None:
    """Spec §4.2: among several certificates matching the key, a non-CA one first, then load order; with only CA
    certificates matching, the first loaded. The others are dropped with a warning (§4.3 step 4)."""
    root = CA.root("order root")
    key = generate_key()
    first, second = root.leaf("first.test", key=key), root.leaf("second.test", key=key)
    write_pem(tmp_path / "c.pem", root.intermediate("ca with the key", key=key), first, second)
    write_pem(tmp_path / "key.pem", first.key_pem, mode=0o600)
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    assert compiled.chain[0] == first.cert
    assert any("CN=second.test" in w and "not in the chain" in w for w in compiled.warnings)
    ca_key = generate_key()
    ca_one, ca_two = root.intermediate("ca one", key=ca_key), root.intermediate("ca two", key=ca_key)
    write_pem(tmp_path / "cas.pem", ca_two, ca_one)
    write_pem(tmp_path / "ca-key.pem", ca_one.key_pem, mode=0o600)
    assert server(tmp_path, str(tmp_path / "cas.pem"), tmp_path / "ca-key.pem").chain[0] == ca_two.cert


def test_a_leaf_not_valid_yet_is_warned_about(tmp_path: Path) -> None:
    """Spec §4.3 load-time warnings: a leaf outside its validity period, before it as well as after it."""
    root = CA.root("future root")
    leaf = root.leaf("future.test", not_before=dt.timedelta(days=2), not_after=dt.timedelta(days=30))
    write_pem(tmp_path / "c.pem", leaf, root)
    leaf.write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    assert [w for w in compiled.warnings if "future.test" in w] == [
        f"certificate: certificate CN=future.test not valid before {leaf.cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"]


def test_a_client_leaf_without_clientauth_is_warned_about(tmp_path: Path) -> None:
    """Spec §4.3 load-time warnings: the role's purpose is clientAuth for a connection (serverAuth for a port)."""
    root = CA.root("client purpose root")
    leaf = root.leaf("server-only.test", eku=("server",))
    write_pem(tmp_path / "c.pem", leaf, root)
    leaf.write_key(tmp_path / "key.pem")
    options = {"certificate": str(tmp_path / "c.pem"), "certificate-key": str(tmp_path / "key.pem"),
               "trusted-ca": str(write_pem(tmp_path / "ca.pem", root))}
    assert [w for w in compile_context(direct(options, "client")).warnings if "extendedKeyUsage" in w] == [
        "certificate: certificate CN=server-only.test has an extendedKeyUsage without clientAuth; peers will reject "
        "it for a client"]
    assert not [w for w in compile_context(direct(options, "server")).warnings if "extendedKeyUsage" in w]


def test_key_mismatch(tmp_path: Path, pki: dict[str, Certified]) -> None:
    pki["leaf"].write_cert(tmp_path / "c.pem")
    pki["stranger"].write_key(tmp_path / "key.pem")
    with pytest.raises(KeyMismatch) as info:
        server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    assert info.value.option == "certificate" and str(tmp_path / "key.pem") in str(info.value)
    assert info.value.level == "Port"


@pytest.mark.parametrize(
    "case",
    ["missing", "der", "no-cert-blocks", "empty-element", "encrypted-key", "two-keys", "no-key", "world-readable",
     "unreadable-cert", "unreadable-key"],
)
def test_credential_load_errors(tmp_path: Path, pki: dict[str, Certified], case: str) -> None:
    leaf = pki["leaf"]
    cert = leaf.write_cert(tmp_path / "c.pem")
    key = leaf.write_key(tmp_path / "key.pem")
    certificate, option, named = str(cert), "certificate-key", key
    if case == "missing":
        certificate, option, named = str(tmp_path / "nope.pem"), "certificate", tmp_path / "nope.pem"
    elif case == "der":
        (tmp_path / "c.der").write_bytes(leaf.cert_der)
        certificate, option, named = str(tmp_path / "c.der"), "certificate", tmp_path / "c.der"
    elif case == "no-cert-blocks":
        write_pem(tmp_path / "k2.pem", leaf.key_pem)
        certificate, option, named = str(tmp_path / "k2.pem"), "certificate", tmp_path / "k2.pem"
    elif case == "empty-element":
        certificate, option, named = f"{cert},,{cert}", "certificate", None
    elif case == "encrypted-key":
        write_pem(key, leaf.encrypted_key_pem(b"secret"), mode=0o600)
    elif case == "two-keys":
        write_pem(key, leaf.key_pem, pki["stranger"].key_pem, mode=0o600)
    elif case == "no-key":
        write_pem(key, leaf.cert_pem, mode=0o600)
    elif case == "world-readable":
        key.chmod(0o644)
    elif case == "unreadable-cert":  # a directory: unreadable as a file even for root, unlike a mode-000 file
        certificate, option, named = str(tmp_path), "certificate", tmp_path
    elif case == "unreadable-key":
        key = named = tmp_path / "key-dir"
        key.mkdir()
    with pytest.raises(CredentialLoadError) as info:
        server(tmp_path, certificate, key)
    assert info.value.option == option
    if named is not None:
        assert info.value.file == str(named) and str(named) in str(info.value)
    if case == "world-readable":
        assert "readable by all users" in str(info.value)
    if case.startswith("unreadable"):
        assert "is a directory" in str(info.value)
    if case == "empty-element":  # the cause, not a consequence ("is a directory": the base folder)
        assert "empty element in the file list" in str(info.value)


def test_group_readable_key_warns_and_relative_paths_resolve(tmp_path: Path, pki: dict[str, Certified]) -> None:
    leaf = pki["leaf"]
    write_pem(tmp_path / "c.pem", leaf, pki["inter2"], leaf.key_pem)  # a key block in the cert file is skipped
    key = leaf.write_key(tmp_path / "key.pem")
    key.chmod(0o640)
    compiled = server(tmp_path, "c.pem", Path("key.pem"), base_dir=tmp_path)
    text = "\n".join(compiled.warnings)
    assert "readable by its group" in text and str(key) in text
    assert "relative path 'c.pem'" in text and "relative path 'key.pem'" in text
    assert "skipped PEM blocks PRIVATE KEY" in text


def test_leaf_validity_and_purpose_warnings(tmp_path: Path) -> None:
    root = CA.root("warn root")
    leaf = root.leaf("old.test", eku=("client",), not_before=dt.timedelta(days=-10), not_after=dt.timedelta(days=-1))
    write_pem(tmp_path / "c.pem", leaf, root)
    leaf.write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    text = "\n".join(compiled.warnings)
    assert "expired on" in text and "without serverAuth" in text


def _wire_chain(output: str) -> list[x509.Certificate]:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", output, re.DOTALL)
    return [x509.load_pem_x509_certificate(b.encode()) for b in blocks]


def test_sent_order_on_the_wire_and_no_completion_from_trusted_ca(tmp_path: Path, pki: dict[str, Certified]) -> None:
    p = pki
    write_pem(tmp_path / "c.pem", p["root"], p["inter1"], p["leaf"], p["inter2"])
    p["leaf"].write_key(tmp_path / "key.pem")
    full = server(tmp_path, str(tmp_path / "c.pem"), tmp_path / "key.pem")
    # Only the leaf configured, every CA in trusted-ca: OpenSSL must not complete the chain from the store.
    p["leaf"].write_cert(tmp_path / "leaf.pem")
    trusted = write_pem(tmp_path / "cas.pem", p["inter2"], p["inter1"], p["root"])
    alone = compile_context(direct({"certificate": str(tmp_path / "leaf.pem"),
                                    "certificate-key": str(tmp_path / "key.pem"),
                                    "trusted-ca": str(trusted), "tls-mutual": "1"}, "server"))
    with gtls_server(full) as srv:
        result = s_client(srv.port, "-showcerts", "-servername", "server.test")
    assert _wire_chain(result.stdout) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert, p["root"].cert]
    p["stranger"].write_cert(tmp_path / "client.pem")
    with gtls_server(alone) as srv:
        result = s_client(srv.port, "-showcerts")
    assert _wire_chain(result.stdout) == [p["leaf"].cert]


def test_a_client_sends_only_its_configured_chain_never_completed_from_trusted_ca(
    tmp_path: Path, pki: dict[str, Certified]
) -> None:
    """Spec §4.3 step 5 for a connection: a client configured with its leaf alone, every CA in trusted-ca, sends the
    leaf alone, so a verifying server that holds only the root refuses it; with the chain configured it passes.
    TLS 1.2, so the refusal reaches the client within the handshake."""
    p = pki
    client_leaf = p["inter2"].leaf("client.test", eku=("client",))
    client_leaf.write_cert(tmp_path / "leaf.pem")
    write_pem(tmp_path / "chain.pem", client_leaf, p["inter2"], p["inter1"])
    client_leaf.write_key(tmp_path / "key.pem")
    trusted = write_pem(tmp_path / "cas.pem", p["inter2"], p["inter1"], p["root"])
    root_only = write_pem(tmp_path / "root.pem", p["root"])
    p["leaf"].write_key(tmp_path / "server.key")
    write_pem(tmp_path / "server.pem", p["leaf"], p["inter2"], p["inter1"])

    def client(certificate: str) -> CompiledContext:
        return compile_context(direct({"certificate": certificate, "certificate-key": str(tmp_path / "key.pem"),
                                       "trusted-ca": str(trusted), "sec-protocol": "TLSv12"}, "client"))

    with s_server("-cert", tmp_path / "server.pem", "-cert_chain", tmp_path / "server.pem", "-key",
                  tmp_path / "server.key", "-CAfile", root_only, "-Verify", "2", "-verify_return_error") as server:
        conn, error = client_handshake(client(str(tmp_path / "leaf.pem")), server.port, server_hostname="server.test")
        close(conn)
        assert error is not None and error.reason == "peer-alert", error
        conn, error = client_handshake(client(str(tmp_path / "chain.pem")), server.port,
                                       server_hostname="server.test")
        close(conn)
        assert error is None, error


# --- gtls.pki.explain_chain: the tools' view of the same loading and ordering ---


def test_explain_chain_matches_the_compiled_chain_and_gives_reasons(pki: dict[str, Certified], tmp_path: Path) -> None:
    from gtls.pki import explain_chain, listed_certificates

    first = write_pem(tmp_path / "a.pem", pki["root"].cert_pem, pki["inter1"].cert_pem)
    second = write_pem(tmp_path / "b.pem", pki["leaf"].cert_pem, pki["stranger"].cert_pem, pki["inter2"].cert_pem)
    key = pki["leaf"].write_key(tmp_path / "leaf.key")
    listing = "a.pem, b.pem"  # relative: from base_dir
    explained = explain_chain(listing, "leaf.key", base_dir=tmp_path)
    compiled = server(tmp_path, f"{first},{second}", key)
    assert explained.chain == list(compiled.chain)
    assert subjects(explained.chain) == ["CN=server.test", "CN=chain inter 2", "CN=chain inter 1", "CN=chain root"]
    assert [(link.source.name, link.position) for link in explained.links] == [
        ("b.pem", 3), ("b.pem", 5), ("a.pem", 2), ("a.pem", 1)]
    assert explained.links[0].reason == f"leaf: its public key matches the private key in {key}"
    assert explained.links[1].reason.startswith("issued certificate 0: subject equals its issuer name")
    assert explained.loaded == 5 and explained.reordered and explained.top_self_signed
    assert any("stranger.test" in w and "not in the chain" in w for w in explained.warnings)
    assert subjects(listed_certificates(listing, base_dir=tmp_path)) == [
        "CN=chain root", "CN=chain inter 1", "CN=server.test", "CN=stranger.test", "CN=chain inter 2"]

    without_key = explain_chain(f"{second}")  # absolute path; the leaf is the certificate that issued nothing
    assert subjects(without_key.chain) == ["CN=server.test", "CN=chain inter 2"]
    assert "1 other candidate" in without_key.links[0].reason  # the stranger issued nothing either
    assert not without_key.top_self_signed and not without_key.reordered

    with pytest.raises(KeyMismatch):
        explain_chain(str(first), key)
    with pytest.raises(CredentialLoadError):
        listed_certificates("missing.pem", base_dir=tmp_path)


def test_an_rsa_pss_key_is_refused_in_plain_words(tmp_path: Path) -> None:
    """A key made with ``openssl genpkey -algorithm RSA-PSS`` crashed gtls serve with a traceback ("no certificate
    assigned"): cryptography reads it as a plain RSA key, and OpenSSL then pairs that with no certificate."""
    import subprocess

    from tests.peers import OPENSSL

    key, cert = tmp_path / "pss-key.pem", tmp_path / "pss.pem"
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run([OPENSSL, "genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(key)], **run)  # type: ignore[call-overload]
    key.chmod(0o600)
    subprocess.run([OPENSSL, "req", "-x509", "-key", str(key), "-subj", "/CN=pss.test", "-days", "30", "-out",
                    str(cert)], **run)  # type: ignore[call-overload]
    with pytest.raises(CredentialLoadError) as info:
        compile_context(direct({"certificate": str(cert), "certificate-key": str(key), "trusted-ca": str(cert)},
                               "server"))
    assert info.value.option == "certificate-key" and info.value.file == str(key)
    assert "RSA-PSS private keys" in str(info.value) and "genpkey -algorithm RSA" in str(info.value)


def test_an_expired_issuer_in_the_chain_is_named_with_its_renewed_copy(tmp_path: Path) -> None:
    """Spec §4.3 picks among equal issuer candidates by load order, so an expired intermediate listed before its
    renewed copy (same name and key) is sent, the copy dropped, and every peer refuses the chain: said at load time
    (before, only the dropped copy was named, by a name both share)."""
    root = CA.root("renewal root")
    key = generate_key("ec")
    day = dt.timedelta(days=1)
    old = root.intermediate("renewal inter", key=key, not_before=-20 * day, not_after=-day)
    renewed = root.intermediate("renewal inter", key=key)
    leaf = renewed.leaf("renewal.test")
    key_file = leaf.write_key(tmp_path / "key.pem")
    trusted = write_pem(tmp_path / "root.pem", root)

    def compiled_from(*certs: Certified) -> list[str]:
        path = write_pem(tmp_path / "chain.pem", *certs)
        warnings: list[str] = []
        compiled = compile_context(direct({"certificate": str(path), "certificate-key": str(key_file),
                                           "trusted-ca": str(trusted)}, "server", warnings=warnings))
        sent = compiled.chain[1]
        assert sent == (old.cert if certs[1] is old else renewed.cert)
        return [w for w in (*warnings, *compiled.warnings) if "depth 1" in w]

    (warning,) = compiled_from(leaf, old, renewed, root)
    assert warning.startswith("certificate: chain certificate CN=renewal inter (depth 1) expired on ")
    assert warning.endswith(f"a valid copy from {tmp_path / 'chain.pem'} was dropped: list it before this one, or "
                            "remove this one")
    assert compiled_from(leaf, renewed, old, root) == []
    (alone,) = compiled_from(leaf, old, root)
    assert alone.endswith("; peers will refuse the chain")
    # An expired cross-signature on top (Let's Encrypt's long chain): peers trusting the root of that name stop
    # below it, so the chain is not refused by everyone; the warning says who refuses it.
    cross = CA.root("older root").intermediate("renewal root", key=root.key, not_before=-20 * day, not_after=-day)
    path = write_pem(tmp_path / "long.pem", leaf, renewed, cross)
    warnings: list[str] = []
    compiled = compile_context(direct({"certificate": str(path), "certificate-key": str(key_file),
                                       "trusted-ca": str(trusted)}, "server", warnings=warnings))
    assert compiled.chain[2] == cross.cert
    (top,) = [w for w in (*warnings, *compiled.warnings) if "(depth 2)" in w]
    assert top.endswith("it is the top of the chain: peers refuse the chain unless they trust a root of its name and "
                        "key (then they ignore it)")


@pytest.mark.parametrize("curve", ["secp256k1", "brainpoolP256r1", "secp384r1"])
def test_a_key_few_peers_accept_is_named_at_load_time(tmp_path: Path, curve: str) -> None:
    """OpenSSL loads a secp256k1 or brainpool key, and the handshakes it should sign then fail with a word about
    ciphers or versions (s_client with TLS 1.2 here), which points away from the key: the key is named when the
    settings are compiled."""
    from cryptography.hazmat.primitives.asymmetric import ec

    curves: dict[str, ec.EllipticCurve] = {"secp256k1": ec.SECP256K1(), "brainpoolP256r1": ec.BrainpoolP256R1(),
                                           "secp384r1": ec.SECP384R1()}
    root = CA.root("curve root")
    leaf = root.leaf("localhost", dns=("localhost",), key=ec.generate_private_key(curves[curve]))
    cert, key = leaf.write_cert(tmp_path / "leaf.pem"), leaf.write_key(tmp_path / "key.pem")
    trusted = write_pem(tmp_path / "root.pem", root)
    warnings: list[str] = []
    compiled = compile_context(direct({"certificate": str(cert), "certificate-key": str(key),
                                       "trusted-ca": str(trusted)}, "server", warnings=warnings))
    named = [w for w in (*warnings, *compiled.warnings) if f"is on {curve}" in w]
    with gtls_server(compiled) as server:
        result = s_client(server.port, "-tls1_2", "-CAfile", trusted, "-verify_return_error")
    if curve == "secp384r1":
        assert named == [] and result.returncode == 0
    else:
        assert len(named) == 1 and named[0].startswith(f"certificate-key: the key in {key} is on {curve}")
        assert result.returncode != 0 and [o.ok for o in server.outcomes] == [False]


def test_a_key_in_the_certificate_file_named_by_certificate_key_is_not_called_skipped(
    tmp_path: Path, pki: dict[str, Certified]
) -> None:
    """Spec §4.1 step 5: other PEM blocks are skipped with a warning, and a key there is used only when
    `certificate-key` names the file. A combined file (key, leaf, chain) given as both options uses its key, so no
    warning says the key was skipped; the same key block beside a separate `certificate-key` still warns."""
    p = pki
    combined = tmp_path / "combined.pem"
    combined.write_bytes(p["leaf"].key_pem + p["leaf"].cert_pem + p["inter2"].cert_pem + p["inter1"].cert_pem)
    combined.chmod(0o600)
    compiled = server(tmp_path, str(combined), combined)
    assert list(compiled.chain) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert]
    assert not [w for w in compiled.warnings if "skipped PEM blocks" in w]
    assert not [w for w in explain_chain(str(combined), combined).warnings if "skipped PEM blocks" in w]
    p["leaf"].write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(combined), tmp_path / "key.pem")
    assert [w for w in compiled.warnings if "skipped PEM blocks" in w] == [
        f"certificate: skipped PEM blocks PRIVATE KEY in {combined}"]
    # A block the key option does not read stays a skipped block in the key's own file too.
    combined.write_bytes(p["leaf"].key_pem + p["leaf"].cert_pem + CA.root("crl issuer").crl().pem)
    compiled = server(tmp_path, str(combined), combined)
    assert [w for w in compiled.warnings if "skipped PEM blocks" in w] == [
        f"certificate: skipped PEM blocks X509 CRL in {combined}"]


def test_assembly_stops_at_a_self_issued_certificate(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """Spec §4.3 step 2: the chain stops at a self-issued certificate even when another loaded one (a cross-signed
    copy of the root: same name and key, issued by another CA) would go on; that one is dropped with a warning."""
    p = pki
    cross = CA.root("cross signer").intermediate("chain root", key=p["root"].key)
    write_pem(tmp_path / "all.pem", p["leaf"], p["inter2"], p["inter1"], p["root"], cross)
    p["leaf"].write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(tmp_path / "all.pem"), tmp_path / "key.pem")
    assert list(compiled.chain) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert, p["root"].cert]
    assert compiled.warnings == (
        f"certificate: certificate CN=chain root from {tmp_path / 'all.pem'} is not in the chain; dropped",)


def _relabel(pem: bytes, label: bytes) -> bytes:
    return pem.replace(b" CERTIFICATE-----", b" " + label + b"-----")


def test_x509_certificate_blocks_are_certificates_as_openssl_reads_them(
    tmp_path: Path, pki: dict[str, Certified]
) -> None:
    """"X509 CERTIFICATE" is OpenSSL's older label for the same DER, which every OpenSSL reader takes as a
    certificate: an intermediate written so was skipped, and the chain went out without it (audit 69)."""
    p = pki
    chain = write_pem(tmp_path / "c.pem", _relabel(p["leaf"].cert_pem, b"X509 CERTIFICATE"), p["inter2"],
                      _relabel(p["inter1"].cert_pem, b"X509 CERTIFICATE"), p["root"])
    key = p["leaf"].write_key(tmp_path / "key.pem")
    compiled = server(tmp_path, str(chain), key)
    assert compiled.warnings == ()
    with gtls_server(compiled) as srv:
        result = s_client(srv.port, "-showcerts", "-servername", "server.test")
    assert _wire_chain(result.stdout) == [p["leaf"].cert, p["inter2"].cert, p["inter1"].cert, p["root"].cert]


def test_trusted_certificate_blocks_are_skipped_with_how_to_convert_them(
    tmp_path: Path, pki: dict[str, Certified]
) -> None:
    """A TRUSTED CERTIFICATE (openssl x509 -trustout) carries OpenSSL trust settings gtls cannot apply: not read,
    and the warning says how to turn it into a CERTIFICATE block."""
    p = pki
    chain = write_pem(tmp_path / "c.pem", p["leaf"], p["inter2"], p["inter1"],
                      _relabel(p["root"].cert_pem, b"TRUSTED CERTIFICATE"))
    compiled = server(tmp_path, str(chain), p["leaf"].write_key(tmp_path / "key.pem"))
    assert [w for w in compiled.warnings if "skipped" in w] == [
        f"certificate: skipped PEM blocks TRUSTED CERTIFICATE in {chain}; TRUSTED CERTIFICATE blocks (openssl x509 "
        "-trustout) are not read: convert each with openssl x509 -in FILE -out NEW.pem, which drops its OpenSSL "
        "trust settings"]


def test_a_malformed_certificate_is_named_by_its_block(tmp_path: Path, pki: dict[str, Certified]) -> None:
    """In a file of many certificates, the error says which block does not parse (audit 69)."""
    import base64

    cut = base64.encodebytes(pki["inter1"].cert_der[:-40])
    chain = write_pem(tmp_path / "c.pem", pki["leaf"], pki["inter2"],
                      b"-----BEGIN CERTIFICATE-----\n" + cut + b"-----END CERTIFICATE-----\n")
    with pytest.raises(CredentialLoadError) as info:
        server(tmp_path, str(chain), pki["leaf"].write_key(tmp_path / "key.pem"))
    assert "malformed certificate in PEM block 3 (" in str(info.value) and info.value.file == str(chain)


@pytest.mark.parametrize("line_end", [b"\r", b"\n  "], ids=["cr-only", "indented"])
def test_an_encrypted_traditional_key_is_called_encrypted_whatever_its_line_ends(
    tmp_path: Path, line_end: bytes
) -> None:
    """``openssl ec -aes128`` writes RFC 1421 headers (Proc-Type, DEK-Info). Saved with CR-only line ends or
    indented, those header lines were read as base64, and the key was called damaged, not encrypted (audit 69)."""
    from cryptography.hazmat.primitives import serialization

    leaf = CA.root().leaf("enc.test")
    leaf.write_cert(tmp_path / "c.pem")
    plain = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption())
    (tmp_path / "plain.pem").write_bytes(plain)
    encrypted = s_run_openssl("ec", "-in", str(tmp_path / "plain.pem"), "-aes128", "-passout", "pass:secret")
    assert b"Proc-Type: 4,ENCRYPTED" in encrypted
    key = write_pem(tmp_path / "key.pem", encrypted.replace(b"\n", line_end), mode=0o600)
    with pytest.raises(CredentialLoadError) as info:
        server(tmp_path, str(tmp_path / "c.pem"), key)
    assert "private key is encrypted" in str(info.value) and info.value.file == str(key)


def s_run_openssl(*args: str) -> bytes:
    import subprocess

    from tests.peers import OPENSSL, STEP_TIMEOUT

    return subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=STEP_TIMEOUT).stdout


def test_an_ecparam_genkey_file_loads_and_a_damaged_block_beside_the_key_is_named(tmp_path: Path) -> None:
    """`openssl ecparam -genkey` writes an EC PARAMETERS block before the key: read without a word. A damaged block
    of another kind in the key file was skipped silently; README promises a warning for it, as in other files."""
    from cryptography.hazmat.primitives import serialization

    generated = s_run_openssl("ecparam", "-name", "prime256v1", "-genkey")
    assert generated.startswith(b"-----BEGIN EC PARAMETERS-----")
    private = serialization.load_pem_private_key(generated[generated.index(b"-----BEGIN EC PRIVATE KEY"):], None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    leaf = CA.root().leaf("ecparam.test", key=private)
    cert = leaf.write_cert(tmp_path / "c.pem")
    key = write_pem(tmp_path / "key.pem", generated, mode=0o600)
    assert [w for w in server(tmp_path, str(cert), key).warnings if "certificate-key" in w] == []
    damaged = generated.replace(b"-----END EC PARAMETERS-----\n", b"")  # BEGIN without END
    write_pem(key, damaged, mode=0o600)
    assert [w for w in server(tmp_path, str(cert), key).warnings if "certificate-key" in w] == [
        f"certificate-key: skipped PEM blocks EC PARAMETERS (damaged, BEGIN EC PARAMETERS without END before the "
        f"next BEGIN line) in {key}"]


def test_a_key_is_read_by_the_same_pem_reader_as_every_other_file(tmp_path: Path) -> None:
    """A header line in a key block not followed by a blank line was refused by cryptography's own PEM parser
    ("Unable to load PEM file ... InvalidData(InvalidByte(1, 45))"), while certificates with the same header
    loaded: the key is now loaded from the DER gtls's reader decoded (audit 69). The handshake proves it is the key."""
    leaf = CA.root().leaf("comment.test", dns=["comment.test"])
    cert = leaf.write_cert(tmp_path / "c.pem")
    with_header = leaf.key_pem.replace(b"-----\n", b"-----\nComment: exported by a key tool\n", 1)
    key = write_pem(tmp_path / "key.pem", with_header, mode=0o600)
    compiled = server(tmp_path, str(cert), key)
    with gtls_server(compiled) as srv:
        result = s_client(srv.port, "-showcerts", "-servername", "comment.test")
    assert _wire_chain(result.stdout) == [leaf.cert]
    assert "Cipher is TLS_" in result.stdout  # the handshake completed: the server signed with the key


@pytest.mark.parametrize("header", [b"Proc-Type:4,ENCRYPTED", b"Proc-Type: 4, ENCRYPTED"])
def test_an_encrypted_key_is_called_encrypted_however_its_header_is_spaced(tmp_path: Path, header: bytes) -> None:
    """OpenSSL reads these Proc-Type spellings as an encrypted key too (checked below): not "cannot load"."""
    from cryptography.hazmat.primitives import serialization

    leaf = CA.root().leaf("enc.test")
    leaf.write_cert(tmp_path / "c.pem")
    plain = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption())
    (tmp_path / "plain.pem").write_bytes(plain)
    encrypted = s_run_openssl("ec", "-in", str(tmp_path / "plain.pem"), "-aes128", "-passout", "pass:secret")
    key = write_pem(tmp_path / "key.pem", encrypted.replace(b"Proc-Type: 4,ENCRYPTED", header), mode=0o600)
    assert b"BEGIN" in s_run_openssl("ec", "-in", str(key), "-passin", "pass:secret")
    with pytest.raises(CredentialLoadError) as info:
        server(tmp_path, str(tmp_path / "c.pem"), key)
    assert "private key is encrypted" in str(info.value) and info.value.file == str(key)


def test_an_encrypted_pkcs8_key_under_the_plain_label_is_called_encrypted(tmp_path: Path) -> None:
    """An ENCRYPTED PRIVATE KEY relabelled PRIVATE KEY (a hand edit): still "encrypted", not a type error."""
    leaf = CA.root().leaf("enc.test")
    leaf.write_cert(tmp_path / "c.pem")
    relabelled = leaf.encrypted_key_pem(b"secret").replace(b"ENCRYPTED PRIVATE KEY", b"PRIVATE KEY")
    key = write_pem(tmp_path / "key.pem", relabelled, mode=0o600)
    with pytest.raises(CredentialLoadError) as info:
        server(tmp_path, str(tmp_path / "c.pem"), key)
    assert "private key is encrypted" in str(info.value), info.value


@pytest.mark.parametrize("damage", ["bad base64", "no END"])
def test_a_damaged_block_under_the_old_certificate_label_is_a_damaged_certificate(
    tmp_path: Path, pki: dict[str, Certified], damage: str
) -> None:
    """An "X509 CERTIFICATE" block is a certificate (OpenSSL's older label), damaged ones too: refused as the
    certificate it should have been, not skipped with a warning while the chain goes out without it."""
    inter = _relabel(pki["inter1"].cert_pem, b"X509 CERTIFICATE")
    inter = inter.replace(b"-----\n", b"-----\n!!!!\n", 1) if damage == "bad base64" else inter.split(b"-----END")[0]
    chain = write_pem(tmp_path / "c.pem", pki["leaf"], inter, pki["inter2"])
    with pytest.raises(CredentialLoadError) as info:
        server(tmp_path, str(chain), pki["leaf"].write_key(tmp_path / "key.pem"))
    assert "PEM CERTIFICATE block 2 is damaged" in str(info.value), info.value
