"""Who is asking: standard JWTs (PyJWT), framelog's signing keyring, and the principals they name.

Tokens
    ``Authorization: Bearer <JWT>``. framelog signs its own with Ed25519
    (``EdDSA``) keys; a customer's back end may sign its users' tokens with its
    own keys (Ed25519, P-256 or RSA), registered by an operator as a trusted
    issuer (``auth.trusted_issuers``: issuer + JWKS file + the scopes it may
    grant). Claims: ``iss``, ``aud`` (``auth.audience``), ``sub`` (the user id),
    ``ws`` (their workspaces), ``scope`` (space-separated, OAuth style),
    ``iat``, ``nbf``, ``exp``, ``jti``.

Verification, in this order: the token's length (``auth.max_token_bytes``);
the header's ``alg`` in the allow-list (never ``none`` or an HMAC) and its
``kid`` naming a known, unretired key of the token's issuer; the signature
with that key and only the algorithm of that key's type (so an HS256 token
"signed" with a public key, or an RS/ES swap, never verifies); then ``exp``,
``nbf``, ``iat`` (with ``auth.clock_leeway``), ``iss``, ``aud``, and a lifetime
``exp - iat`` within ``auth.max_token_lifetime``. Every refusal is a
``processors.tokens.TokenError`` whose ``reason`` says why.

Keyring
    ``<state_dir>/keyring.json`` (0600; ``auth.keyring_file`` or
    ``FRAMELOG_KEYRING_FILE`` elsewhere; ``FRAMELOG_KEYRING`` holds the JSON
    itself, read-only), created with one key on first use and never shipped.
    ``rotate`` adds a key that becomes the signing key; older keys keep
    verifying until ``retire``d. Verifiers re-read the file when it changes, so
    a rotation or retirement takes effect in a running API without a restart.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from framelog.core.config import AuthConfig
from framelog.core.errors import FramelogError
from framelog.core.ids import is_opaque_id
from framelog.processors.access import Viewer
from framelog.processors.tokens import BadSignatureError, ExpiredTokenError, MalformedTokenError, TokenError

# ------------------------------------------------------------ scopes

VIDEOS_WRITE = "videos:write"        # owners: upload, manage their own videos
ANALYTICS_READ = "analytics:read"    # analysts: any video's analytics, POST /v1/sql
EVENTS_WRITE = "events:write"        # server-side event producers
OPS = "ops"                          # operators
SCOPES = (VIDEOS_WRITE, ANALYTICS_READ, EVENTS_WRITE, OPS)
DEFAULT_SCOPES = (VIDEOS_WRITE,)     # what `framelog token mint` grants unless told otherwise

ALGORITHM = "EdDSA"                  # framelog's own keys
_ALG_OF_KEY = {"OKP": "EdDSA", "EC": "ES256", "RSA": "RS256"}   # a trusted issuer's keys: one algorithm per type
ALLOWED_ALGORITHMS = frozenset(_ALG_OF_KEY.values())
MIN_RSA_BITS = 2048
MAX_WORKSPACES = 32
USER_ID = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")               # the upload API's owner ids
KEYRING_FILE_NAME = "keyring.json"


# ------------------------------------------------------------ errors

class WrongAudienceError(TokenError):
    reason = "wrong_audience"


class UnknownIssuerError(TokenError):
    reason = "unknown_issuer"


class UnknownKeyError(TokenError):
    reason = "unknown_key"


class RetiredKeyError(TokenError):
    reason = "retired_key"


class BadAlgorithmError(TokenError):
    reason = "bad_algorithm"


class NotYetValidError(TokenError):
    reason = "not_yet_valid"


class TooLongLivedError(TokenError):
    reason = "lifetime_too_long"


class ForeignSubjectError(TokenError):
    reason = "foreign_subject"


class KeyringError(FramelogError):
    """The keyring cannot do what was asked (unknown kid, last key, read-only)."""


# ------------------------------------------------------------ principals

@dataclass(frozen=True)
class Principal:
    """A verified token's subject: who, in which workspaces, allowed to do what."""
    sub: str
    workspaces: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    issuer: str = ""
    expires_at: int = 0

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def viewer(self) -> Viewer:
        return Viewer(self.sub, self.workspaces)


