"""TLS options (spec §1) and transport parameters (spec §2).

CONTRACT (shared by every module; owner of the parsing code: the foundation work):

* ``TLSOptions`` is frozen; every field is ``None`` when the option is absent (an empty value counts as absent).
  Field names are the Genesys names with ``-`` → ``_``; ``GENESYS_NAMES`` maps them back.
* Values are normalised: booleans are ``bool``; predefined values use the spec's spelling
  (``"no"``/``"host"``, ``"SSLv23"``/``"TLSv12"``/``"TLSv13"``, ``"leaf"``/``"chain"``, ``"reject"``/``"warn"``);
  paths and lists stay strings exactly as configured (trimmed), and are interpreted by ``gtls.pki``.
* ``crl`` is kept apart from ``tls_crl`` so resolution can apply the alias rule (spec §3.2 step 7); use
  ``effective_crl`` after resolution.

Construction validates and normalises: ``TLSOptions(tls="1", tls_target_name_check="Host")`` equals
``TLSOptions(tls=True, tls_target_name_check="host")``. ``TLSOptions.from_mapping`` takes Genesys option names (a
``[security]`` section) and reports unknown or wrongly cased names. Warnings go to the caller's ``warnings`` list
when one is given, else they are logged once through the ``gtls.config`` logger.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypedDict, Unpack

from ._files import unencodable
from ._redact import PEM_MARK, holds_key_material, redact
from .errors import InvalidOptionValue, UnsupportedProtocol

TargetNameCheck = Literal["no", "host"]
SecProtocol = Literal["SSLv23", "TLSv12", "TLSv13"]
CrlScope = Literal["leaf", "chain"]
CrlExpired = Literal["reject", "warn"]

logger: Final = logging.getLogger("gtls.config")

#: Messages already logged (bounded), so a warning repeated by every resolution is logged once.
_LOGGED: set[str] = set()
_LOGGED_LIMIT: Final = 4096


def emit_warning(warnings: list[str] | None, message: str) -> None:
    """Append ``message`` to ``warnings`` (once), or, without a list, log it once on ``gtls.config``."""
    message = redact(message)
    if warnings is not None:
        if message not in warnings:
            warnings.append(message)
        return
    if message in _LOGGED:
        return
    if len(_LOGGED) >= _LOGGED_LIMIT:
        _LOGGED.clear()
    _LOGGED.add(message)
    logger.warning("%s", message)


def log_warnings(messages: Iterable[str]) -> None:
    """Log each of ``messages`` once on ``gtls.config`` (settings compiled by a library entry point)."""
    for message in messages:
        emit_warning(None, message)


# --- value vocabularies (spec §1.2–§1.4) ---

#: Boolean words (Genesys) and their meaning; lower case is the canonical spelling.
BOOLEAN_WORDS: Final[Mapping[str, bool]] = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
#: ``sec-protocol`` values other than empty, in their canonical spelling (spec §8.1).
SEC_PROTOCOLS: Final = ("SSLv23", "TLSv12", "TLSv13")
#: Predefined-value options: field name -> allowed values in canonical spelling.
CHOICES: Final[Mapping[str, tuple[str, ...]]] = {
    "tls_target_name_check": ("no", "host"),
    "tls_crl_scope": ("leaf", "chain"),
    "tls_crl_expired": ("reject", "warn"),
    "provider": ("PEM", "MSCAPI", "PKCS11", "JKS"),
}
BOOLEAN_FIELDS: Final = frozenset({"tls", "tls_mutual", "upgrade", "fips140_enabled"})

_THUMBPRINT_NOISE = re.compile(r"[\s\u200e\u200f]+")
_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_thumbprint(value: str) -> bool:
    """Spec §4.4: no ``/``, ``\\`` or ``.``, and 40 hex digits once whitespace and U+200E/U+200F are removed."""
    if any(c in value for c in "/\\."):
        return False
    return _HEX40.fullmatch(_THUMBPRINT_NOISE.sub("", value)) is not None


def expand_home(text: str) -> str:
    """``~`` and ``~user`` in a path expanded as a shell would. A name no user has (``~0``) stays as written, a file
    name like any other (``Path.expanduser`` would raise); so does a value with a NUL, which option checks refuse by
    name."""
    try:
        return os.path.expanduser(text)
    except ValueError:
        return text


def is_ip_literal(name: str) -> bool:
    """True for an IPv4 or IPv6 literal (brackets and a zone id allowed), including the short and hex IPv4 forms
    resolvers accept (``127.1``, ``0x7f.0.0.1``): such a name reaches an address, so it is never sent as SNI."""
    candidate = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        pass
    else:
        return True
    if not candidate or not _INET_ATON_CHARS.issuperset(candidate):
        return False
    try:
        socket.inet_aton(candidate)
    except OSError:
        return False
    return True


_INET_ATON_CHARS: Final = frozenset("0123456789abcdefxABCDEFX.")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a network address (a listen or dial address, a host name), or None when it can:
    an IP literal, or a name the resolver can take (IDNA-encodable: labels of 1 to 63 characters, 253 in all).
    Without this, such a value failed deep in the resolver with a traceback; a key pasted there was echoed."""
    if holds_key_material(host):
        return "it holds what looks like key material (not shown), not an address or host name"
    if is_ip_literal(host) or (":" in host and "%" in host):  # an IPv6 literal with a zone id
        return None
    if any(char.isspace() or char == "\x00" for char in host):
        return f"{host!r} is not a host name (it contains a space or control character)"
    # Each label is judged here, in our own words: the idna codec's messages differ between Python versions.
    size = 0
    for label in (host[:-1] if host.endswith(".") else host).split("."):
        if not label:
            return f"{host!r} is not a host name (label empty: a leading dot or two dots in a row)"
        try:
            size += len(label.encode("idna")) + 1
        except UnicodeError:
            reason = "label too long" if len(label) > 63 else f"label {label!r} cannot be written in IDNA"
            return f"{host!r} is not a host name ({reason})"
    if size - 1 > 253:
        return f"{host!r} is not a host name (longer than 253 characters)"
    return None


