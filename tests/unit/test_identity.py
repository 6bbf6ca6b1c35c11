"""processors.identity without a stack: minting, every refusal of a bad token, rotation, trusted issuers."""
from __future__ import annotations

import base64
import json
import stat
import time
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from framelog.core.config import TrustedIssuer
from framelog.core.errors import FramelogError
from framelog.processors.identity import (
    ANALYTICS_READ,
    OPS,
    VIDEOS_WRITE,
    Keyring,
    KeyringError,
    TokenVerifier,
    load_jwks,
    mint_token,
    parse_scopes,
)
from framelog.processors.tokens import TokenError


@pytest.fixture()
def cfg(config, tmp_path):
    """The configuration with its own state dir: a fresh keyring per test."""
    return replace(config, stack=replace(config.stack, state_dir=tmp_path))


@pytest.fixture()
def keyring(cfg) -> Keyring:
    return Keyring(cfg.auth, cfg.stack.state_dir)


@pytest.fixture()
def verifier(cfg, keyring) -> TokenVerifier:
    return TokenVerifier(cfg.auth, keyring)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as e:
        verifier.verify(token)
    return e.value.reason


def claims(cfg, **over) -> dict:
    now = int(time.time())
    return {"iss": cfg.auth.issuer, "aud": cfg.auth.audience, "sub": "alice", "ws": ["ws-1"],
            "scope": VIDEOS_WRITE, "iat": now, "nbf": now, "exp": now + 600, **over}


def signed(keyring: Keyring, payload: dict, **headers) -> str:
    key = keyring.current()
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, **headers})


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# ------------------------------------------------------------------ minting and the keyring

def test_mint_and_verify_round_trip(cfg, keyring, verifier):
    token = mint_token(cfg.auth, keyring, "alice", workspaces=["ws-2", "ws-1"], scopes=[VIDEOS_WRITE, ANALYTICS_READ])
    p = verifier.verify(token)
    assert (p.sub, p.workspaces, p.scopes, p.issuer) == ("alice", {"ws-1", "ws-2"}, {VIDEOS_WRITE, ANALYTICS_READ},
                                                         cfg.auth.issuer)
    assert p.viewer.user_id == "alice" and p.has(VIDEOS_WRITE) and not p.has(OPS)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == keyring.current().kid
    assert verifier.verify(mint_token(cfg.auth, keyring, "bob")).scopes == {VIDEOS_WRITE}     # the default scope


def test_keyring_is_created_once_private_and_publishes_only_public_keys(cfg, keyring):
    kid = keyring.current().kid
    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600
    assert Keyring(cfg.auth, cfg.stack.state_dir).current().kid == kid   # another process reads the same file
    jwks = keyring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [kid]
    assert all("d" not in k and k["kty"] == "OKP" and k["alg"] == "EdDSA" for k in jwks["keys"])


def test_inline_keyring_is_read_only(cfg, keyring):
    keyring.current()                                                 # created on first use
    inline = replace(cfg, auth=replace(cfg.auth, keyring_json=keyring.path.read_text()))
    token = mint_token(inline.auth, Keyring(inline.auth, inline.stack.state_dir), "alice")
    assert TokenVerifier(cfg.auth, keyring).verify(token).sub == "alice"
    with pytest.raises(KeyringError):
        Keyring(inline.auth, inline.stack.state_dir).rotate()


def test_rotation_old_kid_verifies_until_retired(cfg, keyring, verifier):
    old = mint_token(cfg.auth, keyring, "alice")
    first = keyring.current().kid
    other_process = Keyring(cfg.auth, cfg.stack.state_dir)   # a running API's own view of the file
    api = TokenVerifier(cfg.auth, other_process)
    assert api.verify(old).sub == "alice"
    new_key = keyring.rotate()
    assert keyring.current().kid == new_key.kid != first
    new = mint_token(cfg.auth, keyring, "alice")
    assert jwt.get_unverified_header(new)["kid"] == new_key.kid
    assert api.verify(old).sub == api.verify(new).sub == "alice"     # both verify after the rotation
    assert {k["kid"] for k in other_process.jwks()["keys"]} == {first, new_key.kid}
    keyring.retire(first)
    assert refused(api, old) == "retired_key"                         # picked up without a restart
    assert api.verify(new).sub == "alice"
    assert [k["kid"] for k in keyring.jwks()["keys"]] == [new_key.kid]
    with pytest.raises(KeyringError):
        keyring.retire(new_key.kid)                                   # never the last live key
    with pytest.raises(KeyringError):
        keyring.retire("no-such-kid")


