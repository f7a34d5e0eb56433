"""Level resolution (spec §3): level-atomic, the only mode.

CONTRACT (shared by every module; owner of the algorithm: the foundation work):

``Resolved`` is what every later layer consumes. ``options`` holds the *effective* values: the parameter set
taken from the effective level only, defaults filled in (``sec_protocol`` stays ``None`` for "empty/default",
``tls_crl_scope`` = ``"leaf"``, ``tls_crl_expired`` = ``"reject"``, ``tls_target_name_check`` = ``"no"``,
booleans ``False``), ``tls_crl`` holding the effective CRL path (alias folded), ``crl`` ``None``.
``sources`` gives, per Genesys option name, the level letter it came from: ``"P"``, ``"C"``, ``"T"``, ``"A"``,
``"H"`` or ``"default"``.

Entry points: ``resolve_server`` / ``resolve_client`` take each level's settings (a transport-parameter string,
a mapping of Genesys names, or parsed ``TLSOptions``) and run spec §3.2 steps 1–8 plus the value checks of step 9
that need no file; ``gtls.context`` loads the files. ``direct`` resolves settings given directly (CLI flags,
Python callers) as one level. Warnings are collected in ``Resolved.warnings`` and also appended to the caller's
``warnings`` list, or logged once on ``gtls.config`` when no list is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Final, Literal

# Defined in gtls._levels (gtls.errors names Shadowed at run time), public here: re-exported for type checkers.
from ._levels import Level as Level
from ._levels import Shadowed as Shadowed
from .errors import ConfigError, ConflictingOptions, IncompleteTlsLevel, InvalidOptionValue, UnsupportedFeature
from .options import (
    FIELD_NAMES,
    GENESYS_NAMES,
    TLSOptions,
    emit_warning,
    format_value,
    is_thumbprint,
    normalise_value,
    parse_options,
    parse_transport,
)

Role = Literal["server", "client"]
Profile = Literal["unix", "windows"]
CertificateSource = Literal["host", "application"]
#: A level's settings: transport parameters as text, a mapping of Genesys names, parsed options, or nothing.
LevelInput = TLSOptions | Mapping[str, object] | str | None


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective settings of one port (``role`` ``"server"``) or connection (``"client"``): ``secure`` (TLS or
    plaintext), the ``options`` in force, the ``level`` the parameter set came from (None: no level held any),
    ``sources`` (option -> the letter of its level, or ``default``), ``shadowed`` parameter-set options of levels not
    used, and the ``warnings`` resolution raised. Build with ``direct``, ``resolve_server``/``resolve_client`` or a
    deployment."""

    role: Role
    secure: bool
    options: TLSOptions
    level: Level | None
    sources: dict[str, str] = field(default_factory=dict, hash=False)  # compared, not hashed: Resolved is hashable
    shadowed: tuple[Shadowed, ...] = ()
    warnings: tuple[str, ...] = ()
    profile: Profile = "unix"
    object_path: str | None = None
    #: Relative paths in the options are resolved against this folder (the deployment file's folder, or the
    #: working directory for settings given directly).
    base_dir: Path = field(default_factory=Path.cwd)


# --- option groups (spec §3.2) ---

#: Parameter-set fields shared by both roles, in the order reports list them.
PARAMETER_SET: Final = (
    "certificate",
    "certificate_key",
    "trusted_ca",
    "tls_crl",
    "crl",
    "tls_crl_scope",
    "tls_crl_expired",
    "certificate_store",
    "sec_protocol",
    "cipher_list",
    "provider",
    "fips140_enabled",
)
CLIENT_ONLY: Final = ("tls_target_name_check", "tls_target_name")
#: Effective values when the effective level leaves an option out.
DEFAULTS: Final[Mapping[str, object]] = {
    "tls_crl_scope": "leaf",
    "tls_crl_expired": "reject",
    "provider": "PEM",
    "fips140_enabled": False,
    "tls_target_name_check": "no",
}


