"""The JOSE floor every verifier stands on (bastion.oauth.jose), rule by rule: RFC 7515 (the
compact JWS, its header and signature), RFC 7517 §4.2-§4.5 and §5 (which keys of a JWK Set may
verify), RFC 7518 §3.3 and RFC 9864 §2 (the algorithm table), RFC 7519 §2 and §4.1.4-§4.1.6
(time claims), RFC 8725 §3.1-§3.2 (never none, never HMAC).

Pure function tests: keys made here, tokens signed here.
"""

from __future__ import annotations

import base64
import json
import math
import warnings
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion.oauth import jose

NOW = 1_800_000_000
EC = ECKey.generate_key("P-256", {"kid": "ec"}, private=True)
RSA = RSAKey.generate_key(2048, {"kid": "rsa"}, private=True)
ED25519 = OKPKey.generate_key("Ed25519", {"kid": "ed25519"}, private=True)
ED448 = OKPKey.generate_key("Ed448", {"kid": "ed448"}, private=True)
ALL = [EC, RSA, ED25519, ED448]


def public(key: Any, **members: Any) -> dict[str, Any]:
    """The public JWK of ``key`` with ``members`` added (None removes one)."""
    jwk: dict[str, Any] = {**key.as_dict(private=False), **members}
    return {k: v for k, v in jwk.items() if v is not None}


def keys_of(*jwks: object) -> jose.UsableKeys:
    return jose.usable_keys({"keys": list(jwks)})


