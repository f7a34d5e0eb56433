"""``gtls chain LIST [--key FILE]``: the chain in the order gtls sends it, and why each certificate is there.

Loading, leaf selection, ordering and the reasons are ``gtls.pki.explain_chain``'s (spec §4.1–§4.3); this
command only prints them.
"""

from __future__ import annotations

import argparse

from ._common import EXIT_OK, Subcommands, certificate_lines, name_of, report_warnings


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
    from ..pki import explain_chain
    from ..pki.chain import open_top_warning

    # Relative paths are from the working directory (gtls.pki's default for tools), without a warning.
    explained = explain_chain(args.certificates, args.key)
    chain = explained.chain
    print(f"chain as gtls sends it ({len(chain)} of {explained.loaded} loaded certificate"
          f"{'s' if explained.loaded != 1 else ''}, leaf first):")
    for index, link in enumerate(explained.links):
        for line in certificate_lines(link.cert, index):
            print(line)
        print(f"    from:    {link.source} (certificate {link.position} in load order)")
        print(f"    why:     {link.reason}")
    top = chain[-1]
    warnings = explained.warnings
    if explained.top_self_signed:
        print(f"top: {name_of(top.subject)} is self-signed (a root CA); sending it is harmless")
    else:
        # The loader's warning says this (and whether the leaf goes alone): printed here, not again on stderr.
        said = open_top_warning(chain, "certificate")
        print(f"top: {said.removeprefix('certificate: ')}")
        warnings = tuple(warning for warning in warnings if warning != said)
    if explained.reordered:
        print("order: reordered from the load order (gtls sends leaf, intermediates in issuer order, then the root)")
    else:
        print("order: as loaded")
    report_warnings(warnings)
    return EXIT_OK
