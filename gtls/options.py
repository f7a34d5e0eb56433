"""TLS options (spec §1) and transport parameters (spec §2).

CONTRACT (shared by every module; owner of the parsing code: the foundation work):

* ``TLSOptions`` is frozen; every field is ``None`` when the option is absent (an empty value counts as absent).
  Field names are the Genesys names with ``-`` → ``_``; ``GENESYS_NAMES`` maps them back.
* Values are normalised: booleans are ``bool``; predefined values use the spec's spelling
  (``"no"``/``"host"``, ``"SSLv23"``/``"TLSv12"``/``"TLSv13"``, ``"leaf"``/``"chain"``, ``"reject"``/``"warn"``);
  paths and lists stay strings exactly as configured (trimmed), and are interpreted by ``gtls.pki``.
* ``crl`` is kept apart from ``tls_crl`` so resolution can apply the alias rule (spec §3.2 step 7); use
  ``effective_crl`` after resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

TargetNameCheck = Literal["no", "host"]
SecProtocol = Literal["SSLv23", "TLSv12", "TLSv13"]
CrlScope = Literal["leaf", "chain"]
CrlExpired = Literal["reject", "warn"]


@dataclass(frozen=True, slots=True)
class TLSOptions:
    # mode flags (never select a level)
    tls: bool | None = None
    tls_mutual: bool | None = None
    upgrade: bool | None = None
    # parameter set
    certificate: str | None = None
    certificate_key: str | None = None
    trusted_ca: str | None = None
    tls_crl: str | None = None
    crl: str | None = None
    tls_crl_scope: CrlScope | None = None
    tls_crl_expired: CrlExpired | None = None
    certificate_store: str | None = None
    sec_protocol: SecProtocol | None = None
    cipher_list: str | None = None
    provider: str | None = None
    fips140_enabled: bool | None = None
    # parameter set, client only
    tls_target_name_check: TargetNameCheck | None = None
    tls_target_name: str | None = None

    @property
    def effective_crl(self) -> str | None:
        """``tls-crl``, else its alias ``crl``."""
        return self.tls_crl if self.tls_crl is not None else self.crl

    def present(self) -> dict[str, object]:
        """The options that are set, by Genesys name."""
        return {
            GENESYS_NAMES[f.name]: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


#: Python field name -> Genesys option name.
GENESYS_NAMES: dict[str, str] = {f.name: f.name.replace("_", "-") for f in dataclasses.fields(TLSOptions)}
GENESYS_NAMES["fips140_enabled"] = "fips140-enabled"
#: Genesys option name -> Python field name.
FIELD_NAMES: dict[str, str] = {v: k for k, v in GENESYS_NAMES.items()}