@dataclass(frozen=True, slots=True)
class TLSOptions:
    # mode flags (never select a level)
    tls: bool | None = None
    tls_mutual: bool | None = None
    upgrade: bool | None = None
    # parameter set
    certificate: str | None = None
    certificate_key: str | None = None
    trusted_ca: str | None = None
    tls_crl: str | None = None
    crl: str | None = None
    tls_crl_scope: CrlScope | None = None
    tls_crl_expired: CrlExpired | None = None
    certificate_store: str | None = None
    sec_protocol: SecProtocol | None = None
    cipher_list: str | None = None
    provider: str | None = None
    fips140_enabled: bool | None = None
    # parameter set, client only
    tls_target_name_check: TargetNameCheck | None = None
    tls_target_name: str | None = None

    def __post_init__(self) -> None:
        # Keyword construction validates and normalises too (values may be Genesys strings such as "1" or
        # "Host"); warnings have no list to go to here, so they are logged once.
        for f in dataclasses.fields(self):
            raw = getattr(self, f.name)
            value = normalise_value(f.name, raw, None)
            if value is not raw:
                object.__setattr__(self, f.name, value)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, warnings: list[str] | None = None) -> TLSOptions:
        """Options from Genesys names (a ``[security]`` section): validated and normalised.

        Unknown names and names that match only when case is ignored are not applied and warn (spec §1.1).
        Invalid values raise a ``ConfigError`` subclass naming the option.
        """
        return parse_options(mapping, warnings=warnings)

    @property
    def effective_crl(self) -> str | None:
        """``tls-crl``, else its alias ``crl``."""
        return self.tls_crl if self.tls_crl is not None else self.crl

    def present(self) -> dict[str, object]:
        """The options that are set, by Genesys name."""
        return {
            GENESYS_NAMES[f.name]: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def replace(self, **changes: Unpack[OptionChanges]) -> TLSOptions:
        """A copy with some fields changed (validated like construction)."""
        return dataclasses.replace(self, **changes)


class OptionChanges(TypedDict, total=False):
    """The keywords of ``TLSOptions.replace``: its fields, so type checkers refuse a misspelt one
    (``replace(tls_mutal=True)``) as they do for the constructor; run time refuses it too (``TypeError``)."""

    tls: bool | None
    tls_mutual: bool | None
    upgrade: bool | None
    certificate: str | None
    certificate_key: str | None
    trusted_ca: str | None
    tls_crl: str | None
    crl: str | None
    tls_crl_scope: CrlScope | None
    tls_crl_expired: CrlExpired | None
    certificate_store: str | None
    sec_protocol: SecProtocol | None
    cipher_list: str | None
    provider: str | None
    fips140_enabled: bool | None
    tls_target_name_check: TargetNameCheck | None
    tls_target_name: str | None


#: Python field name -> Genesys option name.
GENESYS_NAMES: dict[str, str] = {f.name: f.name.replace("_", "-") for f in dataclasses.fields(TLSOptions)}
GENESYS_NAMES["fips140_enabled"] = "fips140-enabled"
#: Genesys option name -> Python field name.
FIELD_NAMES: dict[str, str] = {v: k for k, v in GENESYS_NAMES.items()}
_LOWER_NAMES: Final = {name.lower(): name for name in FIELD_NAMES}


# --- value normalisation ---


#: Marks PEM content pasted where a path or word belongs. Such a value is refused without being echoed: it may be a
#: private key, and option values appear in messages, ``gtls check`` output and logs (decided; spec §1.1 is silent).
_PEM_MARK = PEM_MARK


def _shown(value: object) -> str:
    """``value`` quoted for a message, unless it may hold key material (PEM content, or base64 that looks like it)."""
    text = repr(value)
    return "(not shown: it may hold key material)" if holds_key_material(text) else text


def _string(option: str, value: object) -> str | None:
    if not isinstance(value, str):
        shown = _shown(value)
        raise InvalidOptionValue(f"expected a string, got {type(value).__name__} {shown}", option=option)
    if _PEM_MARK in value:
        raise InvalidOptionValue(
            "the value holds PEM content ('-----BEGIN ...'), not a file path or word; put the PEM in a file and "
            "give its path (the value is not shown: it may hold a private key)",
            option=option,
        )
    text = value.strip()
    if not text:
        return None  # an empty value counts as absent (spec §1.1)
    if "\x00" in text:
        raise InvalidOptionValue("value contains a NUL character", option=option)
    if option in _PATH_OPTIONS:
        try:
            os.fsencode(text)  # the file calls raised UnicodeEncodeError (a command line's bytes do encode back)
        except UnicodeEncodeError as exc:
            raise InvalidOptionValue(f"value contains {unencodable(exc)}", option=option) from None
    elif not text.isascii() and (surrogate := _SURROGATE.search(text)):  # from a Python caller: no character
        raise InvalidOptionValue(f"value contains U+{ord(surrogate[0]):04X}, a lone surrogate", option=option)
    return text


#: The options whose values are file or folder names (a thumbprint in ``certificate`` is ASCII anyway).
_PATH_OPTIONS: Final = frozenset({
    "certificate", "certificate-key", "trusted-ca", "tls-crl", "crl", "certificate-store",
})
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _normalised_spelling(option: str, given: str, canonical: str, warnings: list[str] | None) -> None:
    if given != canonical:
        emit_warning(
            warnings, f"{option}: value {given!r} read as {canonical!r} (predefined values are written {canonical!r})"
        )


def _boolean(option: str, value: object, warnings: list[str] | None) -> bool | None:
    if isinstance(value, bool):
        return value
    given: object = value
    if isinstance(value, int):  # TOML integers for flags
        meaning = {0: False, 1: True}.get(value)
    else:
        text = given = _string(option, value)
        if text is None:
            return None
        meaning = BOOLEAN_WORDS.get(text.lower())
        if meaning is not None:
            _normalised_spelling(option, text, text.lower(), warnings)
    if meaning is None:
        # Fail closed (spec §1.1, C17): a typo never reads as "off".
        raise InvalidOptionValue(f"{given!r} is not a boolean; use 1/0, true/false, yes/no or on/off", option=option)
    return meaning


def _choice(option: str, value: object, allowed: tuple[str, ...], warnings: list[str] | None,
            refuse: Callable[[str], Exception] | None = None) -> str | None:
    """The canonical spelling of one of ``allowed`` (any case, warned); else ``refuse(text)`` is raised, by default
    an ``InvalidOptionValue``."""
    text = _string(option, value)
    if text is None:
        return None
    for canonical in allowed:
        if text.lower() == canonical.lower():
            _normalised_spelling(option, text, canonical, warnings)
            return canonical
    if refuse is not None:
        raise refuse(text)
    raise InvalidOptionValue(f"{text!r} is not one of {', '.join(allowed)}", option=option)


def _sec_protocol(value: object, warnings: list[str] | None) -> str | None:
    def refuse(text: str) -> Exception:
        return UnsupportedProtocol(
            f"{text!r} is not supported; valid values are empty (TLS 1.2-1.3), {', '.join(SEC_PROTOCOLS)}",
            option="sec-protocol",
        )

    return _choice("sec-protocol", value, SEC_PROTOCOLS, warnings, refuse)


def _target_name(value: object) -> str | None:
    option = "tls-target-name"
    text = _string(option, value)
    if text is None:
        return None
    if any(c.isspace() for c in text) or _CONTROL.search(text):
        raise InvalidOptionValue(
            f"{text!r} contains whitespace or control characters; give one host name", option=option
        )
    if "*" in text:
        raise InvalidOptionValue(
            f"{text!r} contains '*'; wildcards never match (spec §7), give a host name", option=option
        )
    if is_ip_literal(text) or (text.endswith(".") and is_ip_literal(text[:-1])):  # "127.0.0.1." is one too
        raise InvalidOptionValue(f"{text!r} is an IP address; tls-target-name must be a host name", option=option)
    return text


def _trusted_ca(value: object) -> str | None:
    text = _string("trusted-ca", value)
    if text is not None and is_thumbprint(text):
        raise InvalidOptionValue(
            f"{text!r} looks like a thumbprint; trusted-ca must be the path of one PEM file (spec §4.4, C15)",
            option="trusted-ca",
        )
    return text


def normalise_value(field_name: str, value: object, warnings: list[str] | None) -> object:
    """The validated, normalised value of one option given by field name; ``None`` when absent."""
    option = GENESYS_NAMES[field_name]
    if value is None:
        return None
    if field_name in BOOLEAN_FIELDS:
        return _boolean(option, value, warnings)
    if field_name in CHOICES:
        return _choice(option, value, CHOICES[field_name], warnings)
    special: dict[str, Callable[[object], str | None]] = {
        "sec_protocol": lambda v: _sec_protocol(v, warnings),
        "tls_target_name": _target_name,
        "trusted_ca": _trusted_ca,
    }
    if field_name in special:
        return special[field_name](value)
    return _string(option, value)


# --- names ---

NameKind = Literal["known", "miscased", "unknown"]


def classify_name(name: str) -> tuple[NameKind, str | None]:
    """``("known", name)``, ``("miscased", the real name)`` or ``("unknown", a likely intended name or None)``."""
    if name in FIELD_NAMES:
        return "known", name
    folded = name.lower()
    if folded in _LOWER_NAMES:
        return "miscased", _LOWER_NAMES[folded]
    # Compatibility forms (fullwidth letters from an input method, ligatures) read as the letters they show.
    return "unknown", _near_miss(unicodedata.normalize("NFKC", folded).lower().replace("_", "-").strip())


#: Names other TLS stacks use for an option, read as a near miss of it.
_OTHER_SPELLINGS: Final = {
    "tls-ca": "trusted-ca", "ca-file": "trusted-ca", "tls-cert": "certificate", "cert-file": "certificate",
    "tls-key": "certificate-key", "key-file": "certificate-key", "tls-ciphers": "cipher-list",
    "tls-version": "sec-protocol",
}


def _near_miss(folded: str) -> str | None:
    """The option name ``folded`` is most likely a typo of: one edit away (two for names over 9 characters), where an
    edit is a letter added, dropped, changed, or two neighbours swapped; a letter changed in a name of four or fewer
    does not count (``url`` is not ``crl``); or another stack's name for it (``tls-ca``). Transport keys such as
    ``port`` stay clear; ``tsl``, ``tls-mutal`` and ``tls-target-name-chek`` do not. Two edits in shorter names
    pulled unrelated words to the nearest one (``tls-cert`` to ``tls-crl``, ``degrade`` to ``upgrade``)."""
    if folded in _OTHER_SPELLINGS:
        return _OTHER_SPELLINGS[folded]
    best: tuple[int, str] | None = None
    for lower, real in _LOWER_NAMES.items():
        if len(lower) <= 4 and len(folded) == len(lower) and sorted(folded) != sorted(lower):
            continue  # a changed letter in a short name makes another word, not a typo
        allowed = 2 if len(lower) > 9 else 1
        distance = edits(folded, lower, allowed)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, real)
    return best[1] if best else None


