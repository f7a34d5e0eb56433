"""Spec §3: level-atomic resolution, the worked examples E1–E8 and the diagnostics around them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gtls import (
    ConflictingOptions,
    IncompleteTlsLevel,
    InvalidOptionValue,
    Level,
    Resolved,
    TLSOptions,
    UnsupportedFeature,
    direct,
    resolve_client,
    resolve_server,
)

CA = "/etc/sec/ca/certauth.pem"
E1_HOST = {
    "trusted-ca": CA,
    "certificate": "/etc/sec/certs/hostcert.pem",
    "certificate-key": "/etc/sec/certs/privkey.pem",
}
THUMBPRINT = "89 A0 C1 D4 67 01 93 5D 89 A0 C1 D4 67 01 93 5D 89 A0 C1 D4"


def shadowed(resolved: Resolved) -> set[tuple[str, str]]:
    return {(item.level.value, item.option) for item in resolved.shadowed}


# --- worked examples (spec §3.3) ---


def test_e1_simple_tls_server() -> None:
    resolved = resolve_server(port="tls=1", certificate_source="Host", host=E1_HOST)
    assert resolved.secure and resolved.role == "server"
    assert resolved.level is Level.HOST
    options = resolved.options
    assert options.certificate == "/etc/sec/certs/hostcert.pem"
    assert options.certificate_key == "/etc/sec/certs/privkey.pem"
    assert options.trusted_ca == CA
    assert options.tls_mutual is False  # no client certificate requested
    assert options.sec_protocol is None and options.cipher_list is None and options.tls_crl is None
    assert resolved.sources["tls"] == "P"
    assert resolved.sources["certificate"] == resolved.sources["trusted-ca"] == "H"
    assert resolved.sources["tls-mutual"] == resolved.sources["sec-protocol"] == "default"
    assert resolved.warnings == () and resolved.shadowed == ()


def test_e1_simple_tls_client() -> None:
    resolved = resolve_client(connection="", target="tls=1", certificate_source="Host", host={"trusted-ca": CA})
    assert resolved.secure and resolved.role == "client"
    assert resolved.level is Level.HOST
    assert resolved.sources["tls"] == "T"
    assert resolved.options.trusted_ca == CA
    assert resolved.options.certificate is None
    assert resolved.options.tls_target_name_check == "no"  # no name check


def test_e2_mutual_tls_server() -> None:
    host = {
        "certificate": "/etc/sec/certs/servhostcert.pem",
        "certificate-key": "/etc/sec/certs/servprivkey.pem",
        "trusted-ca": CA,
        "tls-mutual": "1",
    }
    resolved = resolve_server(port="tls=1;tls-mutual=1", host=host)
    assert resolved.level is Level.HOST
    assert resolved.options.tls_mutual is True
    assert resolved.sources["tls-mutual"] == "P"  # looked up alone, P first
    assert resolved.options.tls_crl is None  # no revocation check


def test_e2_mutual_tls_client() -> None:
    host = {
        "certificate": "/etc/sec/certs/clthostcert.pem",
        "certificate-key": "/etc/sec/certs/cltprivkey.pem",
        "trusted-ca": CA,
        "tls-crl": "/etc/sec/crl/crllist.pem",
    }
    resolved = resolve_client(target="tls=1;tls-mutual=1", host=host)
    assert resolved.level is Level.HOST
    assert resolved.options.certificate == "/etc/sec/certs/clthostcert.pem"
    assert resolved.options.tls_crl == "/etc/sec/crl/crllist.pem"
    assert resolved.options.tls_crl_scope == "leaf" and resolved.options.tls_crl_expired == "reject"
    assert resolved.sources["tls-crl"] == "H" and resolved.sources["tls-crl-scope"] == "default"


def test_e3_split_levels() -> None:
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(
            port="tls=1", application={"sec-protocol": "TLSv13"}, host=E1_HOST, object_path="applications.s.ports.p"
        )
    error = info.value
    assert error.level == "Application"
    assert error.missing == ("certificate", "certificate-key", "trusted-ca")
    message = str(error)
    assert "applications.s.ports.p" in message and "Application" in message
    assert "certificate, certificate-key, trusted-ca" in message
    assert "cannot be split across levels" in message
    assert "Shadowed" in message and "at Host" in message


def test_the_fix_of_an_incomplete_level_fits_where_the_rest_is() -> None:
    """Audit 64: the fix offered "move X to the level that holds the rest" also when no level in use held the
    missing options (settings given directly, a trusted-ca forgotten, or only on an Application that Certificate
    Source = Host skips), and put "(skipped: Certificate Source is Host)" after the Host's shadowed options, as if
    that were why they went unused."""
    with pytest.raises(IncompleteTlsLevel) as info:
        direct({"certificate": "/c.pem", "certificate-key": "/k.pem"}, "server")
    assert str(info.value).endswith("Fix: add trusted-ca at the Port level.")
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1", certificate_source="Host", application={"trusted-ca": CA},
                       host={"certificate": "/c.pem", "certificate-key": "/k.pem"})
    message = str(info.value)
    assert "Shadowed settings, not used: trusted-ca at Application (skipped: Certificate Source is Host)." in message
    assert message.endswith("Fix: add trusted-ca at the Host level.")
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1;tls-crl=/crl.pem", certificate_source="Host", host=E1_HOST)
    message = str(info.value)
    assert "Shadowed settings, not used: certificate, certificate-key, trusted-ca at Host. Fix: put all" in message
    assert "skipped" not in message and "move tls-crl to the level that holds the rest" in message


def test_e4_port_override() -> None:
    port = "tls=1;certificate=/p/leaf.pem,/p/inter.pem;certificate-key=/p/key.pem;trusted-ca=/p/ca.pem"
    other = {"certificate": "/h/c.pem", "certificate-key": "/h/k.pem", "trusted-ca": "/h/ca.pem"}
    resolved = resolve_server(port=port, host=other)
    assert resolved.level is Level.PORT
    assert resolved.options.certificate == "/p/leaf.pem,/p/inter.pem"
    assert resolved.options.trusted_ca == "/p/ca.pem"
    assert resolved.sources["certificate"] == "P"
    assert shadowed(resolved) == {("H", "certificate"), ("H", "certificate-key"), ("H", "trusted-ca")}
    assert {item.value for item in resolved.shadowed} == {"/h/c.pem", "/h/k.pem", "/h/ca.pem"}


def test_e5_split_certificate_and_key() -> None:
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1;certificate=/p/leaf.pem", host={"certificate-key": "/h/k.pem", "trusted-ca": CA})
    assert info.value.level == "Port"
    assert info.value.missing == ("certificate-key", "trusted-ca")
    assert "certificate-key at Host" in str(info.value) or "certificate-key, trusted-ca at Host" in str(info.value)


def test_e6_client_option_at_the_wrong_level() -> None:
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_client(connection="tls-target-name-check=host", target="tls=1", host={"trusted-ca": CA})
    assert info.value.level == "Connection"
    assert info.value.missing == ("trusted-ca",)
    assert "trusted-ca at Host" in str(info.value)
    assert "tls-target-name-check" in str(info.value)


def test_e7_alias() -> None:
    warnings: list[str] = []
    resolved = resolve_server(port="tls=1", host={**E1_HOST, "crl": "/c/list.pem"}, warnings=warnings)
    assert resolved.options.tls_crl == "/c/list.pem" and resolved.options.crl is None
    assert resolved.sources["tls-crl"] == "H"
    with pytest.raises(ConflictingOptions) as info:
        resolve_server(port="tls=1", host={**E1_HOST, "crl": "/c/a.pem", "tls-crl": "/c/b.pem"})
    assert info.value.level == "Host" and info.value.option == "tls-crl"
    assert "/c/a.pem" in str(info.value) and "/c/b.pem" in str(info.value)
    same: list[str] = []
    resolved = resolve_server(port="tls=1", host={**E1_HOST, "crl": "/c/a.pem", "tls-crl": "/c/a.pem"}, warnings=same)
    assert resolved.options.tls_crl == "/c/a.pem"
    assert any("alias" in w for w in same)


def test_e8_windows_server_thumbprint() -> None:
    with pytest.raises(UnsupportedFeature) as info:
        resolve_server(port="tls=1", certificate_source="Host", host={"certificate": THUMBPRINT}, profile="windows")
    assert info.value.option == "certificate" and info.value.level == "Host"
    assert "certificate-store" in str(info.value)
    resolved = resolve_server(
        port="tls=1",
        certificate_source="Host",
        host={"certificate": THUMBPRINT, "certificate-store": "/store"},
        profile="windows",
    )
    assert resolved.level is Level.HOST and resolved.options.trusted_ca is None
    assert resolved.options.certificate_key is None and resolved.profile == "windows"


def test_e8_windows_client_nothing_configured() -> None:
    resolved = resolve_client(target="tls=1", profile="windows")
    assert resolved.secure and resolved.level is None
    assert resolved.options.trusted_ca is None and resolved.options.tls_target_name_check == "no"
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_client(target="tls=1", profile="unix")
    assert info.value.level is None and info.value.missing == ("trusted-ca",)
    assert "no level has TLS settings" in str(info.value)


# --- the algorithm step by step ---


def test_certificate_source_host_skips_application_and_reports_it_shadowed() -> None:
    application = {"certificate": "/a/c.pem", "certificate-key": "/a/k.pem", "trusted-ca": "/a/ca.pem"}
    resolved = resolve_server(port="tls=1", application=application, host=E1_HOST, certificate_source="host")
    assert resolved.level is Level.HOST
    assert shadowed(resolved) == {("A", "certificate"), ("A", "certificate-key"), ("A", "trusted-ca")}
    resolved = resolve_server(port="tls=1", application=application, host=E1_HOST, certificate_source="Application")
    assert resolved.level is Level.APPLICATION
    assert shadowed(resolved) == {("H", "certificate"), ("H", "certificate-key"), ("H", "trusted-ca")}


def test_skipped_application_is_pointed_to_when_nothing_else_exists() -> None:
    application = {"certificate": "/a/c.pem", "certificate-key": "/a/k.pem", "trusted-ca": "/a/ca.pem"}
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1", application=application, certificate_source="Host")
    assert info.value.level is None
    assert "Certificate Source is Host" in str(info.value)


def test_options_tab_wins_over_annex_per_key() -> None:
    resolved = resolve_server(
        port="tls=1",
        application={"certificate": "/a/c.pem", "certificate-key": "/a/k.pem"},
        annex={"certificate": "/annex/c.pem", "trusted-ca": "/annex/ca.pem"},
    )
    assert resolved.level is Level.APPLICATION
    assert resolved.options.certificate == "/a/c.pem"
    assert resolved.options.trusted_ca == "/annex/ca.pem"


def test_parameter_set_never_inherits_from_less_specific_level() -> None:
    resolved = resolve_server(
        port="tls=1",
        application={**E1_HOST, "sec-protocol": "TLSv12"},
        host={"cipher-list": "HIGH", "tls-crl": "/h/crl.pem"},
    )
    assert resolved.level is Level.APPLICATION
    assert resolved.options.cipher_list is None and resolved.options.tls_crl is None
    assert resolved.options.sec_protocol == "TLSv12"
    assert ("H", "cipher-list") in shadowed(resolved) and ("H", "tls-crl") in shadowed(resolved)


def test_mode_flags_never_select_a_level() -> None:
    resolved = resolve_server(port="tls=1;tls-mutual=1", application={"tls-mutual": "0"}, host=E1_HOST)
    assert resolved.level is Level.HOST
    assert resolved.options.tls_mutual is True and resolved.sources["tls-mutual"] == "P"


@pytest.mark.parametrize(
    ("application", "host", "source", "expected", "where"),
    [
        ({}, {**E1_HOST, "tls-mutual": "1"}, "application", True, "H"),
        ({"tls-mutual": "yes"}, {**E1_HOST, "tls-mutual": "0"}, "application", True, "A"),
        ({"tls-mutual": "1"}, E1_HOST, "host", True, "A"),  # whatever the Certificate Source
        ({"tls-mutual": "1"}, {**E1_HOST, "tls-mutual": "1"}, "application", True, "A"),
        ({}, E1_HOST, "application", False, "default"),
    ],
)
def test_tls_mutual_lookup(
    application: dict[str, str], host: dict[str, str], source: str, expected: bool, where: str
) -> None:
    resolved = resolve_server(port="tls=1", application=application, host=host, certificate_source=source)
    assert resolved.options.tls_mutual is expected
    assert resolved.sources["tls-mutual"] == where


def test_tls_at_application_or_host_is_ignored_with_warning() -> None:
    warnings: list[str] = []
    resolved = resolve_server(port="", host={**E1_HOST, "tls": "1"}, warnings=warnings)
    assert not resolved.secure
    assert any("Host" in w and "tls: ignored" in w and "plaintext" in w for w in warnings)
    warnings = []
    assert not resolve_client(target="tls=0", application={"tls": "yes"}, warnings=warnings).secure
    assert any("Application" in w and "tls: ignored" in w for w in warnings)
    warnings = []
    resolved = resolve_server(port="tls=1", application={"tls": "1"}, host=E1_HOST, warnings=warnings)
    assert resolved.secure
    assert any("Application" in w and "tls: ignored" in w for w in warnings)


def test_plaintext_port_resolves_without_raising_and_warns_about_tls_settings() -> None:
    warnings: list[str] = []
    resolved = resolve_server(port="certificate=/p/c.pem", host={"tls-mutual": "bogus"}, warnings=warnings)
    assert resolved.secure is False and resolved.level is None
    assert resolved.options.tls is False
    assert any("plaintext" in w and "certificate" in w for w in warnings)
    assert not resolve_client(connection="", target="").secure


def test_a_bad_value_does_not_hide_the_levels_other_warnings() -> None:
    """Spec §1.1, §1.2, §1.4 warn about a wrongly cased name, ``tls`` at A/H and ``upgrade`` off the Port. A level
    was read option by option and stopped at the first bad value, so on a plaintext endpoint (where that value is
    only a warning) the warnings of the options after it were lost, and a secure endpoint's error came without
    them (audit 83: model of spec §3 against gtls check)."""
    host = {"sec-protocol": "TLSv1", "Certificate": "/x.pem", "tls": "1", "upgrade": "0"}
    warnings: list[str] = []
    assert not resolve_server(port="tls=0", host=host, warnings=warnings).secure
    assert [w.split(":")[:2] for w in warnings] == [
        ["Host", " Certificate"], ["Host", " sec-protocol"], ["Host", " tls"], ["Host", " upgrade"]]
    assert "(not applied: the endpoint is plaintext)" in warnings[1]
    warnings.clear()
    with pytest.raises(InvalidOptionValue):
        resolve_server(port="tls=1", host=host, warnings=warnings)
    assert "Host: Certificate: not applied: option names are case-sensitive; did you mean 'certificate'?" in warnings


def test_tls_mutual_on_a_plaintext_port_warns() -> None:
    """A Port's tls-mutual=1 without tls=1 (tls=1 forgotten) gave a plaintext port and not a word (audit 71); the
    Host's tls-mutual=1, which serves many ports, says nothing on a plaintext one."""
    warnings: list[str] = []
    assert not resolve_server(port="tls-mutual=1", host=E1_HOST, warnings=warnings).secure
    assert warnings == ["Port: tls-mutual: no effect on a plaintext port (no tls=1): clients are neither encrypted "
                        "nor asked for a certificate"]
    warnings.clear()
    assert not resolve_server(port="", host={**E1_HOST, "tls-mutual": "1"}, warnings=warnings).secure
    assert not any("tls-mutual" in w for w in warnings)