def test_scopes_and_ids_are_checked_when_minting(cfg, keyring):
    assert parse_scopes("analytics:read, ops") == (ANALYTICS_READ, OPS)
    with pytest.raises(ValueError):
        parse_scopes("admin")
    with pytest.raises(ValueError):
        mint_token(cfg.auth, keyring, "bad user/../")
    with pytest.raises(ValueError):
        mint_token(cfg.auth, keyring, "alice", ttl=cfg.auth.max_token_lifetime + 1)


# ------------------------------------------------------------------ refusals

def test_forged_with_another_key_under_a_known_kid(cfg, keyring, verifier):
    kid = keyring.current().kid
    token = jwt.encode(claims(cfg), ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    assert refused(verifier, token) == "bad_signature"


def test_alg_none_is_refused(cfg, keyring, verifier):
    token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': keyring.current().kid})}.{b64(claims(cfg))}."
    assert refused(verifier, token) == "bad_algorithm"


def test_hs256_signed_with_the_public_key_is_refused(cfg, keyring, verifier):
    key = keyring.current()
    public_pem = key.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    body = b64(claims(cfg, scope=f"{VIDEOS_WRITE} {ANALYTICS_READ} {OPS}"))
    import hashlib
    import hmac
    sig = base64.urlsafe_b64encode(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    assert refused(verifier, f"{header}.{body}.{sig.rstrip(b'=').decode()}") == "bad_algorithm"


def test_tampered_payload_breaks_the_signature(cfg, keyring, verifier):
    header, _, sig = mint_token(cfg.auth, keyring, "alice").split(".")
    forged = f"{header}.{b64(claims(cfg, sub='admin', scope=OPS))}.{sig}"
    assert refused(verifier, forged) == "bad_signature"


def test_expired_not_yet_valid_and_too_long_lived(cfg, keyring, verifier):
    now = int(time.time())
    leeway = int(cfg.auth.clock_leeway)
    assert refused(verifier, signed(keyring, claims(cfg, iat=now - 1000, nbf=now - 1000,
                                                    exp=now - leeway - 1))) == "expired"
    assert refused(verifier, signed(keyring, claims(cfg, nbf=now + leeway + 60))) == "not_yet_valid"
    assert refused(verifier, signed(keyring, claims(cfg, iat=now + leeway + 60))) == "not_yet_valid"
    assert refused(verifier, signed(keyring, claims(cfg, exp=now + int(cfg.auth.max_token_lifetime) + 10))) \
        == "lifetime_too_long"
    assert verifier.verify(mint_token(cfg.auth, keyring, "alice", ttl=60, now=now - 59)).sub == "alice"


def test_wrong_audience_issuer_and_missing_claims(cfg, keyring, verifier):
    assert refused(verifier, signed(keyring, claims(cfg, aud="another-service"))) == "wrong_audience"
    assert refused(verifier, signed(keyring, claims(cfg, iss="https://evil.example"))) == "unknown_issuer"
    no_exp = claims(cfg)
    del no_exp["exp"]
    assert refused(verifier, signed(keyring, no_exp)) == "malformed"
    assert refused(verifier, signed(keyring, claims(cfg, sub="../etc"))) == "malformed"
    assert refused(verifier, signed(keyring, claims(cfg, ws="ws-1"))) == "malformed"


def test_unknown_kid_garbage_and_oversized_tokens(cfg, keyring, verifier):
    key = keyring.current()
    token = jwt.encode(claims(cfg), key.private_key, algorithm="EdDSA", headers={"kid": "nobody"})
    assert refused(verifier, token) == "unknown_key"
    assert refused(verifier, jwt.encode(claims(cfg), key.private_key, algorithm="EdDSA")) == "unknown_key"
    assert refused(verifier, "forged.token") == "malformed"
    assert refused(verifier, "a.b.c") == "malformed"
    big = mint_token(cfg.auth, keyring, "alice", extra={"pad": "x" * cfg.auth.max_token_bytes})
    assert refused(verifier, big) == "malformed"
    assert refused(verifier, "é" * 10) == "malformed"


def test_unknown_scopes_in_a_token_are_ignored(cfg, keyring, verifier):
    p = verifier.verify(signed(keyring, claims(cfg, scope=f"{ANALYTICS_READ} root *")))
    assert p.scopes == {ANALYTICS_READ}


# ------------------------------------------------------------------ a customer's back end

def jwk_of(public, kid: str, alg: str | None = None) -> dict:
    algo = {"ec": jwt.algorithms.ECAlgorithm, "rsa": jwt.algorithms.RSAAlgorithm,
            "okp": jwt.algorithms.OKPAlgorithm}
    kind = "ec" if isinstance(public, ec.EllipticCurvePublicKey) else \
        "rsa" if isinstance(public, rsa.RSAPublicKey) else "okp"
    out = json.loads(algo[kind].to_jwk(public))
    out["kid"] = kid
    if alg:
        out["alg"] = alg
    return out


@pytest.fixture()
def customer(cfg, tmp_path):
    """A back end with its own ES256 and RS256 keys, trusted to grant videos:write only."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "customer.jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_of(ec_key.public_key(), "c-ec"),
                                         jwk_of(rsa_key.public_key(), "c-rsa")]}))
    trusted = replace(cfg, auth=replace(cfg.auth, trusted_issuers=(
        TrustedIssuer("https://idp.customer.example", jwks, (VIDEOS_WRITE,)),)))
    return trusted, ec_key, rsa_key, jwks


def test_a_trusted_issuers_tokens_verify_with_only_the_scopes_it_may_grant(customer):
    cfg, ec_key, rsa_key, _ = customer
    verifier = TokenVerifier(cfg.auth, Keyring(cfg.auth, cfg.stack.state_dir))
    body = claims(cfg, iss="https://idp.customer.example", sub="cust-user-1",
                  scope=f"{VIDEOS_WRITE} {ANALYTICS_READ} {OPS}")
    p = verifier.verify(jwt.encode(body, ec_key, algorithm="ES256", headers={"kid": "c-ec"}))
    assert (p.sub, p.issuer, p.scopes) == ("cust-user-1", "https://idp.customer.example", {VIDEOS_WRITE})
    assert verifier.verify(jwt.encode(body, rsa_key, algorithm="RS256", headers={"kid": "c-rsa"})).sub == "cust-user-1"
    # the key decides the algorithm: an RSA key's token claiming ES256, or a key under another kid, fails
    assert refused(verifier, jwt.encode(body, ec_key, algorithm="ES256", headers={"kid": "c-rsa"})) == "bad_algorithm"
    assert refused(verifier, jwt.encode(body, rsa_key, algorithm="RS256", headers={"kid": "c-ec"})) == "bad_algorithm"
    # the customer's keys do not sign for framelog's own issuer
    own = claims(cfg, sub="admin", scope=OPS)
    assert refused(verifier, jwt.encode(own, ec_key, algorithm="ES256", headers={"kid": "c-ec"})) == "unknown_key"


def test_a_tenant_prefix_confines_a_trusted_issuer_to_its_own_users(customer):
    cfg, ec_key, _, jwks = customer
    confined = replace(cfg, auth=replace(cfg.auth, trusted_issuers=(
        TrustedIssuer("https://idp.customer.example", jwks, (VIDEOS_WRITE,), "acme:"),)))
    verifier = TokenVerifier(confined.auth, Keyring(confined.auth, confined.stack.state_dir))

    def token(sub: str, ws: list[str]) -> str:
        body = claims(confined, iss="https://idp.customer.example", sub=sub, ws=ws)
        return jwt.encode(body, ec_key, algorithm="ES256", headers={"kid": "c-ec"})

    assert verifier.verify(token("acme:u1", ["acme:team"])).sub == "acme:u1"
    assert refused(verifier, token("alice", [])) == "foreign_subject"          # a framelog user's id
    assert refused(verifier, token("acme:u1", ["ws-1"])) == "foreign_subject"  # another tenant's workspace


def test_a_jwks_with_private_or_weak_or_symmetric_keys_is_refused(tmp_path):
    bad = {
        "private": {"keys": [{**jwk_of(ec.generate_private_key(ec.SECP256R1()).public_key(), "k"), "d": "AAAA"}]},
        "symmetric": {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]},
        "weak-rsa": {"keys": [jwk_of(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
                                     "k")]},
        "mislabelled": {"keys": [jwk_of(ec.generate_private_key(ec.SECP256R1()).public_key(), "k", "HS256")]},
    }
    for name, data in bad.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(FramelogError):
            load_jwks(path)
