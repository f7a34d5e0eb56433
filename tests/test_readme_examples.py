"""README.md's Python examples run as printed and print what their comments say (audit 60; audits 16, 30 and 51 found
them drifting from the code).

Every ```python block of README.md is one of:

* a complete program: run in a subprocess (``sys.executable``, bounded in time) in a fresh working directory holding
  a copy of ``certs-fixtures/`` with its private keys at 0600 (README's ``chmod 600`` after a checkout), with
  ``HOME`` and ``GTLS_DATA_DIR`` inside the temporary directory. The only change made to its text: ``/tmp/`` becomes
  a folder of the temporary directory (and back again in what it printed), so examples writing ``/tmp/chain.pem``
  neither share nor leave files;
* a fragment, marked by ``<!-- example: fragment (WHY) -->`` on the line directly before its fence: compiled (top
  level ``await`` allowed), and run appended to the block above when WHY starts with "continues the block above".

A block that is neither fails, so a new example cannot slip in untested. An example binding a port (9443, 9444) that
something else on the machine holds is skipped, saying so.

Printed output is checked against comments: the comment ending a ``print(...)`` call states the line it prints
(exact; ``…`` or ``...`` stand for any text), and a ``print`` without one, followed directly by comment-only lines,
prints one line per comment line (a loop). Other ``print`` calls are not checked. The program runs under a small
driver that records which line of the example called ``print``, so output from several tasks is told apart; the
example's own text is unchanged."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import REPO, copy_fixtures, gtls_env

README = REPO / "README.md"
FENCE = re.compile(r"^\s*```(\S*)")
MARK = re.compile(r"^<!-- example: fragment \((.+)\) -->$")
CONTINUES = "continues the block above"
TIMEOUT = 20.0
ELLIPSIS = re.compile(r"…|\.\.\.")

# Runs the example, recording (line, text) for each print() the example itself makes. runpy gives the script its
# own file name and ``__name__ == "__main__"``, as ``python example.py`` does.
DRIVER = """\
import builtins, io, json, runpy, sys
script, records = sys.argv[1], sys.argv[2]
plain_print = builtins.print
def recording_print(*args, sep=" ", end="\\n", file=None, flush=False):
    caller = sys._getframe(1)
    if file is None and caller.f_code.co_filename == script:
        text = io.StringIO()
        plain_print(*args, sep=sep, end=end, file=text)
        with open(records, "a") as out:
            out.write(json.dumps([caller.f_lineno, text.getvalue()]) + "\\n")
    plain_print(*args, sep=sep, end=end, file=file, flush=flush)
builtins.print = recording_print
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""


@dataclass(frozen=True)
class Block:
    line: int  # README line of the first line of code
    source: str
    mark: str | None  # the fragment's WHY, None for a complete program


