"""DPoP proof verification (bastion.oauth.dpop), rule by rule: RFC 9449 §4.2-§4.3 (the proof
and its checks), §7.1 (``ath``), §8-§9 (``use_dpop_nonce``), RFC 7638 §3 (the thumbprint);
checklist X01, X03 (the proof part), X04 (the nonce code).

Pure function tests: keys made here with ``cryptography`` and proofs signed here by hand
(JWS compact serialization, RFC 7515 §3.1), independently of the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bastion.oauth import dpop

NOW = 1_800_000_000
URI = "https://as.example.com/token"
TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# RFC 7638 §3.1: the example RSA key (that of RFC 7517 Appendix A.1) and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We"
    "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64int(value: int, size: int | None = None) -> str:
    return b64(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


def public_jwk(key: Any) -> dict[str, Any]:
    """The public JWK (RFC 7517, RFC 8037) of a ``cryptography`` private key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        nums = key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64int(nums.x, 32), "y": b64int(nums.y, 32)}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    nums = key.public_key().public_numbers()
    return {"kty": "RSA", "n": b64int(nums.n), "e": b64int(nums.e)}


def raw_sign(key: Any, alg: str, data: bytes) -> bytes:
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA":
        return bytes(key.sign(data))
    if alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return bytes(key.sign(data, pss, hashes.SHA256()))
    return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