def parameter_set(role: Role) -> tuple[str, ...]:
    """The parameter-set fields for a role: client-only options count only for a client."""
    return PARAMETER_SET + CLIENT_ONLY if role == "client" else PARAMETER_SET


def _names(fields_: list[str] | tuple[str, ...]) -> str:
    return ", ".join(GENESYS_NAMES[f] for f in fields_)


def _present(options: TLSOptions, group: tuple[str, ...]) -> list[str]:
    return [f for f in group if getattr(options, f) is not None]


def _without(options: TLSOptions, group: tuple[str, ...]) -> TLSOptions:
    return options.replace(**{f: None for f in group})


# --- the algorithm ---


@dataclass
class _Run:
    """One resolution: where it happens and the diagnostics gathered so far."""

    role: Role
    profile: Profile
    object_path: str | None
    warnings: list[str] = field(default_factory=list)
    #: Option names given with an empty value, per level: empty counts as absent (spec §1.1), but an error about
    #: the missing option should say it was there, empty (``certificate-key = ""``).
    empty: dict[Level, set[str]] = field(default_factory=dict)

    def warn(self, level: Level | None, message: str) -> None:
        prefix = f"{self.object_path}: " if self.object_path else ""
        if level is not None:
            prefix += f"{level.title}: "
        emit_warning(self.warnings, prefix + message)

    def where(self, level: Level) -> str:
        return (f"{self.object_path}: " if self.object_path else "") + f"{level.title}: "

    def options(self, value: LevelInput, level: Level, *, transport: bool) -> TLSOptions:
        """Parse one level (spec §3.2 step 1); errors carry the level. Every level is validated, used or not (gtls
        decision): a typo at a shadowed level is reported now, not when that level one day becomes the one used."""
        try:
            if value is None:
                return TLSOptions()
            if isinstance(value, TLSOptions):
                return value
            if isinstance(value, str):
                local: list[str] = []
                value = parse_transport(value, warnings=local)
                for message in local:
                    self.warn(level, message)
            self.empty.setdefault(level, set()).update(
                name for name, given in value.items() if isinstance(given, str) and not given.strip())
            return parse_options(value, warnings=self.warnings, warn_unknown=not transport, where=self.where(level))
        except ConfigError as exc:
            raise exc.located(object_path=self.object_path, level=level.title) from None

    def flag(self, value: LevelInput, level: Level, name: str) -> bool | None:
        """One mode flag read alone from a level (a client reads only ``tls`` on its target port)."""
        try:
            if value is None:
                return None
            if isinstance(value, TLSOptions):
                flag = getattr(value, name.replace("-", "_"))
                return flag if isinstance(flag, bool) else None
            mapping: Mapping[str, object] = parse_transport(value, warnings=[]) if isinstance(value, str) else value
            result = normalise_value(name.replace("-", "_"), mapping.get(name), [])
            return result if isinstance(result, bool) else None
        except ConfigError as exc:
            raise exc.located(object_path=self.object_path, level=level.title) from None


def _merge_application(run: _Run, options_tab: LevelInput, annex: LevelInput) -> TLSOptions:
    """Application level: Options-tab values win over Annex-tab values, per key (spec §3.2 step 2)."""
    main = run.options(options_tab, Level.APPLICATION, transport=False)
    extra = run.options(annex, Level.APPLICATION, transport=False)
    merged = {
        f.name: getattr(main, f.name) if getattr(main, f.name) is not None else getattr(extra, f.name)
        for f in fields(TLSOptions)
    }
    return TLSOptions(**merged)


