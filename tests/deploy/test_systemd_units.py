"""The systemd units of deploy/systemd: valid for systemd (``systemd-analyze verify``, skipped
where systemd-analyze is absent) and sandboxed (read from the files, always)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.scaleout.processes import bastion_command

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
COMMANDS = {"bastion.service": "serve", "bastion-gateway.service": "gateway"}
SANDBOX = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}


def _directives(path: Path) -> dict[str, list[str]]:
    """Each key of the [Service] section with its values (a key may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("unit", sorted(COMMANDS))
def test_a_unit_runs_bastion_unprivileged_in_a_sandbox(unit: str) -> None:
    service = _directives(UNITS / unit)
    for key, value in SANDBOX.items():
        assert service.get(key) == [value], f"{unit}: {key}={value} expected"
    assert service["User"] == ["bastion"]
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    data = "/var/lib/bastion"
    assert service["Environment"] == [f"BASTION_DATA_DIR={data}"]
    assert service["ReadWritePaths"] == [data]
    assert service["StateDirectory"] == ["bastion"]
    command = service["ExecStart"][0].split()
    assert command[:2] == ["/opt/bastion/bin/bastion", COMMANDS[unit]]
    assert "--config" in command


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """``systemd-analyze verify`` reports nothing (an unknown or misspelt key is a warning it
    prints), with ExecStart pointed at this environment's ``bastion``."""
    program = bastion_command()
    if len(program) != 1:
        pytest.skip("no bastion console script beside this interpreter")
    for unit in COMMANDS:
        text = (UNITS / unit).read_text().replace("/opt/bastion/bin/bastion", program[0])
        (tmp_path / unit).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / unit) for unit in COMMANDS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""
