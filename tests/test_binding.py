"""gtls._binding, the one module on pyOpenSSL's private API: every symbol is there, and the public-API fallbacks
give the same answers (the engine's fallback is exercised in test_stream.py and test_interop.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio

from gtls import HandshakeError, TLSOptions, _binding
from gtls.stream import TLSStream, compile_settings
from gtls.testing import CA
from tests.test_stream import tcp_transport_pair


def test_private_api_present() -> None:
    missing = _binding.missing_symbols()
    assert not missing, (
        f"pyOpenSSL {__import__('OpenSSL').__version__} lacks {missing}: gtls now runs its public-API fallbacks "
        "(slower engine path; peer-name check after the handshake). Update gtls/_binding.py for this pyOpenSSL."
    )
    assert _binding.ENGINE and _binding.VERIFY


def _server_files(tmp: Path, root: CA, **leaf: object) -> TLSOptions:
    cert = root.leaf("localhost", dns=("localhost",), **leaf)  # type: ignore[arg-type]
    return TLSOptions.from_mapping({
        "certificate": str(cert.write_cert(tmp / "cert.pem")),
        "certificate-key": str(cert.write_key(tmp / "key.pem")),
        "trusted-ca": str(root.write_cert(tmp / "server-ca.pem")),
    })


async def _failed_client(server: TLSOptions, client: TLSOptions) -> TLSStream:
    a, b = await tcp_transport_pair()
    client_stream = TLSStream(a, compile_settings(client, "client"), server_hostname="localhost")
    server_stream = TLSStream(b, compile_settings(server, "server"))

    async def server_side() -> None:
        try:
            await server_stream.do_handshake()
        except (HandshakeError, trio.BrokenResourceError):
            pass

    async with client_stream, server_stream, trio.open_nursery() as nursery:
        nursery.start_soon(server_side)
        with pytest.raises(HandshakeError):
            await client_stream.do_handshake()
    return client_stream


@pytest.mark.parametrize("case", ["untrusted", "expired", "bad-purpose"])
async def test_verify_result_fallback_matches(tmp_path: Path, case: str) -> None:
    """The fallback re-verifies the peer's chain against the context's store: same code, except a failure only the
    handshake's pinned purpose sees, which it reports as 1 (X509_V_ERR_UNSPECIFIED, reason untrusted)."""
    root, other = CA.root("binding root"), CA.root("binding other root")
    now = dt.datetime.now(dt.UTC)
    leaf: dict[str, object] = {
        "untrusted": {},
        "expired": {"not_before": now - dt.timedelta(days=10), "not_after": now - dt.timedelta(days=1)},
        "bad-purpose": {"eku": ("client",)},
    }[case]
    server = _server_files(tmp_path, other if case == "untrusted" else root, **leaf)
    client = TLSOptions.from_mapping({"trusted-ca": str(root.write_cert(tmp_path / "ca.pem"))})
    stream = await _failed_client(server, client)
    conn = stream._engine.conn
    direct = _binding.verify_result(conn)
    assert direct != 0
    fallback = _binding._reverify(conn)
    assert fallback == (1 if case == "bad-purpose" else direct), (case, direct, fallback)


@pytest.mark.parametrize("group", ["ENGINE_SYMBOLS", "VERIFY_SYMBOLS", "SESSION_SYMBOLS", "DETOUR_SYMBOLS",
                                   "OBJECT_NAME_SYMBOLS", "TRUST_STORE_SYMBOLS"])
def test_a_symbol_missing_from_any_group_is_reported(monkeypatch: pytest.MonkeyPatch, group: str) -> None:
    """test_private_api_present names what a new pyOpenSSL dropped: every group's symbols are among those checked."""
    real = _binding._lib
    gone = getattr(_binding, group)[-1]

    class Without:
        def __getattr__(self, name: str) -> object:
            if name == gone:
                raise AttributeError(name)
            return getattr(real, name)

    monkeypatch.setattr(_binding, "_lib", Without())
    assert gone in _binding.missing_symbols()
