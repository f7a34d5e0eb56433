"""Spec §2: transport-parameter strings and the Port/Connection key table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtls import ConfigError, IncompleteTlsLevel, UnsupportedFeature, parse_transport, resolve_client, resolve_server

HOST = {"certificate": "/h/cert.pem", "certificate-key": "/h/key.pem", "trusted-ca": "/h/ca.pem"}


def parse(text: str) -> tuple[dict[str, str], list[str]]:
    warnings: list[str] = []
    return parse_transport(text, warnings=warnings), warnings


def test_basic_split() -> None:
    assert parse("tls=1;tls-mutual=1") == ({"tls": "1", "tls-mutual": "1"}, [])


def test_empty_string_and_empty_pieces() -> None:
    assert parse("") == ({}, [])
    assert parse(";;tls=1;;") == ({"tls": "1"}, [])


def test_first_equals_splits_value_keeps_later_equals_and_commas() -> None:
    params, warnings = parse("certificate=/p/leaf.pem,/p/inter.pem;cipher-list=a=b=c")
    assert params == {"certificate": "/p/leaf.pem,/p/inter.pem", "cipher-list": "a=b=c"}
    assert warnings == []


def test_inner_spaces_are_legal() -> None:
    params, warnings = parse("certificate=89 A0 C1 D4")
    assert params == {"certificate": "89 A0 C1 D4"}
    assert warnings == []


def test_piece_without_equals_ignored_with_warning() -> None:
    params, warnings = parse("tls=1;secure;port=9000")
    assert params == {"tls": "1", "port": "9000"}
    assert len(warnings) == 1 and "'secure'" in warnings[0] and "ignored" in warnings[0]


def test_spaces_around_separators_trimmed_with_warning() -> None:
    params, warnings = parse(" tls = 1 ; tls-mutual=1")
    assert params == {"tls": "1", "tls-mutual": "1"}
    assert warnings and all("spaces" in w for w in warnings)


def test_repeated_key_first_wins_with_warning() -> None:
    params, warnings = parse("tls=1;tls=0")
    assert params == {"tls": "1"}
    assert len(warnings) == 1 and "repeated" in warnings[0] and "'1'" in warnings[0]


def test_keys_are_case_sensitive() -> None:
    params, _ = parse("TLS=1;tls=0")
    assert params == {"TLS": "1", "tls": "0"}


def test_empty_value_kept_as_empty() -> None:
    assert parse("tls=;port=1") == ({"tls": "", "port": "1"}, [])


def test_piece_without_name_ignored() -> None:
    params, warnings = parse("=1;tls=1")
    assert params == {"tls": "1"}
    assert len(warnings) == 1


def test_wrongly_cased_option_in_transport_is_dropped_with_diagnostic() -> None:
    warnings: list[str] = []
    resolved = resolve_server(port="TLS=1", host=HOST, warnings=warnings)
    assert not resolved.secure
    assert any("case-sensitive" in w and "'tls'" in w for w in warnings)


# --- the key table: what each key does on a Port and on a Connection ---


def test_port_passes_through_other_keys_silently() -> None:
    warnings: list[str] = []
    resolved = resolve_server(port="tls=1;port=9000;backup-port=9001;address=x", host=HOST, warnings=warnings)
    assert resolved.secure
    assert warnings == []


def test_client_only_options_on_a_port_ignored_with_warning() -> None:
    warnings: list[str] = []
    resolved = resolve_server(
        port="tls=1;tls-target-name-check=host;tls-target-name=a.example", host=HOST, warnings=warnings
    )
    # Ignored: they neither select the Port level nor appear in the result.
    assert resolved.level is not None and resolved.level.value == "H"
    assert resolved.options.tls_target_name is None
    assert any("client-only" in w and "tls-target-name" in w for w in warnings)


def test_tls_mutual_on_a_connection_ignored_with_warning() -> None:
    warnings: list[str] = []
    resolved = resolve_client(connection="tls=1;tls-mutual=1", host={"trusted-ca": "/ca.pem"}, warnings=warnings)
    assert resolved.secure and resolved.options.tls_mutual is False
    assert any("tls-mutual" in w and "ignored" in w for w in warnings)


def test_upgrade_on_a_connection_ignored_upgrade_on_a_port_unsupported() -> None:
    warnings: list[str] = []
    resolve_client(connection="tls=1;upgrade=1", host={"trusted-ca": "/ca.pem"}, warnings=warnings)
    assert any("upgrade" in w and "ignored" in w for w in warnings)
    with pytest.raises(UnsupportedFeature) as info:
        resolve_server(port="tls=1;upgrade=1", host=HOST, object_path="applications.a.ports.p")
    assert info.value.option == "upgrade" and info.value.level == "Port"
    assert "applications.a.ports.p" in str(info.value)
    # At its default it is ignored, and reported with the level that set it (spec §1.1: provenance).
    resolved = resolve_server(port="tls=1;upgrade=0", host=HOST)
    assert resolved.secure and resolved.sources["upgrade"] == "P"
    assert resolve_server(port="tls=1", host=HOST).sources["upgrade"] == "default"


def test_a_near_miss_of_an_option_name_warns_other_unknown_keys_pass() -> None:
    """Unknown transport keys pass through silently (spec §2), but tls_mutual=1 is a typo of a security flag: read
    as nothing, it would leave clients unverified without a word (spec §1.1: a typo never reads as "off")."""
    warnings: list[str] = []
    resolved = resolve_server(port="tls=1;tls_mutual=1;port=9000;backup-port=9001", host=HOST, warnings=warnings)
    assert resolved.options.tls_mutual is False
    assert warnings == ["Port: tls_mutual: unknown option, ignored; did you mean 'tls-mutual'?"]


@pytest.mark.parametrize(("typed", "meant"), [
    ("tls-mutal=1", "tls-mutual"), ("tls-mutul=1", "tls-mutual"), ("tsl=1", "tls"), ("tlss=1", "tls"),
    ("tls-target-name-chek=host", "tls-target-name-check"), ("trustedca=/ca.pem", "trusted-ca"),
    ("tls-ca=/ca.pem", "trusted-ca"), ("tls-cert=/c.pem", "certificate"),  # other stacks' names, not tls-crl
])
def test_a_typo_of_an_option_name_warns_with_the_name_meant(typed: str, meant: str) -> None:
    """One letter dropped, added, changed or swapped read as an unknown transport key, silently: tls-mutal=1 left
    clients unverified and tsl=1 left the port in plaintext, with gtls check saying ok (audit 41)."""
    warnings: list[str] = []
    resolve_server(port=f"tls=1;{typed};port=9000;ip-version=4,6", host=HOST, warnings=warnings)
    name = typed.split("=")[0]
    assert warnings == [f"Port: {name}: unknown option, ignored; did you mean {meant!r}?"]


def test_a_short_transport_key_one_letter_from_an_option_name_is_not_a_typo() -> None:
    """``url`` and ``ttl`` are words of their own, not ``crl`` and ``tls`` mistyped; ``degrade`` is not ``upgrade``
    (two edits count only in names over 9 letters); Genesys's own transport keys stay silent."""
    warnings: list[str] = []
    resolve_server(port="tls=1;url=x;ttl=5;port=1;backup-port=2;degrade=1;ip-version=4,6;addp-timeout=10;"
                        "addp-remote-timeout=10;enable-ipv6=1;address=h", host=HOST, warnings=warnings)
    assert warnings == []


