"""ID Token validation, rule by rule (OpenID Connect Core 1.0 §3.1.3.7; RFC 8725 §3.1).

Pure function tests: keys made here, tokens signed here, no provider and no database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from bastion.identity import id_token
from bastion.identity.errors import InvalidIdToken
from bastion.oauth import jose

NOW = 1_800_000_000
ISSUER = "https://idp.example.com"
CLIENT = "bastion"
NONCE = "n-0S6_WzA2Mj"
RSA = RSAKey.generate_key(2048, {"kid": "r1"})
EC = ECKey.generate_key("P-256", {"kid": "e1"})
KEYS = jose.usable_keys(
    {"keys": [RSA.as_dict(private=False, use="sig"), EC.as_dict(private=False, use="sig")]}
)


def expected(**overrides: Any) -> id_token.Expected:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": CLIENT,
        "nonce": NONCE,
        "now": NOW,
        "algorithms": ("RS256", "ES256"),
        **overrides,
    }
    return id_token.Expected(**values)


def sign(
    claims: dict[str, Any] | None = None, header: dict[str, Any] | None = None, key: Any = RSA
) -> str:
    body = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "nonce": NONCE,
        "iat": NOW,
        "exp": NOW + 300,
    }
    body.update(claims or {})
    for name in [k for k, v in body.items() if v is None]:
        del body[name]
    head = {"alg": "RS256", "kid": "r1", **(header or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's note that EdDSA is older
        return jwt.encode(head, body, key, algorithms=[head["alg"]])


def refused(token: str, **overrides: Any) -> str:
    with pytest.raises(InvalidIdToken) as caught:
        id_token.validate(token, KEYS, expected(**overrides))
    return caught.value.message + " | " + caught.value.detail


def test_valid_rs256_and_es256_tokens_are_accepted() -> None:
    assert id_token.validate(sign(), KEYS, expected())["sub"] == "248289761001"
    es = sign(header={"alg": "ES256", "kid": "e1"}, key=EC)
    assert id_token.validate(es, KEYS, expected())["iss"] == ISSUER


def test_a_token_without_kid_is_checked_against_every_fitting_key() -> None:
    token = jwt.encode(
        {"alg": "RS256"},
        {"iss": ISSUER, "sub": "s", "aud": CLIENT, "nonce": NONCE, "iat": NOW, "exp": NOW + 60},
        RSA,
    )
    assert id_token.validate(token, KEYS, expected())["sub"] == "s"


def test_alg_none_and_hmac_are_refused_rfc8725() -> None:
    """RFC 8725 §3.1: never "none"; HS256 (a MAC keyed with the client secret) is refused."""
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b'{"iss":"x"}').rstrip(b"=").decode()
    assert "unexpected signature algorithm" in refused(f"{header}.{payload}.")
    hs = jwt.encode({"alg": "HS256", "kid": "r1"}, {"iss": ISSUER}, OctKey.import_key(b"k" * 32))
    assert "unexpected signature algorithm" in refused(hs)


def test_an_algorithm_the_provider_does_not_list_is_refused() -> None:
    es = sign(header={"alg": "ES256", "kid": "e1"}, key=EC)
    assert "unexpected signature algorithm" in refused(es, algorithms=("RS256",))


def test_signature_by_another_key_is_refused() -> None:
    other = RSAKey.generate_key(2048, {"kid": "r1"})
    assert "invalid signature" in refused(sign(key=other))


def test_unknown_kid_raises_unknown_key_so_the_jwks_can_be_refetched() -> None:
    with pytest.raises(id_token.UnknownKeyError):
        id_token.validate(sign(header={"kid": "rotated"}), KEYS, expected())


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"iss": "https://evil.example.com"}, "wrong issuer"),
        ({"iss": ISSUER + "/"}, "wrong issuer"),  # exact string comparison
        ({"aud": "someone-else"}, "issued to another application"),
        ({"aud": ["someone-else", "x"]}, "issued to another application"),
        ({"aud": [CLIENT, "other"]}, "no authorized party"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "issued to another application"),
        ({"azp": "other"}, "issued to another application"),
        ({"exp": NOW - 121}, "expired"),
        ({"exp": None}, "expired"),
        ({"iat": NOW + 600}, "issued in the future"),
        ({"iat": None}, "issued in the future"),
        ({"nbf": NOW + 600}, "not yet valid"),
        ({"nonce": "other"}, "nonce mismatch"),
        ({"nonce": None}, "nonce mismatch"),
        ({"sub": ""}, "no subject"),
        ({"exp": "soon"}, "not a number"),
    ],
)
def test_claims_rules_of_oidc_core_3_1_3_7(claims: dict[str, Any], says: str) -> None:
    assert says in refused(sign(claims))


def test_several_audiences_with_our_azp_are_accepted() -> None:
    token = sign({"aud": [CLIENT, "api"], "azp": CLIENT})
    assert id_token.validate(token, KEYS, expected())["azp"] == CLIENT


def test_small_clock_skew_is_tolerated() -> None:
    assert id_token.validate(sign({"exp": NOW - 60, "iat": NOW + 60}), KEYS, expected())


def test_at_hash_must_match_the_access_token_when_present() -> None:
    """OpenID Connect Core §3.1.3.8: the left half of SHA-256 of the access token."""
    digest = hashlib.sha256(b"the-access-token").digest()[:16]
    at_hash = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    token = sign({"at_hash": at_hash})
    assert id_token.validate(token, KEYS, expected(access_token="the-access-token"))
    assert "access token mismatch" in refused(token, access_token="another-token")


def test_multi_tenant_entra_issuer_is_the_token_tenant() -> None:
    """Entra's common/organizations metadata names issuer .../{tenantid}/v2.0: the token's iss
    must be that with its own tid."""
    tid = "9188040d-6c67-4c5b-b112-36a304b66dad"
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    good = sign({"iss": f"https://login.microsoftonline.com/{tid}/v2.0", "tid": tid})
    assert id_token.validate(good, KEYS, expected(issuer=template))["tid"] == tid
    other = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    bad = sign({"iss": f"https://login.microsoftonline.com/{other}/v2.0", "tid": tid})
    assert "wrong issuer" in refused(bad, issuer=template)
    assert "no tenant" in refused(sign({"tid": None}), issuer=template)


def test_malformed_tokens_are_refused() -> None:
    for token in ("", "a.b", "a.b.c.d", "!!!.e30.sig", "x" * 40000):
        assert "malformed" in refused(token)


def test_jwks_keys_that_cannot_verify_are_skipped() -> None:
    """RFC 7517: encryption keys, symmetric keys and short RSA keys never verify id_tokens."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # the short key is the point
        short = RSAKey.generate_key(1024).as_dict(private=False)
    jwks = {
        "keys": [
            {**RSA.as_dict(private=False), "use": "enc"},
            OctKey.import_key(b"k" * 32).as_dict(),
            short,
            "not a key",
            EC.as_dict(private=False),
        ]
    }
    assert [k.kid for k in jose.usable_keys(jwks).keys] == ["e1"]
    with pytest.raises(jose.NotAJwkSet):
        jose.usable_keys({"keys": "nope"})