def _plaintext_hints(run: _Run, upper: list[tuple[Level, LevelInput]]) -> None:
    """On a plaintext endpoint, point out ``tls`` set where it has no effect (the likeliest reason it is plaintext)
    and ``upgrade`` anywhere but the Port (spec §1.4). The levels are read as on a secure endpoint, so a typo there
    is reported too, but as a warning: nothing of them applies to a plaintext endpoint, which goes on working."""
    for level, value in upper:
        try:
            given = set(_present(run.options(value, level, transport=False), ("tls", "upgrade")))
        except ConfigError as exc:
            run.warn(level, f"{exc.message} (not applied: the endpoint is plaintext)" if exc.option is None else
                     f"{exc.option}: {exc.message} (not applied: the endpoint is plaintext)")
            given = _given_flags(value)  # the level's other warnings still apply: a bad value must not hide them
        if "tls" in given:
            where = "Port" if run.role == "server" else "Connection (or target Port)"
            run.warn(
                level,
                f"tls: ignored at this level, so the endpoint is plaintext; set tls=1 in the {where} "
                "transport parameters",
            )
        if "upgrade" in given:
            run.warn(level, "upgrade: ignored at this level; it is a Port mode flag")


def _given_flags(value: LevelInput) -> set[str]:
    """``tls`` and ``upgrade`` given a value at a level that does not parse (a bad value of another option)."""
    if not isinstance(value, Mapping | str):
        return set()
    mapping: Mapping[str, object] = parse_transport(value, warnings=[]) if isinstance(value, str) else value
    return {name for name in ("tls", "upgrade") if name in mapping and str(mapping[name]).strip()}


def _check_upper_levels(run: _Run, upper: list[tuple[Level, TLSOptions]]) -> None:
    for level, options in upper:
        if options.tls is not None:
            run.warn(level, "tls: ignored at this level; tls belongs in the Port or Connection transport parameters")
        if options.upgrade is not None:
            run.warn(level, "upgrade: ignored at this level; it is a Port mode flag")


def _candidates(
    role: Role,
    endpoint: tuple[Level, TLSOptions],
    application: TLSOptions,
    host: TLSOptions,
    certificate_source: CertificateSource,
) -> tuple[list[tuple[Level, TLSOptions]], list[tuple[Level, TLSOptions]]]:
    """(candidate levels in order, levels skipped by Certificate Source) — spec §3.2 step 2."""
    candidates = [endpoint]
    skipped: list[tuple[Level, TLSOptions]] = []
    if certificate_source == "host":
        skipped.append((Level.APPLICATION, application))
    else:
        candidates.append((Level.APPLICATION, application))
    candidates.append((Level.HOST, host))
    return candidates, skipped


def _shadowed(
    group: tuple[str, ...], levels: list[tuple[Level, TLSOptions]], effective: Level | None
) -> tuple[Shadowed, ...]:
    return tuple(
        Shadowed(level, GENESYS_NAMES[f], format_value(getattr(options, f)))
        for level, options in levels
        if level is not effective
        for f in _present(options, group)
    )


def _shadow_hint(shadowed: tuple[Shadowed, ...], skipped: list[tuple[Level, TLSOptions]]) -> str:
    if not shadowed:
        return ""
    by_level: dict[Level, list[str]] = {}
    for item in shadowed:
        by_level.setdefault(item.level, []).append(item.option)
    # The note belongs to the Application's options only: beside the Host's it read as the reason they were unused.
    app_skipped = any(level is Level.APPLICATION for level, _ in skipped)
    parts = [
        f"{', '.join(opts)} at {level.title}"
        + (" (skipped: Certificate Source is Host)" if app_skipped and level is Level.APPLICATION else "")
        for level, opts in by_level.items()
    ]
    return f" Shadowed settings, not used: {'; '.join(parts)}."


def _required(role: Role, profile: Profile, options: TLSOptions) -> list[str]:
    """Spec §1.5/§1.6: the fields the effective level lacks, in report order."""
    has_cert = options.certificate is not None
    has_key = options.certificate_key is not None
    missing: list[str] = []
    if not has_cert and (role == "server" or has_key):
        missing.append("certificate")
    # certificate and key go together, clients included; a thumbprint takes its key from the store (§4.4).
    # gtls keeps the pairing under `windows` too: a path-list certificate needs its key file there as well.
    if has_cert and not has_key and not is_thumbprint(options.certificate or ""):
        missing.append("certificate_key")
    if role == "server" and profile == "unix" and not has_cert and not has_key:
        missing.append("certificate_key")
    if profile == "unix" and options.trusted_ca is None:
        missing.append("trusted_ca")
    return missing


