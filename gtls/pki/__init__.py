"""Loading and judging certificates, keys, CRLs and stores (spec §4–§6). The modules are internal to gtls; tools
use the names below."""

from .crl import DUE_SOON as CRL_DUE_SOON
from .explain import ChainExplanation, ChainLink, explain_chain, listed_certificates

__all__ = ["CRL_DUE_SOON", "ChainExplanation", "ChainLink", "explain_chain", "listed_certificates"]
