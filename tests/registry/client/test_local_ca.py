"""The bridge's local CA (``bastion.client.local_ca``): a CA that can vouch for loopback only
(RFC 5280 §4.2.1.10 name constraints, §4.2.1.9 basic constraints, §4.2.1.3 key usage), keys
only its user may read, made once and reused, and a server certificate renewed before expiry.

Chains are checked with ``cryptography``'s own X.509 path validation (``x509.verification``),
which processes name constraints.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bastion.client.local_ca import (
    CA_VALIDITY,
    RENEW_BEFORE,
    SERVER_VALIDITY,
    LocalCA,
    LocalCAError,
)

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return LocalCA(tmp_path / "data" / "local-ca")


def verify(root: x509.Certificate, leaf: x509.Certificate, subject: DNSName | IPAddress) -> None:
    verifier = PolicyBuilder().store(Store([root])).time(NOW).build_server_verifier(subject)
    verifier.verify(leaf, [])


def forged_leaf(ca: LocalCA, root: x509.Certificate, name: str) -> x509.Certificate:
    """A server certificate for ``name`` signed with the CA's own key: what a thief of the
    key would make."""
    from cryptography.hazmat.primitives import serialization

    ca_key = serialization.load_pem_private_key(ca.ca_key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(ca_key, hashes.SHA256())
    )


# -- what the CA must NOT vouch for ----------------------------------------------------------------


def test_rfc5280_4_2_1_10_name_constraints_are_critical_and_permit_loopback_only(
    ca: LocalCA,
) -> None:
    root = ca.ca_certificate(NOW)
    extension = root.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert extension.value.excluded_subtrees is None
    assert set(extension.value.permitted_subtrees or []) == {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }


@pytest.mark.parametrize("name", ["example.com", "localhost.example.com", "evil.example"])
def test_rfc5280_4_2_1_10_a_certificate_for_another_name_signed_by_the_ca_is_rejected(
    ca: LocalCA, name: str
) -> None:
    root = ca.ca_certificate(NOW)
    with pytest.raises(VerificationError, match=r"(?i)name constraint"):
        verify(root, forged_leaf(ca, root, name), DNSName(name))


def test_rfc5280_4_2_1_9_the_ca_cannot_make_other_cas(ca: LocalCA) -> None:
    root = ca.ca_certificate(NOW)
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature and not usage.value.key_encipherment


def test_server_certificate_is_no_ca_and_serves_tls_only(ca: LocalCA) -> None:
    leaf = ca.server_certificate(NOW)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_keys_only_their_user_may_read(ca: LocalCA) -> None:
    ca.server_certificate(NOW)
    assert stat.S_IMODE(ca.directory.stat().st_mode) == 0o700
    for path in (ca.ca_key_path, ca.key_path, ca.ca_path, ca.cert_path, ca.directory / ".lock"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in ca.directory.iterdir()) == [
        ".lock",
        "ca-key.pem",
        "ca.pem",
        "localhost-key.pem",
        "localhost.pem",
    ]


def test_a_ca_key_others_may_read_is_an_error_that_says_what_to_do(ca: LocalCA) -> None:
    ca.server_certificate(NOW)
    ca.ca_key_path.chmod(0o644)
    with pytest.raises(LocalCAError) as caught:
        ca.server_certificate(NOW)
    message = str(caught.value)
    assert "mode 0644" in message and f"remove {ca.directory}" in message
    assert "--trust" in message


def test_a_directory_others_may_read_is_an_error(ca: LocalCA) -> None:
    ca.server_certificate(NOW)
    ca.directory.chmod(0o755)
    with pytest.raises(LocalCAError, match="mode 0755"):
        ca.server_certificate(NOW)


@pytest.mark.parametrize("damaged", ["ca.pem", "ca-key.pem"])
def test_a_corrupt_or_missing_ca_file_is_an_error_not_a_new_ca(ca: LocalCA, damaged: str) -> None:
    """The CA is trusted by the system: a new one would leave the person with a bridge their
    clients refuse, so bastion says what is wrong instead of replacing it."""
    first = ca.ca_certificate(NOW)
    kept = {p: p.read_bytes() for p in (ca.ca_path, ca.ca_key_path) if p.name != damaged}
    (ca.directory / damaged).write_text("not PEM\n")
    with pytest.raises(LocalCAError, match=f"{damaged} is not a PEM"):
        ca.server_certificate(NOW)
    (ca.directory / damaged).unlink()
    with pytest.raises(LocalCAError, match=f"{damaged} is missing"):
        ca.server_certificate(NOW)
    assert {p: p.read_bytes() for p in kept} == kept  # the other file is still the first CA's
    assert not (ca.directory / damaged).exists() and first.serial_number


def test_a_ca_key_that_is_not_the_certificates_is_an_error(ca: LocalCA, tmp_path: Path) -> None:
    ca.ca_certificate(NOW)
    other = LocalCA(tmp_path / "other")
    other.ca_certificate(NOW)
    ca.ca_key_path.write_bytes(other.ca_key_path.read_bytes())
    with pytest.raises(LocalCAError, match="is not the key of"):
        ca.ca_certificate(NOW)


def test_an_expired_ca_is_an_error(ca: LocalCA) -> None:
    ca.ca_certificate(NOW)
    with pytest.raises(LocalCAError, match="expired"):
        ca.ca_certificate(NOW + CA_VALIDITY + dt.timedelta(days=1))


# -- what it does vouch for ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        DNSName("localhost"),
        IPAddress(ipaddress.ip_address("127.0.0.1")),
        IPAddress(ipaddress.ip_address("::1")),
    ],
)
def test_the_server_certificate_verifies_for_every_loopback_name(
    ca: LocalCA, subject: DNSName | IPAddress
) -> None:
    verify(ca.ca_certificate(NOW), ca.server_certificate(NOW), subject)


def test_made_once_and_reused_across_runs(ca: LocalCA) -> None:
    root, leaf = ca.ca_certificate(NOW), ca.server_certificate(NOW)
    files = {p.name: p.read_bytes() for p in ca.directory.iterdir()}
    later = NOW + dt.timedelta(days=10)
    again = LocalCA(ca.directory)  # a later run
    assert again.ca_certificate(later) == root
    assert again.server_certificate(later) == leaf
    assert {p.name: p.read_bytes() for p in ca.directory.iterdir()} == files


def test_validity_ca_long_server_short(ca: LocalCA) -> None:
    root, leaf = ca.ca_certificate(NOW), ca.server_certificate(NOW)
    assert root.not_valid_after_utc - NOW == CA_VALIDITY
    assert leaf.not_valid_after_utc - NOW == SERVER_VALIDITY


def test_server_certificate_renewed_near_expiry_same_ca(ca: LocalCA) -> None:
    root, leaf = ca.ca_certificate(NOW), ca.server_certificate(NOW)
    still = NOW + SERVER_VALIDITY - RENEW_BEFORE - dt.timedelta(hours=1)
    assert ca.server_certificate(still) == leaf
    near = NOW + SERVER_VALIDITY - RENEW_BEFORE + dt.timedelta(hours=1)
    renewed = ca.server_certificate(near)
    assert renewed != leaf and renewed.not_valid_after_utc > leaf.not_valid_after_utc
    assert ca.ca_certificate(near) == root


@pytest.mark.parametrize("damage", ["key of another", "garbage key", "garbage cert", "loose key"])
def test_server_certificate_made_again_when_its_files_do_not_fit(
    ca: LocalCA, tmp_path: Path, damage: str
) -> None:
    leaf = ca.server_certificate(NOW)
    if damage == "key of another":
        other = LocalCA(tmp_path / "other")
        other.server_certificate(NOW)
        ca.key_path.write_bytes(other.key_path.read_bytes())
    elif damage == "garbage key":
        ca.key_path.write_text("garbage")
    elif damage == "garbage cert":
        ca.cert_path.write_text("garbage")
    else:
        ca.key_path.chmod(0o644)
    fresh = LocalCA(ca.directory).server_certificate(NOW)
    assert fresh != leaf
    verify(ca.ca_certificate(NOW), fresh, DNSName("localhost"))
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600


def test_server_certificate_of_a_former_ca_is_replaced(ca: LocalCA, tmp_path: Path) -> None:
    """After the person removed the CA directory's CA files (a new CA), the old server
    certificate no longer chains and is made again."""
    ca.server_certificate(NOW)
    other = LocalCA(tmp_path / "other")
    other.server_certificate(NOW)
    for name in ("localhost.pem", "localhost-key.pem"):
        (ca.directory / name).write_bytes((other.directory / name).read_bytes())
    fresh = ca.server_certificate(NOW)
    verify(ca.ca_certificate(NOW), fresh, DNSName("localhost"))


def test_bridges_starting_at_once_make_one_ca(ca: LocalCA) -> None:
    """Eight at once on a fresh directory (each its own LocalCA, as separate runs): one CA,
    one server certificate, and no run sees half of either."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: LocalCA(ca.directory).server_certificate(NOW), range(8)))
    assert len({cert.serial_number for cert in made}) == 1
    verify(ca.ca_certificate(NOW), made[0], DNSName("localhost"))