def parse_scopes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Scopes as given to ``mint`` (a space/comma-separated string or a list); unknown ones refused."""
    if value is None:
        return DEFAULT_SCOPES
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    unknown = [s for s in items if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; known: {list(SCOPES)}")
    return tuple(dict.fromkeys(items))


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: expected 1-128 characters of [A-Za-z0-9_.@:-]")
    return value


# ------------------------------------------------------------ keyring

@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created: int
    retired: int | None = None

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


def keyring_path(auth: AuthConfig, state_dir: Path) -> Path:
    """``auth.keyring_file``, else ``<state_dir>/keyring.json`` (``config.auth, config.stack.state_dir``)."""
    return Path(auth.keyring_file) if auth.keyring_file else state_dir / KEYRING_FILE_NAME


def _new_key(now: float) -> SigningKey:
    return SigningKey(f"{time.strftime('%Y%m%d', time.gmtime(now))}-{secrets.token_hex(4)}",
                      Ed25519PrivateKey.generate(), int(now))


def _key_record(key: SigningKey) -> dict[str, Any]:
    pem = key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode("ascii")
    return {"kid": key.kid, "alg": ALGORITHM, "created": key.created, "retired": key.retired, "private_key": pem}


def _parse_keyring(text: str, where: str) -> list[SigningKey]:
    try:
        data = json.loads(text)
        keys = []
        for item in data["keys"]:
            private = serialization.load_pem_private_key(item["private_key"].encode("ascii"), password=None)
            if not isinstance(private, Ed25519PrivateKey) or not is_opaque_id(item["kid"]):
                raise ValueError("not an Ed25519 key with a valid kid")
            keys.append(SigningKey(item["kid"], private, int(item["created"]),
                                   None if item.get("retired") is None else int(item["retired"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise FramelogError(f"{where}: not a framelog keyring ({exc})") from None
    if not keys:
        raise FramelogError(f"{where}: the keyring holds no key")
    return keys


class Keyring:
    """framelog's own signing keys, from a file it creates (or FRAMELOG_KEYRING, read-only)."""

    def __init__(self, auth: AuthConfig, state_dir: Path):
        self.path = keyring_path(auth, state_dir)
        self._inline = auth.keyring_json
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._stamp: tuple[int, int] | None = None

    # reading

    def keys(self) -> list[SigningKey]:
        """Every key, oldest first (created on first use); re-read when the file changed."""
        with self._lock:
            if self._inline:
                if not self._keys:
                    self._keys = _parse_keyring(self._inline, "FRAMELOG_KEYRING")
                return list(self._keys)
            if not self.path.exists():
                self._create()
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._keys = _parse_keyring(self.path.read_text(), str(self.path))
                self._stamp = stamp
            return list(self._keys)

    def current(self) -> SigningKey:
        """The signing key: the newest one not retired."""
        live = [k for k in self.keys() if k.retired is None]
        if not live:
            raise KeyringError(f"{self.path}: every key is retired; run `framelog keys rotate`")
        return max(live, key=lambda k: (k.created, k.kid))

    def find(self, kid: str) -> SigningKey | None:
        return next((k for k in self.keys() if k.kid == kid), None)

    def jwks(self) -> dict[str, Any]:
        """The public halves of the keys still verifying (a JSON Web Key Set)."""
        return {"keys": [k.public_jwk for k in self.keys() if k.retired is None]}

    # changing

    def rotate(self, now: float | None = None) -> SigningKey:
        """Add a new signing key; the older ones keep verifying until retired."""
        key = _new_key(time.time() if now is None else now)
        with self._edit() as keys:
            if any(k.created >= key.created for k in keys):       # the newest key signs: strictly newer
                key = SigningKey(key.kid, key.private_key, max(k.created for k in keys) + 1)
            keys.append(key)
        return key

    def retire(self, kid: str, now: float | None = None) -> SigningKey:
        """Stop verifying (and signing with) ``kid``; refused for the last live key."""
        with self._edit() as keys:
            found = [i for i, k in enumerate(keys) if k.kid == kid]
            if not found:
                raise KeyringError(f"no key {kid!r} in {self.path}")
            i = found[0]
            if keys[i].retired is not None:
                return keys[i]
            if sum(1 for k in keys if k.retired is None) == 1:
                raise KeyringError(f"{kid} is the only live key: rotate first, then retire it")
            keys[i] = SigningKey(kid, keys[i].private_key, keys[i].created,
                                 int(time.time() if now is None else now))
            return keys[i]

    @contextmanager
    def _edit(self) -> Iterator[list[SigningKey]]:
        if self._inline:
            raise KeyringError("the keyring comes from FRAMELOG_KEYRING (read-only): change it where it is kept")
        self.keys()                                   # creates it if absent
        with self._file_lock():
            keys = _parse_keyring(self.path.read_text(), str(self.path))
            yield keys
            self._write(keys)
        with self._lock:
            self._stamp = None

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, keys: list[SigningKey]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "keys": [_key_record(k) for k in keys]}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def _create(self) -> None:
        with self._file_lock():
            if not self.path.exists():                # another process may have won the race
                self._write([_new_key(time.time())])