def sign(key: Any, alg: str, claims: dict[str, Any] | None = None, **header: Any) -> str:
    """A compact JWS of ``claims`` signed with ``key`` under ``alg`` (kid: the key's)."""
    head = {"alg": alg, "kid": key.kid, **header}
    head = {k: v for k, v in head.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's note that EdDSA is older
        return jws.serialize_compact(head, json.dumps(claims or {"sub": "s"}), key, [alg])


def b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# -- the algorithm table (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 §2, RFC 8725 §3.1) -----------


def test_rfc9864_table_holds_the_asymmetric_algorithms_and_no_none_or_hmac() -> None:
    """RFC 8725 §3.1: a verifier holding public keys allows no "none" and no HMAC; RFC 9864 §2
    adds the fully specified Ed25519 and Ed448 beside the polymorphic EdDSA."""
    assert set(jose.SUPPORTED_ALGORITHMS) == {
        *(f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in (256, 384, 512)),
        "EdDSA",
        "Ed25519",
        "Ed448",
    }
    assert jose.ALGORITHMS["EdDSA"] == ("OKP", frozenset({"Ed25519", "Ed448"}))
    assert jose.ALGORITHMS["ES512"] == ("EC", frozenset({"P-521"}))


@pytest.mark.parametrize(
    ("key", "fitting"),
    [
        (EC, {"ES256"}),
        (RSA, {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
        (ED25519, {"Ed25519", "EdDSA"}),
        (ED448, {"Ed448", "EdDSA"}),
    ],
)
def test_rfc9864_key_type_and_curve_decide_which_algorithms_a_key_verifies(
    key: Any, fitting: set[str]
) -> None:
    """RFC 7518 §3.1, RFC 9864 §2: the key type and curve fit the algorithm."""
    usable = jose.public_key(public(key))
    assert usable is not None
    assert {alg for alg in jose.SUPPORTED_ALGORITHMS if jose.fits(usable, alg)} == fitting


def test_rfc9864_eddsa_and_the_fully_specified_names_are_compared_by_curve() -> None:
    """RFC 9864 §2, RFC 7517 §4.4: a JWK published for "EdDSA" verifies Ed25519 (its curve's
    fully specified name) and one published for "Ed448" verifies "EdDSA", never across curves."""
    for_eddsa = jose.public_key(public(ED25519, alg="EdDSA"))
    for_ed448 = jose.public_key(public(ED448, alg="Ed448"))
    assert for_eddsa is not None and for_ed448 is not None
    assert jose.fits(for_eddsa, "Ed25519") and jose.fits(for_eddsa, "EdDSA")
    assert not jose.fits(for_eddsa, "Ed448")
    assert jose.fits(for_ed448, "EdDSA") and not jose.fits(for_ed448, "Ed25519")
    for published, alg in [("EdDSA", "Ed25519"), ("Ed25519", "EdDSA")]:
        keys = keys_of(public(ED25519, alg=published))
        assert jose.verify(sign(ED25519, alg), keys, [alg]).key.kid == "ed25519"
    keys = keys_of(public(ED448, alg="EdDSA"))
    assert jose.verify(sign(ED448, "Ed448"), keys, ["Ed448"]).key.kid == "ed448"


def test_rfc7517_4_4_a_key_published_for_one_alg_verifies_no_other() -> None:
    """RFC 7517 §4.4: a JWK's own alg restricts it; the kid names it, it does not fit."""
    keys = keys_of(public(RSA, alg="RS256"))
    with pytest.raises(jose.KeyDoesNotFit) as caught:
        jose.verify(sign(RSA, "PS256"), keys, ["PS256", "RS256"])
    assert (caught.value.kid, caught.value.key_type, caught.value.alg) == ("rsa", "RSA", "PS256")
    assert jose.verify(sign(RSA, "RS256"), keys, ["PS256", "RS256"]).alg == "RS256"


# -- which keys of a JWK Set may verify (RFC 7517) ---------------------------------------------


def test_rfc7517_4_2_use_must_be_sig_when_present() -> None:
    keys = keys_of(public(EC, use="enc"), public(RSA, use="sig"), public(ED25519))
    assert [k.kid for k in keys.keys] == ["rsa", "ed25519"]


@pytest.mark.parametrize(
    ("key_ops", "usable"),
    [
        (["verify"], True),
        (["sign", "verify"], True),
        (["encrypt"], False),
        (["sign"], False),
        ([], False),
        ("verify", False),  # not an array
    ],
)
def test_rfc7517_4_3_key_ops_must_include_verify_when_present(
    key_ops: object, usable: bool
) -> None:
    assert (jose.public_key(public(EC, key_ops=key_ops)) is not None) is usable


def test_rfc7517_5_private_members_are_dropped_and_unusable_keys_skipped() -> None:
    """RFC 7517 §5: a verifier reads public keys only; symmetric keys, curves for key agreement
    and RSA keys under 2048 bits (RFC 7518 §3.3) never verify; entries past MAX_JWKS_KEYS are
    not read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # the short key is the point
        short = RSAKey.generate_key(1024, {"kid": "short"}).as_dict(private=False)
    x25519 = OKPKey.generate_key("X25519", {"kid": "x"}).as_dict(private=False)
    keys = keys_of(
        EC.as_dict(private=True),
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
        short,
        x25519,
        "not a key",
        {"kty": "EC", "kid": "broken"},
    )
    assert [k.kid for k in keys.keys] == ["ec"]
    assert not keys.keys[0].is_private
    many = jose.usable_keys({"keys": [public(EC)] * (jose.MAX_JWKS_KEYS + 5)})
    assert len(many) == jose.MAX_JWKS_KEYS


@pytest.mark.parametrize("document", [{}, {"keys": "nope"}, [], None, {"keys": {"a": 1}}])
def test_rfc7517_5_a_document_without_a_keys_array_is_not_a_jwk_set(document: object) -> None:
    with pytest.raises(jose.NotAJwkSet):
        jose.usable_keys(document)


def test_rfc7517_4_5_keys_sharing_a_kid_are_each_used_for_their_own_alg() -> None:
    """RFC 7517 §4.5: keys of different types may share a kid; each verifies its own alg."""
    twin = RSAKey.generate_key(2048, {"kid": "ec"}, private=True)
    keys = keys_of(public(EC), public(twin))
    assert keys.kids == frozenset({"ec"})
    assert jose.verify(sign(EC, "ES256"), keys, ["ES256", "RS256"]).key.key_type == "EC"
    assert jose.verify(sign(twin, "RS256"), keys, ["ES256", "RS256"]).key.key_type == "RSA"


def test_rfc7515_4_1_4_kid_picks_the_key_and_without_it_every_fitting_key_is_tried() -> None:
    keys = keys_of(*(public(k) for k in ALL))
    assert [k.kid for k in keys.candidates("rsa", "RS256")] == ["rsa"]
    assert [k.kid for k in keys.candidates(None, "EdDSA")] == ["ed25519", "ed448"]
    with pytest.raises(jose.UnknownKey) as unknown:
        keys.candidates("rotated", "ES256")
    assert unknown.value.kid == "rotated"
    with pytest.raises(jose.UnknownKey) as none_fits:
        keys.candidates(None, "ES384")
    assert none_fits.value.kid is None
    kidless = sign(ED448, "Ed448", kid=None)
    verified = jose.verify(kidless, keys, ["Ed448"])
    assert (verified.key.kid, verified.tried) == ("ed448", 1)


# -- the signature (RFC 7515 §5.2, RFC 8725 §3.1-§3.2) -----------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (EC, "ES256"),
        (RSA, "RS256"),
        (RSA, "PS512"),
        (ED25519, "Ed25519"),
        (ED25519, "EdDSA"),
        (ED448, "Ed448"),
        (ED448, "EdDSA"),
    ],
)
def test_rfc7515_5_2_a_signature_verifies_with_its_key(key: Any, alg: str) -> None:
    keys = keys_of(*(public(k) for k in ALL))
    verified = jose.verify(sign(key, alg, {"sub": "alice"}), keys, jose.SUPPORTED_ALGORITHMS)
    assert (verified.claims, verified.alg, verified.key.kid) == ({"sub": "alice"}, alg, key.kid)
    assert verified.header["alg"] == alg


def test_rfc7515_5_2_a_signature_by_another_key_is_refused() -> None:
    stranger = ECKey.generate_key("P-256", {"kid": "ec"}, private=True)
    with pytest.raises(jose.BadSignature) as caught:
        jose.verify(sign(stranger, "ES256"), keys_of(public(EC)), ["ES256"])
    assert caught.value.tried == 1
    head, _, signature = sign(EC, "ES256", {"sub": "a"}).split(".")
    altered = f"{head}.{b64({'sub': 'b'})}.{signature}"
    with pytest.raises(jose.BadSignature):
        jose.verify(altered, keys_of(public(EC)), ["ES256"])


def test_rfc8725_3_2_alg_none_is_never_accepted() -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'kid': 'ec'})}.{b64({'sub': 's'})}."
        with pytest.raises(jose.AlgorithmNotAllowed) as caught:
            jose.verify(token, keys_of(public(EC)), [*jose.SUPPORTED_ALGORITHMS, alg])
        assert caught.value.is_none


def test_rfc8725_3_1_hmac_and_algorithms_the_caller_did_not_allow_are_refused() -> None:
    """HS256 is refused even when a caller lists it (it is not in the table); an asymmetric
    algorithm is refused when the caller does not allow it."""
    hs = f"{b64({'alg': 'HS256', 'kid': 'ec'})}.{b64({'sub': 's'})}.c2ln"
    with pytest.raises(jose.AlgorithmNotAllowed) as caught:
        jose.verify(hs, keys_of(public(EC)), ["HS256", "ES256"])
    assert caught.value.alg == "HS256" and not caught.value.is_none
    with pytest.raises(jose.AlgorithmNotAllowed):
        jose.verify(sign(EC, "ES256"), keys_of(public(EC)), ["RS256"])


@pytest.mark.parametrize("member", [{"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}])
def test_rfc7515_4_1_11_critical_extensions_are_refused(member: dict[str, Any]) -> None:
    token = f"{b64({'alg': 'ES256', 'kid': 'ec', **member})}.{b64({'sub': 's'})}.c2ln"
    with pytest.raises(jose.CriticalHeader):
        jose.verify(token, keys_of(public(EC)), ["ES256"])


def test_rfc7515_4_1_4_a_kid_that_is_not_a_string_is_refused() -> None:
    token = f"{b64({'alg': 'ES256', 'kid': 7})}.{b64({'sub': 's'})}.c2ln"
    with pytest.raises(jose.BadKeyId):
        jose.verify(token, keys_of(public(EC)), ["ES256"])


@pytest.mark.parametrize(
    ("token", "part", "encrypted"),
    [
        ("a.b.c.d.e", "token", True),
        ("abc", "token", False),
        ("a.b", "token", False),
        ("!!.e30.x", "header", False),
        ("W10.e30.x", "header", False),  # [] is not an object
        (f"{'WwW' * 2000}.e30.x", "header", False),  # nested deeper than json can read
    ],
)
def test_rfc7515_7_1_what_is_not_a_compact_jws_is_malformed(
    token: str, part: str, encrypted: bool
) -> None:
    with pytest.raises(jose.MalformedJws) as caught:
        jose.read_header(token)
    assert (caught.value.part, caught.value.encrypted) == (part, encrypted)


def test_rfc7519_7_2_a_verified_payload_must_be_a_json_object() -> None:
    token = jws.serialize_compact({"alg": "ES256", "kid": "ec"}, b"[1, 2]", EC, ["ES256"])
    with pytest.raises(jose.MalformedJws) as caught:
        jose.verify(token, keys_of(public(EC)), ["ES256"])
    assert caught.value.part == "payload"


def test_unverified_claims_are_read_only_to_find_the_signer() -> None:
    assert jose.read_claims(sign(EC, "ES256", {"sub": "client-1"})) == {"sub": "client-1"}
    assert jose.read_claims("not-a-jws") == {}
    assert jose.read_claims("a.!!.c") == {}


# -- time claims (RFC 7519 §2, §4.1.4-§4.1.6) --------------------------------------------------


def refused_time(claims: dict[str, Any], **options: Any) -> jose.TimeClaimError:
    with pytest.raises(jose.TimeClaimError) as caught:
        jose.check_times(claims, now=NOW, **{"leeway": 30, **options})
    return caught.value


def test_rfc7519_4_1_4_exp_is_refused_from_exp_plus_leeway_on() -> None:
    assert jose.check_times({"exp": NOW - 29}, now=NOW, leeway=30) == NOW - 29
    expired = refused_time({"exp": NOW - 30})
    assert (expired.claim, expired.problem, expired.value) == ("exp", "expired", NOW - 30)
    assert str(expired) == f"token expired at {NOW - 30} (now {NOW})"
    assert refused_time({}).problem == "missing"
    assert jose.check_times({}, now=NOW, leeway=30, require_exp=False) is None


def test_rfc7519_4_1_4_max_lifetime_bounds_how_far_ahead_exp_may_be() -> None:
    assert jose.check_times({"exp": NOW + 600}, now=NOW, leeway=5, max_lifetime=600)
    assert refused_time({"exp": NOW + 601}, leeway=5, max_lifetime=600).problem == "too_long"


def test_rfc7519_4_1_5_nbf_is_refused_until_nbf_minus_leeway() -> None:
    claims = {"exp": NOW + 300, "nbf": NOW + 30}
    assert jose.check_times(claims, now=NOW, leeway=30)
    refused = refused_time({**claims, "nbf": NOW + 31})
    assert (refused.claim, refused.problem) == ("nbf", "not_yet_valid")


def test_rfc7519_4_1_6_iat_in_the_future_is_refused_unless_the_caller_says_otherwise() -> None:
    claims = {"exp": NOW + 300, "iat": NOW + 31}
    assert refused_time(claims).problem == "issued_in_future"
    assert jose.check_times(claims, now=NOW, leeway=30, refuse_future_iat=False)
    assert jose.check_times({**claims, "iat": NOW + 30}, now=NOW, leeway=30)
    missing = refused_time({"exp": NOW + 300}, require_iat=True)
    assert (missing.claim, missing.problem) == ("iat", "missing")


@pytest.mark.parametrize("value", [True, "1800000000", [NOW], math.inf, math.nan])
def test_rfc7519_2_a_numeric_date_is_a_finite_json_number(value: object) -> None:
    for claim in ("exp", "nbf", "iat"):
        refused = refused_time({"exp": NOW + 300, claim: value})
        assert (refused.claim, refused.problem) == (claim, "not_a_number")
    assert jose.numeric_date({"exp": 1.5}, "exp") == 1.5
