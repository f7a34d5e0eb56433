"""The peer-name rule (spec §7) through three routes that must agree: a real handshake of a gtls-context client
against ``openssl s_server`` (OpenSSL's check inside the handshake), ``verify_chain``, and the pure-Python rule
(``names.py``, also exercised as the handshake fallback with the private API switched off).

Expected values are spec §7's, except the two documented deviations (marked ``DEVIATION``) where OpenSSL's
in-handshake check is stricter and gtls keeps every route on OpenSSL's result."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from gtls.context import CompiledContext, compile_context
from gtls.errors import InvalidOptionValue, PeerVerificationError
from gtls.pki import hostcheck, names
from gtls.resolve import direct
from gtls.testing import CA, Certified, write_pem
from gtls.verify import verify_chain
from tests.peers import client_handshake, close, gtls_server, s_client, s_server

ROOT = CA.root("names root")


def _raw_san(*names: bytes) -> x509.UnrecognizedExtension:
    """A subjectAltName written byte by byte (``names``: DER GeneralNames), for forms ``cryptography`` cannot read
    back but OpenSSL takes: then its verdict is the one every route must give."""
    body = b"".join(names)
    return x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30" + bytes([len(body)]) + body)


def _dns(name: bytes) -> bytes:
    return b"\x82" + bytes([len(name)]) + name


#: An x400Address (a SEQUENCE with one country name): OpenSSL reads it; cryptography raises on every extension.
X400 = b"\xa3\x08\x30\x06\x61\x04\x13\x02US"

#: certificate id -> leaf keyword arguments for gtls.testing
CERTS: dict[str, dict[str, object]] = {
    "plain": {"common_name": "cn.example.com", "dns": ["host.example.com"]},
    "trailing": {"dns": ["dotted.example.com."]},
    "idn": {"dns": ["xn--bcher-kva.example"]},
    "wild": {"dns": ["*.example.com", "exact.example.com"]},
    "iponly": {"common_name": "host.example.com", "ips": ["10.0.0.5", "127.0.0.1"]},
    "cnonly": {"common_name": "Host.Example.COM"},
    "multicn": {"common_names": ["a.example", "b.example"]},
    "cn-and-dns": {"common_name": "b.example", "dns": ["a.example"]},
    "unicode-cn": {"common_name": "bücher.example"},
    "ctrl": {"dns": ["bad\x01.example", "good.example"]},
    "nul": {"dns": ["host.example.com\x00.evil.example"]},
    "ipdns": {"common_name": "x", "dns": ["10.0.0.5"], "ips": ["10.0.0.5"]},
    "email": {"common_name": "mail.example", "emails": ["ops@mail.example"]},
    "nonames": {"common_names": []},
    "wildcn": {"common_name": "*.example.org"},
    "ipv6dns": {"dns": ["::1"]},
    # The fixed name gtls once handed OpenSSL for every IPv6 reference: a private CA could issue it.
    "old-ipv6-sentinel": {"common_name": "ipv6-literal-reference.invalid", "dns": ["ipv6-literal-reference.invalid"]},
    # subjectAltNames cryptography cannot read (a byte that is not UTF-8, an x400Address); OpenSSL compares them
    "not-utf8": {"common_name": "cn.example",
                 "extensions": [_raw_san(_dns(b"\xffbad.example"), _dns(b"good.example"))]},
    "x400": {"common_name": "cn.example", "extensions": [_raw_san(X400, _dns(b"x.example"))]},
    "x400-only": {"common_name": "cn.example", "extensions": [_raw_san(X400)]},
}

# (certificate id, reference, how it is given, expected match, note)
CASES: list[tuple[str, str, str, bool, str]] = [
    ("plain", "host.example.com", "dialled", True, "exact"),
    ("plain", "HOST.Example.COM", "dialled", True, "case-insensitive"),
    ("plain", "host.example.com.", "dialled", True, "reference trailing dot removed"),
    ("plain", "HOST.EXAMPLE.COM.", "target", True, "case + dot via tls-target-name"),
    ("plain", "cn.example.com", "dialled", False, "CN ignored when DNS SANs exist"),
    ("plain", "other.example.com", "dialled", False, "different name"),
    ("plain", "example.com", "dialled", False, "parent domain"),
    ("plain", "sub.host.example.com", "dialled", False, "subdomain"),
    ("plain", "host.example.co", "target", False, "prefix"),
    ("trailing", "dotted.example.com", "dialled", False, "DEVIATION: presented trailing dot never matches"),
    ("trailing", "dotted.example.com.", "dialled", False, "DEVIATION: presented trailing dot never matches"),
    ("idn", "bücher.example", "dialled", True, "U-label reference to A-labels"),
    ("idn", "BÜCHER.example", "target", True, "U-label reference, upper case"),
    ("idn", "xn--bcher-kva.example", "dialled", True, "A-label reference"),
    ("idn", "bucher.example", "dialled", False, "different IDN"),
    ("wild", "a.example.com", "dialled", False, "wildcard never matches"),
    ("wild", "exact.example.com", "dialled", True, "exact beside a wildcard"),
    ("wild", "EXACT.example.com.", "target", True, "exact beside a wildcard, case + dot"),
    ("wild", "example.com", "dialled", False, "wildcard base"),
    ("iponly", "host.example.com", "dialled", True, "IP-only SAN falls back to CN"),
    ("iponly", "10.0.0.5", "dialled", False, "iPAddress SAN never consulted"),
    ("iponly", "127.0.0.1", "dialled", False, "iPAddress SAN never consulted (loopback)"),
    ("cnonly", "host.example.com", "dialled", True, "CN, case-insensitive"),
    ("cnonly", "host.example.com.", "target", True, "CN, reference dot"),
    ("cnonly", "example.com", "dialled", False, "CN parent"),
    ("multicn", "a.example", "dialled", True, "first of several CNs"),
    ("multicn", "b.example", "dialled", True, "second of several CNs"),
    ("multicn", "c.example", "dialled", False, "none of several CNs"),
    ("cn-and-dns", "a.example", "dialled", True, "DNS SAN"),
    ("cn-and-dns", "b.example", "dialled", False, "CN unused beside a DNS SAN"),
    ("unicode-cn", "bücher.example", "dialled", False, "DEVIATION: Unicode CN never matches"),
    ("unicode-cn", "xn--bcher-kva.example", "target", False, "DEVIATION: Unicode CN never matches"),
    ("ctrl", "good.example", "dialled", True, "clean name beside a control-character name"),
    ("ctrl", "bad.example", "dialled", False, "control-character name"),
    ("nul", "host.example.com", "dialled", False, "embedded NUL"),
    ("ipdns", "10.0.0.5", "dialled", True, "IP literal compared as a string with a DNS SAN"),
    ("ipdns", "10.0.0.6", "dialled", False, "other IP literal"),
    ("email", "mail.example", "dialled", True, "e-mail-only SAN falls back to CN"),
    ("email", "MAIL.example.", "target", True, "e-mail-only SAN falls back to CN, via tls-target-name"),
    ("nonames", "host.example.com", "dialled", False, "no names at all"),
    ("wildcn", "a.example.org", "dialled", False, "wildcard CN"),
    ("wildcn", "example.org", "dialled", False, "wildcard CN base"),
    ("ipv6dns", "::1", "dialled", False, "DEVIATION: an IPv6 literal never matches"),
    ("ipv6dns", "[::1]", "dialled", False, "DEVIATION: an IPv6 literal never matches (brackets)"),
    ("ipv6dns", "::2", "dialled", False, "other IPv6 literal"),
    ("old-ipv6-sentinel", "::1", "dialled", False, "no fixed name passes for an IPv6 address"),
    ("old-ipv6-sentinel", "2001:db8::7", "dialled", False, "nor for another one"),
    ("not-utf8", "good.example", "dialled", True, "readable name beside a non-UTF-8 one"),
    ("not-utf8", "bad.example", "dialled", False, "non-UTF-8 name never matches"),
    ("not-utf8", "cn.example", "dialled", False, "CN unused beside an unreadable DNS SAN"),
    ("x400", "x.example", "dialled", True, "DNS SAN beside an x400Address"),
    ("x400", "cn.example", "target", False, "CN unused beside a DNS SAN and an x400Address"),
    ("x400-only", "cn.example", "dialled", True, "x400Address-only SAN falls back to CN"),
    ("x400-only", "other.example", "dialled", False, "x400Address-only SAN, other name"),
]


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("names")
    leaves: dict[str, Certified] = {}
    for cert_id, kwargs in CERTS.items():
        leaf = ROOT.leaf(**kwargs)  # type: ignore[arg-type]
        leaf.write_cert(tmp / f"{cert_id}.pem")
        leaf.write_key(tmp / f"{cert_id}.key")
        leaves[cert_id] = leaf
    trusted = write_pem(tmp / "ca.pem", ROOT)
    return {"dir": tmp, "leaves": leaves, "trusted": trusted}


def client(trusted: Path, target: str | None = None) -> CompiledContext:
    opts = {"trusted-ca": str(trusted), "tls-target-name-check": "host"}
    if target is not None:
        opts["tls-target-name"] = target
    return compile_context(direct(opts, "client"))


def _offline(compiled: CompiledContext, leaf: x509.Certificate, dialled: str | None) -> bool:
    try:
        verify_chain([leaf], compiled, "client", target_name=dialled)
    except PeerVerificationError as exc:
        assert exc.reason == "name-mismatch", exc
        assert exc.depth == 0
        return False
    return True


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("cert_id", sorted(CERTS))
def test_name_rule_agrees_everywhere(material: dict[str, object], cert_id: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = material["dir"]
    assert isinstance(tmp, Path)
    leaf = material["leaves"][cert_id]  # type: ignore[index]
    trusted = material["trusted"]
    assert isinstance(trusted, Path)
    cases = [c for c in CASES if c[0] == cert_id]
    with s_server("-cert", tmp / f"{cert_id}.pem", "-key", tmp / f"{cert_id}.key") as server:
        for _, reference, how, expected, note in cases:
            compiled = client(trusted, reference if how == "target" else None)
            dialled = reference if how == "dialled" else "127.0.0.1"
            verdicts = {}
            conn, error = client_handshake(compiled, server.port, server_hostname=dialled)
            close(conn)
            verdicts["handshake"] = error is None
            if error is not None:
                assert error.reason == "name-mismatch", (note, error)
                assert error.depth == 0 and error.subject is not None
                assert reference.strip("[].").lower()[:3] in str(error).lower() or "xn--" in str(error)
            verdicts["verify_chain"] = _offline(compiled, leaf.cert, dialled)
            verdicts["names.py"] = names.matches(leaf.cert, names.normalise_reference(reference))
            with monkeypatch.context() as patch:  # the fallback: OpenSSL not told, names.py right after handshake
                patch.setattr(hostcheck, "AVAILABLE", False)
                conn, error = client_handshake(compiled, server.port, server_hostname=dialled)
                close(conn)
                verdicts["fallback"] = error is None
                if error is not None:
                    assert error.reason == "name-mismatch"
                verdicts["verify_chain fallback"] = _offline(compiled, leaf.cert, dialled)
            assert verdicts == dict.fromkeys(verdicts, expected), (cert_id, reference, how, note, verdicts)


def test_mismatch_messages() -> None:
    wild = ROOT.leaf(dns=["*.example.com", "exact.example.com"]).cert
    text = names.mismatch_message(wild, "a.example.com")
    assert "'*.example.com', 'exact.example.com'" in text and "'a.example.com'" in text
    assert "skipped *.example.com" in text
    ip_text = names.mismatch_message(ROOT.leaf(dns=["host.example.com"], ips=["10.0.0.5"]).cert, "10.0.0.5")
    assert "dial by host name or set tls-target-name" in ip_text
    # names cryptography cannot read are listed as OpenSSL compares them (a byte that is not UTF-8 shown as U+FFFD)
    unreadable = ROOT.leaf("cn.example", extensions=[_raw_san(X400, _dns(b"\xffbad.example"), _dns(b"a.example"))])
    text = names.mismatch_message(unreadable.cert, "b.example")
    assert "(subjectAltName) are ['\ufffdbad.example', 'a.example']" in text
    x400_only = ROOT.leaf("cn.example", extensions=[_raw_san(X400)]).cert
    assert "(CN) are ['cn.example']" in names.mismatch_message(x400_only, "b.example")


@pytest.mark.parametrize("bad", ["*.example.com", "a b.example", "tab\t.example", "ctl\x07.example", "", ".example",
                                 "a..example", "host\x00.example",
                                 "ops@mail.example", "-a.example", "a_b-.example", "x" * 64 + ".example",
                                 ".".join(["x" * 63] * 3 + ["x" * 62]), ".".join(["x" * 50] * 6)])
def test_bad_reference_names_are_refused(material: dict[str, object], bad: str) -> None:
    trusted = material["trusted"]
    assert isinstance(trusted, Path)
    with pytest.raises(names.BadReferenceName):
        names.normalise_reference(bad)
    compiled = client(trusted)
    with pytest.raises(InvalidOptionValue):
        compiled.new_connection(server_hostname=bad or None)


@pytest.mark.parametrize("name", ["a", "A.", "_", "1"])
def test_one_character_reference_is_refused_for_the_check(material: dict[str, object], name: str) -> None:
    """OpenSSL 4.0 takes no reference name of one character (X509_VERIFY_PARAM_set1_host fails): every connection
    and verify_chain raised ValueError there. Refused up front on every OpenSSL; without the check, SNI still has it."""
    trusted = material["trusted"]
    assert isinstance(trusted, Path)
    with pytest.raises(InvalidOptionValue, match="one character|is an IP address"):
        client(trusted, name)
    checking = client(trusted)
    with pytest.raises(InvalidOptionValue, match="one character"):
        checking.new_connection(server_hostname=name)
    with pytest.raises(InvalidOptionValue, match="one character"):
        verify_chain([material["leaves"]["plain"].cert], checking, "client", target_name=name)  # type: ignore[index]
    plain = compile_context(direct({"trusted-ca": str(trusted), "tls-target-name": "x"}, "client"))
    assert plain.new_connection(server_hostname=name).get_servername() == b"x"


def test_a_two_character_host_name_is_checked_over_the_wire(tmp_path: Path) -> None:
    """Only one character is refused: a host named ``db`` is checked, and matches its certificate, as OpenSSL does."""
    root = CA.root("two-character root")
    leaf = root.leaf("db", dns=["db"])
    trusted = write_pem(tmp_path / "ca.pem", root)
    cert, key = leaf.write_cert(tmp_path / "db.pem"), leaf.write_key(tmp_path / "db.key")
    for compiled, dialled in ((client(trusted, "db"), None), (client(trusted), "db")):
        with s_server("-cert", cert, "-key", key) as srv:
            conn, error = client_handshake(compiled, srv.port, server_hostname=dialled)
            close(conn)
        assert error is None, error


def test_sni_rule(material: dict[str, object]) -> None:
    """SNI: tls-target-name, else a DNS reference, never an IP literal (observed on the wire by s_server)."""
    trusted = material["trusted"]
    assert isinstance(trusted, Path)
    plain = compile_context(direct({"trusted-ca": str(trusted)}, "client"))
    named = client(trusted, "Host.Example.COM.")
    assert plain.new_connection(server_hostname="Svc.Example.").get_servername() == b"svc.example"
    assert plain.new_connection(server_hostname="10.0.0.5").get_servername() is None
    assert plain.new_connection(server_hostname="::1").get_servername() is None
    assert named.new_connection(server_hostname="10.0.0.5").get_servername() == b"host.example.com"
    # A DNS name has at most 253 characters: a longer one is no host name, so it is not sent (OpenSSL took up to 255
    # and silently dropped longer ones, leaving an error queued), and the name check refuses it.
    longest = ".".join(["x" * 63] * 4)[:253]
    assert plain.new_connection(server_hostname=longest + ".").get_servername() == longest.encode()
    assert plain.new_connection(server_hostname=longest + "x").get_servername() is None
    with pytest.raises(InvalidOptionValue, match="longer than 253"):
        client(trusted, longest + "x")
    tmp = material["dir"]
    assert isinstance(tmp, Path)
    with s_server("-cert", tmp / "plain.pem", "-key", tmp / "plain.key", "-servername", "host.example.com",
                        "-cert2", tmp / "cnonly.pem", "-key2", tmp / "cnonly.key") as server:
        conn, error = client_handshake(named, server.port, server_hostname="10.0.0.5")
        assert error is None and conn is not None
        presented = conn.get_peer_certificate(as_cryptography=True)
        close(conn)
        # s_server answered the SNI host.example.com with its second certificate: SNI was sent, normalised
        assert presented == material["leaves"]["cnonly"].cert  # type: ignore[index]


def test_a_server_never_chooses_its_certificate_by_sni(tmp_path: Path) -> None:
    """Spec §7: a gtls server MUST NOT choose certificates by the SNI it receives. Asked for its own name, another
    name or none (openssl s_client), it sends the one certificate it has, and completes every handshake (no
    unrecognized_name)."""
    leaf = ROOT.leaf("sni.example", dns=["sni.example"])
    compiled = compile_context(direct({"certificate": str(leaf.write_cert(tmp_path / "c.pem")),
                                       "certificate-key": str(leaf.write_key(tmp_path / "k.pem")),
                                       "trusted-ca": str(ROOT.write_cert(tmp_path / "ca.pem"))}, "server"))
    asked = (["-servername", "sni.example"], ["-servername", "other.example"], ["-noservername"])
    with gtls_server(compiled, max_connections=len(asked), close_after_handshake=True) as server:
        subjects = []
        for args in asked:
            result = s_client(server.port, *args, "-CAfile", tmp_path / "ca.pem", "-verify_return_error")
            subjects += [line for line in result.stdout.splitlines() if line.startswith("subject=")]
    assert [outcome.ok for outcome in server.outcomes] == [True] * len(asked)
    assert len(subjects) == len(asked) and len(set(subjects)) == 1 and "sni.example" in subjects[0], subjects
