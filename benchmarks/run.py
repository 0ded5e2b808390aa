"""Time the ref.wire codecs against a hand-written ``struct`` codec.

Each case is a message decoded and encoded three ways in the same run: through
Construct's interpreter (``*_interpreted``), through the fast path derived from
the same declarations (the public ``decode_*``/``encode_*``), and through
``codecs_struct``, written by hand.  The target is the fast path within 3x of
``struct``.  Prints a table and writes ``benchmarks/results/latest.json``.

    python benchmarks/run.py            # full run
    python benchmarks/run.py --quick    # a few seconds, for smoke tests
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import platform
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import construct  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from benchmarks import codecs_struct  # noqa: E402
from ref.wire import (  # noqa: E402
    Control,
    ControlFlags,
    DhtMessage,
    RecordEndpoint,
    RecordFlags,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    SalPacket,
    ServiceRecord,
    TransportProtocol,
    block_base,
    decode_dht,
    decode_sal,
    encode_dht,
    encode_sal,
    service_id_for,
    sign_record,
)
from ref.wire.dht import decode_dht_interpreted, encode_dht_interpreted  # noqa: E402
from ref.wire.sal import decode_sal_interpreted, encode_sal_interpreted  # noqa: E402

TARGET_RATIO = 3.0
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclasses.dataclass(frozen=True)
class Case:
    """One message and one direction, with the three ways to do it."""

    name: str
    interpreted: Callable[[], object]
    fast: Callable[[], object]
    baseline: Callable[[], object]


def _syn() -> SalPacket:
    """A SAL SYN: base header, CONTROL and the destination SERVICE (draft 5.2, 5.3)."""
    return SalPacket(
        source_flow_id=0x1F2E3D4C,
        destination_flow_id=0,
        protocol=TransportProtocol.STREAM,
        control=Control(ControlFlags.SYN, verno=0x01020304, ackno=0, nonce=bytes(range(8))),
        destination_service=service_id_for("echo.example"),
    )


def _resolve() -> DhtMessage:
    return DhtMessage(
        body=Resolve(service_id_for("echo.example")),
        transaction_id=bytes(range(8)),
        sender_key=bytes(range(32, 64)),
        token=bytes(range(16)),
    )


def _resolve_response() -> DhtMessage:
    """The answer to :func:`_resolve`: FOUND, a signed record with four endpoints."""
    key = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    addresses = ("192.0.2.10", "2001:db8::10", "198.51.100.7", "2001:db8:1::7")
    endpoints = tuple(
        RecordEndpoint(ipaddress.ip_address(a), 54325 + i, priority=i, weight=10 * (i + 1))
        for i, a in enumerate(addresses)
    )
    record = ServiceRecord(
        service_id=block_base(service_id_for("echo.example")),
        owner_key=bytes(32),
        sequence=42,
        issued_at=1_700_000_000,
        lifetime=3600,
        flags=RecordFlags(0),
        endpoints=endpoints,
    )
    return DhtMessage(
        body=ResolveResponse(ResolveStatus.FOUND, sign_record(record, key)),
        transaction_id=bytes(range(8)),
        sender_key=bytes(range(64, 96)),
        token=bytes(range(16, 32)),
    )


def cases() -> list[Case]:
    """The benchmark cases, after checking the three codecs agree on each message."""
    syn = _syn()
    syn_bytes = encode_sal(syn)
    out = _pair("SAL SYN", syn, syn_bytes, _SAL)
    for name, message in (
        ("DHT RESOLVE", _resolve()),
        ("DHT RESOLVE_RESPONSE", _resolve_response()),
    ):
        out += _pair(name, message, encode_dht(message), _DHT)
    return out


_Codecs = tuple[Callable[[Any], Any], ...]
_SAL: _Codecs = (
    decode_sal_interpreted,
    decode_sal,
    codecs_struct.decode_sal,
    encode_sal_interpreted,
    encode_sal,
    codecs_struct.encode_sal,
)
_DHT: _Codecs = (
    decode_dht_interpreted,
    decode_dht,
    codecs_struct.decode_dht,
    encode_dht_interpreted,
    encode_dht,
    codecs_struct.encode_dht,
)


def _pair(name: str, message: object, data: bytes, codecs: _Codecs) -> list[Case]:
    decoders, encoders = codecs[:3], codecs[3:]
    for decode in decoders:
        if decode(data) != message:
            raise SystemExit(f"{name}: {decode.__module__}.{decode.__name__} disagrees")
    for encode in encoders:
        if encode(message) != data:
            raise SystemExit(f"{name}: {encode.__module__}.{encode.__name__} disagrees")
    return [
        Case(f"{name} decode", *(_bind(decode, data) for decode in decoders)),
        Case(f"{name} encode", *(_bind(encode, message) for encode in encoders)),
    ]


def _bind(func: Callable[[Any], Any], argument: object) -> Callable[[], object]:
    return lambda: func(argument)


def per_call(func: Callable[[], object], repeat: int, budget: float) -> float:
    """Seconds per call: the best of ``repeat`` runs of about ``budget`` seconds each."""
    timer = timeit.Timer(func)
    estimate = timer.timeit(20) / 20
    number = max(1, int(budget / max(estimate, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number


@dataclasses.dataclass(frozen=True)
class Result:
    """One case's figures, in microseconds per call."""

    case: str
    interpreted_us: float
    fast_us: float
    struct_us: float

    @property
    def fast_ratio(self) -> float:
        return self.fast_us / self.struct_us

    @property
    def interpreted_ratio(self) -> float:
        return self.interpreted_us / self.struct_us

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "interpreted_us": round(self.interpreted_us, 3),
            "fast_us": round(self.fast_us, 3),
            "struct_us": round(self.struct_us, 3),
            "fast_ratio": round(self.fast_ratio, 2),
            "interpreted_ratio": round(self.interpreted_ratio, 2),
            "meets_target": self.fast_ratio <= TARGET_RATIO,
        }


def measure(case: Case, repeat: int, budget: float) -> Result:
    # interleaved, so that a slow spell of the machine hits all three alike
    best = [float("inf")] * 3
    for _ in range(repeat):
        for i, func in enumerate((case.interpreted, case.fast, case.baseline)):
            best[i] = min(best[i], per_call(func, 1, budget))
    return Result(case.name, *(seconds * 1e6 for seconds in best))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    repeat, budget = (3, 0.01) if args.quick else (7, 0.2)

    results = []
    for case in cases():
        started = time.perf_counter()
        result = measure(case, repeat, budget)
        results.append(result)
        took = time.perf_counter() - started
        print(
            f"{case.name:<30} fast {result.fast_us:7.2f} us"
            f"  {result.fast_ratio:4.2f}x struct  ({took:.1f}s)",
            flush=True,
        )

    print()
    print(_table(results))
    report = {
        "target_ratio": TARGET_RATIO,
        "quick": args.quick,
        "repeat": repeat,
        "seconds_per_run": budget,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "construct": construct.__version__,
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": [result.as_json() for result in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _table(results: list[Result]) -> str:
    head = (
        f"{'case':<30} {'interp us':>10} {'fast us':>9} {'struct us':>10}"
        f" {'fast/struct':>12} {'interp/struct':>14}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        mark = "" if r.fast_ratio <= TARGET_RATIO else f"  over {TARGET_RATIO:g}x"
        lines.append(
            f"{r.case:<30} {r.interpreted_us:>10.2f} {r.fast_us:>9.2f} {r.struct_us:>10.2f}"
            f" {r.fast_ratio:>11.2f}x {r.interpreted_ratio:>13.1f}x{mark}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
