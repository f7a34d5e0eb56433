"""Reading DER: just what certificates use (definite lengths, tag numbers skipped past the first byte), for the few
places that need a certificate's bytes as OpenSSL reads them and not as ``cryptography`` presents them:
``getpeercert()`` (``gtls._ssl_compat``) and the signature-algorithm check of legacy self-signed roots
(``gtls.pki.certs``)."""

from __future__ import annotations


def elements(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of each DER element in ``data``, in order; ValueError when it is not DER."""
    found: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        tag = data[at]
        at += 1
        if tag & 0x1F == 0x1F:
            # A high tag number follows in base 128 (valid DER, e.g. an otherName's value); the first byte keeps
            # class and form, which is all the callers compare, so the number is skipped.
            for _ in range(4):
                if at >= len(data) or not data[at] & 0x80:
                    break
                at += 1
            else:
                raise ValueError("tag number too large")
            at += 1
        if at >= len(data):
            raise ValueError("truncated DER")
        length = data[at]
        at += 1
        if length & 0x80:  # long form; 0x80 alone (indefinite) is BER, not DER
            count = length & 0x7F
            if not 0 < count <= 4 or at + count > len(data):
                raise ValueError("bad DER length")
            length = int.from_bytes(data[at:at + count], "big")
            at += count
        if at + length > len(data):
            raise ValueError("truncated DER")
        found.append((tag, data[at:at + length]))
        at += length
    return found


def only(data: bytes) -> tuple[int, bytes]:
    """The one element ``data`` holds; ValueError for none or several."""
    found = elements(data)
    if len(found) != 1:
        raise ValueError("expected one DER element")
    return found[0]


def oid_text(contents: bytes) -> str:
    """An OBJECT IDENTIFIER's contents in dotted form."""
    arcs: list[int] = []
    value = 0
    for byte in contents:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or contents[-1] & 0x80:
        raise ValueError("bad OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)  # the first two arcs share a subidentifier (X.690 8.19.4)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))
