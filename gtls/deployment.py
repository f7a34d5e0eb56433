"""The deployment file (design §3): Genesys-style Hosts, Applications, Ports and Connections in TOML.

``load_deployment(path)`` parses the file and checks its structure eagerly (malformed TOML, wrong types, unknown
structural keys, dangling ``host``/``server``/``port-id`` references: ``DeploymentError``). TLS settings are
resolved when asked for: ``Deployment.port()`` / ``Deployment.connection()`` return a resolved ``Endpoint`` (and
raise the resolution error, carrying the object path); ``Deployment.endpoints()`` yields every port and connection
as an ``EndpointRef`` whose ``resolved`` is computed on first access, so ``gtls check`` can report each endpoint's
error on its own.

File layout (keys not listed are errors, except inside ``security`` tables, where unknown option names warn)::

    profile = "unix"                        # optional: "unix" (default) or "windows" (spec §1.6)
    [hosts.NAME]
    address = "stats.example.test"          # optional: how clients reach this host's applications
    [hosts.NAME.security]                   # Host level
    [applications.NAME]
    host = "NAME"                           # optional: the Host it runs on
    certificate-source = "Application"      # or "Host" (other cases are read with a warning); the default
    [applications.NAME.security]            # Application level, Options tab
    [applications.NAME.annex.security]      # Application level, Annex tab (Options tab wins per key)
    [applications.NAME.ports.ID]
    address = "127.0.0.1"                   # listen address; default 127.0.0.1
    port = 9443                             # required; 0 picks a free port
    transport = "tls=1"                     # Port level
    [applications.NAME.connections.ID]
    server = "APP"                          # required: the target application
    port-id = "ID"                          # the target port; optional when the server has exactly one port
    transport = ""                          # Connection level
    address = "10.0.0.5"                    # optional: where to dial
    host = "stats.example.test"             # optional: the dialled host name (reference name and SNI)

Relative paths in path options (also inside ``transport``) are resolved against the file's folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TypeVar, cast

from ._files import FileRefused, read_bounded
from ._redact import redact
from .errors import ConfigError, DeploymentError, InvalidOptionValue
from .options import (
    GENESYS_NAMES,
    classify_name,
    edits,
    emit_warning,
    expand_home,
    host_problem,
    is_thumbprint,
    parse_options,
    parse_transport,
)
from .resolve import (
    CertificateSource,
    Level,
    Profile,
    Resolved,
    Role,
    gather_warnings,
    parameter_set,
    resolve_client,
    resolve_server,
)

#: Options whose values are file paths; ``certificate`` and ``certificate-store`` hold comma-separated lists.
PATH_OPTIONS: Final = frozenset({"certificate", "certificate-key", "trusted-ca", "tls-crl", "crl", "certificate-store"})
LIST_OPTIONS: Final = frozenset({"certificate", "certificate-store"})
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
DEFAULT_LISTEN_ADDRESS: Final = "127.0.0.1"
#: Largest deployment file gtls reads (decided). About 12,000 applications with a port each fit in 4 MiB and parse
#: in about a second; a file larger than that is a wrong path (a log, a disk image), not a deployment.
MAX_DEPLOYMENT_BYTES: Final = 4 * 1024 * 1024

SecurityTable = dict[str, object]
_Model = TypeVar("_Model", bound=type)


def _redacted_repr(cls: _Model) -> _Model:
    """The dataclass repr, with key material left out: these objects hold option values as the file wrote them,
    and a key pasted into one (refused when resolved) must not reach a debug log or a traceback's locals."""
    plain = cast(Callable[[object], str], cls.__repr__)  # the class's repr, called with an instance

    def __repr__(self: object) -> str:
        return redact(plain(self))

    cls.__repr__ = __repr__  # type: ignore[assignment]
    return cls


# --- the model ---


@_redacted_repr
@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    address: str | None
    security: SecurityTable


@_redacted_repr
@dataclass(frozen=True, slots=True)
class PortSpec:
    id: str
    address: str
    port: int
    transport: str


@_redacted_repr
@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    id: str
    server: str
    port_id: str
    transport: str
    address: str | None
    host: str | None