def edits(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance between ``a`` and ``b``, or ``limit + 1`` once it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, other in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (char != other))
            if i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


def _non_ascii(name: str) -> str:
    """The code points of ``name``'s first few non-ASCII characters (U+0455), which may look like ASCII letters."""
    points = list(dict.fromkeys(f"U+{ord(char):04X}" for char in name if not char.isascii()))
    return ", ".join(points[:5]) + (", ..." if len(points) > 5 else "")


def miscased_warning(name: str, real: str) -> str:
    return f"{name}: not applied: option names are case-sensitive; did you mean {real!r}?"


def parse_options(
    mapping: Mapping[str, object],
    *,
    warnings: list[str] | None = None,
    warn_unknown: bool = True,
    where: str = "",
) -> TLSOptions:
    """Options from a mapping of Genesys names. ``warn_unknown=False`` passes unknown names silently (transport
    parameters such as ``port`` or ``backup-port``) unless they look like an option name (``tls_mutual``); wrongly
    cased option names always warn. ``where`` prefixes warnings (e.g. ``"applications.app.ports.default: Port: "``)."""
    values: dict[str, object] = {}
    # Names first, values after: a bad value raises, and must not hide the name warnings of the keys after it.
    for name in mapping:
        kind, real = classify_name(name)
        if kind == "miscased" and real is not None:
            emit_warning(warnings, where + miscased_warning(name, real))
        # Transport parameters pass unknown keys silently (port, backup-port, ...), but not a near miss of an
        # option name: tls_mutual=1 read as nothing would leave clients unverified without a word.
        # Nor a name with other than ASCII (a Cyrillic 's' in 'tls', a fullwidth 'ｔｌｓ'): no Genesys transport key
        # has one, and one that looks like an option name would otherwise leave a port plaintext unnoticed.
        elif kind == "unknown" and (warn_unknown or real or not name.isascii()):
            hint = f"; did you mean {real!r}?" if real else ""
            foreign = "" if name.isascii() else f" (it holds non-ASCII characters: {_non_ascii(name)})"
            emit_warning(warnings, f"{where}{name}: unknown option, ignored{foreign}{hint}")
    for name, raw in mapping.items():
        if name in FIELD_NAMES:
            local: list[str] = []
            values[FIELD_NAMES[name]] = normalise_value(FIELD_NAMES[name], raw, local)
            for message in local:
                emit_warning(warnings, where + message)
    return TLSOptions(**values)  # type: ignore[arg-type]  # values are normalised above


