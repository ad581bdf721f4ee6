"""Installing the local CA (:mod:`bastion.client.local_ca`) where this machine's programs look
for trusted roots, or saying exactly how (``bastion proxy registry --trust`` / ``--untrust``).

Where each client looks:

- VS Code and Chromium on Linux: the user's NSS database ``$HOME/.pki/nssdb`` (``certutil``
  from libnss3-tools, trust ``C,,``: a CA for TLS servers);
- other programs on Debian and Ubuntu: the system store (``/usr/local/share/ca-certificates``
  and ``update-ca-certificates``, which needs root);
- macOS: the login keychain, trusted as a root (``security add-trusted-cert``);
- Windows: the current user's Root store (``certutil -addstore -user Root``).

Node.js programs such as the Copilot CLI read none of these by default; they take the CA from
``NODE_EXTRA_CA_CERTS`` (see docs/registry.md). Each store gets a :class:`TrustOutcome` saying
what was done, or why not and the commands to run instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from bastion.client.local_ca import LocalCA

SYSTEM_DIR = Path("/usr/local/share/ca-certificates")
NSS_TRUST = "C,,"
_TIMEOUT = 120.0  # the macOS and Windows commands may wait for the person to confirm


@dataclass(frozen=True)
class TrustOutcome:
    """What happened to one trust store: ``done`` or not, a sentence, and the exact commands
    that would do it by hand when it was not done."""

    store: str
    done: bool
    message: str
    steps: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class TrustTarget:
    """Where to look: the home directory (for the NSS database and the keychain), the
    platform (``sys.platform``), the system store's directory, and the ``PATH`` to find tools
    in (None: the process's)."""

    home: Path
    platform: str = sys.platform
    system_dir: Path = SYSTEM_DIR
    search_path: str | None = None
    stores: Sequence[str] = ("system", "nss", "macos", "windows")


def nickname(cert: x509.Certificate) -> str:
    """The CA's name in stores that name their entries: its common name."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else "mcp-bastion local CA"
    return value if isinstance(value, str) else value.decode()


def install(ca: LocalCA, target: TrustTarget) -> list[TrustOutcome]:
    """Install the CA in every store of ``target`` this platform has."""
    return _each(ca, target, adding=True)


def remove(ca: LocalCA, target: TrustTarget) -> list[TrustOutcome]:
    """Remove the CA from every store of ``target`` this platform has."""
    return _each(ca, target, adding=False)


def _each(ca: LocalCA, target: TrustTarget, *, adding: bool) -> list[TrustOutcome]:
    if not adding and not ca.ca_path.exists():
        return [TrustOutcome("local CA", True, f"there is no local CA in {ca.directory}")]
    cert = ca.ca_certificate()
    stores: dict[str, Callable[[LocalCA, x509.Certificate, TrustTarget, bool], TrustOutcome]]
    if target.platform.startswith("linux"):
        stores = {"system": _debian, "nss": _nss}
    elif target.platform == "darwin":
        stores = {"macos": _macos}
    elif target.platform in ("win32", "cygwin"):
        stores = {"windows": _windows}
    else:
        stores = {}
    chosen = [store for name, store in stores.items() if name in target.stores]
    if not chosen:
        return [
            TrustOutcome(
                f"{target.platform} trust store",
                False,
                "bastion does not know this platform's trust store; add the CA certificate "
                f"{ca.ca_path} to it as a root trusted for TLS servers",
            )
        ]
    return [store(ca, cert, target, adding) for store in chosen]


def _run(argv: Sequence[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(  # noqa: S603 - fixed tools, argv without a shell
            list(argv), capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    output = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, (output[-1] if output else f"exit status {done.returncode}")


def _command(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def _debian(ca: LocalCA, cert: x509.Certificate, target: TrustTarget, adding: bool) -> TrustOutcome:
    store = f"system store {target.system_dir} (Debian, Ubuntu)"
    tool = shutil.which("update-ca-certificates", path=target.search_path)
    file_name = nickname(cert).replace(" ", "-").lower() + ".crt"
    installed = target.system_dir / file_name
    copy = ["install", "-m", "644", str(ca.ca_path), str(installed)]
    steps = ("sudo " + _command(copy), "sudo update-ca-certificates")
    if not adding:
        steps = (f"sudo rm -f {shlex.quote(str(installed))}", "sudo update-ca-certificates --fresh")
    if tool is None or not target.system_dir.is_dir():
        return TrustOutcome(
            store, False, "update-ca-certificates is not installed: not a Debian-like system"
        )
    if not _writable(target.system_dir):
        return TrustOutcome(store, False, "needs root; run", steps)
    try:
        if adding:
            installed.write_bytes(ca.ca_path.read_bytes())
            installed.chmod(0o644)
        else:
            installed.unlink(missing_ok=True)
    except OSError as exc:
        return TrustOutcome(store, False, f"cannot write {installed}: {exc.strerror}; run", steps)
    ok, said = _run([tool, "--fresh"] if not adding else [tool])
    if not ok:
        return TrustOutcome(store, False, f"update-ca-certificates failed: {said}; run", steps)
    return TrustOutcome(store, True, f"{'added' if adding else 'removed'} {installed}")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _nss(ca: LocalCA, cert: x509.Certificate, target: TrustTarget, adding: bool) -> TrustOutcome:
    database = target.home / ".pki" / "nssdb"
    store = f"NSS database {database} (VS Code, Chromium, Chrome)"
    where = f"sql:{database}"
    name = nickname(cert)
    change = (
        ["certutil", "-d", where, "-A", "-t", NSS_TRUST, "-n", name, "-i", str(ca.ca_path)]
        if adding
        else ["certutil", "-d", where, "-D", "-n", name]
    )
    create = ["certutil", "-d", where, "-N", "--empty-password"]
    tool = shutil.which("certutil", path=target.search_path)
    if tool is None:
        steps = ["sudo apt-get install libnss3-tools"]
        if adding:
            steps += [f"mkdir -p {shlex.quote(str(database))}", _command(create)]
        return TrustOutcome(
            store,
            False,
            "certutil is not installed (libnss3-tools); run",
            (*steps, _command(change)),
        )
    if not (database / "cert9.db").exists():
        if not adding:
            return TrustOutcome(store, True, "no NSS database: nothing to remove")
        database.mkdir(mode=0o700, parents=True, exist_ok=True)
        ok, said = _run([tool, *create[1:]])
        if not ok:
            return TrustOutcome(
                store, False, f"could not create it: {said}; run", (_command(create),)
            )
    ok, said = _run([tool, *change[1:]])
    if not ok:
        if not adding and "could not find" in said.lower():
            return TrustOutcome(store, True, f"{name!r} was not there")
        return TrustOutcome(store, False, f"certutil failed: {said}; run", (_command(change),))
    return TrustOutcome(store, True, f"{'added' if adding else 'removed'} {name!r}")


def _macos(ca: LocalCA, cert: x509.Certificate, target: TrustTarget, adding: bool) -> TrustOutcome:
    keychain = target.home / "Library" / "Keychains" / "login.keychain-db"
    store = f"macOS login keychain {keychain}"
    commands = (
        [["security", "add-trusted-cert", "-r", "trustRoot", "-k", str(keychain), str(ca.ca_path)]]
        if adding
        else [
            ["security", "remove-trusted-cert", str(ca.ca_path)],
            ["security", "delete-certificate", "-c", nickname(cert), str(keychain)],
        ]
    )
    return _run_all(store, commands, target, "trusted as a root" if adding else "removed")


def _windows(
    ca: LocalCA, cert: x509.Certificate, target: TrustTarget, adding: bool
) -> TrustOutcome:
    store = "Windows certificate store (current user, Root)"
    serial = format(cert.serial_number, "x")
    command = (
        ["certutil", "-addstore", "-user", "Root", str(ca.ca_path)]
        if adding
        else ["certutil", "-delstore", "-user", "Root", serial]
    )
    return _run_all(store, [command], target, "added" if adding else "removed")


def _run_all(store: str, commands: list[list[str]], target: TrustTarget, what: str) -> TrustOutcome:
    steps = tuple(_command(c) for c in commands)
    for command in commands:
        tool = shutil.which(command[0], path=target.search_path)
        if tool is None:
            return TrustOutcome(store, False, f"{command[0]} was not found; run", steps)
        ok, said = _run([tool, *command[1:]])
        if not ok:
            return TrustOutcome(store, False, f"{command[0]} failed: {said}; run", steps)
    return TrustOutcome(store, True, what)


__all__ = [
    "NSS_TRUST",
    "SYSTEM_DIR",
    "TrustOutcome",
    "TrustTarget",
    "install",
    "nickname",
    "remove",
]
