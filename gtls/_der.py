"""Reading DER: just what certificates use (tag numbers skipped past the first byte; also the BER lengths and
constructed strings OpenSSL's parser takes, since OpenSSL keeps a certificate's signed bytes as sent), for the few
places that need a certificate's bytes as OpenSSL reads them and not as ``cryptography`` presents them:
``getpeercert()`` (``gtls._ssl_compat``) and the signature-algorithm check of legacy self-signed roots
(``gtls.pki.certs``)."""

from __future__ import annotations


def elements(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of each element in ``data``, in order; ValueError when it is not DER. The BER that
    OpenSSL's parser also takes is read too: an indefinite length (constructed forms only) and a long-form length
    with leading zero bytes."""
    found: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        tag, contents, at = _element(data, at, 0)
        found.append((tag, contents))
    return found


def _element(data: bytes, at: int, depth: int) -> tuple[int, bytes, int]:
    """The element at ``at``: its tag, its contents and where the next one starts."""
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
    if length == 0x80:  # indefinite: the contents end at an end-of-contents (00 00) of the same level
        if not tag & 0x20 or depth >= _MAX_NESTING:
            raise ValueError("bad indefinite length")
        start = at
        while data[at:at + 2] != b"\0\0":
            if at >= len(data):
                raise ValueError("truncated DER")
            _, _, at = _element(data, at, depth + 1)
        return tag, data[start:at], at + 2
    if length & 0x80:  # long form; OpenSSL skips leading zero bytes of the length
        count = length & 0x7F
        if at + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[at:at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[at:at + length], at + length


_MAX_NESTING = 30  # OpenSSL's ASN1_MAX_CONSTRUCTED_NEST


def string_contents(tag: int, contents: bytes) -> bytes:
    """A string's bytes: a primitive one's contents; a constructed (BER) one's pieces joined, whatever their tags, as
    OpenSSL's asn1_collect joins them (five levels deep at most)."""
    return _joined(tag, contents, 0)


def _joined(tag: int, contents: bytes, depth: int) -> bytes:
    if not tag & 0x20:
        return contents
    if depth > 5:  # ASN1_MAX_STRING_NEST
        raise ValueError("string nested too deep")
    return b"".join(_joined(inner_tag, inner, depth + 1) for inner_tag, inner in elements(contents))


def first(data: bytes) -> tuple[int, bytes]:
    """The first element of ``data``, whatever follows it (as a d2i call reads it); ValueError for none."""
    if not data:
        raise ValueError("expected a DER element")
    tag, contents, _ = _element(data, 0, 0)
    return tag, contents


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
    for at, byte in enumerate(contents):
        if byte == 0x80 and (at == 0 or not contents[at - 1] & 0x80):
            raise ValueError("bad OBJECT IDENTIFIER")  # a subidentifier padded with 0x80, which OpenSSL refuses
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or contents[-1] & 0x80:
        raise ValueError("bad OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)  # the first two arcs share a subidentifier (X.690 8.19.4)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))