def test_client_certificate_and_key_go_together() -> None:
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_client(target="tls=1", host={"certificate": "/c.pem", "trusted-ca": CA})
    assert info.value.missing == ("certificate-key",) and info.value.level == "Host"
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_client(target="tls=1", host={"certificate-key": "/k.pem", "trusted-ca": CA})
    assert info.value.missing == ("certificate",)


def test_thumbprint_certificate_needs_no_key() -> None:
    resolved = resolve_server(
        port="tls=1", host={"certificate": THUMBPRINT, "certificate-store": "/s", "trusted-ca": CA}
    )
    assert resolved.options.certificate == THUMBPRINT and resolved.options.certificate_key is None


def test_windows_server_requires_only_certificate_and_ignores_crl() -> None:
    warnings: list[str] = []
    resolved = resolve_server(
        port="tls=1",
        host={"certificate": "/c.pem", "certificate-key": "/k.pem", "tls-crl": "/crl.pem"},
        profile="windows",
        warnings=warnings,
    )
    assert resolved.options.trusted_ca is None and resolved.options.tls_crl is None
    assert any("tls-crl" in w and "windows" in w for w in warnings)
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1", host={"sec-protocol": "TLSv13"}, profile="windows")
    assert info.value.missing == ("certificate",)
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1", profile="windows")
    assert info.value.level is None and info.value.missing == ("certificate",)


