"""``gtls chain LIST [--key FILE]``: the chain in the order gtls sends it, and why each certificate is there.

Loading, leaf selection and ordering are ``gtls.pki.chain``'s (spec §4.1–§4.3); this command only explains.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import EXIT_OK, Subcommands, certificate_lines, name_of, report_warnings
from ._flags import given_options

if TYPE_CHECKING:
    from cryptography import x509

    from ..pki.chain import LoadedCert


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "chain",
        help="print a certificate list as the chain gtls sends (leaf first) and why",
        description="Load a comma-separated list of PEM certificate files (as the certificate option) and print "
        "the chain in the order gtls sends it, with the reason for each position. With --key the leaf is the "
        "certificate matching the key (as in a real port); without it, the leaf is the certificate that issued "
        "no other loaded certificate (a non-CA one first, then list order).",
    )
    parser.add_argument("certificates", metavar="LIST", help="PEM files, comma-separated, like the certificate option")
    parser.add_argument("--key", metavar="FILE", help="private key (certificate-key) that picks the leaf")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import CredentialLoadError
    from ..pki.chain import assemble, load_certificates, select_leaf, split_list
    from ..pki.pem import read_file
    from ..pki.where import Where

    where = Where()
    warnings: list[str] = []
    # Reuse the flag path handling so relative paths mean "from the working directory" without a warning.
    absolute = given_options(argparse.Namespace(opt_certificate=args.certificates, opt_certificate_key=args.key))
    paths = [Path(item) for item in split_list(absolute["certificate"], option="certificate", where=where)]
    files = {path: read_file(path, option="certificate", where=where, error=CredentialLoadError) for path in paths}
    loaded = load_certificates(paths, files, option="certificate", where=where, warnings=warnings)

    if args.key:
        from ..pki.keys import load_private_key

        key_path = Path(absolute["certificate-key"])
        key_files = {key_path: read_file(key_path, option="certificate-key", where=where, error=CredentialLoadError)}
        key = load_private_key(key_path, key_files, option="certificate-key", where=where, warnings=warnings)
        leaf = select_leaf(loaded, key, option="certificate", key_file=key_path, where=where)
        leaf_reason = f"leaf: its public key matches the private key in {key_path}"
    else:
        leaf, leaf_reason = _guess_leaf(loaded)

    chain = assemble(loaded, leaf, option="certificate", warnings=warnings)
    origin = {item.cert: (item.source, position) for position, item in enumerate(loaded, start=1)}
    print(f"chain as gtls sends it ({len(chain)} of {len(loaded)} loaded certificate"
          f"{'s' if len(loaded) != 1 else ''}, leaf first):")
    for index, cert in enumerate(chain):
        for line in certificate_lines(cert, index):
            print(line)
        source, position = origin[cert]
        print(f"    from:    {source} (certificate {position} in load order)")
        print(f"    why:     {leaf_reason if index == 0 else _link_reason(chain[index - 1], cert, index - 1)}")
    print(_top_line(chain[-1]))
    load_order = [item.cert for item in loaded if item.cert in chain]
    if load_order != chain:
        print("order: reordered from the load order (gtls sends leaf, intermediates in issuer order, then the root)")
    else:
        print("order: as loaded")
    report_warnings(warnings)
    return EXIT_OK


def _guess_leaf(loaded: list[LoadedCert]) -> tuple[LoadedCert, str]:
    """Without a key: the certificates that issued no other loaded one; a non-CA first, then load order."""
    from ..pki.certs import is_ca, signed_by

    def issued_another(item: LoadedCert) -> bool:
        return any(other is not item and signed_by(other.cert, item.cert) for other in loaded)

    candidates = [item for item in loaded if not issued_another(item)] or list(loaded)
    chosen = next((item for item in candidates if not is_ca(item.cert)), candidates[0])
    ca_note = "" if not is_ca(chosen.cert) else " (a CA certificate: no end-entity certificate qualified)"
    others = len(candidates) - 1
    extra = f"; {others} other candidate{'s' if others != 1 else ''}, first non-CA in load order wins" if others else ""
    return chosen, f"leaf (no --key given): it issued no other loaded certificate{ca_note}{extra}"


def _link_reason(child: x509.Certificate, issuer: x509.Certificate, child_index: int) -> str:
    from cryptography import x509 as x509_module

    facts = ["subject equals its issuer name"]
    try:
        aki = child.extensions.get_extension_for_class(x509_module.AuthorityKeyIdentifier).value.key_identifier
        ski = issuer.extensions.get_extension_for_class(x509_module.SubjectKeyIdentifier).value.digest
        if aki is not None and aki == ski:
            facts.append("key identifier matches")
    except x509_module.ExtensionNotFound:
        pass
    facts.append("its key verifies the signature")
    return f"issued certificate {child_index}: {', '.join(facts)}"


def _top_line(top: x509.Certificate) -> str:
    from ..pki.certs import self_signed

    if self_signed(top):
        return f"top: {name_of(top.subject)} is self-signed (a root CA); sending it is harmless"
    return (f"top: {name_of(top.subject)} is not self-signed; the peer must hold its issuer "
            f"{name_of(top.issuer)} in its trusted CAs")