# ------------------------------------------------------------ minting

def mint_token(auth: AuthConfig, keyring: Keyring, sub: str, *, workspaces: Iterable[str] = (),
               scopes: str | Iterable[str] | None = None, ttl: float | None = None,
               now: float | None = None, extra: Mapping[str, Any] | None = None) -> str:
    """A token framelog signs with its current key (default lifetime: auth.token_ttl)."""
    _check_id(sub, "subject")
    ws = sorted({_check_id(w, "workspace") for w in workspaces})
    if len(ws) > MAX_WORKSPACES:
        raise ValueError(f"at most {MAX_WORKSPACES} workspaces per token")
    lifetime = auth.token_ttl if ttl is None else ttl
    if not 0 < lifetime <= auth.max_token_lifetime:
        raise ValueError(f"token lifetime must be within (0, {auth.max_token_lifetime:g}] seconds")
    t = int(time.time() if now is None else now)
    key = keyring.current()
    claims = {"iss": auth.issuer, "aud": auth.audience, "sub": sub, "ws": ws,
              "scope": " ".join(parse_scopes(scopes)), "iat": t, "nbf": t, "exp": t + int(lifetime),
              "jti": secrets.token_urlsafe(12), **(extra or {})}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})


# ------------------------------------------------------------ trusted issuers

@dataclass
class _Issuer:
    name: str
    scopes: frozenset[str]
    jwks_file: Path | None = None
    subject_prefix: str = ""
    keys: dict[str, tuple[Any, str]] = field(default_factory=dict)   # kid -> (public key, algorithm)
    stamp: tuple[int, int] | None = None


def _jwk_key(jwk: Mapping[str, Any], where: str) -> tuple[str, Any, str]:
    kty, kid = jwk.get("kty"), jwk.get("kid")
    alg = _ALG_OF_KEY.get(str(kty))
    if alg is None or not is_opaque_id(kid):
        raise FramelogError(f"{where}: only OKP/EC/RSA public keys with a kid are accepted (got kty={kty!r})")
    if "d" in jwk:
        raise FramelogError(f"{where}: key {kid} holds a private part; register only public keys")
    if jwk.get("alg") not in (None, alg):
        raise FramelogError(f"{where}: key {kid} is {kty} but names alg {jwk.get('alg')!r}")
    key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    if kty == "RSA" and key.key_size < MIN_RSA_BITS:
        raise FramelogError(f"{where}: RSA key {kid} is shorter than {MIN_RSA_BITS} bits")
    if kty == "EC" and jwk.get("crv") != "P-256":
        raise FramelogError(f"{where}: EC key {kid} must be on P-256 (ES256)")
    return kid, key, alg


