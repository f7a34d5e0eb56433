"""OpenSSL verify codes (``X509_V_ERR_…``) to the reason words of spec §10."""

from __future__ import annotations

from typing import Final

from .. import errors as e

#: X509_V_ERR_HOSTNAME_MISMATCH: the peer-name check failed.
HOSTNAME_MISMATCH: Final = 62
CRL_HAS_EXPIRED: Final = 12
EE_KEY_TOO_SMALL: Final = 66
CA_KEY_TOO_SMALL: Final = 67
CA_MD_TOO_WEAK: Final = 68
#: Codes OpenSSL finds only after its security-level check of the path (``check_auth_level``): the host check, the
#: revocation checks, then signatures, validity times, name constraints and policies. A path with a weak key or
#: signature fails on that first, whatever else is wrong with it.
AFTER_AUTH_LEVEL: Final = frozenset({62, 64, 3, 5, 8, 11, 12, 15, 16, 23, 33, 35, 36, 44, 54, 4, 7, 9, 10, 13, 14,
                                     47, 48, 49, 42, 43})
#: Codes OpenSSL finds only after its revocation checks (``internal_verify`` and later): signatures, validity times,
#: name constraints and policies. A revoked certificate (or a CRL fault) fails on that first, whatever else is wrong.
AFTER_REVOCATION: Final = frozenset({4, 7, 9, 10, 13, 14, 47, 48, 49, 42, 43})

# Codes from include/openssl/x509_vfy.h (OpenSSL 3.x; the numbers are stable across releases, and
# tests/test_pki_hostcheck.py checks OpenSSL's own text for the important ones). Anything not listed is "untrusted".
VERIFY_REASONS: Final[dict[int, e.Reason]] = {
    2: e.UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT
    3: e.CRL_UNAVAILABLE,  # UNABLE_TO_GET_CRL
    4: e.UNTRUSTED,  # UNABLE_TO_DECRYPT_CERT_SIGNATURE
    5: e.CRL_SIGNATURE,  # UNABLE_TO_DECRYPT_CRL_SIGNATURE
    6: e.UNTRUSTED,  # UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY
    7: e.UNTRUSTED,  # CERT_SIGNATURE_FAILURE
    8: e.CRL_SIGNATURE,  # CRL_SIGNATURE_FAILURE
    9: e.NOT_YET_VALID,  # CERT_NOT_YET_VALID
    10: e.EXPIRED,  # CERT_HAS_EXPIRED
    11: e.CRL_NOT_YET_VALID,  # CRL_NOT_YET_VALID
    12: e.CRL_EXPIRED,  # CRL_HAS_EXPIRED
    13: e.UNTRUSTED,  # ERROR_IN_CERT_NOT_BEFORE_FIELD
    14: e.UNTRUSTED,  # ERROR_IN_CERT_NOT_AFTER_FIELD
    15: e.CRL_NOT_YET_VALID,  # ERROR_IN_CRL_LAST_UPDATE_FIELD
    16: e.CRL_EXPIRED,  # ERROR_IN_CRL_NEXT_UPDATE_FIELD
    18: e.UNTRUSTED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: e.UNTRUSTED,  # SELF_SIGNED_CERT_IN_CHAIN
    20: e.UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: e.UNTRUSTED,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    22: e.UNTRUSTED,  # CERT_CHAIN_TOO_LONG
    23: e.REVOKED,  # CERT_REVOKED
    24: e.UNTRUSTED,  # NO_ISSUER_PUBLIC_KEY
    25: e.BAD_CA,  # PATH_LENGTH_EXCEEDED
    26: e.BAD_PURPOSE,  # INVALID_PURPOSE
    27: e.UNTRUSTED,  # CERT_UNTRUSTED
    28: e.UNTRUSTED,  # CERT_REJECTED
    32: e.BAD_CA,  # KEYUSAGE_NO_CERTSIGN
    33: e.CRL_UNAVAILABLE,  # UNABLE_TO_GET_CRL_ISSUER
    35: e.CRL_SIGNATURE,  # KEYUSAGE_NO_CRL_SIGN
    37: e.UNTRUSTED,  # INVALID_NON_CA (a non-CA certificate with CA markings)
    38: e.BAD_CA,  # PROXY_PATH_LENGTH_EXCEEDED
    39: e.BAD_PURPOSE,  # KEYUSAGE_NO_DIGITAL_SIGNATURE
    41: e.UNTRUSTED,  # INVALID_EXTENSION
    42: e.UNTRUSTED,  # INVALID_POLICY_EXTENSION
    43: e.UNTRUSTED,  # NO_EXPLICIT_POLICY
    44: e.CRL_UNAVAILABLE,  # DIFFERENT_CRL_SCOPE
    45: e.UNTRUSTED,  # UNSUPPORTED_EXTENSION_FEATURE
    47: e.UNTRUSTED,  # PERMITTED_VIOLATION (name constraints)
    48: e.UNTRUSTED,  # EXCLUDED_VIOLATION
    49: e.UNTRUSTED,  # SUBTREE_MINMAX
    54: e.CRL_UNAVAILABLE,  # CRL_PATH_VALIDATION_ERROR: the CRL issuer's own path fails
    HOSTNAME_MISMATCH: e.NAME_MISMATCH,
    64: e.NAME_MISMATCH,  # IP_ADDRESS_MISMATCH (not used by gtls, mapped for completeness)
    79: e.BAD_CA,  # INVALID_CA: an issuer without CA:TRUE (or keyCertSign)
    80: e.BAD_CA,  # PATHLEN_INVALID_FOR_NON_CA
    81: e.BAD_CA,  # PATHLEN_WITHOUT_KU_KEY_CERT_SIGN
}
# Security-level and key-size rejections: the peer's certificate is unusable under our policy.
for _code in (EE_KEY_TOO_SMALL, CA_KEY_TOO_SMALL, CA_MD_TOO_WEAK):
    VERIFY_REASONS[_code] = e.UNTRUSTED


def reason_for(code: int) -> e.Reason:
    """The reason word for an OpenSSL verify code; unknown codes are ``untrusted``."""
    return VERIFY_REASONS.get(code, e.UNTRUSTED)


def is_known(code: int) -> bool:
    return code in VERIFY_REASONS
