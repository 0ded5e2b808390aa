"""serval-cat end to end: processes on loopback around one serval-node process.

Every serval-cat and the node run as subprocesses on 127.0.0.1, port 0;
argument and key-file errors, which end before any socket is opened, run
in-process.  The ring is one node (it creates the ring and stores every
record itself), shared by the module; each test uses names of its own.
No assertion depends on timing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ref.chord.cat import cat_main
from ref.cli_args import EXIT_USAGE
from ref.keys import public_key_text
from ref.sal.cli import (
    EXIT_NOT_REGISTERED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_RESOLVER_UNREACHABLE,
)

ROOT = Path(__file__).resolve().parents[2]
PATIENCE = 20.0  # a process that takes longer to start or answer has failed
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
REGISTERED = re.compile(r"registered \S+ at 127\.0\.0\.1:(\d+)")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _command(entry: str, module: str) -> list[str]:
    return [sys.executable, "-c", f"from {module} import {entry}; {entry}()"]


SERVAL_CAT = _command("cat_main", "ref.chord.cat")


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_for_text(path: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes]) -> str:
    give_up = time.monotonic() + PATIENCE
    while time.monotonic() < give_up:
        match = pattern.search(path.read_text())
        if match:
            return match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"no {pattern.pattern!r} in {path.name}: {path.read_text()[-800:]}")


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HOST:PORT of a one-node ring."""
    directory = tmp_path_factory.mktemp("node")
    out, err = directory / "node.out", directory / "node.err"
    argv = [*_command("node_main", "ref.chord.cli"), "--listen", "127.0.0.1:0"]
    argv += ["--key", str(directory / "node.key")]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        node = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=_environment())
    try:
        port = _wait_for_text(out, LISTENING, node)
        yield f"127.0.0.1:{port}"
    finally:
        node.kill()
        node.wait()


class Listener:
    """A ``serval-cat --listen`` process; its standard error and output in files."""

    def __init__(self, directory: Path, resolver: str, *argv: str, stdin: bool = False) -> None:
        self.err = directory / f"listener{id(self)}.err"
        self.out = directory / f"listener{id(self)}.out"
        command = [*SERVAL_CAT, "--resolver", resolver, *argv]
        with open(self.out, "wb") as stdout, open(self.err, "wb") as stderr:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=_environment(),
                cwd=directory,
            )
        self.port = int(_wait_for_text(self.err, REGISTERED, self.process))

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=PATIENCE)
        self._close_stdin()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._close_stdin()

    def _close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


@pytest.fixture
def listeners(tmp_path: Path, resolver: str) -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.kill()


def cat(
    resolver: str, *argv: str, data: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [*SERVAL_CAT, "--resolver", resolver, *argv],
        input=data,
        capture_output=True,
        env=_environment(),
        cwd=cwd,
        timeout=PATIENCE + 10,
        check=False,
    )
    assert b"Traceback" not in done.stderr
    return done


def _listen(
    listeners: list[Listener], tmp_path: Path, resolver: str, *argv: str, stdin: bool = False
) -> Listener:
    key = tmp_path / "owner.key"
    listener = Listener(tmp_path, resolver, "--key", str(key), *argv, stdin=stdin)
    listeners.append(listener)
    return listener


# --- streams -----------------------------------------------------------------------------