def test_windows_crl_options_beside_an_ignored_tls_crl_do_not_say_it_is_missing() -> None:
    """Under profile windows tls-crl is ignored (spec §5, §1.6), so tls-crl-scope and tls-crl-expired beside it have
    no effect either (§1.3); the warning said "without tls-crl at this level", where tls-crl is, sending the user
    looking for a typo in a name that is right."""
    warnings: list[str] = []
    resolved = resolve_client(target="tls=1", host={"trusted-ca": CA, "tls-crl": "/c.pem", "tls-crl-scope": "chain",
                                                     "tls-crl-expired": "warn"}, profile="windows", warnings=warnings)
    assert resolved.options.tls_crl is None
    assert warnings == [
        "Host: tls-crl: ignored under profile windows (gtls fetches no CRL distribution points)",
        "Host: tls-crl-scope: no effect while tls-crl is ignored (profile windows)",
        "Host: tls-crl-expired: no effect while tls-crl is ignored (profile windows)",
    ]


def test_unix_server_with_no_settings_anywhere() -> None:
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1")
    assert info.value.level is None
    assert info.value.missing == ("certificate", "certificate-key", "trusted-ca")


@pytest.mark.parametrize(("name", "value"), [("provider", "MSCAPI"), ("fips140-enabled", "1")])
def test_unsupported_option_at_effective_level(name: str, value: str) -> None:
    with pytest.raises(UnsupportedFeature) as info:
        resolve_server(port="tls=1", host={**E1_HOST, name: value})
    assert info.value.option == name and info.value.level == "Host"