# -- the JOSE rules shared with the resource side and client authentication --------------------

ED448 = OKPKey.generate_key("Ed448", {"kid": "x1"}, private=True)
ED25519 = OKPKey.generate_key("Ed25519", {"kid": "d1"}, private=True)


def signed_by(key: Any, alg: str, claims: dict[str, Any] | None = None) -> str:
    """A valid id_token signed with ``key`` under ``alg`` (its kid in the header)."""
    return sign(claims, header={"alg": alg, "kid": key.kid}, key=key)


def half_hash(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["Ed448", "EdDSA"])
def test_ed448_id_tokens_are_accepted_with_at_hash_by_curve(alg: str) -> None:
    """RFC 9864 §2: Ed448 is accepted as Ed448 or EdDSA; at_hash (§3.1.3.8) then uses SHAKE256
    with 114 octets, the hash of the Ed448 curve (OpenID Connect Core errata)."""
    keys = jose.usable_keys({"keys": [ED448.as_dict(private=False)]})
    at_hash = half_hash(hashlib.shake_256(b"the-access-token").digest(114))
    token = signed_by(ED448, alg, {"at_hash": at_hash})
    valid = expected(algorithms=(alg,), access_token="the-access-token")
    assert id_token.validate(token, keys, valid)["at_hash"] == at_hash
    with pytest.raises(InvalidIdToken, match="access token mismatch"):
        id_token.validate(token, keys, expected(algorithms=(alg,), access_token="another"))


def test_eddsa_with_an_ed25519_key_hashes_at_hash_with_sha512() -> None:
    """OpenID Connect Core §3.1.3.8 for EdDSA: the curve decides the hash; Ed25519 -> SHA-512."""
    keys = jose.usable_keys({"keys": [ED25519.as_dict(private=False)]})
    at_hash = half_hash(hashlib.sha512(b"the-access-token").digest())
    token = signed_by(ED25519, "EdDSA", {"at_hash": at_hash})
    assert id_token.validate(
        token, keys, expected(algorithms=("EdDSA",), access_token="the-access-token")
    )


@pytest.mark.parametrize(("published", "alg"), [("EdDSA", "Ed25519"), ("Ed25519", "EdDSA")])
def test_a_jwk_published_under_either_eddsa_name_verifies_the_other(
    published: str, alg: str
) -> None:
    """RFC 9864 §2, RFC 7517 §4.4: a provider's JWK with alg EdDSA verifies Ed25519 id_tokens
    and the other way round (joserfc used to refuse the key, so the signature was "invalid")."""
    jwk = {**ED25519.as_dict(private=False), "alg": published}
    keys = jose.usable_keys({"keys": [jwk]})
    assert id_token.validate(signed_by(ED25519, alg), keys, expected(algorithms=(alg,)))


def test_a_key_whose_key_ops_leave_out_verify_is_never_used() -> None:
    """RFC 7517 §4.3: key_ops without "verify" (the provider marks the key for other uses): the
    key is skipped, so its kid is unknown and the JWKS may be fetched again."""
    jwks = {"keys": [{**RSA.as_dict(private=False), "key_ops": ["encrypt"]}]}
    assert len(jose.usable_keys(jwks)) == 0
    with pytest.raises(id_token.UnknownKeyError):
        id_token.validate(sign(), jose.usable_keys(jwks), expected())


def test_a_header_with_critical_extensions_is_refused() -> None:
    """RFC 7515 §4.1.11: an extension marked crit must be understood, and none is."""
    signed = sign().split(".")
    header = {"alg": "RS256", "kid": "r1", "crit": ["exp"], "exp": NOW}
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    assert "unsupported header" in refused(f"{encoded}.{signed[1]}.{signed[2]}")
