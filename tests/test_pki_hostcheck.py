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
    assert reasons.reason_for(24) == reasons.reason_for(25) == reasons.reason_for(32) == "bad-ca"
    assert reasons.reason_for(26) == "bad-purpose" and reasons.reason_for(35) == "crl-signature"
    assert reasons.reason_for(9999) == "untrusted" and not reasons.is_known(9999)