@pytest.mark.parametrize(("name", "value"), [("provider", "JKS"), ("fips140-enabled", "true")])
def test_unsupported_option_at_shadowed_level_is_only_shadowed(name: str, value: str) -> None:
    resolved = resolve_server(port="tls=1", application=E1_HOST, host={name: value})
    assert resolved.level is Level.APPLICATION
    assert ("H", name) in shadowed(resolved)


def test_unsupported_option_at_default_is_ignored() -> None:
    resolved = resolve_server(port="tls=1", host={**E1_HOST, "provider": "pem", "fips140-enabled": "0"})
    assert resolved.options.provider == "PEM" and resolved.options.fips140_enabled is False


def test_upgrade_elsewhere_than_port_is_ignored_with_warning() -> None:
    warnings: list[str] = []
    resolve_server(port="tls=1", application={"upgrade": "1"}, host=E1_HOST, warnings=warnings)
    assert any("upgrade" in w and "Application" in w for w in warnings)


def test_effective_level_warnings() -> None:
    warnings: list[str] = []
    resolve_server(
        port="tls=1",
        host={**E1_HOST, "tls-crl-scope": "chain", "certificate-store": "/s", "tls-crl-expired": "warn"},
        warnings=warnings,
    )
    assert any("tls-crl-scope" in w and "without tls-crl" in w for w in warnings)
    assert any("tls-crl-expired" in w and "without tls-crl" in w for w in warnings)
    assert any("certificate-store: unused" in w for w in warnings)
    warnings = []
    resolve_server(port="tls=1", host={**E1_HOST, "tls-crl": "/crl.pem"}, warnings=warnings)
    assert any("tls-crl" in w and "tls-mutual" in w for w in warnings)
    warnings = []
    resolve_server(port="tls=1;tls-mutual=1", host={**E1_HOST, "tls-crl": "/crl.pem"}, warnings=warnings)
    assert warnings == []


