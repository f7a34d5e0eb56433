"""The private pyOpenSSL symbols gtls relies on (gtls/pki/hostcheck.py), and the verify-code mapping."""

from __future__ import annotations

from gtls.pki import hostcheck, reasons


def test_private_api_symbols_present() -> None:
    missing = hostcheck.missing_symbols()
    assert not missing, (
        f"pyOpenSSL's private binding lacks {missing}: the in-handshake peer-name check is off and gtls falls back "
        "to names.py after the handshake. Update gtls/pki/hostcheck.py for this pyOpenSSL."
    )
    assert hostcheck.AVAILABLE


def test_error_text_and_reason_mapping() -> None:
    assert hostcheck.error_text(reasons.HOSTNAME_MISMATCH) == "hostname mismatch"
    assert reasons.reason_for(23) == "revoked" and reasons.reason_for(10) == "expired"
    assert reasons.reason_for(3) == reasons.reason_for(33) == "crl-unavailable"
    assert reasons.reason_for(79) == reasons.reason_for(25) == reasons.reason_for(32) == "bad-ca"
    # The numbers in reasons.py are OpenSSL's: check the texts of the codes that carry a specific reason.
    texts = {23: "certificate revoked", 79: "invalid CA certificate", 25: "path length constraint exceeded",
             32: "key usage does not include certificate signing", 26: "unsuitable certificate purpose",
             3: "unable to get certificate CRL", 33: "unable to get CRL issuer certificate", 12: "CRL has expired",
             11: "CRL is not yet valid", 8: "CRL signature failure", 35: "key usage does not include CRL signing",
             10: "certificate has expired", 24: "issuer certificate doesn't have a public key"}
    assert {code: hostcheck.error_text(code) for code in texts} == texts
    assert reasons.reason_for(26) == "bad-purpose" and reasons.reason_for(35) == "crl-signature"
    assert reasons.reason_for(9999) == "untrusted" and not reasons.is_known(9999)


def test_library_failure_wording() -> None:
    from OpenSSL import SSL

    from gtls.pki.failures import library_failure

    def error(text: str) -> SSL.Error:
        return SSL.Error([("SSL routines", "", text)])

    assert library_failure(error("sslv3 alert handshake failure"))[::2] == ("peer-alert", "handshake_failure")
    assert library_failure(error("tls alert unknown ca"))[::2] == ("peer-alert", "unknown_ca")
    assert library_failure(error("tlsv1 alert protocol version"))[0] == "protocol-version"
    assert library_failure(error("wrong version number"))[0] == "not-tls"
    assert library_failure(error("no shared cipher"))[0] == "no-shared-cipher"
    assert library_failure(error("unexpected eof while reading"))[0] == "eof-in-handshake"
    assert library_failure(SSL.SysCallError(-1, "Unexpected EOF"))[0] == "eof-in-handshake"
    reason, message, _ = library_failure(error("decode error"))
    assert reason == "not-tls" and "decode error" in message
