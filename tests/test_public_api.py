"""The ``gtls`` package surface: every public name resolves, and the heavy ones load only on first use."""

from __future__ import annotations

import copy
import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import gtls
from gtls.testing import CA, write_pem
from tests.peers import plaintext_reply, raw_server


def test_every_public_name_resolves_to_its_defining_object() -> None:
    for name in gtls.__all__:
        value = getattr(gtls, name)
        assert getattr(importlib.import_module(value.__module__), name) is value, name
    assert set(gtls.__all__) <= set(dir(gtls))
    # Completion shows the interface, not the names the package's own code imports.
    assert not {"annotations", "importlib", "TYPE_CHECKING"} & set(dir(gtls))
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


async def test_handshake_errors_and_events_survive_pickle_and_copy(tmp_path: Path) -> None:
    """Users log, copy and re-raise these, and a worker process hands them to its parent by pickling: each keeps its
    class, reason, message, peer, depth and subject. The errors come from real failures: an HTTP server answering
    our ClientHello, and a certificate OpenSSL rejects."""
    root = CA.root("pickle root")
    stranger = CA.root("someone else").leaf("p.test", dns=["p.test"])
    options = gtls.TLSOptions.from_mapping({"trusted-ca": str(write_pem(tmp_path / "ca.pem", root))})
    with raw_server(plaintext_reply) as port, pytest.raises(gtls.HandshakeError) as wire:
        await gtls.open_tls_over_tcp_stream("127.0.0.1", port, options)
    with pytest.raises(gtls.PeerVerificationError) as offline:
        gtls.verify_chain([stranger.cert], options, "client")
    event = gtls.HandshakeEvent(peer="127.0.0.1:1", ok=False, reason=wire.value.reason, tls_version=None, cipher=None,
                                subject=None, server_name=None, session_reused=False, duration=0.1, error=wire.value)
    for error in (wire.value, offline.value):
        for again in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
            assert type(again) is type(error) and str(again) == str(error)
            assert (again.reason, again.message, again.peer, again.depth, again.subject) == (
                error.reason, error.message, error.peer, error.depth, error.subject)
    assert wire.value.reason == "not-tls" and offline.value.reason == "untrusted"
    assert pickle.loads(pickle.dumps(event)).error.reason == "not-tls"  # type: ignore[union-attr]


def test_resolved_settings_and_endpoints_are_hashable(tmp_path: Path) -> None:
    """Frozen dataclasses that type checkers call hashable must be: a set of endpoints, a dict keyed by settings."""
    resolved = gtls.direct({"trusted-ca": "/ca.pem"}, "client")
    assert hash(resolved) == hash(gtls.direct({"trusted-ca": "/ca.pem"}, "client"))
    endpoint = gtls.Endpoint("applications.a.connections.c", "client", "127.0.0.1", 1, resolved, None)
    assert endpoint in {endpoint}


def test_type_checkers_see_the_lazy_names_and_refuse_misspelt_ones(tmp_path: Path) -> None:
    """The names loaded on first use are typed for mypy, and a misspelt ``gtls.`` name is a type error there (a
    module ``__getattr__`` visible to type checkers would have made any name pass as ``object``)."""
    user = tmp_path / "user_code.py"
    user.write_text(
        "import gtls\n"
        "def peer(stream: gtls.TLSStream) -> str | None:\n"
        "    return stream.peer_address\n"
        "ending: gtls.Ending = gtls.classify_ending(ValueError())\n"
        "oops = gtls.clasify_ending\n"
    )
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and ":5:" in errors[0] and "clasify_ending" in errors[0], result.stdout