def _incomplete(
    run: _Run,
    level: Level | None,
    missing: list[str],
    present: list[str],
    shadowed: tuple[Shadowed, ...],
    skipped: list[tuple[Level, TLSOptions]],
) -> IncompleteTlsLevel:
    hint = _shadow_hint(shadowed, skipped)
    missing_names = [GENESYS_NAMES[f] for f in missing]
    if level is None:
        message = (
            f"no level has TLS settings; a secure {run.role} needs {', '.join(missing_names)}, all at one level "
            "(the endpoint's transport parameters, the Application's or the Host's [security] section)." + hint
        )
    else:
        message = (
            f"the {level.title} level is the effective level for TLS settings (it holds {_names(present)}) but "
            f"lacks {', '.join(missing_names)}. TLS settings cannot be split across levels: the most specific "
            f"level holding any of them must hold all, and is never completed from another level.{hint} "
            + _fix(level, missing_names, present, shadowed, skipped)
        )
    # With no level holding settings, any level's empty values may be the cause (``trusted-ca = ""`` on the Host).
    empty = run.empty.get(level, set()) if level is not None else set().union(*run.empty.values())
    message += empty_note(missing_names, empty)
    return IncompleteTlsLevel(
        message, missing=missing_names, object_path=run.object_path, level=level.title if level else None
    )


def _fix(
    level: Level,
    missing: list[str],
    present: list[str],
    shadowed: tuple[Shadowed, ...],
    skipped: list[tuple[Level, TLSOptions]],
) -> str:
    """What to change. Moving the present options only helps when a level in use holds what is missing (an
    Application skipped by Certificate Source = Host is none)."""
    unused = {lvl for lvl, _ in skipped}
    if not any(item.option in missing and item.level not in unused for item in shadowed):
        return f"Fix: add {', '.join(missing)} at the {level.title} level."
    return (f"Fix: put all TLS settings at the {level.title} level, or move {_names(present)} to the level that "
            "holds the rest.")


def empty_note(missing: Iterable[str], empty: Iterable[str]) -> str:
    """Which of the ``missing`` options were given, but empty (``certificate-key = ""``)."""
    given = set(empty)
    names = [name for name in missing if name in given]
    if not names:
        return ""
    return f" ({', '.join(names)} {'is' if len(names) == 1 else 'are'} set but empty, which counts as absent)"


def _fold_crl(run: _Run, level: Level, options: TLSOptions) -> TLSOptions:
    """Alias rule (spec §3.2 step 7): ``crl`` is ``tls-crl``; both equal warns, both different conflicts."""
    if options.crl is None:
        return options
    if options.tls_crl is None:
        return options.replace(tls_crl=options.crl, crl=None)
    if options.tls_crl != options.crl:
        raise ConflictingOptions(
            f"crl={options.crl!r} and tls-crl={options.tls_crl!r} differ; crl is an alias of tls-crl, set only tls-crl",
            option="tls-crl",
            level=level.title,
            object_path=run.object_path,
        )
    run.warn(level, "crl: alias of tls-crl, which has the same value; remove crl")
    return options.replace(crl=None)


def _check_values(run: _Run, level: Level, options: TLSOptions) -> None:
    """Spec §1.4 and §4.4 checks on the effective level that need no file."""
    if options.provider is not None and options.provider != "PEM":
        raise UnsupportedFeature(
            f"provider={options.provider} is not supported; gtls reads PEM files only (remove provider or set PEM)",
            option="provider",
            object_path=run.object_path,
            level=level.title,
        )
    if options.fips140_enabled:
        raise UnsupportedFeature(
            "fips140-enabled=1 is not supported; gtls makes no FIPS claim (remove it or set 0)",
            option="fips140-enabled",
            object_path=run.object_path,
            level=level.title,
        )
    if options.certificate is not None and is_thumbprint(options.certificate) and options.certificate_store is None:
        raise UnsupportedFeature(
            "certificate is a thumbprint; gtls finds thumbprints only in a certificate-store set at the same "
            f"level ({level.title}); add certificate-store or give the PEM file paths",
            option="certificate",
            object_path=run.object_path,
            level=level.title,
        )


