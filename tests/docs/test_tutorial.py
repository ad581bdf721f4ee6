"""docs/tutorial.md, run as written: every ``$`` command of its ``console`` blocks, in order, in
one real shell, against a real ``bastion quickstart``; each output must read as the page shows.

How the page is read:

- ``$ command`` starts a command, ``> more`` continues it (a here-document), and the lines up to
  the next command are its output, stdout and stderr together as a terminal shows them.
- ``…`` in a line stands for any text (ids, secrets, times, URLs with a fresh ``state``); a line
  that is only ``…`` stands for any number of lines. Runs of spaces and rules (``─``) count as
  one space, since tables and rules are as wide as their content.
- A command is expected to fail (exit status not 0) exactly when its output shows ``error:``.
- ``<!-- person: NAME -->`` (invisible on the page) says who is at the browser from then on:
  ``$BROWSER`` is :mod:`tests.docs.person`, which signs in as NAME in Chromium and allows what
  the consent page asks. Passwords come from the quickstart banner and ``bastion users add``.
- ``bastion quickstart`` runs in its own process (the page has it in its own terminal), on free
  ports in place of 8000-8002.

The actual transcript goes to ``transcript.md`` in the test's directory (and to the file
``$TUTORIAL_RECORD`` names), with the page's ports, to update the page from.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.live import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "tutorial.md"
PERSON = Path(__file__).with_name("person.py")
BIN = Path(sys.executable).parent
DOC_PORT = 8000
# Each command, the browser's part included, ends within this many seconds.
BOUND = 90
DONE = "__tutorial_command_done__"
ELLIPSIS = "…"


@dataclass
class Step:
    """One ``$`` command of the page, its output as shown, and who is at the browser."""

    line: int
    command: str
    expected: list[str] = field(default_factory=list)
    person: str | None = None

    @property
    def should_fail(self) -> bool:
        return any(line.startswith("error:") for line in self.expected)


def read_steps(text: str) -> list[Step]:
    """The commands of the page's ``console`` blocks, in order."""
    steps: list[Step] = []
    person: str | None = None
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if not in_block:
            found = re.fullmatch(r"<!-- person: (\S+) -->", line.strip())
            if found:
                person = found.group(1)
            in_block = line.strip() == "```console"
            continue
        if line.strip() == "```":
            in_block = False
        elif line.startswith("$ "):
            steps.append(Step(number, line[2:], person=person))
        elif line.startswith("> ") and steps and not steps[-1].expected:
            steps[-1].command += "\n" + line[2:]
        elif steps:
            steps[-1].expected.append(line)
    return steps


def _squeeze(line: str) -> str:
    return re.sub(r"[ ─━]+", " ", line).strip()


def matches(expected: list[str], actual: str) -> bool:
    """Whether ``actual`` reads as ``expected`` with its ``…`` (see the module docstring)."""
    parts = []
    for line in expected:
        if line.strip() == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = [re.escape(p) for p in _squeeze(line).split(ELLIPSIS)]
            parts.append("[^\n]*?".join(pieces) + r"\n")
    lines = actual.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    text = "".join(_squeeze(line) + "\n" for line in lines)
    return re.fullmatch("".join(parts), text) is not None


