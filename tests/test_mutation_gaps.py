"""Behaviour the suite did not pin down, found by hand-made mutation testing (audit 46): each test fails on a
mutant of the code it names (a bound moved by one, a guard dropped) and passes on the real code."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from gtls import DeploymentError, _files, load_deployment
from gtls._files import FileRefused, read_bounded
from gtls.errors import InvalidOptionValue
from gtls.options import parse_options

# --- gtls._files.read_bounded ---


def _pipe(data: bytes, *, close: bool = True) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    os.write(write_end, data)  # small: the pipe's buffer takes it at once
    if close:
        os.close(write_end)
        write_end = -1
    return read_end, write_end


def test_a_pipe_is_read_whole_up_to_exactly_the_limit() -> None:
    for size, accepted in ((20, True), (21, False)):
        read_end, _ = _pipe(b"x" * size)
        try:
            if accepted:
                assert read_bounded(Path(f"/proc/self/fd/{read_end}"), limit=20, kind="k", pipes=True) == b"x" * 20
            else:
                with pytest.raises(FileRefused, match="is a pipe that gave over gtls's limit"):
                    read_bounded(Path(f"/proc/self/fd/{read_end}"), limit=20, kind="k", pipes=True)
        finally:
            os.close(read_end)


def test_a_pipe_that_never_ends_is_refused_at_its_deadline_without_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer keeps its end open: refused after PIPE_SECONDS, waiting in poll (not a busy loop)."""
    monkeypatch.setattr(_files, "PIPE_SECONDS", 0.5)
    read_end, write_end = _pipe(b"[a]\n", close=False)
    try:
        started, cpu = time.monotonic(), time.process_time()
        with pytest.raises(FileRefused, match=r"is a pipe that did not reach its end within 0\.5 s"):
            read_bounded(Path(f"/proc/self/fd/{read_end}"), limit=100, kind="k", pipes=True)
        assert 0.4 < time.monotonic() - started < 5
        assert time.process_time() - cpu < 0.25
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_file_longer_than_its_stated_size_is_still_bounded() -> None:
    """A regular file that grows while read (here /proc, whose files state size 0) is refused past the limit, not
    cut at it."""
    with pytest.raises(FileRefused, match="file is over gtls's limit"):
        read_bounded(Path("/proc/self/status"), limit=16, kind="k")


@pytest.mark.parametrize(("path", "words"), [
    ("/tmp/a\x00b.toml", "the path contains a NUL character"),
    ("/tmp/\ud800.toml", "the path holds U+D800, a lone surrogate that no file name can hold"),
])
def test_a_path_no_file_can_have_is_named_as_such(path: str, words: str) -> None:
    with pytest.raises(DeploymentError, match=re.escape(words)):
        load_deployment(path)


# --- gtls.options: unknown and near-miss names ---


def _warnings(mapping: dict[str, object], *, warn_unknown: bool = False) -> list[str]:
    warnings: list[str] = []
    parse_options(mapping, warnings=warnings, warn_unknown=warn_unknown)
    return warnings


def test_a_non_ascii_key_warns_even_without_a_near_miss() -> None:
    """Transport keys pass unknown names silently, but not one holding other than ASCII: 'pоrt' (a Cyrillic o) is
    no option name's near miss and still warns."""
    assert _warnings({"p\u043ert": "1"}) == ["p\u043ert: unknown option, ignored (it holds non-ASCII characters: "
                                             "U+043E)"]
    assert _warnings({"port": "1"}) == []


def test_a_non_ascii_key_names_its_first_five_code_points_once_each() -> None:
    (five,) = _warnings({"\uff41\uff42\uff41\uff43\uff44\uff45\uff41": "1"})  # ａｂａｃｄｅａ
    assert "(it holds non-ASCII characters: U+FF41, U+FF42, U+FF43, U+FF44, U+FF45)" in five
    (six,) = _warnings({"\uff41\uff42\uff43\uff44\uff45\uff46": "1"})
    assert "(it holds non-ASCII characters: U+FF41, U+FF42, U+FF43, U+FF44, U+FF45, ...)" in six


@pytest.mark.parametrize(("name", "meant"), [
    ("tls_ca", "trusted-ca"),  # another stack's name, written with an underscore
    ("tsl-mutal", "tls-mutual"),  # two edits in a name of ten letters
    ("\U0001d413\U0001d40b\U0001d412-mutual", "tls-mutual"),  # mathematical bold capitals: no lower case of their own
])
def test_near_misses_the_matcher_must_still_find(name: str, meant: str) -> None:
    (warning,) = _warnings({name: "1"})
    assert warning.endswith(f"did you mean {meant!r}?")


def test_a_command_line_path_with_undecodable_bytes_stays_a_file_name() -> None:
    """U+DC80-U+DCFF (undecodable bytes of argv) encode back to the file system; a lone U+D800 does not."""
    assert parse_options({"certificate": "/tmp/\udcff.pem"}).certificate == "/tmp/\udcff.pem"
    with pytest.raises(InvalidOptionValue, match="U\\+D800"):
        parse_options({"certificate": "/tmp/\ud800.pem"})


# --- gtls.deployment: the duplicate-key hint ---


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "deploy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DeploymentError) as info:
        load_deployment(path)
    return str(info.value)


def test_the_duplicate_key_hint_quotes_table_names_and_follows_arrays_of_tables(tmp_path: Path) -> None:
    assert "key 'x' in [hosts.\"my host\"] is already set" in _error(tmp_path, '[hosts."my host"]\nx = 1\nx = 2\n')
    assert "key 'x' in [a.b] is already set" in _error(tmp_path, "[[a.b]]\nx = 1\nx = 2\n")


def test_only_a_duplicate_key_gets_the_duplicate_key_hint(tmp_path: Path) -> None:
    error = _error(tmp_path, "x = \n")
    assert "not valid TOML: Invalid value" in error and "already set" not in error


def test_a_duplicate_key_whose_value_spans_lines_is_named_by_its_own_line(tmp_path: Path) -> None:
    """tomllib places the error at the end of a multi-line value: its last line ('note = 2\"\"\"', inside the
    string) was read as the key."""
    error = _error(tmp_path, '[hosts.h]\nport = 1\nport = """\nnote = 2"""\n')
    assert error.endswith(": key 'port' in [hosts.h] is already set above (a key may be set once per table)")


# --- gtls.pki.pem: wide text ---


def test_wide_text_is_known_by_its_byte_order_mark_alone() -> None:
    """A UTF-16 file with a mark but no BEGIN line (a note, an empty export) is still named UTF-16."""
    from gtls.pki.pem import _wide_text

    assert _wide_text("not a certificate\n".encode("utf-16")) == "UTF-16"
    assert _wide_text(b"not a certificate\n") is None
