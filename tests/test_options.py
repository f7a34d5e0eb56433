"""Spec §1: option names, values, normalisation and warnings (gtls.options)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtls import ConfigError, InvalidOptionValue, TLSOptions, UnsupportedProtocol
from gtls.options import BOOLEAN_WORDS, FIELD_NAMES, GENESYS_NAMES, is_thumbprint

THUMBPRINT = "89 A0 C1 D4 67 01 93 5D 89 A0 C1 D4 67 01 93 5D 89 A0 C1 D4"


@pytest.mark.parametrize(("word", "meaning"), sorted(BOOLEAN_WORDS.items()))
def test_boolean_words_lowercase_without_warning(word: str, meaning: bool) -> None:
    warnings: list[str] = []
    assert TLSOptions.from_mapping({"tls-mutual": word}, warnings=warnings).tls_mutual is meaning
    assert warnings == []


@pytest.mark.parametrize(("word", "meaning"), [("TRUE", True), ("Yes", True), ("OFF", False), ("No", False)])
def test_boolean_other_case_normalises_with_warning(word: str, meaning: bool) -> None:
    warnings: list[str] = []
    assert TLSOptions.from_mapping({"tls": word}, warnings=warnings).tls is meaning
    assert len(warnings) == 1
    assert "tls" in warnings[0] and repr(word) in warnings[0]


@pytest.mark.parametrize("word", ["2", "y", "enabled", "truee", "-1", "o n"])
def test_boolean_typo_raises_and_names_option(word: str) -> None:
    with pytest.raises(InvalidOptionValue) as info:
        TLSOptions.from_mapping({"tls-mutual": word})
    assert info.value.option == "tls-mutual"
    assert "tls-mutual" in str(info.value)


def test_toml_integers_and_booleans_for_flags() -> None:
    options = TLSOptions.from_mapping({"tls": 1, "tls-mutual": False, "fips140-enabled": 0})
    assert (options.tls, options.tls_mutual, options.fips140_enabled) == (True, False, False)
    with pytest.raises(InvalidOptionValue, match="upgrade"):
        TLSOptions.from_mapping({"upgrade": 2})


@pytest.mark.parametrize(
    ("name", "given", "canonical"),
    [
        ("tls-target-name-check", "HOST", "host"),
        ("tls-target-name-check", "No", "no"),
        ("sec-protocol", "tlsv12", "TLSv12"),
        ("sec-protocol", "sslv23", "SSLv23"),
        ("tls-crl-scope", "Chain", "chain"),
        ("tls-crl-expired", "WARN", "warn"),
        ("provider", "pem", "PEM"),
    ],
)
def test_predefined_values_any_case_normalised_with_warning(name: str, given: str, canonical: str) -> None:
    warnings: list[str] = []
    options = TLSOptions.from_mapping({name: given}, warnings=warnings)
    assert getattr(options, FIELD_NAMES[name]) == canonical
    assert len(warnings) == 1 and name in warnings[0]
    again: list[str] = []
    TLSOptions.from_mapping({name: canonical}, warnings=again)
    assert again == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("tls-target-name-check", "yes"), ("tls-crl-scope", "all"), ("tls-crl-expired", "ignore"), ("provider", "PKCS12")],
)
def test_predefined_value_outside_set(name: str, value: str) -> None:
    with pytest.raises(InvalidOptionValue) as info:
        TLSOptions.from_mapping({name: value})
    assert info.value.option == name


def test_empty_value_is_absent() -> None:
    options = TLSOptions.from_mapping({name: "" for name in FIELD_NAMES})
    assert options == TLSOptions()
    assert TLSOptions.from_mapping({"certificate": "   ", "tls": " "}).present() == {}


def test_values_are_trimmed_and_lists_kept_as_written() -> None:
    options = TLSOptions.from_mapping({"certificate": "  /a/leaf.pem, /a/inter.pem ", "cipher-list": " HIGH:!aNULL "})
    assert options.certificate == "/a/leaf.pem, /a/inter.pem"
    assert options.cipher_list == "HIGH:!aNULL"


@pytest.mark.parametrize("value", ["SSLv3", "TLSv1", "TLSv11", "TLSv1.2", "tls13", "any"])
def test_sec_protocol_outside_set_lists_valid_values(value: str) -> None:
    with pytest.raises(UnsupportedProtocol) as info:
        TLSOptions.from_mapping({"sec-protocol": value})
    message = str(info.value)
    assert info.value.option == "sec-protocol"
    assert isinstance(info.value, InvalidOptionValue)  # the README's rule: invalid values are InvalidOptionValue
    for valid in ("SSLv23", "TLSv12", "TLSv13", "empty"):
        assert valid in message


def test_names_are_case_sensitive() -> None:
    warnings: list[str] = []
    options = TLSOptions.from_mapping({"Certificate": "/a.pem", "TLS-Mutual": "1"}, warnings=warnings)
    assert options.certificate is None and options.tls_mutual is None
    assert len(warnings) == 2
    assert all("case-sensitive" in w for w in warnings)
    assert "'certificate'" in warnings[0] and "'tls-mutual'" in warnings[1]


def test_unknown_names_warn_with_hint() -> None:
    warnings: list[str] = []
    options = TLSOptions.from_mapping({"tls_mutual": "1", "client-auth": "1"}, warnings=warnings)
    assert options == TLSOptions()
    assert len(warnings) == 2
    assert "unknown option" in warnings[0] and "tls-mutual" in warnings[0]
    assert "client-auth" in warnings[1]
    warnings.clear()  # in a [security] table too, a typo is named with the option meant
    TLSOptions.from_mapping({"tls-mutal": "1", "certificate-keys": "/k.pem", "cipher": "x"}, warnings=warnings)
    assert [w.rsplit("; ", 1)[-1] for w in warnings] == [
        "did you mean 'tls-mutual'?", "did you mean 'certificate-key'?", "cipher: unknown option, ignored"]


def test_unsupported_options_are_recognised_and_kept() -> None:
    # §1.4: a valid non-default value parses (resolution decides); an invalid one raises at once.
    options = TLSOptions.from_mapping({"provider": "MSCAPI", "fips140-enabled": "1", "upgrade": "1"})
    assert (options.provider, options.fips140_enabled, options.upgrade) == ("MSCAPI", True, True)
    for name, bad in (("provider", "CAPI"), ("fips140-enabled", "maybe"), ("upgrade", "x")):
        with pytest.raises(InvalidOptionValue) as info:
            TLSOptions.from_mapping({name: bad})
        assert info.value.option == name


@pytest.mark.parametrize(
    "name", ["host name.example", "*.example.com", "a*.example", "10.0.0.5", "::1", "[2001:db8::1]", "a\tb", "a\x00b",
             "127.0.0.1.", "127.1."]  # with the trailing dot an address too: it was accepted and then sent no SNI
)
def test_bad_target_names(name: str) -> None:
    with pytest.raises(InvalidOptionValue) as info:
        TLSOptions.from_mapping({"tls-target-name": name})
    assert info.value.option == "tls-target-name"


@pytest.mark.parametrize("name", ["stats.example.test", "localhost", "bücher.example", "host.example.com."])
def test_good_target_names(name: str) -> None:
    assert TLSOptions.from_mapping({"tls-target-name": name}).tls_target_name == name


def test_thumbprint_detection() -> None:
    assert is_thumbprint(THUMBPRINT)
    assert is_thumbprint(THUMBPRINT.replace(" ", "").lower())
    assert is_thumbprint("\u200e" + THUMBPRINT + "\u200f")
    assert not is_thumbprint(THUMBPRINT[:-3])  # 38 digits
    assert not is_thumbprint(THUMBPRINT.replace(" ", "") + "00")  # 42 digits
    assert not is_thumbprint("/etc/" + THUMBPRINT.replace(" ", ""))
    assert not is_thumbprint(THUMBPRINT.replace(" ", "") + ".pem")
    assert not is_thumbprint("G" * 40)


def test_thumbprint_in_trusted_ca_is_invalid() -> None:
    with pytest.raises(InvalidOptionValue) as info:
        TLSOptions.from_mapping({"trusted-ca": THUMBPRINT})
    assert info.value.option == "trusted-ca"


def test_keyword_construction_validates_and_normalises() -> None:
    assert TLSOptions(tls="1", tls_target_name_check="Host", sec_protocol="tlsv13") == TLSOptions(  # type: ignore[arg-type]
        tls=True, tls_target_name_check="host", sec_protocol="TLSv13"
    )
    assert TLSOptions(certificate="", tls_mutual=" ") == TLSOptions()  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionValue, match="tls-mutual"):
        TLSOptions(tls_mutual="perhaps")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedProtocol):
        TLSOptions(sec_protocol="TLSv1")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionValue, match="certificate"):
        TLSOptions(certificate=5)  # type: ignore[arg-type]


def test_warnings_without_list_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gtls.config"):
        for _ in range(3):
            TLSOptions.from_mapping({"Trusted-CA": "/once-only-test.pem"})
    records = [r for r in caplog.records if "Trusted-CA" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name == "gtls.config"


def test_present_and_names_round_trip() -> None:
    options = TLSOptions.from_mapping({"tls-crl": "/c.pem", "fips140-enabled": "0"})
    assert options.present() == {"tls-crl": "/c.pem", "fips140-enabled": False}
    assert options.effective_crl == "/c.pem"
    assert TLSOptions(crl="/alias.pem").effective_crl == "/alias.pem"
    assert all(FIELD_NAMES[GENESYS_NAMES[f]] == f for f in GENESYS_NAMES)


_names = st.one_of(st.sampled_from(sorted(FIELD_NAMES)), st.text(max_size=20))
_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1", "0", "TRUE", "host", "Host", "tlsv13", "SSLv3", THUMBPRINT, "*.x", "10.0.0.1"]),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_names, _values, max_size=6))
def test_arbitrary_values_never_crash(mapping: dict[str, object]) -> None:
    warnings: list[str] = []
    try:
        options = TLSOptions.from_mapping(mapping, warnings=warnings)
    except ConfigError as exc:
        assert exc.option is not None
        assert exc.option in str(exc)
        assert exc.option in mapping
        return
    # Whatever parsed is normalised: constructing again changes nothing and warns nothing new.
    assert TLSOptions(**{f: getattr(options, f) for f in GENESYS_NAMES}) == options