@_redacted_repr
@dataclass(frozen=True, slots=True)
class ApplicationSpec:
    name: str
    host: str | None
    certificate_source: CertificateSource
    security: SecurityTable
    annex: SecurityTable
    ports: dict[str, PortSpec]
    connections: dict[str, ConnectionSpec]


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakly referenced: gtls.connect's pinned contexts
class Endpoint:
    """A port (role ``server``: ``address``/``port`` to listen on) or a connection (role ``client``: ``address``/
    ``port`` to dial, ``server_hostname`` the dialled host name: reference name for the peer-name check and SNI).

    A connection's context is compiled (its files read) on its first ``gtls.connect`` and reused by every later
    one, its reconnects (spec §1.1); a new ``Deployment.connection(...)`` reads the files again."""

    object_path: str
    role: Role
    address: str
    port: int
    resolved: Resolved
    server_hostname: str | None = None


class EndpointRef:
    """An endpoint not yet resolved: the same attributes as ``Endpoint``, with ``resolved`` computed on first
    access (raising the resolution's ``ConfigError``)."""

    __slots__ = ("object_path", "role", "address", "port", "server_hostname", "_build", "_resolved")

    def __init__(
        self,
        object_path: str,
        role: Role,
        address: str,
        port: int,
        server_hostname: str | None,
        build: Callable[[list[str]], Resolved],
    ) -> None:
        self.object_path = object_path
        self.role: Role = role
        self.address = address
        self.port = port
        self.server_hostname = server_hostname
        self._build = build  # resolves, adding warnings to the list it is given
        self._resolved: Resolved | None = None

    def __repr__(self) -> str:
        return f"EndpointRef({self.object_path!r}, role={self.role!r}, address={self.address!r}, port={self.port})"

    def resolve(self, *, warnings: list[str] | None = None) -> Resolved:
        if self._resolved is None:
            self._resolved = gather_warnings(warnings, self._build)
        elif warnings is not None:
            warnings.extend(w for w in self._resolved.warnings if w not in warnings)
        return self._resolved

    @property
    def resolved(self) -> Resolved:
        return self.resolve()

    def endpoint(self, *, warnings: list[str] | None = None) -> Endpoint:
        resolved = self.resolve(warnings=warnings)
        return Endpoint(self.object_path, self.role, self.address, self.port, resolved, self.server_hostname)


