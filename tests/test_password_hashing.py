"""Passwords are hashed with argon2id at RFC 9106's second recommended option (§4: t=3,
m=64 MiB, p=4), the argon2-cffi defaults. The rest of the suite hashes with cheaper parameters
in the test process (tests/conftest.py), so these parameters are pinned here."""

from __future__ import annotations

import pytest

from bastion.identity.passwords import hash_password, verify_password

pytestmark = pytest.mark.production_passwords
PRODUCTION = "$argon2id$v=19$m=65536,t=3,p=4$"


def test_a_password_is_hashed_with_argon2id_at_rfc_9106_parameters() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith(PRODUCTION), hashed
    salt, digest = hashed.removeprefix(PRODUCTION).split("$")
    # 16-byte salt and 32-byte tag, base64 without padding (RFC 9106 §3.1, §4).
    assert (len(salt), len(digest)) == (22, 43)
    assert verify_password(hashed, "correct horse battery staple")
    assert not verify_password(hashed, "correct horse battery stapler")


def test_an_unknown_user_costs_a_check_at_the_same_parameters() -> None:
    """No stored hash: the check runs against a dummy made with the same parameters (so the
    time taken does not tell whether the user exists), and fails."""
    from bastion.identity import passwords

    assert passwords._DUMMY.startswith(PRODUCTION)
    assert not verify_password(None, "anything")
