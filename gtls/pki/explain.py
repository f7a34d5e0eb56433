"""The `certificate` option explained: the chain gtls sends and why each certificate is where it is.

For tools (``gtls chain``, ``gtls check``): the same loading, leaf selection and ordering as a real context
(``chain.py``, spec §4.1–§4.3), with the reasons kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..errors import CredentialLoadError
from ..options import expand_home
from .certs import is_ca, self_signed, signed_by
from .chain import LoadedCert, assemble, leaf_validity_warnings, load_certificates, select_leaf, split_list
from .keys import load_private_key
from .pem import read_file
from .where import Where

_OPTION = "certificate"


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One certificate of the chain sent, leaf first."""

    cert: x509.Certificate
    source: Path  # the file it came from
    position: int  # its place in load order (files in list order, blocks in file order), from 1
    reason: str  # why it is at this place


@dataclass(frozen=True, slots=True)
class ChainExplanation:
    links: tuple[ChainLink, ...]
    loaded: int  # certificates loaded (exact duplicates dropped)
    reordered: bool  # the chain is not in the load order
    top_self_signed: bool  # the chain ends at a root; otherwise the peer must hold the top's issuer
    warnings: tuple[str, ...]  # those a context compilation gives for the same files

    @property
    def chain(self) -> list[x509.Certificate]:
        return [link.cert for link in self.links]


def explain_chain(certificate: str, key: str | Path | None = None, *, base_dir: Path | None = None
                  ) -> ChainExplanation:
    """Load ``certificate`` (a comma-separated PEM file list, like the option) and order it as gtls sends it.

    With ``key`` (a ``certificate-key`` file) the leaf is the certificate matching it, as in a real port;
    without, it is a certificate that issued no other loaded one (a non-CA first, then load order). Relative
    paths are taken from ``base_dir`` (default: the working directory) without warning: the caller chose it.
    Raises ``CredentialLoadError`` / ``KeyMismatch`` as a context compilation would."""
    where = Where()
    warnings: list[str] = []
    base = base_dir if base_dir is not None else Path.cwd()
    key_path = base / Path(expand_home(str(key))) if key is not None else None
    loaded = _load(certificate, base, where, warnings, key_file=key_path)
    if key_path is not None:
        key_files = {key_path: read_file(key_path, option="certificate-key", where=where, error=CredentialLoadError)}
        private_key = load_private_key(key_path, key_files, option="certificate-key", where=where, warnings=warnings)
        leaf = select_leaf(loaded, private_key, option=_OPTION, key_file=key_path, where=where)
        leaf_reason = f"leaf: its public key matches the private key in {key_path}"
    else:
        leaf, leaf_reason = _guess_leaf(loaded)
    chain = assemble(loaded, leaf, option=_OPTION, warnings=warnings)
    # As a port's compile warns (its issuers' dates are assemble's); the extendedKeyUsage check needs a role.
    leaf_validity_warnings(chain[0], dt.datetime.now(dt.UTC), option=_OPTION, warnings=warnings)
    origin = {item.cert: (item.source, position) for position, item in enumerate(loaded, start=1)}
    links = tuple(
        ChainLink(cert, *origin[cert], leaf_reason if index == 0 else _link_reason(chain[index - 1], cert, index - 1))
        for index, cert in enumerate(chain)
    )
    return ChainExplanation(
        links=links,
        loaded=len(loaded),
        reordered=[item.cert for item in loaded if item.cert in chain] != chain,
        top_self_signed=self_signed(chain[-1]),
        warnings=tuple(warnings),
    )


def listed_certificates(certificate: str, *, base_dir: Path) -> list[x509.Certificate]:
    """The certificates of a ``certificate`` file list in load order, without ordering or judging them. Raises
    ``CredentialLoadError`` when a file cannot be read or holds no certificate (e.g. the value is a thumbprint)."""
    return [item.cert for item in _load(certificate, base_dir, Where(), [])]


def _load(value: str, base_dir: Path, where: Where, warnings: list[str], key_file: Path | None = None
          ) -> list[LoadedCert]:
    paths = [base_dir / Path(expand_home(item)) for item in split_list(value, option=_OPTION, where=where)]
    files = {path: read_file(path, option=_OPTION, where=where, error=CredentialLoadError) for path in paths}
    return load_certificates(paths, files, option=_OPTION, where=where, warnings=warnings, key_file=key_file)


def _guess_leaf(loaded: list[LoadedCert]) -> tuple[LoadedCert, str]:
    """Without a key: the certificates that issued no other loaded one; a non-CA first, then load order."""

    # Only certificates naming item's subject as their issuer can have been issued by it (signed_by checks the
    # names first): grouping by issuer keeps this linear for large bundles instead of every pair.
    by_issuer: dict[bytes, list[LoadedCert]] = {}
    for item in loaded:
        by_issuer.setdefault(item.cert.issuer.public_bytes(), []).append(item)

    def issued_another(item: LoadedCert) -> bool:
        named = by_issuer.get(item.cert.subject.public_bytes(), ())
        return any(other is not item and signed_by(other.cert, item.cert) for other in named)

    candidates = [item for item in loaded if not issued_another(item)] or list(loaded)
    chosen = next((item for item in candidates if not is_ca(item.cert)), candidates[0])
    ca_note = "" if not is_ca(chosen.cert) else " (a CA certificate: no end-entity certificate qualified)"
    others = len(candidates) - 1
    extra = f"; {others} other candidate{'s' if others != 1 else ''}, first non-CA in load order wins" if others else ""
    return chosen, f"leaf (no --key given): it issued no other loaded certificate{ca_note}{extra}"


def _link_reason(child: x509.Certificate, issuer: x509.Certificate, child_index: int) -> str:
    facts = ["subject equals its issuer name"]
    try:
        aki = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        if aki is not None and aki == ski:
            facts.append("key identifier matches")
    except x509.ExtensionNotFound:
        pass
    facts.append("its key verifies the signature")
    return f"issued certificate {child_index}: {', '.join(facts)}"