@_redacted_repr
@dataclass(frozen=True)
class Deployment:
    path: Path
    profile: Profile
    hosts: Mapping[str, HostSpec]
    applications: Mapping[str, ApplicationSpec]
    warnings: tuple[str, ...] = ()
    #: What relative paths in the file are resolved against: its folder (left out, or ``Path()``); for a pipe
    #: (``--config /dev/stdin``, ``<(envsubst < template)``), whose folder is /dev/fd or /dev, the working directory.
    base_dir: Path = Path()

    def __post_init__(self) -> None:
        if self.base_dir == Path():
            object.__setattr__(self, "base_dir", self.path.parent)

    # --- lookups ---

    def application(self, app: str) -> ApplicationSpec:
        try:
            return self.applications[app]
        except KeyError:
            known = ", ".join(sorted(self.applications)) or "none"
            raise DeploymentError(
                f"no application {app!r} in the deployment (applications: {known})",
                object_path=f"applications.{app}",
                file=str(self.path),
            ) from None

    def port(self, app: str, port_id: str, *, warnings: list[str] | None = None) -> Endpoint:
        """The resolved server endpoint of ``applications.APP.ports.PORT_ID``."""
        return self._port_ref(app, port_id).endpoint(warnings=warnings)

    def connection(self, app: str, conn_id: str, *, warnings: list[str] | None = None) -> Endpoint:
        """The resolved client endpoint of ``applications.APP.connections.CONN_ID``."""
        return self._connection_ref(app, conn_id).endpoint(warnings=warnings)

    def endpoints(self) -> Iterator[EndpointRef]:
        """Every port, then every connection, of every application, in file order; resolved lazily."""
        for name, application in self.applications.items():
            for port_id in application.ports:
                yield self._port_ref(name, port_id)
            for conn_id in application.connections:
                yield self._connection_ref(name, conn_id)

    # --- resolution ---

    def _host_security(self, application: ApplicationSpec) -> SecurityTable | None:
        return self.hosts[application.host].security if application.host is not None else None

    def _port_ref(self, app: str, port_id: str) -> EndpointRef:
        application = self.application(app)
        spec = application.ports.get(port_id)
        path = f"applications.{app}.ports.{port_id}"
        if spec is None:
            known = ", ".join(application.ports) or "none"
            raise DeploymentError(
                f"application {app!r} has no port {port_id!r} (ports: {known})", object_path=path, file=str(self.path)
            )

        def build(local: list[str]) -> Resolved:
            return resolve_server(
                port=self._transport(spec.transport, path, Level.PORT, local),
                application=application.security,
                annex=application.annex,
                host=self._host_security(application),
                certificate_source=application.certificate_source,
                profile=self.profile,
                object_path=path,
                base_dir=self.base_dir,
                warnings=local,
            )

        return EndpointRef(path, "server", spec.address, spec.port, None, build)

    def _connection_ref(self, app: str, conn_id: str) -> EndpointRef:
        application = self.application(app)
        spec = application.connections.get(conn_id)
        path = f"applications.{app}.connections.{conn_id}"
        if spec is None:
            known = ", ".join(application.connections) or "none"
            raise DeploymentError(
                f"application {app!r} has no connection {conn_id!r} (connections: {known})",
                object_path=path,
                file=str(self.path),
            )
        server = self.applications[spec.server]
        target = server.ports[spec.port_id]
        server_host = self.hosts[server.host] if server.host is not None else None
        # Where to dial: the connection's address, else its host name, else the target Host's address, else the
        # port's listen address (a wildcard listen address is dialled on loopback).
        dial = spec.address or spec.host or (server_host.address if server_host else None)
        if dial is None:
            dial = _WILDCARDS.get(target.address, target.address)
        reference = spec.host or dial

        def build(local: list[str]) -> Resolved:
            resolved = resolve_client(
                connection=self._transport(spec.transport, path, Level.CONNECTION, local),
                target=target.transport,
                application=application.security,
                annex=application.annex,
                host=self._host_security(application),
                certificate_source=application.certificate_source,
                profile=self.profile,
                object_path=path,
                base_dir=self.base_dir,
                warnings=local,
            )
            _check_reference_name(resolved, reference)
            return resolved

        return EndpointRef(path, "client", dial, target.port, reference, build)

    def _transport(self, text: str, path: str, level: Level, warnings: list[str]) -> dict[str, str]:
        local: list[str] = []
        params = parse_transport(text, warnings=local)
        warnings.extend(f"{path}: {level.title}: {message}" for message in local)
        return {key: absolutise(key, value, self.base_dir) for key, value in params.items()}


def _check_reference_name(resolved: Resolved, reference: str) -> None:
    """Spec §7 rule 5: a reference name containing ``*`` raises at resolution."""
    options = resolved.options
    named = resolved.secure and options.tls_target_name_check == "host" and options.tls_target_name is None
    if named and "*" in reference:
        raise InvalidOptionValue(
            f"the dialled host {reference!r} contains '*' and cannot be a reference name; dial a host name or "
            "set tls-target-name",
            option="tls-target-name-check",
            object_path=resolved.object_path,
            level=resolved.level.title if resolved.level is not None else None,
        )


def absolutise(option: str, value: str, base_dir: Path, relative: list[str] | None = None) -> str:
    """A path option's value with relative paths made absolute against ``base_dir``; other values unchanged. The
    relative paths met are added to ``relative`` when given.

    List elements are trimmed and empty ones kept (so ``gtls.pki`` reports them); thumbprints are not paths, and in
    ``trusted-ca`` one must stay a thumbprint so that it is refused as one (spec §4.4), not as a missing file.
    No warning (gtls decision): spec §4.1 warns of relative paths because they depend on the working directory;
    these are relative to the file, which is the point of writing them so."""
    if option not in PATH_OPTIONS or not value.strip():
        return value
    if option in ("certificate", "trusted-ca") and is_thumbprint(value):
        return value
    items = value.split(",") if option in LIST_OPTIONS else [value]
    resolved = []
    for item in items:
        text = item.strip()
        if text:
            text = expand_home(text)  # ~ and ~user, as on the command line and in settings given directly
        if text and not Path(text).is_absolute():
            if relative is not None:
                relative.append(text)
            text = str(base_dir / text)
        resolved.append(text)
    return ",".join(resolved)


