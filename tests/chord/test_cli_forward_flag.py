"""serval-node --forward-mode: the node acts as a SAL service router (draft Section 6.9.3)."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ref.chord.cli as cli
from ref.chord.aio import DhtClient
from ref.chord.cli import node_main, node_parser
from ref.chord.exchange import Failure
from ref.chord.node import NodeConfig
from ref.wire.sal import Endpoint


def test_forward_mode_is_off_unless_asked() -> None:
    assert node_parser().parse_args(["--listen", "127.0.0.1:0"]).forward_mode is False
    args = node_parser().parse_args(["--listen", "127.0.0.1:0", "--forward-mode"])
    assert args.forward_mode is True


@pytest.mark.parametrize("flag", [False, True])
def test_the_flag_reaches_the_node_configuration(
    flag: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[NodeConfig] = []

    async def run_node(*args: Any) -> int:
        seen.append(args[4])
        return 0

    monkeypatch.setattr(cli, "_run_node", run_node)
    argv = ["--listen", "127.0.0.1:0", "--key", str(tmp_path / "node.key")]
    with pytest.raises(SystemExit) as exit_info:
        node_main(argv + ["--forward-mode"] * flag)
    assert exit_info.value.code == 0
    assert [config.forward_mode for config in seen] == [flag]


def test_a_node_started_with_the_flag_declares_feature_forward(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ref.chord", "--listen", "127.0.0.1:0"]
    command += ["--key", str(tmp_path / "node.key"), "--forward-mode"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on ")
        host, _, port = line.removeprefix("listening on ").strip().rpartition(":")
        node = Endpoint(ipaddress.ip_address(host), int(port))

        async def status() -> dict[str, Any] | Failure:
            client = await DhtClient.connect([node], host="127.0.0.1")
            try:
                return await client.status(node)
            finally:
                client.close()

        report = asyncio.run(status())
        assert isinstance(report, dict)
        assert "forward" in report["features"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