def _level_warnings(run: _Run, level: Level, options: TLSOptions, tls_mutual: bool) -> TLSOptions:
    """Warnings about options that have no effect at the effective level; returns the options actually used."""
    why = "without tls-crl at this level"
    if run.profile == "windows" and options.tls_crl is not None:
        run.warn(level, "tls-crl: ignored under profile windows (gtls fetches no CRL distribution points)")
        options = options.replace(tls_crl=None)
        why = "while tls-crl is ignored (profile windows)"  # it is at this level: "without" would send users looking
    if options.tls_crl is None:
        for name in ("tls_crl_scope", "tls_crl_expired"):
            if getattr(options, name) is not None:
                run.warn(level, f"{GENESYS_NAMES[name]}: no effect {why}")
    elif run.role == "server" and not tls_mutual:
        run.warn(level, "tls-crl: no effect on a server without tls-mutual=1 (no client certificate is checked)")
    if options.certificate_store is not None and (
        options.certificate is None or not is_thumbprint(options.certificate)
    ):
        run.warn(level, "certificate-store: unused; it is read only when certificate is a thumbprint")
    return options


def _effective_options(
    role: Role, level: Level | None, chosen: TLSOptions, mode: Mapping[str, tuple[bool, str]]
) -> tuple[TLSOptions, dict[str, str]]:
    """The effective options with defaults and the source of each (spec §3.2 step 5)."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, (flag, source) in mode.items():
        values[name], sources[GENESYS_NAMES[name]] = flag, source
    for name in PARAMETER_SET + CLIENT_ONLY:
        if name == "crl":
            continue
        value = getattr(chosen, name) if (role == "client" or name not in CLIENT_ONLY) else None
        if value is not None and level is not None:
            values[name], sources[GENESYS_NAMES[name]] = value, level.value
        else:
            values[name], sources[GENESYS_NAMES[name]] = DEFAULTS.get(name), "default"
    return TLSOptions(**values), sources  # type: ignore[arg-type]  # values are normalised TLSOptions values


def _secure(
    run: _Run,
    endpoint: tuple[Level, TLSOptions],
    application: TLSOptions,
    host: TLSOptions,
    *,
    certificate_source: CertificateSource,
    mode: dict[str, tuple[bool, str]],
    base_dir: Path,
) -> Resolved:
    """Steps 2, 4–9 (no files) for an endpoint known to be secure."""
    role = run.role
    group = parameter_set(role)
    _check_upper_levels(run, [(Level.APPLICATION, application), (Level.HOST, host)])
    candidates, skipped = _candidates(role, endpoint, application, host, certificate_source)
    effective: tuple[Level, TLSOptions] | None = next(
        ((lvl, opts) for lvl, opts in candidates if _present(opts, group)), None
    )
    level = effective[0] if effective else None
    shadowed = _shadowed(group, candidates + skipped, level)
    try:
        if role == "server":
            mode["tls_mutual"] = _tls_mutual(endpoint[1], application, host)
        chosen = TLSOptions()
        if effective is None:
            missing = _required(role, run.profile, chosen)
            if missing:  # unix, or a windows server: nothing to run on (spec §3.2 step 4)
                raise _incomplete(run, None, missing, [], shadowed, skipped)
        else:
            at, given = effective
            chosen = _fold_crl(run, at, given)
            missing = _required(role, run.profile, chosen)
            if missing:
                raise _incomplete(run, at, missing, _present(given, group), shadowed, skipped)
            _check_values(run, at, chosen)
            chosen = _level_warnings(run, at, chosen, mode.get("tls_mutual", (False, ""))[0])
    except ConfigError as exc:
        exc.shadowed = shadowed  # gtls check lists them beside the error, whose message may only hint at them
        raise
    options, sources = _effective_options(role, level, chosen, mode)
    return Resolved(
        role=role,
        secure=True,
        options=options,
        level=level,
        sources=sources,
        shadowed=shadowed,
        warnings=tuple(run.warnings),
        profile=run.profile,
        object_path=run.object_path,
        base_dir=base_dir,
    )


def _tls_mutual(port: TLSOptions, application: TLSOptions, host: TLSOptions) -> tuple[bool, str]:
    """Spec §3.2 step 6: looked up alone, P then A (whatever the Certificate Source) then H; default 0."""
    for level, options in ((Level.PORT, port), (Level.APPLICATION, application), (Level.HOST, host)):
        if options.tls_mutual is not None:
            return options.tls_mutual, level.value
    return False, "default"


def _plaintext(run: _Run, mode: dict[str, tuple[bool, str]], base_dir: Path) -> Resolved:
    """A non-secure endpoint: only the mode flags, no TLS settings."""
    return Resolved(
        role=run.role,
        secure=False,
        options=TLSOptions(tls=mode["tls"][0], tls_mutual=mode["tls_mutual"][0], upgrade=mode["upgrade"][0]),
        level=None,
        sources={GENESYS_NAMES[name]: source for name, (_, source) in mode.items()},
        warnings=tuple(run.warnings),
        profile=run.profile,
        object_path=run.object_path,
        base_dir=base_dir,
    )


def _profile(value: str) -> Profile:
    folded = value.lower() if isinstance(value, str) else value
    if folded == "unix":
        return "unix"
    if folded == "windows":
        return "windows"
    raise InvalidOptionValue(f"{value!r} is not a profile; use unix or windows", option="profile")


def _certificate_source(value: str) -> CertificateSource:
    folded = value.lower() if isinstance(value, str) else value
    if folded == "host":
        return "host"
    if folded == "application":
        return "application"
    raise InvalidOptionValue(f"{value!r} is not Host or Application", option="certificate-source")


def _check_levels(**levels: object) -> None:
    """A clear TypeError for a level of the wrong type (``resolve_server(port=1)``), not an AttributeError from deep
    inside parsing."""
    for name, value in levels.items():
        if value is not None and not isinstance(value, TLSOptions | str | Mapping):
            raise TypeError(f"{name} must be transport parameters ('tls=1;tls-mutual=1'), a mapping of option names "
                            f"to values, TLSOptions or None, not {type(value).__name__}")


@contextlib.contextmanager
def _resolving(role: Role, profile: str, object_path: str | None, warnings: list[str] | None) -> Iterator[_Run]:
    """One resolution run: its ConfigErrors carry ``object_path``; its warnings go to the caller's list (or the log)
    once, even on error."""
    run = _Run(role, "unix", object_path)
    try:
        run.profile = _profile(profile)
        yield run
    except ConfigError as exc:
        raise exc.located(object_path=object_path) from None
    finally:
        for message in run.warnings:
            emit_warning(warnings, message)


def _conclude(
    run: _Run,
    own: tuple[Level, TLSOptions],
    mode: dict[str, tuple[bool, str]],
    *,
    application: LevelInput,
    annex: LevelInput,
    host: LevelInput,
    certificate_source: CertificateSource,
    base_dir: Path,
) -> Resolved:
    """What both roles do once their own level is read: a plaintext endpoint, or the secure merge with A/A'/H."""
    if not mode["tls"][0]:
        _plaintext_hints(run, [(Level.APPLICATION, application), (Level.APPLICATION, annex), (Level.HOST, host)])
        return _plaintext(run, mode, base_dir)
    group = parameter_set(run.role)
    try:
        app = _merge_application(run, application, annex)
    except ConfigError as exc:
        if _present(own[1], group):
            raise _noted_unused(exc, Level.APPLICATION, _FROM_MORE_SPECIFIC) from None
        if certificate_source == "host":
            why = "takes them from the Host (certificate-source = Host)"
            raise _noted_unused(exc, Level.APPLICATION, why) from None
        raise
    try:
        h = run.options(host, Level.HOST, transport=False)
    except ConfigError as exc:
        if _present(own[1], group) or (certificate_source != "host" and _present(app, group)):
            raise _noted_unused(exc, Level.HOST, _FROM_MORE_SPECIFIC) from None
        raise
    return _secure(run, own, app, h, certificate_source=certificate_source, mode=mode, base_dir=base_dir)