def test_client_only_options_at_host_take_no_part_for_a_server() -> None:
    resolved = resolve_server(port="tls=1", host={**E1_HOST, "tls-target-name-check": "host"})
    assert resolved.options.tls_target_name_check == "no"
    assert resolved.sources["tls-target-name-check"] == "default"
    # A Host holding only client options is no candidate level for a server.
    resolved = resolve_server(port="tls=1", application=E1_HOST, host={"tls-target-name": "x.example"})
    assert resolved.level is Level.APPLICATION and resolved.shadowed == ()


def test_errors_carry_object_path_and_level() -> None:
    with pytest.raises(InvalidOptionValue) as info:
        resolve_server(port="tls=1", host={**E1_HOST, "tls-mutual": "maybe"}, object_path="applications.a.ports.b")
    assert info.value.object_path == "applications.a.ports.b" and info.value.level == "Host"
    assert info.value.option == "tls-mutual"
    assert str(info.value).startswith("applications.a.ports.b: level Host: tls-mutual:")


def test_warnings_carry_location_and_are_in_resolved() -> None:
    warnings: list[str] = []
    resolved = resolve_server(
        port="tls=1;tls=0", host={**E1_HOST, "Tls-Mutual": "1"}, object_path="applications.a.ports.b", warnings=warnings
    )
    assert list(resolved.warnings) == warnings
    assert any(w.startswith("applications.a.ports.b: Port: ") and "repeated" in w for w in warnings)
    assert any(w.startswith("applications.a.ports.b: Host: ") and "case-sensitive" in w for w in warnings)


