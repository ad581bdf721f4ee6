"""A certificate authority of this user's own, for the registry bridge's https on loopback.

VS Code's renderer refuses ``http://`` under its content security policy and the Copilot CLI
takes only ``https`` registry URLs, so the bridge serves https with a certificate the operating
system trusts: one issued by this CA, once the person has installed the CA
(``bastion proxy registry --trust``, :mod:`bastion.client.local_trust`).

The CA can vouch for loopback only. Its certificate carries a critical NameConstraints
extension (RFC 5280 §4.2.1.10) permitting the DNS name ``localhost`` (and names below it) and
the addresses 127.0.0.1/32 and ::1/128, so a verifier that processes name constraints refuses
anything else it might sign, should its key ever leak. It is ``CA:TRUE`` with ``pathlen`` 0
(§4.2.1.9) and may only sign certificates and CRLs (§4.2.1.3).

Files, in the client's data directory (``local-ca``, mode 0700), keys mode 0600::

    ca.pem              the CA certificate (10 years): what --trust installs
    ca-key.pem          its key (P-256)
    localhost.pem       the server certificate: localhost, 127.0.0.1, ::1; serverAuth; 90 days
    localhost-key.pem   its key
    .lock               held while these are read or made (one CA when bridges start at once)

The CA is made once and reused. The server certificate is made again when it is missing,
unreadable, within 30 days of expiry, not issued by the current CA, or its key does not match.
A CA key that other users may read, or a CA file that cannot be read, is an error that says
what to do: the CA is trusted by the system, so bastion never replaces it silently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.client.errors import ClientError
from bastion.client.storage import APP_NAME
from bastion.private_files import DIRECTORY_MODE, FILE_MODE, private_dir, write_private

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - Windows has no flock
    fcntl = None

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=90)
RENEW_BEFORE = dt.timedelta(days=30)
LOOPBACK_DNS = "localhost"
LOOPBACK_IPS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
# What the CA may vouch for (RFC 5280 §4.2.1.10): IP constraints are address and mask.
PERMITTED: tuple[x509.GeneralName, ...] = (
    x509.DNSName(LOOPBACK_DNS),
    x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
    x509.IPAddress(ipaddress.ip_network("::1/128")),
)
_BACKDATE = dt.timedelta(minutes=5)  # clocks of other programs on this machine may lag a little


class LocalCAError(ClientError):
    """The local CA's files cannot be used as they are; the message says what to do."""


def default_directory() -> Path:
    """``local-ca`` under the user's data directory (platformdirs)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "local-ca"


@dataclass(frozen=True)
class LocalCA:
    """The CA's files in ``directory`` (see the module docstring)."""

    directory: Path

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert_path(self) -> Path:
        return self.directory / "localhost.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "localhost-key.pem"

    def _start_afresh(self) -> str:
        return (
            f"remove {self.directory} to make a new local CA, then run "
            "`bastion proxy registry --trust` again"
        )

    def ca_certificate(self, now: dt.datetime | None = None) -> x509.Certificate:
        """The CA certificate, made (with its key) if neither file exists yet."""
        with self._lock():
            return self._ca_certificate(now or dt.datetime.now(dt.UTC))

    def server_certificate(self, now: dt.datetime | None = None) -> x509.Certificate:
        """The bridge's server certificate (made again when needed, see the module
        docstring); its chain is :attr:`cert_path` and its key :attr:`key_path`."""
        now = now or dt.datetime.now(dt.UTC)
        with self._lock():
            ca = self._ca_certificate(now)
            current = self._usable_server_certificate(ca, now)
            if current is not None:
                return current
            _, ca_key = self._load_ca()
            return self._create_server_certificate(ca, ca_key, now)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Two bridges starting at once make one CA, not two halves of two."""
        self._check_directory()
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _ca_certificate(self, now: dt.datetime) -> x509.Certificate:
        if not self.ca_path.exists() and not self.ca_key_path.exists():
            return self._create_ca(now)
        cert, _ = self._load_ca()
        if cert.not_valid_after_utc <= now:
            raise LocalCAError(
                f"the local CA {self.ca_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                f"{self._start_afresh()}"
            )
        return cert

    # -- checks -----------------------------------------------------------------------------------

    def _check_directory(self) -> None:
        private_dir(self.directory)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode & 0o077:
            raise LocalCAError(
                f"{self.directory} has mode {mode:04o}: other users may read the local CA's "
                f"keys; run `chmod {DIRECTORY_MODE:o} {self.directory}` if no one else uses "
                f"this machine, else {self._start_afresh()}"
            )

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        for path in (self.ca_path, self.ca_key_path):
            if not path.exists():
                raise LocalCAError(f"{path} is missing; {self._start_afresh()}")
        key = _read_key(self.ca_key_path)
        if key is None:
            raise LocalCAError(
                f"{self.ca_key_path} is not a PEM P-256 private key; {self._start_afresh()}"
            )
        mode = _mode(self.ca_key_path)
        if mode & 0o077:
            raise LocalCAError(
                f"{self.ca_key_path} has mode {mode:04o}: other users may have read the key "
                f"of a CA your system trusts; {self._start_afresh()} (or run "
                f"`chmod {FILE_MODE:o} {self.ca_key_path}` if no one else uses this machine)"
            )
        cert = _read_certificate(self.ca_path)
        if cert is None:
            raise LocalCAError(f"{self.ca_path} is not a PEM certificate; {self._start_afresh()}")
        if cert.public_key() != key.public_key():
            raise LocalCAError(
                f"{self.ca_key_path} is not the key of {self.ca_path}; {self._start_afresh()}"
            )
        return cert, key

    def _usable_server_certificate(
        self, ca: x509.Certificate, now: dt.datetime
    ) -> x509.Certificate | None:
        cert = _read_certificate(self.cert_path)
        key = _read_key(self.key_path)
        if cert is None or key is None or _mode(self.key_path) & 0o077:
            return None
        if cert.public_key() != key.public_key() or cert.issuer != ca.subject:
            return None
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return None
        if cert.not_valid_before_utc > now or cert.not_valid_after_utc - now < RENEW_BEFORE:
            return None
        return cert

    # -- issuing ----------------------------------------------------------------------------------

    def _create_ca(self, now: dt.datetime) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, APP_NAME),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"{APP_NAME} local CA {secrets.token_hex(4)}"
                ),
            ]
        )
        usage = _key_usage(cert_sign=True)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.NameConstraints(permitted_subtrees=list(PERMITTED), excluded_subtrees=None),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        # The certificate last: a key without its certificate is an error, never reused.
        _replace(self.ca_key_path, _key_pem(key))
        _replace(self.ca_path, cert.public_bytes(serialization.Encoding.PEM).decode())
        return cert

    def _create_server_certificate(
        self, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime
    ) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(LOOPBACK_DNS)]
        names += [x509.IPAddress(address) for address in LOOPBACK_IPS]
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK_DNS)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(min(now + SERVER_VALIDITY, ca.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _replace(self.key_path, _key_pem(key))
        _replace(self.cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())
        return cert


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _read_certificate(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return None
    return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole (mode 0600) through a new file renamed over it: a reader sees the
    old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_private(temporary, text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


__all__ = [
    "CA_VALIDITY",
    "LOOPBACK_DNS",
    "LOOPBACK_IPS",
    "PERMITTED",
    "RENEW_BEFORE",
    "SERVER_VALIDITY",
    "LocalCA",
    "LocalCAError",
    "default_directory",
]