_FROM_MORE_SPECIFIC: Final = "takes them from a more specific level"


def _noted_unused(exc: ConfigError, level: Level, why: str) -> ConfigError:
    """``exc``, saying so when its option is a parameter-set option of ``level``, which this endpoint does not use
    (``why``: where it takes them from instead): every level is validated (``_Run.options``), and without the note
    the user would wonder why a setting the endpoint never reads stops it. Mode flags (``tls-mutual``) are looked up
    across levels, so they get no note."""
    if FIELD_NAMES.get(exc.option or "") in PARAMETER_SET + CLIENT_ONLY:
        exc.message += (f" ({level.title} TLS settings are not used by this endpoint, which {why}, but every level "
                        "is validated)")
        exc.args = (exc.message,)
    return exc


def resolve_server(
    *,
    port: LevelInput = None,
    application: LevelInput = None,
    annex: LevelInput = None,
    host: LevelInput = None,
    certificate_source: str = "application",
    profile: str = "unix",
    object_path: str | None = None,
    base_dir: Path | str | None = None,
    warnings: list[str] | None = None,
) -> Resolved:
    """Resolve a server port's settings (spec §3.2). ``port`` holds the Port's transport parameters."""
    _check_levels(port=port, application=application, annex=annex, host=host)
    with _resolving("server", profile, object_path, warnings) as run:
        source = _certificate_source(certificate_source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        p = run.options(port, Level.PORT, transport=True)
        client_only = _present(p, CLIENT_ONLY)
        if client_only:
            run.warn(Level.PORT, f"{_names(client_only)}: client-only, ignored on a Port")
            p = _without(p, CLIENT_ONLY)
        if p.upgrade:
            raise UnsupportedFeature(
                "upgrade=1 (clients switching to TLS inside the application protocol) is not supported; "
                "use tls=1 for a port that accepts TLS only",
                option="upgrade",
                level=Level.PORT.title,
            )
        mode = {"tls": (bool(p.tls), "P" if p.tls is not None else "default"),
                "upgrade": (False, "P" if p.upgrade is not None else "default")}
        if not p.tls:
            if _present(p, PARAMETER_SET):
                run.warn(Level.PORT, f"{_names(_present(p, PARAMETER_SET))}: no effect on a plaintext port")
            if p.tls_mutual:  # most likely tls=1 forgotten beside it; a Host's tls-mutual=1 serves many ports, not here
                run.warn(Level.PORT, "tls-mutual: no effect on a plaintext port (no tls=1): clients are neither "
                         "encrypted nor asked for a certificate")
            mode["tls_mutual"] = (False, "default")
        return _conclude(run, (Level.PORT, p), mode, application=application, annex=annex, host=host,
                         certificate_source=source, base_dir=base)


def resolve_client(
    *,
    connection: LevelInput = None,
    target: LevelInput = None,
    application: LevelInput = None,
    annex: LevelInput = None,
    host: LevelInput = None,
    certificate_source: str = "application",
    profile: str = "unix",
    object_path: str | None = None,
    base_dir: Path | str | None = None,
    warnings: list[str] | None = None,
) -> Resolved:
    """Resolve a client connection's settings (spec §3.2). ``connection`` holds the Connection's transport
    parameters, ``target`` those of the port it dials (only its ``tls`` is read)."""
    _check_levels(connection=connection, target=target, application=application, annex=annex, host=host)
    with _resolving("client", profile, object_path, warnings) as run:
        source = _certificate_source(certificate_source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        c = run.options(connection, Level.CONNECTION, transport=True)
        target_tls = run.flag(target, Level.TARGET, "tls")
        if c.tls_mutual is not None:
            run.warn(Level.CONNECTION, "tls-mutual: ignored on a Connection; it is a server Port setting")
        if c.upgrade is not None:
            run.warn(Level.CONNECTION, "upgrade: ignored on a Connection")
        c = c.replace(tls_mutual=None, upgrade=None)
        # Secure when T or C has tls=1; tls=0 on C cannot downgrade T (spec §1.2).
        tls_source = "C" if c.tls else "T" if target_tls else "C" if c.tls is not None else "default"
        mode = {
            "tls": (bool(c.tls or target_tls), tls_source),
            "tls_mutual": (False, "default"),
            "upgrade": (False, "default"),
        }
        if not mode["tls"][0] and _present(c, parameter_set("client")):
            run.warn(Level.CONNECTION,
                     f"{_names(_present(c, parameter_set('client')))}: no effect on a plaintext connection")
        return _conclude(run, (Level.CONNECTION, c), mode, application=application, annex=annex, host=host,
                         certificate_source=source, base_dir=base)


def direct(
    options: TLSOptions | Mapping[str, object],
    role: Role,
    *,
    profile: str = "unix",
    base_dir: Path | str | None = None,
    warnings: list[str] | None = None,
) -> Resolved:
    """Resolve settings given directly (CLI flags, Python callers) as one level: P for a server, C for a client.

    The caller asked for a TLS endpoint, so the result is secure even when ``tls`` is not set; the same checks as
    for a deployment run (completeness, alias, unsupported values)."""
    if not isinstance(options, TLSOptions | Mapping):  # a transport string is for resolve_server/resolve_client
        raise TypeError(f"options must be a mapping of option names to values or TLSOptions, not "
                        f"{type(options).__name__}")
    empty = [] if isinstance(options, TLSOptions) else [
        name for name, given in options.items() if isinstance(given, str) and not given.strip()]

    def build(local: list[str]) -> Resolved:
        try:
            opts = options if isinstance(options, TLSOptions) else TLSOptions.from_mapping(options, warnings=local)
        except ConfigError as exc:
            raise exc.located(level=Level.PORT.title if role == "server" else Level.CONNECTION.title) from None
        if opts.tls is False:
            local.append("tls: 0 ignored; settings given directly always make a TLS endpoint")
        opts = opts.replace(tls=True)
        try:
            if role == "server":
                return resolve_server(port=opts, profile=profile, base_dir=base_dir, warnings=local)
            if role == "client":
                return resolve_client(connection=opts, profile=profile, base_dir=base_dir, warnings=local)
        except IncompleteTlsLevel as exc:  # the mapping's empty values are gone from opts: say them here
            exc.message += empty_note(exc.missing, empty)
            exc.args = (exc.message,)
            raise
        raise InvalidOptionValue(f"role {role!r} is not server or client", option="role")

    return gather_warnings(warnings, build)


def gather_warnings(warnings: list[str] | None, build: Callable[[list[str]], Resolved]) -> Resolved:
    """Run ``build(local)``, whose parsing before resolution may add warnings to ``local`` as the resolution does;
    hand them all to ``warnings`` (or the log) once, even on error, and return the result carrying them all."""
    local: list[str] = []
    try:
        resolved = build(local)
    finally:
        for message in local:
            emit_warning(warnings, message)
    return replace(resolved, warnings=tuple(local))


def describe(resolved: Resolved) -> Iterator[tuple[str, str, str]]:
    """(option, value, source) rows for reports such as ``gtls check``: every effective option that is set."""
    for f in fields(TLSOptions):
        value = getattr(resolved.options, f.name)
        name = GENESYS_NAMES[f.name]
        if value is not None:
            yield name, format_value(value), resolved.sources.get(name, "default")