# --- settings given directly ---


def test_direct_server_is_secure_at_port_level(tmp_path: Path) -> None:
    resolved = direct(TLSOptions.from_mapping(E1_HOST), "server", base_dir=tmp_path)
    assert resolved.secure and resolved.level is Level.PORT
    assert resolved.options.tls is True and resolved.base_dir == tmp_path
    assert resolved.sources["certificate"] == "P"


def test_direct_client_from_mapping() -> None:
    resolved = direct({"trusted-ca": CA, "tls-target-name-check": "Host"}, "client")
    assert resolved.secure and resolved.level is Level.CONNECTION
    assert resolved.options.tls_target_name_check == "host"
    assert resolved.base_dir == Path.cwd()
    assert any("tls-target-name-check" in w for w in resolved.warnings)


def test_direct_runs_the_same_checks() -> None:
    with pytest.raises(IncompleteTlsLevel) as info:
        direct({"certificate": "/c.pem"}, "server")
    assert info.value.level == "Port" and info.value.missing == ("certificate-key", "trusted-ca")
    with pytest.raises(IncompleteTlsLevel):
        direct(TLSOptions(), "client")
    assert direct(TLSOptions(), "client", profile="windows").secure
    with pytest.raises(ConflictingOptions):
        direct({**E1_HOST, "crl": "/a", "tls-crl": "/b"}, "server")
    with pytest.raises(InvalidOptionValue) as bad:
        direct({"tls-mutual": "sometimes"}, "server")
    assert bad.value.option == "tls-mutual" and bad.value.level == "Port"


UNUSED_NOTE = "TLS settings are not used by this endpoint, which "
MORE_SPECIFIC = UNUSED_NOTE + "takes them from a more specific level"
FROM_HOST = UNUSED_NOTE + "takes them from the Host (certificate-source = Host)"