def readme_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, with the fragment mark on the line before each fence."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == "```"), len(lines))
        if opening.group(1) in ("python", "py", "python3"):
            mark = MARK.match(lines[index - 1]) if index else None
            blocks.append(Block(index + 2, "\n".join(lines[index + 1:end]) + "\n", mark.group(1) if mark else None))
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def program(block: Block) -> list[Block]:
    """The blocks to run, in order: the block, after the one it continues when it says so."""
    if block.mark is None:
        return [block]
    if not block.mark.startswith(CONTINUES):
        return []
    before = BLOCKS[BLOCKS.index(block) - 1]
    assert before.mark is None, f"README line {block.line}: the block above is a fragment too"
    return [before, block]


@dataclass
class Expected:
    readme_line: int
    patterns: list[str]


def comments(source: str) -> dict[int, tuple[str, bool]]:
    """Comment text by line, and whether the comment is all the line holds."""
    found: dict[int, tuple[str, bool]] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = (token.string.removeprefix("#").strip(), not token.line[:token.start[1]].strip())
    return found


def expected_output(source: str, readme_lines: list[int]) -> dict[tuple[int, int], Expected]:
    """Output comments by the line span of their print() call (script lines, from 1)."""
    notes = comments(source)
    expected: dict[tuple[int, int], Expected] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"):
            continue
        last = node.end_lineno or node.lineno
        trailing = notes.get(last)
        if trailing is not None and not trailing[1]:
            patterns = [trailing[0]]
        else:  # a print in a loop: the comment-only lines right below it, one per printed line
            patterns = []
            while (below := notes.get(last + 1 + len(patterns))) is not None and below[1]:
                patterns.append(below[0])
        if patterns:
            expected[(node.lineno, last)] = Expected(readme_lines[node.lineno - 1], patterns)
    return expected


def matches(pattern: str, printed: str) -> bool:
    parts = ELLIPSIS.split(pattern)
    return re.fullmatch(".*".join(re.escape(part) for part in parts), printed, re.S) is not None


def run(blocks: list[Block], tmp_path: Path) -> None:
    """Run ``blocks`` as one program in a fresh folder and check what it printed against its comments."""
    work = tmp_path / "work"
    work.mkdir()
    copy_fixtures(work)
    slash_tmp = work / "tmp"
    slash_tmp.mkdir()
    (tmp_path / "home").mkdir()
    source = "".join(block.source for block in blocks)
    readme_lines = [block.line + offset for block in blocks for offset in range(block.source.count("\n"))]
    script = work / "example.py"
    script.write_text(source.replace("/tmp/", f"{slash_tmp}/"), encoding="utf-8")
    records = tmp_path / "prints.jsonl"
    env = gtls_env(tmp_path / "data")
    env["HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", DRIVER, str(script), str(records)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    where = f"README line {blocks[-1].line}"
    if result.returncode != 0 and "Address already in use" in result.stderr:
        pytest.skip(f"{where}: the example's fixed port is in use on this machine")
    assert result.returncode == 0, (f"{where}: the example failed (if it is a fragment, mark it: "
                                    f"<!-- example: fragment (WHY) --> before its fence):\n{result.stderr}")
    printed: dict[int, list[str]] = {}
    if records.exists():
        for entry in records.read_text(encoding="utf-8").splitlines():
            line, text = json.loads(entry)
            printed.setdefault(line, []).extend(text.replace(f"{slash_tmp}/", "/tmp/").splitlines())
    for (first, last), want in expected_output(source, readme_lines).items():
        got = [text for line in range(first, last + 1) for text in printed.get(line, [])]
        assert len(got) == len(want.patterns) and all(map(matches, want.patterns, got)), (
            f"README line {want.readme_line}: printed {got}, its comments say {want.patterns}")


def test_readme_has_python_examples() -> None:
    """A changed fence style must not make the examples vanish from this test unnoticed."""
    assert len(BLOCKS) >= 10
    assert sum(block.mark is None for block in BLOCKS) >= 6


def test_every_fragment_mark_sits_right_before_a_python_fence() -> None:
    """A mark that slid away from its block (text inserted between) would leave that block unmarked and a later
    block wrongly marked; both are visible here rather than as a confusing failure elsewhere."""
    lines = README.read_text(encoding="utf-8").splitlines()
    marked = {block.line - 3 for block in BLOCKS if block.mark is not None}
    marks = [number for number, line in enumerate(lines) if line.lstrip().startswith("<!-- example:")]
    stray = [number + 1 for number in marks if number not in marked]
    assert not stray, f"README lines {stray}: an example mark not directly before a ```python fence"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{block.line}" for block in BLOCKS])
def test_readme_example(block: Block, tmp_path: Path) -> None:
    compile(block.source, f"README.md:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    blocks = program(block)
    if blocks:
        run(blocks, tmp_path)


SERVER = "serves until stopped"
#: What the README says curl prints when it asks the server example.
CURL_SAYS = re.compile(r"`curl ([^`]+)` prints `([^`]+)`")


def test_the_h11_server_example_answers_curl_as_printed(tmp_path: Path) -> None:
    """The h11 example serves until stopped, so it is marked a fragment; here it runs as printed (``/tmp/`` mapped as
    above) and ``curl --cacert /tmp/web-ca.pem https://localhost:8443/`` gets what the README says it prints."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl command")
    [block] = [block for block in BLOCKS if block.mark is not None and block.mark.startswith(SERVER)]
    [(arguments, printed)] = CURL_SAYS.findall(README.read_text(encoding="utf-8"))
    slash_tmp = tmp_path / "tmp"
    slash_tmp.mkdir()
    script = tmp_path / "web.py"
    script.write_text(block.source.replace("/tmp/", f"{slash_tmp}/"), encoding="utf-8")
    env = gtls_env(tmp_path / "data")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    server = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not _listening(8443):
            if server.poll() is not None:
                error = server.communicate()[1]
                if "Address already in use" in error:
                    pytest.skip("port 8443, which the example binds, is in use on this machine")
                pytest.fail(f"README line {block.line}: the server example ended:\n{error}")
            assert time.monotonic() < deadline, "the server example did not listen on 8443"
            time.sleep(0.05)
        command = [curl, "--silent", "--show-error", *shlex.split(arguments.replace("/tmp/", f"{slash_tmp}/"))]
        asked = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
        assert (asked.returncode, asked.stdout) == (0, printed + "\n"), asked.stderr
    finally:
        server.terminate()
        server.communicate(timeout=TIMEOUT)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
