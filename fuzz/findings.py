"""Findings: what counts as one, how two are told apart, and how one is kept.

A harness runs one input and returns; the only failures a receive path may
show are :class:`~ref.wire.errors.RemoteProtocolError`, which harnesses
catch.  Anything else that escapes is a finding: an exception from the code
under test, or a :class:`Finding` raised by an oracle (an invariant broken, two
decoders disagreeing, an input that took too long).

Two findings are the same when their *signatures* are: the exception class
and the innermost frame of the code under test (file and function, no line
number, so that an edit elsewhere in the file does not split a finding), or
the oracle's name.  A finding is kept under ``fuzz/crashes/`` as two files:
``TARGET-SIGNATURE.bin``, the minimised input, and ``TARGET-SIGNATURE.json``,
what it broke and the command that replays it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

S = TypeVar("S", bytes, list[Any])

REPOSITORY = Path(__file__).resolve().parent.parent
CRASHES = Path(__file__).resolve().parent / "crashes"
#: Where the code under test lives: the innermost frame there names a finding.
_UNDER_TEST = (REPOSITORY / "ref", REPOSITORY / "conformance")
MINIMISE_SECONDS = 30.0  # for each pass


class Finding(Exception):
    """An oracle's verdict on one input: something other than a crash went wrong."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


class InvariantViolation(Finding):
    """A node's or a decoder's state or output broke a rule that must always hold."""


class Mismatch(Finding):
    """Two implementations of one decoder disagreed on the same input."""


class SlowInput(Finding):
    """One input took longer than the target's per-input budget."""


class Hang(BaseException):
    """Raised by the alarm when a replayed input runs past its budget.

    A ``BaseException`` so that no ``except Exception`` in the code under test
    swallows it.
    """


def signature(error: BaseException) -> str:
    """What tells this finding from others: oracle name, or class and innermost frame."""
    if isinstance(error, Finding):
        return f"{type(error).__name__}:{error.name}"
    where = _innermost(error.__traceback__)
    kind = type(error).__name__
    return f"{kind}@{where}" if where else kind


def _innermost(trace: TracebackType | None) -> str:
    """The innermost frame under test, else the innermost in the repository (a harness bug)."""
    found = fallback = ""
    while trace is not None:
        path = Path(trace.tb_frame.f_code.co_filename)
        if path.is_relative_to(REPOSITORY):
            where = f"{path.relative_to(REPOSITORY)}:{trace.tb_frame.f_code.co_name}"
            fallback = where
            if any(path.is_relative_to(root) for root in _UNDER_TEST):
                found = where
        trace = trace.tb_next
    return found or fallback


def describe(error: BaseException) -> str:
    """The traceback of ``error`` as text (with its notes, such as the decoder input)."""
    return "".join(traceback.format_exception(error)).rstrip()


# --- running one input under a time budget ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one run of a harness did: nothing wrong, or the finding it showed."""

    signature: str | None
    seconds: float
    text: str = ""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("the input ran past its time budget")


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the running code after ``seconds`` (main thread only)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_once(harness: Callable[[bytes], None], data: bytes, budget: float) -> Outcome:
    """Run ``harness`` on ``data``: a finding, a hang (4x the budget) or a slow input."""
    started = time.perf_counter()
    try:
        with time_limit(4 * budget):
            harness(data)
    except Hang as error:
        return Outcome("Hang", time.perf_counter() - started, describe(error))
    except Exception as error:
        return Outcome(signature(error), time.perf_counter() - started, describe(error))
    seconds = time.perf_counter() - started
    if seconds > budget:
        text = f"SlowInput: {seconds:.3f} s, over the budget of {budget:g} s"
        return Outcome("SlowInput:budget", seconds, text)
    return Outcome(None, seconds)


# --- minimising ----------------------------------------------------------------------------


def without_chunks(still_fails: Callable[[S], bool], items: S) -> S:
    """Delta debugging (ddmin): remove chunks of ``items`` while it still fails."""
    deadline = time.monotonic() + MINIMISE_SECONDS
    parts = 2
    while len(items) >= 2 and time.monotonic() < deadline:
        size = -(-len(items) // parts)
        for start in range(0, len(items), size):
            candidate = items[:start] + items[start + size :]
            if still_fails(candidate):
                items = candidate
                parts = max(parts - 1, 2)
                break
        else:
            if parts >= len(items):
                break
            parts = min(len(items), 2 * parts)
    return items


def minimise(still_fails: Callable[[bytes], bool], data: bytes) -> bytes:
    """A smaller input that still fails: chunks removed, then octets zeroed."""
    data = without_chunks(still_fails, data)
    deadline = time.monotonic() + MINIMISE_SECONDS
    for index in range(len(data)):
        if time.monotonic() >= deadline:
            break
        if data[index]:
            candidate = data[:index] + b"\x00" + data[index + 1 :]
            if still_fails(candidate):
                data = candidate
    return data


# --- keeping ---------------------------------------------------------------------------------


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def replay_command(target: str, path: Path) -> str:
    try:
        shown = path.resolve().relative_to(REPOSITORY)
    except ValueError:
        shown = path
    return f"python -m fuzz replay {target} {shown}"


@dataclasses.dataclass
class Record:
    """One stored finding: the ``.json`` beside its ``.bin``."""

    target: str
    signature: str
    input_hex: str
    original_size: int
    traceback: str
    replay: str
    found: str  # UTC, ISO 8601
    status: str = "open"  # "open" until the code is fixed, then "fixed"
    note: str = ""

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.input_hex)


def stem(target: str, signature_text: str) -> str:
    return f"{target}-{short_hash(signature_text)}"


def store(
    target: str,
    signature_text: str,
    data: bytes,
    original_size: int,
    text: str,
    folder: Path = CRASHES,
) -> tuple[Path, bool]:
    """Keep a finding (the smaller input if it is known already); True if it is new."""
    folder.mkdir(parents=True, exist_ok=True)
    name = stem(target, signature_text)
    binary = folder / f"{name}.bin"
    meta = folder / f"{name}.json"
    new = not meta.exists()
    if not new:
        old = load_record(meta)
        if len(old.data) <= len(data):
            return binary, False
    binary.write_bytes(data)
    record = Record(
        target=target,
        signature=signature_text,
        input_hex=data.hex(),
        original_size=original_size,
        traceback=text,
        replay=replay_command(target, binary),
        found=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    meta.write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n")
    return binary, new


def load_record(path: Path) -> Record:
    fields: dict[str, Any] = json.loads(path.read_text())
    return Record(**fields)


def records(folder: Path = CRASHES) -> list[Record]:
    """Every stored finding, in file-name order."""
    return [load_record(path) for path in sorted(folder.glob("*.json"))]


def known_signatures(target: str, folder: Path = CRASHES) -> set[str]:
    """Signatures of the open findings of ``target``: a campaign looks past them."""
    return {r.signature for r in records(folder) if r.target == target and r.status == "open"}