@pytest.mark.parametrize(("levels", "at", "note"), [
    ({"port": "tls=1", "application": E1_HOST, "host": {"sec-protocol": "TLSv1"}}, "Host", MORE_SPECIFIC),
    ({"port": {**E1_HOST, "tls": "1"}, "application": {"sec-protocol": "TLSv1"}}, "Application", MORE_SPECIFIC),
    ({"port": "tls=1", "application": {"sec-protocol": "TLSv1"}, "host": E1_HOST,
      "certificate_source": "Host"}, "Application", FROM_HOST),  # the Host is less specific, and still the source
    ({"port": "tls=1", "host": {**E1_HOST, "sec-protocol": "TLSv1"}}, "Host", None),  # the level in use
    ({"port": "tls=1", "application": E1_HOST, "host": {"tls-mutual": "maybe"}}, "Host", None),  # a mode flag
])
def test_a_bad_value_at_an_unused_level_says_the_level_is_not_used(
    levels: dict[str, object], at: str, note: str | None
) -> None:
    """Every level is validated, used or not (a deliberate choice: a typo is reported before that level is ever
    used); the error then says the level is not used by this endpoint, and where it takes its settings from."""
    with pytest.raises(InvalidOptionValue) as info:
        resolve_server(**levels)  # type: ignore[arg-type]
    assert info.value.level == at
    if note is None:
        assert UNUSED_NOTE not in str(info.value)
    else:
        assert note in str(info.value)


def test_an_empty_value_is_named_when_no_level_has_settings() -> None:
    """Every TLS option empty: no level holds settings, and the error still says which were given empty (review)."""
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_client(target="tls=1", host={"trusted-ca": ""})
    assert info.value.level is None and "trusted-ca is set but empty, which counts as absent" in str(info.value)


def test_an_empty_value_is_named_in_an_incomplete_level_error() -> None:
    """Spec §1.1: empty counts as absent; the error said only "lacks certificate-key" for ``certificate-key = ""``,
    which reads as if the option were not written at all."""
    host = {**E1_HOST, "certificate-key": ""}
    with pytest.raises(IncompleteTlsLevel) as info:
        resolve_server(port="tls=1", host=host)
    assert info.value.missing == ("certificate-key",)
    assert "(certificate-key is set but empty, which counts as absent)" in str(info.value)
    with pytest.raises(IncompleteTlsLevel) as info:  # settings given directly: the same note
        direct({**E1_HOST, "certificate-key": " ", "trusted-ca": ""}, "server")
    assert "(certificate-key, trusted-ca are set but empty, which counts as absent)" in str(info.value)
    with pytest.raises(IncompleteTlsLevel) as info:  # absent, not empty: no note
        resolve_server(port="tls=1", host={"certificate": "/c.pem", "trusted-ca": "/ca.pem"})
    assert "empty" not in str(info.value)


@pytest.mark.parametrize("call", [
    lambda: resolve_server(port=1),
    lambda: resolve_server(port="tls=1", host=["certificate=/c.pem"]),
    lambda: resolve_client(target=5),
    lambda: direct("tls=1", "server"),
])
def test_levels_of_the_wrong_type_are_a_type_error_saying_what_is_expected(call: Callable[[], object]) -> None:
    """A wrong type gave a bare AttributeError from deep inside parsing (``'int' object has no attribute 'items'``)."""
    with pytest.raises(TypeError, match=r"must be .*mapping of option names"):
        call()


def test_tls_mutual_is_read_alone_per_level() -> None:
    """Spec §3.2 step 6: the first value found wins, so `tls-mutual=0` on the Port turns off a `1` of the
    Application and Host; the Annex tab is the Application level for it too (Options tab over Annex, per key)."""
    resolved = resolve_server(port="tls=1;tls-mutual=0", application={"tls-mutual": "1"},
                              host={**E1_HOST, "tls-mutual": "1"})
    assert resolved.options.tls_mutual is False and resolved.sources["tls-mutual"] == "P"
    resolved = resolve_server(port="tls=1", annex={"tls-mutual": "1"}, host={**E1_HOST, "tls-mutual": "0"})
    assert resolved.options.tls_mutual is True and resolved.sources["tls-mutual"] == "A"
    resolved = resolve_server(port="tls=1", application={"tls-mutual": "0"}, annex={"tls-mutual": "1"},
                              host=E1_HOST)
    assert resolved.options.tls_mutual is False and resolved.sources["tls-mutual"] == "A"


def test_the_alias_conflict_comes_before_completeness() -> None:
    """Spec §3.2 steps 7 then 8: a level with differing `crl` and `tls-crl` is a ConflictingOptions even when it
    also lacks required options."""
    with pytest.raises(ConflictingOptions):
        resolve_server(port="tls=1", host={"certificate": "/c.pem", "crl": "/a.pem", "tls-crl": "/b.pem"})
