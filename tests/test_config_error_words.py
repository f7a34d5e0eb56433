"""Every configuration error of spec §10 provoked through the public API and the ``gtls`` command line, from one
deployment file: the library raises that class, ``gtls check`` names it (text and JSON), and ``gtls serve`` ends
with exit 2 and one ``gtls: config error:`` line naming the object (spec §1.1: before any network I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gtls import errors
from gtls.context import compile_context
from gtls.deployment import load_deployment
from gtls.testing import DemoPKI
from tests.peers import error_line, run_gtls


def cases(pki: DemoPKI, tmp: Path) -> dict[str, tuple[type[errors.ConfigError], dict[str, str]]]:
    """Application name: (error expected, its [security] table besides a complete server identity)."""
    not_pem = tmp / "not-a-crl.pem"
    not_pem.write_text("no PEM here\n")
    return {
        "incomplete": (errors.IncompleteTlsLevel, {"certificate": "", "certificate-key": ""}),
        "conflicting": (errors.ConflictingOptions, {"crl": str(not_pem), "tls-crl": str(tmp / "other.pem")}),
        "invalid": (errors.InvalidOptionValue, {"tls-mutual": "maybe"}),
        "protocol": (errors.UnsupportedProtocol, {"sec-protocol": "TLSv11"}),
        "feature": (errors.UnsupportedFeature, {"provider": "MSCAPI"}),
        "credential": (errors.CredentialLoadError, {"certificate-key": str(tmp / "missing.key")}),
        "mismatch": (errors.KeyMismatch, {"certificate-key": str(pki.client_key)}),
        "crl": (errors.CrlLoadError, {"tls-mutual": "1", "tls-crl": str(not_pem)}),
        "cipher": (errors.CipherListError, {"cipher-list": "NO-SUCH-CIPHER"}),
    }


@pytest.fixture(scope="module")
def setup(localhost_demo: DemoPKI, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, dict[str, tuple[type[errors.ConfigError], dict[str, str]]]]:
    tmp = tmp_path_factory.mktemp("config-words")
    table = cases(localhost_demo, tmp)
    identity = {"certificate": str(localhost_demo.server_chain), "certificate-key": str(localhost_demo.server_key),
                "trusted-ca": str(localhost_demo.root_ca)}
    text = []
    for number, (app, (_, options)) in enumerate(table.items()):
        security = "\n".join(f'{key} = "{value}"' for key, value in {**identity, **options}.items() if value)
        text.append(f'[applications.{app}.security]\n{security}\n[applications.{app}.ports.p]\n'
                    f'address = "127.0.0.1"\nport = {19000 + number}\ntransport = "tls=1"\n')
    config = tmp / "deploy.toml"
    config.write_text("\n".join(text))
    return config, table


def test_each_config_error_through_the_public_api(setup: tuple[Path, dict[str, tuple[type, dict[str, str]]]]
                                                  ) -> None:
    config, table = setup
    deployment = load_deployment(config)
    for app, (expected, _) in table.items():
        with pytest.raises(errors.ConfigError) as caught:
            compile_context(deployment.port(app, "p").resolved)
        assert type(caught.value) is expected, (app, caught.value)
        assert caught.value.object_path == f"applications.{app}.ports.p", (app, caught.value)


def test_each_config_error_named_by_gtls_check(setup: tuple[Path, dict[str, tuple[type, dict[str, str]]]]) -> None:
    config, table = setup
    result = run_gtls("check", "--config", str(config), "--json")
    assert result.returncode == 1, result.stderr
    found = {endpoint["object_path"]: endpoint["error"] and endpoint["error"]["type"]
             for endpoint in json.loads(result.stdout)["endpoints"]}
    assert found == {f"applications.{app}.ports.p": expected.__name__ for app, (expected, _) in table.items()}
    text = run_gtls("check", "--config", str(config)).stdout
    for expected, _ in table.values():
        assert f"error: {expected.__name__}:" in text, (expected, text)


@pytest.mark.parametrize("app", ["conflicting", "protocol", "feature", "mismatch", "crl", "cipher"])
def test_each_config_error_stops_gtls_serve(setup: tuple[Path, dict[str, tuple[type, dict[str, str]]]],
                                            app: str) -> None:
    config, table = setup
    result = run_gtls("serve", "--config", str(config), "--app", app, "--port-id", "p")
    assert result.returncode == 2, result.stderr
    word = table[app][0].__name__  # the error's class is its stable word on the line (spec §10)
    assert error_line(result).startswith(f"gtls: config error: {word}: applications.{app}.ports.p: "), result.stderr
