"""``gtls check --config FILE [--json]``: resolve every port and connection, compile each context, report.

For each endpoint: every effective option with the level it came from, the shadowed options, the chain sent
and the warnings (those of resolution and context compilation, plus the checks below); an error does not stop
the report. Exit 0 when every endpoint is usable, 1 when any endpoint has an error, 2 when the file itself
cannot be loaded (or on a usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._redact import redact
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Subcommands,
    describe_config_error,
    format_host_port,
    name_of,
    report_config_error,
    report_warnings,
)

if TYPE_CHECKING:
    from cryptography import x509

    from ..context import CompiledContext
    from ..deployment import Deployment
    from ..errors import ConfigError
    from ..resolve import Resolved, Shadowed

#: Warn about certificates (sent or trusted) that expire within this window.
EXPIRY_WARNING = dt.timedelta(days=30)
#: Warn about CRLs whose next update is this close (gtls.pki already warns within a day and when past).
CRL_DUE_WARNING = dt.timedelta(days=7)
_LEVEL_TITLES = {"P": "Port", "C": "Connection", "T": "Target port", "A": "Application", "H": "Host",
                 "default": "default"}


#: Options that take no part for an endpoint of this role (spec §1.2, §2).
_OTHER_ROLE_ONLY = {
    "server": frozenset({"tls-target-name-check", "tls-target-name"}),
    "client": frozenset({"tls-mutual", "upgrade"}),
}


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "check",
        help="resolve every port and connection of a deployment file, load every file, report",
        description="Resolve every port and connection of a deployment file and compile its TLS context "
        "(loading every file), then print each effective option with the level it came from, shadowed "
        "options and warnings, and try each connection's handshake with the port it targets (over a local "
        "socket pair). Exit 0 if all endpoints are usable, 1 if any has an error or a handshake fails, 2 if "
        "the file cannot be loaded.",
    )
    parser.add_argument("--config", metavar="FILE", required=True, help="deployment file (TOML)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.set_defaults(run=run)


@dataclass
class EndpointReport:
    object_path: str
    role: str
    address: str | None
    port: int | None
    server_hostname: str | None = None
    secure: bool | None = None
    level: str | None = None
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    shadowed: list[dict[str, str]] = field(default_factory=list)
    chain: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: dict[str, str | None] | None = None
    #: A connection's handshake with its target port (``gtls._rehearsal``); None for ports, or when either end
    #: has no TLS context to try.
    handshake: dict[str, Any] | None = None
    compiled: CompiledContext | None = field(default=None, repr=False)  # not reported: for the handshake

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.handshake is not None and not self.handshake["ok"])

    def as_json(self) -> dict[str, Any]:
        return {
            "object_path": self.object_path, "role": self.role, "address": self.address, "port": self.port,
            "server_hostname": self.server_hostname, "secure": self.secure, "level": self.level,
            "options": self.options, "shadowed": self.shadowed, "chain": self.chain, "warnings": self.warnings,
            "error": self.error, "handshake": self.handshake,
        }


def run(args: argparse.Namespace) -> int:
    """The report goes out through one buffer, with key material left out: a key pasted into a deployment file
    (as an address, a name, an option) must not come back in the report (text or JSON alike). The JSON document
    is redacted string by string, before serializing: redacting its text would take an escape's letter
    (``\\u200e``, ``\\n``) with the run after it and leave an invalid escape."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = _run(args)
    sys.stdout.write(out.getvalue() if args.json else redact(out.getvalue()))
    return code


def _dump_json(document: dict[str, Any]) -> None:
    json.dump(_redacted(document), sys.stdout, indent=2)
    print()


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(key): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def _run(args: argparse.Namespace) -> int:
    from ..deployment import load_deployment
    from ..errors import ConfigError

    warnings: list[str] = []
    try:
        deployment = load_deployment(args.config, warnings=warnings)
    except ConfigError as exc:
        if args.json:  # the documented document, with the error that stopped the load beside it
            _dump_json({"config": args.config, "ok": False, "errors": 1, "warnings": warnings,
                        "error": _error_json(exc), "endpoints": []})
        else:
            report_warnings(warnings)
        return report_config_error(exc)
    reports = [_check_endpoint(endpoint) for endpoint in deployment.endpoints()]
    _rehearse_connections(deployment, reports)
    errors = sum(1 for report in reports if report.failed)
    if args.json:
        document = {
            "config": str(Path(args.config)), "ok": errors == 0, "errors": errors,
            "warnings": warnings, "endpoints": [report.as_json() for report in reports],
        }
        _dump_json(document)
    else:
        _print_text(args.config, reports, warnings, errors)
    return EXIT_FAILURE if errors else EXIT_OK