# --- transport parameters (spec §2) ---


def parse_transport(text: str, *, warnings: list[str] | None = None) -> dict[str, str]:
    """Split a transport-parameter string (``tls=1;tls-mutual=1``) into its keys and values.

    Pieces are split on ``;`` (empty pieces skipped) and at their first ``=``, so values keep later ``=`` and
    ``,``. A piece without ``=`` is ignored, spaces around ``;`` and ``=`` are trimmed, and a repeated key keeps its
    first value; each of these warns. Keys are case-sensitive and kept as written. Values may be empty.
    """
    if not isinstance(text, str):
        raise InvalidOptionValue(
            f"transport parameters must be a string, got {type(text).__name__}", option="transport"
        )
    params: dict[str, str] = {}
    for piece in text.split(";"):
        if not piece.strip():
            if piece:
                emit_warning(warnings, f"transport parameters: spaces around ';' trimmed in {_shown(text)}")
            continue
        if "=" not in piece:
            emit_warning(warnings, f"transport parameters: piece {_shown(piece.strip())} has no '=' and is ignored")
            continue
        raw_key, raw_value = piece.split("=", 1)
        key, value = raw_key.strip(), raw_value.strip()
        if key != raw_key or value != raw_value:
            emit_warning(
                warnings,
                f"transport parameters: spaces around ';' or '=' are not allowed; {_shown(piece)} read as "
                f"{_shown(f'{key}={value}')}",
            )
        if not key:
            emit_warning(warnings, f"transport parameters: piece {_shown(piece.strip())} has no name and is ignored")
            continue
        if key in params:
            emit_warning(
                warnings,
                f"transport parameters: {_shown(key)} repeated; the first value {_shown(params[key])} wins over "
                f"{_shown(value)}",
            )
            continue
        params[key] = value
    return params


def format_value(value: object) -> str:
    """An option value written back as Genesys text (``True`` -> ``"1"``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
