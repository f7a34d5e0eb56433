"""The ``gtls`` package surface: every public name resolves, and the heavy ones load only on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import gtls


def test_every_public_name_resolves_to_its_defining_object() -> None:
    for name in gtls.__all__:
        value = getattr(gtls, name)
        assert getattr(importlib.import_module(value.__module__), name) is value, name
    assert set(gtls.__all__) <= set(dir(gtls))
    with pytest.raises(AttributeError, match="no_such_name"):
        gtls.no_such_name  # noqa: B018


def test_import_gtls_leaves_trio_and_openssl_unloaded_until_used() -> None:
    probe = (
        "import sys, gtls\n"
        "heavy = ('trio', 'OpenSSL', 'cryptography')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "gtls.TLSStream\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines() == ["[]", "['OpenSSL', 'cryptography', 'trio']"]