def _check_endpoint(endpoint: Any) -> EndpointReport:
    from ..errors import ConfigError

    report = EndpointReport(
        object_path=str(endpoint.object_path), role=str(endpoint.role),
        address=getattr(endpoint, "address", None), port=getattr(endpoint, "port", None),
        server_hostname=getattr(endpoint, "server_hostname", None) if endpoint.role == "client" else None,
    )
    resolution_warnings: list[str] = []
    try:
        # Lazy: raises this endpoint's ConfigError here; the warnings gathered on the way (often its cause, such as
        # a miscased option name) are reported with it.
        resolved: Resolved = endpoint.resolve(warnings=resolution_warnings)
        _describe_resolution(report, resolved)
        if resolved.secure:
            from ..context import compile_context

            compiled = compile_context(resolved)
            if resolved.role == "client":  # a dialled name the name check cannot take: as gtls connect, before dialling
                compiled.client_names(report.server_hostname, given_as="host")
            report.compiled = compiled
            # Headed by the endpoint and level, as gtls serve and gtls connect print them and the library logs them
            # (and as a failed compile's warnings come): the same line in the report as in the runtime's log.
            report.warnings.extend(w for w in compiled.located_warnings if w not in report.warnings)
            report.chain = [_cert_json(cert) for cert in compiled.chain]
            now = dt.datetime.now(dt.UTC)
            report.warnings.extend(_expiry_warnings(compiled.chain, now))
            report.warnings.extend(_trusted_ca_warnings(compiled.trusted, now))
            report.warnings.extend(_crl_warnings(compiled.crls, now))
            report.warnings.extend(_order_warnings(resolved, compiled.chain))
    except ConfigError as exc:
        report.error = _error_json(exc)
        report.shadowed = report.shadowed or _shadowed_json(exc.shadowed)
        report.warnings.extend(w for w in [*resolution_warnings, *exc.warnings] if w not in report.warnings)
    except Exception as exc:  # noqa: BLE001 - a bug below must not hide the other endpoints' reports
        report.error = _unexpected_error(report, exc)
    return report


def _unexpected_error(report: EndpointReport, exc: Exception) -> dict[str, str | None]:
    return {"type": type(exc).__name__, "message": f"unexpected error (a gtls bug): {exc}",
            "object_path": report.object_path, "level": None, "option": None, "file": None}


def _rehearse_connections(deployment: Deployment, reports: list[EndpointReport]) -> None:
    """Each connection's handshake with the port it targets, both compiled from this file: a pair that cannot
    meet (a server certificate the client does not trust or that fails its name check, a mutual-TLS port and a
    client without a certificate, no common protocol version) is an error of the connection, found before either
    end is deployed. Nothing is dialled: the two ends meet over a local socket pair."""
    from .._rehearsal import rehearse

    by_path = {report.object_path: report for report in reports}
    for name, application in deployment.applications.items():
        for conn_id, connection in application.connections.items():
            client = by_path.get(f"applications.{name}.connections.{conn_id}")
            target = f"applications.{connection.server}.ports.{connection.port_id}"
            server = by_path.get(target)
            if client is None or server is None or client.compiled is None or server.compiled is None:
                continue
            try:
                outcome = rehearse(client.compiled, server.compiled, client.server_hostname)
            except Exception as exc:  # noqa: BLE001 - a bug below must not hide the other endpoints' reports
                client.error = _unexpected_error(client, exc)
                continue
            client.handshake = {"with": target, "ok": outcome.ok, "side": outcome.side, "reason": outcome.reason,
                                "message": outcome.message, "depth": outcome.depth, "subject": outcome.subject,
                                "tls_version": outcome.tls_version, "cipher": outcome.cipher}


def _handshake_text(handshake: dict[str, Any]) -> str:
    if handshake["ok"]:
        return f"ok ({handshake['tls_version']}, {handshake['cipher']})"
    message, side = handshake["message"], handshake["side"]
    # The certificate at fault, as gtls connect and gtls serve name it (an expired intermediate is depth 1).
    extras = [f"depth {handshake['depth']}"] if handshake["depth"] is not None else []
    extras += [f"subject {handshake['subject']}"] if handshake["subject"] else []
    at_fault = f" ({'; '.join(extras)})" if extras else ""
    if side and message.startswith("we refused "):  # the refusing end's own words: "we" is that end here
        return f"FAILED: {handshake['reason']} (the {side} refused {message.removeprefix('we refused ')}){at_fault}"
    refused = f"refused by the {side}: " if side else ""
    return f"FAILED: {handshake['reason']} ({refused}{message}){at_fault}"


def _describe_resolution(report: EndpointReport, resolved: Resolved) -> None:
    report.secure = resolved.secure
    report.level = resolved.level.title if resolved.level is not None else None
    from ..resolve import describe

    for name, value, source in describe(resolved):
        if name in _OTHER_ROLE_ONLY[resolved.role]:
            continue  # a default the endpoint's role never uses; listing it would only confuse
        report.options[name] = {"value": value, "source": source, "level": _LEVEL_TITLES.get(source, source)}
    report.shadowed = _shadowed_json(resolved.shadowed)
    report.warnings.extend(resolved.warnings)


def _shadowed_json(shadowed: Iterable[Shadowed]) -> list[dict[str, str]]:
    return [{"level": item.level.title, "option": item.option, "value": item.value} for item in shadowed]


def _cert_json(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": name_of(cert.subject), "issuer": name_of(cert.issuer),
        "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
    }