def proof(
    key: Any = EC_KEY, alg: str = "ES256", *, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """A DPoP proof for POST ``URI`` at ``NOW``; ``header``/``claims`` members override (None
    removes one)."""
    head = {"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk(key), **(header or {})}
    body = {"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URI, "iat": NOW, **claims}
    head = {k: v for k, v in head.items() if v is not None}
    body = {k: v for k, v in body.items() if v is not None}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
    return f"{signing_input}.{b64(raw_sign(key, alg, signing_input.encode()))}"


def check(values: list[str], **kwargs: Any) -> dpop.DPoPProof:
    args: dict[str, Any] = {"method": "POST", "uri": URI, "now": NOW, **kwargs}
    return dpop.verify_proof(values, **args)


def refused(values: list[str], code: str = "invalid_dpop_proof", **kwargs: Any) -> str:
    with pytest.raises(dpop.DPoPError) as caught:
        check(values, **kwargs)
    assert caught.value.code == code
    return str(caught.value)


# -- who must not get in ----------------------------------------------------------------------


def test_rfc9449_4_3_1_no_header_or_two_headers_are_refused() -> None:
    assert "exactly one DPoP header" in refused([])
    assert "carries 2" in refused([proof(), proof()])


def test_rfc9449_4_3_2_not_a_jwt_is_refused() -> None:
    assert "not a signed JWT" in refused(["not-a-jwt"])
    assert "not a signed JWT" in refused(["a.b.c.d.e"])
    assert "not a signed JWT" in refused(["%%%.e30.sig"])


def test_rfc9449_4_3_4_typ_must_be_dpop_jwt() -> None:
    assert "typ must be 'dpop+jwt'" in refused([proof(header={"typ": "JWT"})])
    assert "typ must be" in refused([proof(header={"typ": None})])


def test_rfc9449_4_3_5_alg_none_is_refused() -> None:
    head = b64(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(EC_KEY)}).encode())
    body = b64(json.dumps({"jti": "j", "htm": "POST", "htu": URI, "iat": NOW}).encode())
    assert "alg 'none' is not accepted" in refused([f"{head}.{body}."])


def test_rfc9449_4_3_5_alg_hs256_is_refused() -> None:
    """An HMAC keyed with the public key is the algorithm-confusion forgery (RFC 8725 §2.1)."""
    jwk = public_jwk(EC_KEY)
    head = b64(json.dumps({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}).encode())
    body = b64(json.dumps({"jti": "j", "htm": "POST", "htu": URI, "iat": NOW}).encode())
    sig = hmac.new(json.dumps(jwk).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert "alg 'HS256' is not accepted" in refused([f"{head}.{body}.{b64(sig)}"])


def test_rfc9449_4_3_5_alg_outside_the_allowed_list_is_refused() -> None:
    message = refused([proof(RSA_KEY, "PS256")], allowed_algorithms=("ES256",))
    assert "alg 'PS256' is not accepted" in message
    assert "ES256" in message


def test_rfc9449_4_3_7_private_key_in_jwk_is_refused() -> None:
    d = b64int(EC_KEY.private_numbers().private_value, 32)
    message = refused([proof(header={"jwk": {**public_jwk(EC_KEY), "d": d}})])
    assert "private key members (d)" in message


def test_rfc9449_4_3_7_missing_or_unusable_jwk_is_refused() -> None:
    assert "no jwk header" in refused([proof(header={"jwk": None})])
    # An Ed25519 key cannot verify ES256.
    assert "can verify ES256" in refused([proof(header={"jwk": public_jwk(ED_KEY)})])


def test_rfc9449_4_3_6_bad_signature_is_refused() -> None:
    # Signed with another key than the one in jwk.
    other = ec.generate_private_key(ec.SECP256R1())
    forged = proof(other, header={"jwk": public_jwk(EC_KEY)})
    assert "signature does not verify" in refused([forged])
    # A claim changed after signing.
    head, _, sig = proof().split(".")
    body = b64(json.dumps({"jti": "x", "htm": "POST", "htu": URI, "iat": NOW}).encode())
    assert "signature does not verify" in refused([f"{head}.{body}.{sig}"])


def test_rfc9449_4_3_6_a_key_seen_before_never_verifies_another_keys_proof() -> None:
    """Proof keys are remembered by their JWK: after a good proof of one key, a proof carrying
    that key's JWK but signed by another is still refused, the other key's own proof still
    verifies with its own thumbprint, and an unusable JWK stays refused when sent again."""
    other = ec.generate_private_key(ec.SECP256R1())
    assert check([proof()]).jkt == dpop.jwk_thumbprint(public_jwk(EC_KEY))
    forged = proof(other, header={"jwk": public_jwk(EC_KEY)})
    assert "signature does not verify" in refused([forged])
    assert "signature does not verify" in refused([forged])
    assert check([proof(other)]).jkt == dpop.jwk_thumbprint(public_jwk(other))
    unusable = proof(header={"jwk": public_jwk(ED_KEY)})
    for _ in range(2):
        assert "can verify ES256" in refused([unusable])
    # The same JWK with a private member added is refused, even though its public part is known.
    private = {**public_jwk(EC_KEY), "d": b64int(EC_KEY.private_numbers().private_value, 32)}
    assert "private key members" in refused([proof(header={"jwk": private})])


def test_rfc9449_4_3_8_wrong_htm_is_refused() -> None:
    assert "htm 'GET'" in refused([proof(htm="GET")])
    assert "htm 'post'" in refused([proof(htm="post")])


def test_rfc9449_4_3_9_wrong_htu_is_refused() -> None:
    assert "htu" in refused([proof(htu="https://as.example.com/authorize")])
    assert "htu" in refused([proof(htu="https://evil.example.com/token")])
    assert "htu" in refused([proof(htu="http://as.example.com/token")])
    assert "htu" in refused([proof(htu="https://as.example.com:8443/token")])
    assert "htu" in refused([proof(htu="not a uri")])


def test_rfc9449_4_3_3_missing_claims_are_refused() -> None:
    assert "no jti claim" in refused([proof(jti=None)])
    assert "no jti claim" in refused([proof(jti="")])
    assert "no htm claim" in refused([proof(htm=None)])
    assert "no htu claim" in refused([proof(htu=None)])
    assert "no numeric iat" in refused([proof(iat=None)])
    assert "no numeric iat" in refused([proof(iat="1800000000")])


def test_rfc9449_4_3_11_iat_outside_the_window_is_refused() -> None:
    assert "too old" in refused([proof(iat=NOW - 61)])
    assert "too old" in refused([proof(iat=NOW - 11)], max_age=10)
    assert "in the future" in refused([proof(iat=NOW + 6)])


def test_rfc9449_8_nonce_missing_or_wrong_when_demanded_is_use_dpop_nonce() -> None:
    assert "requires a nonce" in refused([proof()], "use_dpop_nonce", nonce="n-1")
    assert "not the one" in refused([proof(nonce="n-0")], "use_dpop_nonce", nonce="n-1")
    assert "not the one" in refused([proof(nonce=7)], "use_dpop_nonce", nonce="n-1")


def test_rfc9449_7_ath_missing_or_wrong_with_a_token_is_refused() -> None:
    assert "no ath claim" in refused([proof()], access_token=TOKEN)
    wrong = dpop.access_token_hash("another-token")
    assert "not the hash" in refused([proof(ath=wrong)], access_token=TOKEN)


def test_rfc9449_4_3_oversized_proof_is_refused() -> None:
    assert "longer than" in refused(["a" * (dpop.MAX_PROOF_LENGTH + 1)])


# -- who may ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"), [(EC_KEY, "ES256"), (ED_KEY, "EdDSA"), (RSA_KEY, "RS256"), (RSA_KEY, "PS256")]
)
def test_rfc9449_4_3_valid_proof_is_accepted_per_algorithm(key: Any, alg: str) -> None:
    result = check([proof(key, alg)])
    assert result == dpop.DPoPProof(
        jkt=dpop.jwk_thumbprint(public_jwk(key)), jti="e1j3V_bKic8-LAEB", iat=NOW, alg=alg
    )


def test_rfc9449_4_3_9_htu_is_compared_after_normalization_without_query() -> None:
    """RFC 9449 §4.3 point 9 and RFC 3986 §6.2.2-§6.2.3: case of scheme and host, default
    port, percent-encoding, dot segments; query and fragment of both sides ignored."""
    for htu in (
        "HTTPS://AS.Example.COM/token",
        "https://as.example.com:443/token",
        "https://as.example.com/%74oken",
        "https://as.example.com/a/../token",
        "https://as.example.com/token?x=1#f",
    ):
        assert check([proof(htu=htu)]).jti, htu
    assert check([proof()], uri=URI + "?state=abc").jti
    assert check([proof(htu="http://127.0.0.1:8080/")], uri="http://127.0.0.1:8080").jti


def test_rfc9449_4_3_11_iat_at_the_edges_of_the_window_is_accepted() -> None:
    assert check([proof(iat=NOW - 60)]).iat == NOW - 60
    assert check([proof(iat=NOW + 5)]).iat == NOW + 5


def test_rfc9449_8_and_7_nonce_and_ath_when_right_are_accepted() -> None:
    ath = base64.urlsafe_b64encode(hashlib.sha256(TOKEN.encode()).digest()).rstrip(b"=").decode()
    assert dpop.access_token_hash(TOKEN) == ath
    result = check([proof(nonce="n-1", ath=ath)], nonce="n-1", access_token=TOKEN)
    assert result.jti == "e1j3V_bKic8-LAEB"


def test_rfc9449_4_3_extra_header_and_claims_are_tolerated() -> None:
    assert check([proof(header={"kid": "k"}, extra="x")]).alg == "ES256"


def test_rfc7638_3_1_thumbprint_of_the_example_key() -> None:
    assert dpop.jwk_thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT
    # Members that are not required (alg, kid) do not change it (RFC 7638 §3.2).
    bare = {k: RFC7638_KEY[k] for k in ("kty", "n", "e")}
    assert dpop.jwk_thumbprint(bare) == RFC7638_THUMBPRINT


def test_rfc7638_thumbprint_refuses_what_is_not_a_public_signature_key() -> None:
    with pytest.raises(ValueError, match="not a usable public signature JWK"):
        dpop.jwk_thumbprint({"kty": "oct", "k": "c2VjcmV0"})