def load_jwks(path: Path) -> dict[str, tuple[Any, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FramelogError(f"{path}: cannot read the JWKS ({exc})") from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise FramelogError(f"{path}: expected a JSON Web Key Set {{\"keys\": [...]}}")
    out = {}
    for jwk in items:
        kid, key, alg = _jwk_key(jwk, str(path))
        out[kid] = (key, alg)
    return out


# ------------------------------------------------------------ verifying

class TokenVerifier:
    """Verifies tokens of framelog (its keyring) and of the trusted issuers; one per API process."""

    def __init__(self, auth: AuthConfig, keyring: Keyring):
        self.auth = auth
        self.keyring = keyring
        self._issuers = {t.issuer: _Issuer(t.issuer, frozenset(parse_scopes(t.scopes)), t.jwks_file, t.subject_prefix)
                         for t in auth.trusted_issuers}
        if auth.issuer in self._issuers:
            raise FramelogError(f"trusted issuer {auth.issuer!r} is framelog's own issuer name")
        self._lock = threading.Lock()

    def _issuer_key(self, issuer: _Issuer, kid: str) -> tuple[Any, str]:
        assert issuer.jwks_file is not None
        with self._lock:
            st = issuer.jwks_file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != issuer.stamp:
                issuer.keys, issuer.stamp = load_jwks(issuer.jwks_file), stamp
            found = issuer.keys.get(kid)
        if found is None:
            raise UnknownKeyError(f"issuer {issuer.name} has no key {kid!r}")
        return found

    def _key_for(self, iss: str, kid: str) -> tuple[Any, str, _Issuer | None]:
        """(public key, its algorithm, the trusted issuer; None for framelog itself, which may grant anything)."""
        if iss == self.auth.issuer:
            key = self.keyring.find(kid)
            if key is None:
                raise UnknownKeyError(f"no framelog key {kid!r}")
            if key.retired is not None:
                raise RetiredKeyError(f"key {kid} was retired")
            return key.private_key.public_key(), ALGORITHM, None
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise UnknownIssuerError(f"issuer {iss!r} is not trusted")
        public, alg = self._issuer_key(issuer, kid)
        return public, alg, issuer

    def verify(self, token: str) -> Principal:
        auth = self.auth
        if not isinstance(token, str) or not token.isascii() or len(token) > auth.max_token_bytes \
                or token.count(".") != 2:
            raise MalformedTokenError("not a compact JWT within the size limit")
        try:
            unverified_token = jwt.decode_complete(token, options={"verify_signature": False})
            header, unverified = unverified_token["header"], unverified_token["payload"]
        except jwt.PyJWTError:
            raise MalformedTokenError("not a JWT") from None
        alg, kid, iss = header.get("alg"), header.get("kid"), unverified.get("iss")
        if alg not in ALLOWED_ALGORITHMS:
            raise BadAlgorithmError(f"algorithm {alg!r} is not accepted")
        if not is_opaque_id(kid):
            raise UnknownKeyError("the token names no valid kid")
        if not isinstance(iss, str):
            raise UnknownIssuerError("the token names no issuer")
        public, key_alg, trusted = self._key_for(iss, kid)
        if alg != key_alg:
            raise BadAlgorithmError(f"key {kid} signs with {key_alg}, the token says {alg}")
        try:
            claims = jwt.decode(token, public, algorithms=[key_alg], audience=auth.audience, issuer=iss,
                                leeway=auth.clock_leeway,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_sub": False,
                                         "verify_jti": False})
        except jwt.InvalidSignatureError:
            raise BadSignatureError("signature does not match") from None
        except jwt.ExpiredSignatureError:
            raise ExpiredTokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise NotYetValidError("token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise WrongAudienceError(f"token is not for {auth.audience!r}") from None
        except jwt.PyJWTError as exc:
            raise MalformedTokenError(f"claims refused: {exc}") from None
        return self._principal(claims, iss, trusted)

    def _principal(self, claims: Mapping[str, Any], iss: str, trusted: _Issuer | None) -> Principal:
        exp, iat = claims["exp"], claims["iat"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
            raise MalformedTokenError("exp and iat must be integers")
        if exp - iat > self.auth.max_token_lifetime:
            raise TooLongLivedError(f"exp - iat exceeds {self.auth.max_token_lifetime:g} s")
        sub, ws, scope = claims.get("sub"), claims.get("ws", []), claims.get("scope", "")
        if not isinstance(sub, str) or not USER_ID.fullmatch(sub):
            raise MalformedTokenError("bad sub")
        if not isinstance(ws, list) or len(ws) > MAX_WORKSPACES \
                or not all(isinstance(w, str) and USER_ID.fullmatch(w) for w in ws):
            raise MalformedTokenError("bad ws")
        if not isinstance(scope, str):
            raise MalformedTokenError("bad scope")
        scopes = frozenset(s for s in scope.split() if s in SCOPES)
        if trusted is not None:
            scopes &= trusted.scopes                 # a customer's back end grants only what it was allowed
            if not all(name.startswith(trusted.subject_prefix) for name in (sub, *ws)):
                raise ForeignSubjectError(f"issuer {iss} may only name users and workspaces "
                                          f"starting with {trusted.subject_prefix!r}")
        return Principal(sub, frozenset(ws), scopes, iss, exp)
