"""Command-line helpers shared by every program of the suite.

One argparse flavour (one-line errors, exit status 2) and one reading of
``HOST:PORT`` (an IP literal, IPv6 in brackets), so that ``serval-node``,
``serval-dht`` and ``serval-conform`` accept and refuse the same text.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE (see --help)``, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def host_port(text: str, *, port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` with an IP literal, as an argparse type."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ipaddress.ip_address(_checked_ip(host, text)).version != 6:
            raise argparse.ArgumentTypeError(f"{text!r}: brackets are for IPv6 addresses")
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 address as [ADDRESS]:PORT")
    host = _checked_ip(host, text)
    if not port_text.isdigit() or not (0 if port_zero else 1) <= int(port_text) <= 65535:
        low = 0 if port_zero else 1
        raise argparse.ArgumentTypeError(f"{text!r}: the port is a number from {low} to 65535")
    return host, int(port_text)


def _checked_ip(host: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {host!r} is not an IP address") from None


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    """An argparse ``type``: a number of ``kind`` from ``low`` to ``high``, one-line errors."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not {low:g} to {high:g}")
        return value

    return parse