def test_tls_on_port_makes_it_secure_and_connection_reads_target() -> None:
    assert resolve_server(port="tls=1", host=HOST).secure
    assert not resolve_server(port="tls=0", host=HOST).secure
    assert resolve_client(target="tls=1;tls-mutual=1", host={"trusted-ca": "/ca.pem"}).secure
    assert resolve_client(connection="tls=1", target="", host={"trusted-ca": "/ca.pem"}).secure
    # tls=0 on the Connection cannot downgrade the target port.
    assert resolve_client(connection="tls=0", target="tls=1", host={"trusted-ca": "/ca.pem"}).secure


def test_connection_level_parameter_set() -> None:
    resolved = resolve_client(
        connection="tls=1;trusted-ca=/c/ca.pem;tls-target-name-check=host;tls-target-name=stats.example",
        host={"trusted-ca": "/h/ca.pem"},
    )
    assert resolved.level is not None and resolved.level.value == "C"
    assert resolved.options.trusted_ca == "/c/ca.pem"
    assert resolved.options.tls_target_name == "stats.example"
    assert resolved.sources["tls-target-name-check"] == "C"


_pieces = st.lists(
    st.one_of(
        st.text(alphabet=st.sampled_from("tls=-; ,1a*/\t "), max_size=12),
        st.sampled_from(
            [
                "tls=1",
                "tls=0",
                "tls-mutual=1",
                "certificate=",
                "sec-protocol=TLSv1",
                "TLS=1",
                "tls-target-name=*.x",
                "upgrade=1",
                "crl=/a",
                "tls-crl=/b",
                "provider=JKS",
            ]
        ),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(_pieces)
def test_arbitrary_transport_strings_never_crash(pieces: list[str]) -> None:
    text = ";".join(pieces)
    params = parse_transport(text, warnings=[])
    assert all(key and key == key.strip() and "=" not in key and ";" not in key for key in params)
    assert all(";" not in value and value == value.strip() for value in params.values())
    for role in ("server", "client"):
        try:
            if role == "server":
                resolve_server(port=text, host=HOST, warnings=[])
            else:
                resolve_client(connection=text, target="tls=1", host={"trusted-ca": "/ca.pem"}, warnings=[])
        except IncompleteTlsLevel as exc:
            assert exc.missing and all(name in str(exc) for name in exc.missing)
        except ConfigError as exc:
            assert exc.option is not None and exc.option in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_without_error(text: str) -> None:
    params = parse_transport(text, warnings=[])
    for key, value in params.items():
        assert f"{key}=" in text.replace(" ", "").replace("\t", "") or key in text
        assert value in text