def _expiring(
    certs: Sequence[x509.Certificate], now: dt.datetime
) -> Iterator[tuple[int, x509.Certificate, dt.timedelta]]:
    """(index, certificate, time left) for those past notAfter or within ``EXPIRY_WARNING`` of it."""
    for index, cert in enumerate(certs):
        left = cert.not_valid_after_utc - now
        if left < EXPIRY_WARNING:
            yield index, cert, left


def _expiry_warnings(chain: Sequence[x509.Certificate], now: dt.datetime) -> list[str]:
    # An expired certificate of the chain is already a warning of the context compilation.
    return [
        f"certificate {name_of(cert.subject)} (depth {depth}) expires on {cert.not_valid_after_utc:%Y-%m-%d} "
        f"({left.days} days left)"
        for depth, cert, left in _expiring(chain, now)
        if left >= dt.timedelta(0)
    ]


def _trusted_ca_warnings(trusted: Sequence[x509.Certificate], now: dt.datetime) -> list[str]:
    # An expired CA is already a warning of the context compilation.
    return [
        f"trusted-ca: {name_of(cert.subject)} expires on {cert.not_valid_after_utc:%Y-%m-%d} "
        f"({left.days} days left); peers' paths through it will then fail"
        for _, cert, left in _expiring(trusted, now)
        if left >= dt.timedelta(0)
    ]


def _crl_warnings(crls: Sequence[x509.CertificateRevocationList], now: dt.datetime) -> list[str]:
    from ..pki import CRL_DUE_SOON

    found = []
    for crl in crls:
        next_update = crl.next_update_utc
        if next_update is not None and CRL_DUE_SOON <= next_update - now < CRL_DUE_WARNING:
            found.append(f"tls-crl: CRL of {name_of(crl.issuer)} is due for update at {next_update:%Y-%m-%d %H:%M} "
                         f"UTC ({(next_update - now).days} days left); replace the file before then")
    return found


def _order_warnings(resolved: Resolved, sent: Sequence[x509.Certificate]) -> list[str]:
    """Say when the configured certificate files list the chain in another order than gtls sends it."""
    from ..errors import ConfigError
    from ..pki import listed_certificates

    chain = list(sent)
    value = resolved.options.certificate
    if not value or len(chain) < 2:
        return []
    try:
        loaded = listed_certificates(value, base_dir=resolved.base_dir)
    except ConfigError:
        return []  # a thumbprint, or a file changed since compilation: nothing to compare
    listed = [cert for cert in loaded if cert in chain]
    if listed == chain:
        return []
    return ["certificate: the files list the chain in another order ("
            + ", ".join(name_of(c.subject) for c in listed) + "); gtls sends it reordered, leaf first ("
            + ", ".join(name_of(c.subject) for c in chain) + ")"]


def _error_json(exc: ConfigError) -> dict[str, str | None]:
    return {
        "type": type(exc).__name__, "message": describe_config_error(exc), "object_path": exc.object_path,
        "level": exc.level, "option": exc.option, "file": exc.file,
    }


def _print_text(config: str, reports: list[EndpointReport], warnings: list[str], errors: int) -> None:
    print(f"deployment {config}")
    for warning in warnings:
        print(f"  warning: {warning}")
    for report in reports:
        print()
        print(f"{report.object_path}  ({_where(report)})  {'ERROR' if report.failed else 'ok'}")
        if report.secure is not None:
            level = f", settings from level {report.level}" if report.level else ", no TLS settings level"
            # gtls check accepts a plaintext endpoint (a Genesys deployment may have them), but says that gtls's own
            # commands will not open it, so "ok" is not read as "gtls serve will run this".
            plain = "no (plaintext: gtls serve and gtls connect refuse it)"
            print(f"  secure: {'yes' + level if report.secure else plain}")
        if report.options:
            width = max(len(name) for name in report.options)
            for name, option in report.options.items():
                print(f"  {name:<{width}}  {option['value']}  [{option['level']}]")
        for item in report.shadowed:
            print(f"  shadowed: {item['option']} = {item['value']}  [{item['level']}, not used]")
        if report.chain:
            print("  chain sent: " + " <- ".join(f"{c['subject']} (until {c['not_after'][:10]})" for c in report.chain))
        for warning in report.warnings:
            print(f"  warning: {warning}")
        if report.handshake is not None:
            print(f"  handshake with {report.handshake['with']}: {_handshake_text(report.handshake)}")
        if report.error:
            print(f"  error: {report.error['type']}: {report.error['message']}")
    total_warnings = len(warnings) + sum(len(r.warnings) for r in reports)
    print()
    print(f"{len(reports)} endpoint{'s' if len(reports) != 1 else ''}, {errors} error{'s' if errors != 1 else ''}, "
          f"{total_warnings} warning{'s' if total_warnings != 1 else ''}")


def _where(report: EndpointReport) -> str:
    if report.address is None or report.port is None:
        return report.role
    target = format_host_port(report.address, report.port)
    if report.role == "server":
        return f"server on {target}"
    name = f", name {report.server_hostname}" if report.server_hostname and report.server_hostname != report.address \
        else ""
    return f"client to {target}{name}"