#: A strictly typed user's code; each ``# error`` line must be refused by mypy (code in brackets), no other line.
TYPED_USER_PROGRAM = """\
from typing import assert_type

import gtls
from gtls.ending import EndWord
from gtls.errors import LevelTitle, Reason, TLSVersionName
from gtls.resolve import CertificateSource

def narrowed(opts: gtls.TLSOptions) -> gtls.TLSOptions:
    opts.replace(tls_mutal=True)  # error [call-arg]
    return opts.replace(tls_mutual=True, sec_protocol="TLSv13")

def failed(exc: gtls.HandshakeError, event: gtls.HandshakeEvent) -> str:
    assert_type(exc.reason, Reason)
    assert_type(event.reason, Reason | None)
    assert_type(gtls.classify_ending(exc).word, EndWord | Reason)
    misspelt = exc.reason == "untrsted"  # error [comparison-overlap]
    return "certificate" if exc.reason in gtls.errors.CERTIFICATE_REASONS or misspelt else exc.reason

def negotiated(stream: gtls.TLSStream, event: gtls.HandshakeEvent) -> bool:
    assert_type(stream.tls_version, TLSVersionName | None)
    assert_type(stream.version(), TLSVersionName | None)
    assert_type(event.tls_version, TLSVersionName | None)
    return stream.tls_version == "TLS1.3"  # error [comparison-overlap]

def to_fix(exc: gtls.ConfigError) -> bool:
    assert_type(exc.level, LevelTitle | None)
    return exc.level == "port"  # error [comparison-overlap]

def from_host(deployment: gtls.Deployment) -> bool:
    assert_type(deployment.application("a").certificate_source, CertificateSource)
    return deployment.application("a").certificate_source == "Host"  # error [comparison-overlap]
"""


def _mypy_errors(tmp_path: Path, program: str) -> tuple[dict[int, str], str]:
    """mypy --strict's errors on ``program``, by line number, and its whole output."""
    user = tmp_path / "typed_user.py"
    user.write_text(program)
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    errors = {}
    for line in result.stdout.splitlines():
        if ": error:" in line:
            errors[int(line.split(":")[1])] = line
    return errors, result.stdout


def test_a_typed_user_program_gets_precise_types(tmp_path: Path) -> None:
    """What gtls's annotations promise a user who type-checks with --strict. ``TLSOptions.replace`` took
    ``**changes: Any``, so a misspelt field passed the type checker and failed only at run time; the reason and
    ending words, the negotiated version and a configuration error's level were typed ``str``, so a misspelt word
    compared with one was never true, silently."""
    errors, output = _mypy_errors(tmp_path, TYPED_USER_PROGRAM)
    expected = {number: line.split("# error ")[1].strip("[]")
                for number, line in enumerate(TYPED_USER_PROGRAM.splitlines(), 1) if "# error " in line}
    assert {number: text.rsplit("[", 1)[-1].rstrip("]") for number, text in errors.items()} == expected, output


def test_replace_keywords_are_the_option_fields() -> None:
    """``OptionChanges`` (the keywords ``TLSOptions.replace`` is typed with) lists every field, typed alike."""
    import typing

    from gtls.options import OptionChanges

    assert typing.get_type_hints(OptionChanges) == typing.get_type_hints(gtls.TLSOptions)
    with pytest.raises(TypeError, match="tls_mutal"):
        gtls.TLSOptions().replace(tls_mutal=True)  # type: ignore[call-arg]


def test_reason_and_ending_word_types_list_the_words() -> None:
    """``Reason`` and ``EndWord`` (the types of ``HandshakeError.reason`` and ``Ending.word``) are the vocabularies."""
    import typing

    from gtls.ending import END_WORDS, EndWord

    assert typing.get_args(gtls.errors.Reason) == gtls.errors.REASONS
    assert typing.get_args(EndWord) == END_WORDS
    assert set(typing.get_args(gtls.errors.TLSVersionName)) >= {"TLSv1.2", "TLSv1.3"}
    assert set(typing.get_args(gtls.errors.LevelTitle)) == {level.title for level in gtls.resolve.Level}


def test_star_import_of_errors_brings_the_runtime_pair_too() -> None:
    namespace: dict[str, object] = {}
    exec("from gtls.errors import *", namespace)  # noqa: S102 - the import statement under test
    assert namespace["HandshakeError"] is gtls.HandshakeError
    assert namespace["PeerVerificationError"] is gtls.PeerVerificationError
    assert "HandshakeError" in dir(gtls.errors)