def test_exec_cat_echoes_by_name_and_a_signal_withdraws_the_name(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    listener = _listen(listeners, tmp_path, resolver, "--listen", "echo.example", "--exec", "cat")
    key = tmp_path / "owner.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f"created owner key file {key} (mode 0600)" in listener.err.read_text()

    data = os.urandom(300_000)
    done = cat(resolver, "echo.example", data=data)
    assert (done.returncode, done.stdout, done.stderr) == (EXIT_OK, data, b"")
    assert cat(resolver, "echo.example", data=b"hello\n").stdout == b"hello\n"

    # A client stopped by SIGINT while connected: 128 + 2.
    client = subprocess.Popen(
        [*SERVAL_CAT, "--resolver", resolver, "echo.example"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(b"still there?\n")
    client.stdin.flush()
    assert client.stdout.readline() == b"still there?\n"
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=PATIENCE)
    assert client.returncode == 128 + signal.SIGINT
    assert err == b""

    assert listener.stop(signal.SIGTERM) == EXIT_OK
    assert "Traceback" not in listener.err.read_text()
    gone = cat(resolver, "echo.example", data=b"anyone?\n")
    assert gone.returncode == EXIT_NOT_REGISTERED
    assert gone.stderr == b"serval-cat: echo.example: service not registered\n"


def test_listen_serves_one_connection_on_standard_input_and_output(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    listener = _listen(listeners, tmp_path, resolver, "--listen", "once.example", stdin=True)
    assert listener.process.stdin is not None
    listener.process.stdin.write(b"from the listener\n")
    listener.process.stdin.close()
    done = cat(resolver, "once.example", data=b"from the client\n")
    assert (done.returncode, done.stdout) == (EXIT_OK, b"from the listener\n")
    assert listener.process.wait(timeout=PATIENCE) == EXIT_OK
    assert listener.out.read_bytes() == b"from the client\n"
    # One connection, as nc -l: the name was withdrawn when it was accepted.
    assert cat(resolver, "once.example").returncode == EXIT_NOT_REGISTERED


def test_sigint_stops_a_waiting_listener_and_withdraws_the_name(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    listener = _listen(listeners, tmp_path, resolver, "--listen", "waiting.example", stdin=True)
    assert listener.stop(signal.SIGINT) == EXIT_OK
    assert cat(resolver, "waiting.example").returncode == EXIT_NOT_REGISTERED


def test_an_unknown_name_is_not_registered_exit_3(resolver: str) -> None:
    done = cat(resolver, "nobody.example", data=b"hello?\n")
    assert done.returncode == EXIT_NOT_REGISTERED
    assert done.stderr == b"serval-cat: nobody.example: service not registered\n"
    assert done.stdout == b""


def test_an_unreachable_resolver_exit_4(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{_unused_port()}"
    done = cat(nobody, "echo.example", data=b"hello?\n")
    assert done.returncode == EXIT_RESOLVER_UNREACHABLE
    assert done.stderr.startswith(f"serval-cat: resolver {nobody} unreachable: ".encode())
    assert done.stderr.count(b"\n") == 1


def test_a_stream_to_a_datagram_listener_is_refused_exit_5(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    """The replica has no STREAM listener for the name: its RST refuses (Section 5.11.3)."""
    _listen(listeners, tmp_path, resolver, "--listen", "datagrams.example", "--udp")
    done = cat(resolver, "datagrams.example", data=b"hello?\n")
    assert done.returncode == EXIT_REFUSED
    assert done.stderr == b"serval-cat: datagrams.example: connection refused\n"


# --- datagrams -----------------------------------------------------------------------------


def test_udp_exec_answers_every_datagram(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    _listen(
        listeners, tmp_path, resolver, "--listen", "upper.example", "--udp", "--exec", "tr a-z A-Z"
    )
    done = cat(resolver, "upper.example", "--udp", data=b"one\ntwo\n")
    assert (done.returncode, done.stdout, done.stderr) == (EXIT_OK, b"ONE\nTWO\n", b"")


def test_udp_listener_writes_every_payload(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    listener = _listen(listeners, tmp_path, resolver, "--listen", "sink.example", "--udp")
    lines = b"".join(b"line %d\n" % i for i in range(20))
    assert cat(resolver, "sink.example", "--udp", data=lines).returncode == EXIT_OK
    give_up = time.monotonic() + PATIENCE
    while listener.out.read_bytes() != lines and time.monotonic() < give_up:
        time.sleep(0.02)
    assert listener.out.read_bytes() == lines  # loopback loses nothing at this rate


def test_udp_to_an_unknown_name_exit_3(resolver: str) -> None:
    done = cat(resolver, "nobody.example", "--udp", data=b"hello?\n")
    assert done.returncode == EXIT_NOT_REGISTERED
    assert done.stderr == b"serval-cat: nobody.example: service not registered\n"


# --- arguments and key files ----------------------------------------------------------------


def _exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        cat_main(argv)
    code = exited.value.code
    assert isinstance(code, int)
    return code


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["echo.example"],  # no --resolver
        ["--resolver", "127.0.0.1:5"],  # neither NAME nor --listen
        ["--resolver", "127.0.0.1:5", "a.example", "--listen", "b.example"],
        ["--resolver", "localhost:5", "echo.example"],
        ["--resolver", "127.0.0.1", "echo.example"],
        ["--resolver", "127.0.0.1:5", "bad name"],
        ["--resolver", "127.0.0.1:5", "x@notakey"],
        ["--resolver", "127.0.0.1:5", "echo.example", "--exec", "cat"],  # --exec needs --listen
        ["--resolver", "127.0.0.1:5", "echo.example", "--key", "k"],
        ["--resolver", "127.0.0.1:5", "--listen", "x", "--weight", "0"],
        ["--resolver", "127.0.0.1:5", "--listen", "x", "--priority", "256"],
        ["--resolver", "127.0.0.1:5", "--listen", "x", "--exec", "no-such-command-here"],
        ["--resolver", "127.0.0.1:5", "--listen", "x", "--exec", "'unbalanced"],
        ["--resolver", "127.0.0.1:5", "--listen", "x", "--bind", "0.0.0.0:0"],
        ["--resolver", "127.0.0.1:5", "--listen", "x", "--bind", "[::1]:0"],
        ["--resolver", "127.0.0.1:5", "echo.example", "--timeout", "0"],
        ["--resolver", "127.0.0.1:5", "echo.example", "--frobnicate"],
    ],
)
def test_bad_arguments_exit_2_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_status(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("serval-cat: error: ")
    assert err.count("\n") == 1


def test_a_corrupt_key_file_is_refused_naming_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "corrupt.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    argv = ["--resolver", "127.0.0.1:5", "--listen", "echo.example", "--key", str(key)]
    assert _exit_status(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(key) in err
    assert "corrupt" in err
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\nnot base64")  # untouched


def test_a_name_bound_to_another_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = public_key_text(Ed25519PrivateKey.generate())
    key = tmp_path / "owner.key"
    argv = ["--resolver", "127.0.0.1:5", "--listen", f"echo.example@{other}", "--key", str(key)]
    assert _exit_status(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "bound to another key" in err
    assert err.count("\n") == 2  # the key file's creation, then the error


def test_the_owner_key_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    key = tmp_path / "new.key"
    nobody = f"127.0.0.1:{_unused_port()}"
    argv = ["--listen", "echo.example", "--key", str(key), "--timeout", "0.5"]
    done = cat(nobody, *argv)
    assert done.returncode == EXIT_RESOLVER_UNREACHABLE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = done.stderr.decode().splitlines()
    assert lines[0] == f"serval-cat: created owner key file {key} (mode 0600)"
    assert lines[1].startswith(f"serval-cat: resolver {nobody}")
    assert len(lines) == 2


def test_a_listener_registers_its_key_bound_name(
    tmp_path: Path, resolver: str, listeners: list[Listener]
) -> None:
    owner = Ed25519PrivateKey.generate()
    key = tmp_path / "owner.key"
    key.write_bytes(owner.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    name = f"bound.example@{public_key_text(owner)}"
    _listen(listeners, tmp_path, resolver, "--listen", name, "--exec", "cat")
    assert cat(resolver, name, data=b"mine\n").stdout == b"mine\n"