class Shell:
    """One bash, its stdout and stderr read together, commands run one after another."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def run(self, command: str) -> tuple[int, str]:
        """Run ``command``; its exit status and output."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f'{command}\necho "{DONE} $?"\n')
        self.proc.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + BOUND
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{command!r} did not finish within {BOUND} s:\n{''.join(out)}")
            if DONE in line:
                before, status = line.split(DONE)
                out.append(before)
                return int(status), "".join(out)
            out.append(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _ports(port: int) -> dict[int, int]:
    return {DOC_PORT + n: port + n for n in range(3)}


def to_run(text: str, port: int) -> str:
    """The page's ports replaced by the ones of this run."""
    for ours, theirs in _ports(port).items():
        text = text.replace(f"127.0.0.1:{ours}", f"127.0.0.1:{theirs}")
    return text


def as_shown(text: str, port: int) -> str:
    """This run's ports replaced by the page's."""
    for ours, theirs in _ports(port).items():
        text = text.replace(f"127.0.0.1:{theirs}", f"127.0.0.1:{ours}")
    return text


def three_free_ports() -> int:
    """A port with the two after it free too (quickstart uses port, port+1, port+2)."""
    while True:
        port = free_port()
        if all(_bindable(port + n) for n in (1, 2)):
            return port


def _answers(port: int) -> bool:
    """Whether something accepts connections on the port (the banner comes before the
    listeners: a person opening a second terminal takes longer than they do)."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_quickstart(
    step: Step, work: Path, env: dict[str, str], port: int, procs: list[subprocess.Popen[bytes]]
) -> str:
    """Run the page's quickstart command on ``port``; the banner it printed."""
    log = work.parent / "quickstart.log"
    with log.open("wb") as out:
        procs.append(
            subprocess.Popen(
                [*shlex.split(step.command), "--port", str(port)],
                cwd=work,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        text = log.read_text()
        found = re.search(r"\A(.*Stop with Ctrl-C\.\n[^\n]*\n)", text, re.S)
        if found and all(_answers(port + n) for n in range(3)):
            return found.group(1)
        if procs[-1].poll() is not None:
            pytest.fail(f"quickstart exited with {procs[-1].returncode}:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"quickstart printed no banner within {BOUND} s:\n{log.read_text()}")


def test_the_tutorial_runs_as_written(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    steps = read_steps(DOC.read_text())
    assert steps and steps[0].command == "bastion quickstart", "the page starts with quickstart"
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "COLUMNS": "100",
        "NO_COLOR": "1",
        # No keyring service here: tokens go to the 0600 file, as on a server.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "BROWSER": f"{sys.executable} {PERSON} %s",
        "PYTHONPATH": str(ROOT),
    }
    port = three_free_ports()
    passwords: dict[str, str] = {}
    transcript: list[str] = []
    differences: list[str] = []
    # With TUTORIAL_RECORD every command runs, to write the whole transcript for the page.
    record = os.environ.get("TUTORIAL_RECORD")
    shell = Shell(work, env)
    try:
        person: str | None = None
        for step in steps:
            if step.command == "bastion quickstart":
                status, out = 0, start_quickstart(step, work, env, port, processes)
                found = re.search(r"admin / (\S+)", out)
                assert found, out
                passwords["admin"] = found.group(1)
            else:
                if step.person != person:
                    person = step.person
                    if person is not None:
                        said = f"{person} {passwords[person]} allow"
                        assert shell.run(f"export TUTORIAL_PERSON={shlex.quote(said)}")[0] == 0
                status, out = shell.run(to_run(step.command, port))
            shown = as_shown(out, port)
            ending = "" if shown.endswith("\n") or not shown else "\n"
            transcript.append(f"$ {step.command}\n{shown}{ending}")
            (tmp_path / "transcript.md").write_text("".join(transcript))
            added = re.match(r"bastion users add (\S+)", step.command)
            created = re.search(r"^password\s+(\S+)\s+\(shown once\)", out, re.M)
            if added and created:
                passwords[added.group(1)] = created.group(1)
            where = f"docs/tutorial.md:{step.line}: $ {step.command}"
            expected = [to_run(line, port) for line in step.expected]
            if (status != 0) != step.should_fail:
                differences.append(f"{where}\nexit status {status}:\n{shown}")
            elif not matches(expected, out):
                differences.append(
                    f"{where}\nthe page shows:\n" + "\n".join(step.expected) + f"\ngot:\n{shown}"
                )
            if differences and not record:
                break
    finally:
        shell.close()
        if record:
            Path(record).write_text("".join(transcript))
    assert not differences, "\n\n".join(differences)


def test_the_matcher_is_strict_where_the_page_is_exact() -> None:
    """``…`` and spacing are the only freedom: a changed word, a missing or an extra line
    does not match."""
    expected = ["client_id      …", "…", "Store the secret now: it is not shown again."]
    good = "client_id      abc\nclient_secret  xyz\nStore the secret now: it is not shown again.\n"
    assert matches(expected, good)
    assert matches(["│ a │  b │"], "│ a      │ b │\n\n")
    assert not matches(expected, good.replace("Store", "Keep"))
    assert not matches(["5.0"], "5.0\n42\n")
    assert not matches(["a", "b"], "a\n")
    assert not matches(["exit …"], "exit\n1\n")


def test_the_page_is_read_as_commands_outputs_and_people() -> None:
    page = (
        "<!-- person: bob -->\n"
        "```console\n"
        "$ cat > f <<'EOF'\n"
        "> one\n"
        "> EOF\n"
        "$ bastion call URL add_note\n"
        "error: refused\n"
        "```\n"
        "```sh\n$ not a step\n```\n"
    )
    first, second = read_steps(page)
    assert first.command == "cat > f <<'EOF'\none\nEOF" and first.expected == []
    assert second.expected == ["error: refused"] and second.should_fail
    assert first.person == second.person == "bob" and second.line == 6