def test_submodules_read_as_attributes_after_a_bare_import() -> None:
    """The README's `gtls.context.STATS` after `import gtls` raised AttributeError unless something had loaded the
    submodule first, while type checkers accepted it; `gtls.pki.explain_chain` the same."""
    probe = (
        "import gtls\n"
        "print(type(gtls.context.STATS).__name__, gtls.pki.explain_chain.__name__, gtls.testing.CA.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["explain_chain", "CA"]


def test_public_signatures_resolve_at_run_time() -> None:
    """typing.get_type_hints (typeguard, beartype, pydantic's validate_call, sphinx) raised NameError on the entry
    points: CompiledContext was imported for type checkers only."""
    import typing

    from gtls.stream import TLSStream

    for function in (gtls.serve_tls_over_tcp, gtls.open_tls_over_tcp_listeners, gtls.open_tls_over_tcp_stream,
                     gtls.connect, gtls.compile_context, gtls.verify_chain, gtls.TLSListener.__init__,
                     TLSStream.__init__, TLSStream.getpeercert):
        hints = typing.get_type_hints(function)
        assert "return" in hints, function


def test_public_class_annotations_resolve_at_run_time() -> None:
    """typing.get_type_hints on ConfigError and every subclass raised NameError: ``ConfigError.shadowed`` names
    ``Shadowed``, which gtls.errors imported for type checkers only (pydantic, typeguard, cattrs and sphinx read
    annotations so). Every public class of the package's lists, with its public methods and properties."""
    import typing

    for module in (gtls, gtls.errors, gtls.ending, gtls.testing, gtls.pki):
        for name in module.__all__:
            value = getattr(module, name)
            if not isinstance(value, type) or not value.__module__.startswith("gtls"):
                continue
            typing.get_type_hints(value)
            for attribute_name, attribute in vars(value).items():
                if attribute_name.startswith("_") and attribute_name != "__init__":
                    continue
                function = attribute.fget if isinstance(attribute, property) else attribute
                if callable(function) and (getattr(function, "__module__", None) or "").startswith("gtls"):
                    typing.get_type_hints(function)
    assert typing.get_type_hints(gtls.ConfigError)["shadowed"] == tuple[gtls.Shadowed, ...]


def test_the_design_interface_signatures_and_defaults() -> None:
    """design.md §4: the handshake deadline is 10 s by default on the listeners and the connector, and
    ``verify_chain`` takes (chain, settings, role, target_name=None, at=None), the second named ``settings`` as on
    every other entry point; ``TLSOptions.from_mapping`` reads no file."""
    import inspect

    for function in (gtls.open_tls_over_tcp_listeners, gtls.serve_tls_over_tcp, gtls.open_tls_over_tcp_stream,
                     gtls.connect, gtls.TLSListener):
        assert inspect.signature(function).parameters["handshake_timeout"].default == 10.0, function
    parameters = inspect.signature(gtls.verify_chain).parameters
    assert list(parameters) == ["chain", "settings", "role", "target_name", "at"]
    assert parameters["target_name"].default is None and parameters["at"].default is None
    options = gtls.TLSOptions.from_mapping({"certificate": "/nonexistent/a.pem,/nonexistent/b.pem",
                                            "certificate-key": "/nonexistent/k.pem",
                                            "trusted-ca": "/nonexistent/ca.pem",
                                            "tls-mutual": "1"})
    assert options.certificate == "/nonexistent/a.pem,/nonexistent/b.pem" and options.tls_mutual is True


@pytest.mark.parametrize("given", [gtls.TLSOptions(), None, {"trusted-ca": "/ca.pem"}])
def test_compile_context_of_the_wrong_type_is_a_type_error_saying_what_to_pass(given: object) -> None:
    """``compile_context(TLSOptions())`` gave ``AttributeError: 'TLSOptions' object has no attribute 'role'``."""
    with pytest.raises(TypeError, match=r"compile_context takes Resolved settings .* not ") as info:
        gtls.compile_context(given)  # type: ignore[arg-type]
    if isinstance(given, gtls.TLSOptions):
        assert "gtls.direct(options, 'server' or 'client')" in str(info.value)