# --- loading ---


class _Loader:
    def __init__(self, path: Path, warnings: list[str], base_dir: Path) -> None:
        self.path = path
        self.base_dir = base_dir
        self.warnings = warnings
        #: Relative paths of a piped file: they depend on the working directory, so they are warned of (§4.1).
        self.relative: list[str] | None = None if base_dir == path.parent else []

    def note_relative(self, transport: str) -> None:
        """Adds a piped file's relative paths inside ``transport`` to ``relative``: they are made absolute only when
        the endpoint is resolved (``Deployment._transport``), against the same working directory."""
        if self.relative is None:
            return
        for name, value in parse_transport(transport, warnings=[]).items():  # its warnings: when it is resolved
            absolutise(name, value, self.base_dir, self.relative)

    def error(self, message: str, object_path: str | None = None, option: str | None = None) -> DeploymentError:
        return DeploymentError(message, object_path=object_path, option=option, file=str(self.path))

    def table(self, value: object, object_path: str) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.error(f"must be a table, got {_type_name(value)}", object_path)
        return value

    def keys(self, table: Mapping[str, object], allowed: tuple[str, ...], object_path: str) -> None:
        for key in table:
            if key not in allowed:
                hint = next((a for a in allowed if a.lower() == key.lower().replace("_", "-")), None)
                near = None if hint else next((a for a in allowed if edits(key.lower(), a, 1) <= 1), None)
                extra = (f"; keys are case-sensitive, did you mean {hint!r}?" if hint
                         else f"; did you mean {near!r}?" if near else "")
                raise self.error(f"unknown key {key!r} (allowed: {', '.join(allowed)}){extra}", object_path, option=key)

    def string(self, table: Mapping[str, object], key: str, object_path: str, *, required: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                raise self.error(f"{key} is required", object_path, option=key)
            return None
        if not isinstance(value, str):
            raise self.error(f"must be a string, got {_type_name(value)}", object_path, option=key)
        return value

    def address(self, table: Mapping[str, object], key: str, object_path: str) -> str | None:
        """An ``address`` (or a connection's ``host``): an IP literal or a host name the resolver can take; None
        when absent or empty. Refused here, not by the resolver when a port opens (a traceback there)."""
        value = _optional_str(self.string(table, key, object_path))
        if value is not None:
            problem = host_problem(value)
            if problem is not None:
                raise self.error(problem, object_path, option=key)
        return value

    def security(self, owner: Mapping[str, object], object_path: str) -> SecurityTable:
        """A ``security`` table: option values as strings (TOML integers/booleans kept for flags), paths made
        absolute. A wrongly cased ``Security`` table is not applied and warns (spec §1.1)."""
        for key in owner:
            if key != "security" and key.lower() == "security":
                emit_warning(
                    self.warnings,
                    f"{object_path}.{key}: not applied: section names are case-sensitive; did you mean 'security'?",
                )
        raw = owner.get("security")
        if raw is None:
            return {}
        section = self.table(raw, f"{object_path}.security")
        result: SecurityTable = {}
        for name, value in section.items():
            where = f"{object_path}.security"
            if isinstance(value, list) and classify_name(name)[0] == "known" and name in LIST_OPTIONS:
                if not all(isinstance(item, str) for item in value):
                    raise self.error("a list must hold strings (file paths)", where, option=name)
                value = ",".join(value)  # a TOML array is a convenience for the comma-separated list
            if isinstance(value, float) or not isinstance(value, str | int | bool):
                raise self.error(
                    f"must be a string (or an integer/boolean for flags), got {_type_name(value)}", where, option=name
                )
            if isinstance(value, str):
                value = absolutise(name, value, self.base_dir, self.relative)
            result[name] = value
        return result

    def host(self, name: str, raw: object) -> HostSpec:
        object_path = f"hosts.{name}"
        table = self.table(raw, object_path)
        self.keys(table, ("address", "security", *_miscased_security(table)), object_path)
        address = self.address(table, "address", object_path)  # empty counts as absent
        return HostSpec(name, address, self.security(table, object_path))

    def port(self, app: str, port_id: str, raw: object) -> PortSpec:
        object_path = f"applications.{app}.ports.{port_id}"
        table = self.table(raw, object_path)
        self.keys(table, ("address", "port", "transport"), object_path)
        number = table.get("port")
        if number is None:
            raise self.error("port is required (the TCP port number to listen on)", object_path, option="port")
        if isinstance(number, bool) or not isinstance(number, int):
            raise self.error(f"must be an integer, got {_type_name(number)}", object_path, option="port")
        if not 0 <= number <= 65535:
            raise self.error(f"{number} is not a TCP port number (0-65535)", object_path, option="port")
        address = self.address(table, "address", object_path) or DEFAULT_LISTEN_ADDRESS
        transport = self.string(table, "transport", object_path) or ""
        self.note_relative(transport)
        return PortSpec(port_id, address, number, transport)

    def connection(self, app: str, conn_id: str, raw: object) -> tuple[dict[str, object], str]:
        object_path = f"applications.{app}.connections.{conn_id}"
        table = dict(self.table(raw, object_path))  # a copy: address and host are replaced by their checked values
        self.keys(table, ("server", "port-id", "transport", "address", "host"), object_path)
        for key in ("server", "port-id", "transport"):
            self.string(table, key, object_path, required=key == "server")
        self.note_relative(str(table.get("transport") or ""))
        for key in ("address", "host"):
            table[key] = self.address(table, key, object_path)
        return table, object_path

    def application(self, name: str, raw: object, hosts: Mapping[str, HostSpec]) -> ApplicationSpec:
        object_path = f"applications.{name}"
        table = self.table(raw, object_path)
        allowed = ("host", "certificate-source", "security", "annex", "ports", "connections")
        self.keys(table, (*allowed, *_miscased_security(table)), object_path)
        host = self.string(table, "host", object_path)
        if host is not None and host not in hosts:
            known = ", ".join(hosts) or "none"
            raise self.error(f"host {host!r} is not defined under [hosts] (hosts: {known})", object_path, "host")
        given = (self.string(table, "certificate-source", object_path) or "").strip()  # trimmed like option values
        source = given.lower() or "application"
        canonical = {"host": "Host", "application": "Application"}.get(source)
        if canonical is None:
            raise self.error(f"{given!r} is not Host or Application", object_path, option="certificate-source")
        if given and given != canonical:  # spec §1.1: predefined values in any case, normalised with a warning
            emit_warning(self.warnings, f"{object_path}: certificate-source: value {given!r} read as {canonical!r} "
                                        f"(predefined values are written {canonical!r})")
        annex: SecurityTable = {}
        if "annex" in table:
            annex_table = self.table(table["annex"], f"{object_path}.annex")
            self.keys(annex_table, ("security", *_miscased_security(annex_table)), f"{object_path}.annex")
            annex = self.security(annex_table, f"{object_path}.annex")
        ports_table = self.table(table.get("ports", {}), f"{object_path}.ports")
        ports = {port_id: self.port(name, port_id, raw_port) for port_id, raw_port in ports_table.items()}
        return ApplicationSpec(
            name=name,
            host=host,
            certificate_source=cast("CertificateSource", source),  # checked above: host or application
            security=self.security(table, object_path),
            annex=annex,
            ports=ports,
            connections={},
        )

    def connections(
        self, raw_apps: Mapping[str, object], apps: dict[str, ApplicationSpec]
    ) -> dict[str, ApplicationSpec]:
        """Second pass, once every application's ports are known: connections and their references."""
        result = {}
        for name, application in apps.items():
            table = self.table(raw_apps[name], f"applications.{name}")
            conns_table = self.table(table.get("connections", {}), f"applications.{name}.connections")
            connections: dict[str, ConnectionSpec] = {}
            for conn_id, raw in conns_table.items():
                conn, object_path = self.connection(name, conn_id, raw)
                server = str(conn["server"])
                if server not in apps:
                    known = ", ".join(apps) or "none"
                    raise self.error(
                        f"server {server!r} is not an application (applications: {known})", object_path, option="server"
                    )
                ports = apps[server].ports
                port_id = conn.get("port-id")
                if port_id is None:
                    if len(ports) != 1:
                        raise self.error(
                            f"port-id is required: application {server!r} has {len(ports)} ports "
                            f"({', '.join(ports) or 'none'})",
                            object_path,
                            option="port-id",
                        )
                    port_id = next(iter(ports))
                if port_id not in ports:
                    raise self.error(
                        f"application {server!r} has no port {port_id!r} (ports: {', '.join(ports) or 'none'})",
                        object_path,
                        option="port-id",
                    )
                connections[conn_id] = ConnectionSpec(
                    id=conn_id,
                    server=server,
                    port_id=str(port_id),
                    transport=str(conn.get("transport") or ""),
                    address=_optional_str(conn.get("address")),
                    host=_optional_str(conn.get("host")),
                )
            result[name] = replace(application, connections=connections)
        return result

    def note_unused_security(self, hosts: Mapping[str, HostSpec], apps: Mapping[str, ApplicationSpec]) -> None:
        """Settings are resolved per endpoint (spec §3), so a ``[security]`` table no endpoint reads is never checked:
        a Host no application runs on, or whose applications have no ports or connections, an Application without
        ports or connections. gtls decision: a warning names it, with what resolution would have found wrong in its
        values (files are not read)."""
        running = {app.host for app in apps.values()}
        serving = {app.host for app in apps.values() if app.ports or app.connections}
        unused = [(f"hosts.{name}", "no application on this host has ports or connections" if name in running
                   else "no application runs on this host", host.security)
                  for name, host in hosts.items() if name not in serving and host.security]
        unused += [(f"applications.{name}", "the application has no ports or connections", app.security)
                   for name, app in apps.items() if not app.ports and not app.connections and app.security]
        for object_path, why, security in unused:
            problems: list[str] = []
            try:
                parse_options(security, warnings=problems)
            except ConfigError as exc:
                problems.append(str(exc))
            emit_warning(self.warnings, f"{object_path}.security is never used: {why}"
                         + "".join(f"; {problem}" for problem in problems))
        for app in apps.values():
            if app.certificate_source == "host" and (app.ports or app.connections):
                self.note_skipped_application(app)

    def note_skipped_application(self, app: ApplicationSpec) -> None:
        """Certificate Source = Host skips the Application level for TLS settings (spec §3.2 step 2): its options
        are only reported as shadowed. gtls decision: a warning at load names them, since nothing more specific took
        their place and the endpoints run without them (a ``tls-target-name-check = host`` meant for the client
        leaves the name check off). ``tls-mutual`` is not among them: it is read at every level (step 6)."""
        role: Role = "client" if app.connections else "server"
        group = parameter_set(role)
        for where, table in ((f"applications.{app.name}.security", app.security),
                             (f"applications.{app.name}.annex.security", app.annex)):
            try:
                options = parse_options(table, warnings=[], warn_unknown=False)
            except ConfigError:  # resolving each endpoint reports it, naming the endpoint
                continue
            unused = [GENESYS_NAMES[f] for f in group if getattr(options, f) is not None]
            if unused:
                host = f"hosts.{app.host}.security" if app.host is not None else "the Host's [security]"
                verb, them = ("is", "it") if len(unused) == 1 else ("are", "them")
                emit_warning(self.warnings, f"{where}: {', '.join(unused)} {verb} not used: certificate-source is "
                                            f"Host, so this application's ports and connections take TLS settings "
                                            f"from their own transport or {host} (spec §3.2); move {them} there")

    def note_port_clashes(self, apps: Mapping[str, ApplicationSpec]) -> None:
        """Ports of applications on one host that cannot listen at the same time: the same port number on the same
        address, or on an address and that family's wildcard (trio's listeners bind IPv6 only, so 0.0.0.0 and ::
        do not clash). gtls decision: a warning, since only one of them is served at a time (the other fails with
        listen-failed); applications on different hosts run on different machines. Names are compared as written."""
        seen: dict[tuple[str | None, int], list[tuple[str, str]]] = {}
        for app in apps.values():
            for port in app.ports.values():
                if port.port == 0:  # a free port each time
                    continue
                here = (app.host, port.port)
                for other_path, other_address in seen.get(here, []):
                    if _addresses_clash(port.address, other_address):
                        emit_warning(self.warnings, f"applications.{app.name}.ports.{port.id} and {other_path} both "
                                                    f"listen on port {port.port} ({port.address}, {other_address}) of "
                                                    f"one host: only one can be open at a time")
                seen.setdefault(here, []).append((f"applications.{app.name}.ports.{port.id}", port.address))

    def load(self, document: Mapping[str, object]) -> Deployment:
        self.keys(document, ("profile", "hosts", "applications"), "(top level)")
        profile_text = self.string(document, "profile", "(top level)") or "unix"
        if profile_text.lower() not in ("unix", "windows"):
            raise self.error(f"{profile_text!r} is not a profile; use unix or windows", "(top level)", "profile")
        profile: Profile = "windows" if profile_text.lower() == "windows" else "unix"
        if profile_text != profile:  # as for certificate-source and option values: read, with a warning
            emit_warning(self.warnings, f"profile: value {profile_text!r} read as {profile!r} (profiles are written "
                                        f"{profile!r})")
        hosts_table = self.table(document.get("hosts", {}), "hosts")
        hosts = {name: self.host(name, raw) for name, raw in hosts_table.items()}
        apps_table = self.table(document.get("applications", {}), "applications")
        apps = {name: self.application(name, raw, hosts) for name, raw in apps_table.items()}
        apps = self.connections(apps_table, apps)
        self.note_unused_security(hosts, apps)
        self.note_port_clashes(apps)
        if self.relative:
            self.warnings.append(
                f"relative paths in a piped deployment file ({', '.join(dict.fromkeys(self.relative))}) are resolved "
                f"against the working directory {self.base_dir}, which a pipe's folder cannot stand for; use absolute "
                "paths")
        return Deployment(self.path, profile, hosts, apps, tuple(self.warnings), self.base_dir)


def _miscased_security(table: Mapping[str, object]) -> tuple[str, ...]:
    """Keys like ``Security``: tolerated structurally, warned about and not applied."""
    return tuple(key for key in table if key != "security" and key.lower() == "security")


def _optional_str(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _type_name(value: object) -> str:
    names = {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a float"}
    return names.get(type(value), type(value).__name__)


_TOML_KEY = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
_KEY_LINE = re.compile(rf"\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*=")
_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_PROBE = "gtls-probe-3f1c9a"
#: Lines looking like 'key =' tried, upwards from the error, as the duplicate key's own line.
_KEY_TRIES = 8


def _duplicate_key_hint(message: str, text: str) -> str:
    """For tomllib's "Cannot overwrite a value (at line 5, column 44)", which names no key: the key written on that
    line and the table it is in, read back from the text (empty when no ``key =`` line is found for it)."""
    if not message.startswith("Cannot overwrite a value"):
        return ""
    lines = text.splitlines()
    found = _AT_LINE.search(message)
    number = int(found.group(1)) if found else len(lines)  # "(at end of document)": the last line
    if not 0 < number <= len(lines):
        return ""
    # tomllib places the error at the end of the value, and a multi-line value ends lines below its key (its last
    # line, inside a string, may even look like 'key = ...'): the key's line is the nearest one above whose key is
    # already in the table that line writes to. Bounded: each try parses the lines above it.
    tries = _KEY_TRIES
    for index in range(number - 1, -1, -1):
        key = _KEY_LINE.match(lines[index])
        if key is None:
            continue
        place = _table_holding(lines[:index], key.group(1))
        if place is not None:
            where = f" in [{place}]" if place else " at the top level"
            return f": key {key.group(1)!r}{where} is already set above (a key may be set once per table)"
        tries -= 1
        if not tries:
            break
    return ""


def _table_holding(lines: list[str], key: str) -> str | None:
    """The table a key written after ``lines`` goes into, dotted ("" for the top level), if ``key`` (its first part,
    for a dotted key) is already set there; else None, also when the lines do not parse on their own (they end
    inside a multi-line value). tomllib itself places a probe key, so a ``[...]`` line inside a multi-line string
    is no header and an array of tables is followed."""
    try:
        document = tomllib.loads("\n".join(lines) + f"\n{_PROBE} = 0\n")
        first = next(iter(tomllib.loads(f"{key} = 0")))
    except (tomllib.TOMLDecodeError, StopIteration, RecursionError):  # this runs inside the first parse's handler,
        return None  # a few frames deeper: nesting the first parse survived may not survive here
    pending: list[tuple[object, tuple[str, ...]]] = [(document, ())]
    while pending:  # the probe key is unique: search every table for it (without recursion: nesting is the file's)
        node, path = pending.pop()
        if isinstance(node, list):
            pending += ((item, path) for item in node)
        elif isinstance(node, dict):
            if _PROBE in node:
                if first not in node:
                    return None
                return ".".join(name if _BARE_KEY.fullmatch(name) else f'"{name}"' for name in path)
            pending += ((value, (*path, name)) for name, value in node.items())
    return None


def _addresses_clash(first: str, second: str) -> bool:
    if first == second:
        return True
    try:
        one, two = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:  # a name: compared as written
        return False
    # one address however written ('::1', '0:0::1'), or an address beside its family's wildcard
    return one == two or (one.version == two.version and (one.is_unspecified or two.is_unspecified))


def _base_dir(file: Path) -> Path:
    """The folder relative paths in ``file`` mean: its own, unless it is a pipe or named by its descriptor (gtls
    decision: a pipe's folder, /dev/fd or /dev, holds no certificate; the command that pipes the file runs where its
    paths make sense). ``--config /dev/stdin < deploy.toml`` is a regular file, but its name's folder is /dev."""
    try:
        regular = stat.S_ISREG(file.stat().st_mode)
    except OSError:  # read a moment ago: a pipe's /dev/fd entry may be gone once it is read
        regular = False
    return file.parent if regular and not _descriptor_name(file) else Path.cwd()


def _descriptor_name(file: Path) -> bool:
    """Whether ``file`` is /dev/stdin, /dev/fd/N, /proc/PID/fd/N or /proc/PID/task/TID/fd/N: a descriptor's name,
    not where the file lies (a here-document bash wrote to a deleted temporary file is read so too)."""
    try:
        folder = file.parent.resolve()  # /dev/fd -> /proc/PID/fd
    except OSError:
        return False
    return folder == Path("/dev") or (folder.name == "fd" and folder.parts[:2] == ("/", "proc"))


def load_deployment(path: str | os.PathLike[str], *, warnings: list[str] | None = None) -> Deployment:
    """Parse a deployment file and check its structure; TLS settings are resolved per endpoint on demand.

    Raises ``DeploymentError`` for an unreadable or malformed file, wrong types, unknown keys and dangling
    references. Load warnings (wrongly cased ``Security`` tables) are in ``Deployment.warnings`` and go to
    ``warnings`` when given, else are logged once."""
    file = Path(path).absolute()
    try:
        # The PEM reader's guards: a FIFO given as --config would block forever, a huge file be read whole; but a
        # pipe is read, to its end within a bound (--config <(envsubst < template), /dev/stdin).
        raw = read_bounded(file, limit=MAX_DEPLOYMENT_BYTES, kind="a deployment file (TOML)", pipes=True)
        text = raw.decode("utf-8")
    except FileRefused as exc:
        raise DeploymentError(f"deployment file {file}: {exc}", file=str(file)) from None
    except UnicodeDecodeError as exc:
        raise DeploymentError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(file)) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentError(f"{file}: not valid TOML: {exc}{_duplicate_key_hint(str(exc), text)}",
                              file=str(file)) from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels (x = [[[[...]]]]) exhausted
        # Python's stack and gave a traceback instead of this error. No deployment file nests that deep.
        raise DeploymentError(f"{file}: not valid TOML for gtls: arrays or inline tables nested too deeply",
                              file=str(file)) from None
    local: list[str] = []
    try:
        return _Loader(file, local, _base_dir(file)).load(document)
    finally:
        for message in local:
            emit_warning(warnings, message)
