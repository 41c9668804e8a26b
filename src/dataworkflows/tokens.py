"""Bearer tokens for strict auth mode (DW_AUTH_MODE=strict): verifying JWTs, and minting local
HS256 ones for `dataworkflows token`.

The algorithm is never taken from the token: it follows from the configured key. DW_JWT_SECRET
admits HS256 only; DW_JWT_PUBLIC_KEY admits RS256 (an RSA key) or ES256 (a P-256 key) only; a JWKS
key admits the one algorithm of its type (RSA: RS256, EC P-256: ES256), and symmetric ("oct") JWKS
keys are never used. So `alg: none`, and an HS256 token signed with the public key's text, are
refused whatever they claim.

JWKS (DW_JWT_JWKS_URL) keys are fetched on first need, kept for DW_JWT_JWKS_CACHE_SECONDS, and
fetched again early when a token names an unknown `kid`, but at most once per
DW_JWT_JWKS_MIN_REFRESH_SECONDS: a stream of tokens with made-up key ids costs one fetch per
interval, not one per request. Fetches are asynchronous (httpx, a timeout, a bounded body), one at a
time; requests that need the keys meanwhile wait for that one fetch."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError, DataWorkflowsError
from dataworkflows.principal_ids import MAX_PRINCIPAL_ID, has_unprintable_character
from dataworkflows.tenancy import is_valid_tenant

log = structlog.get_logger("dataworkflows.tokens")

ROLES = ("viewer", "operator", "author", "admin")
MAX_SUBJECT = MAX_PRINCIPAL_ID
# RFC 7518 §3.2: an HS256 key is at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32
ASYMMETRIC = ("RS256", "ES256")
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_MAX_BYTES = 256 * 1024
JWKS_MAX_KEYS = 50
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class TokenRejected(DataWorkflowsError):
    """The bearer token is not valid."""

    code = "invalid_token"


class KeysUnavailable(DataWorkflowsError):
    """The signing keys (JWKS) cannot be fetched: tokens cannot be checked for now."""

    code = "jwks_unavailable"


@dataclass(frozen=True)
class Claims:
    """What a verified token says about its caller."""

    subject: str
    tenant: str
    roles: frozenset[str]
    # Until when (epoch seconds) the token is accepted: its exp and the leeway. A stream it opened
    # ends then.
    valid_until: float | None = None


def valid_tenant(value: object) -> bool:
    return isinstance(value, str) and is_valid_tenant(value)


def claim(payload: Mapping[str, Any], name: str) -> Any:
    """A claim by its name, or by a dotted path into nested objects (`realm_access.roles`) when no
    claim has that exact name (namespaced claims such as `https://example.com/roles` contain dots)."""
    if name in payload:
        return payload[name]
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def known_roles(value: Any) -> frozenset[str]:
    """The role names a roles claim grants: a list of names, or one space-separated string; names
    this server does not know are ignored."""
    names: Iterable[Any]
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list):
        names = value
    else:
        return frozenset()
    return frozenset(name for name in names if isinstance(name, str) and name in ROLES)


# --- keys ------------------------------------------------------------------------------------------


def _public_key_text(setting: str) -> str:
    """DW_JWT_PUBLIC_KEY is PEM text when it starts with -----BEGIN, otherwise the path of a PEM file."""
    if setting.lstrip().startswith("-----BEGIN"):
        return setting
    path = Path(setting).expanduser()
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigurationError(
            "DW_JWT_PUBLIC_KEY is neither PEM text (-----BEGIN PUBLIC KEY-----) nor a readable PEM file: "
            f"{path} ({exc})"
        ) from exc


def load_public_key(setting: str) -> tuple[Any, str]:
    """The public key of DW_JWT_PUBLIC_KEY and the one algorithm it admits (RS256 or ES256)."""
    text = _public_key_text(setting)
    if "PRIVATE KEY" in text:
        raise ConfigurationError("DW_JWT_PUBLIC_KEY holds a private key: give the server the public key only")
    try:
        key = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ConfigurationError(f"DW_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigurationError(
                f"DW_JWT_PUBLIC_KEY is a {key.key_size}-bit RSA key; RS256 needs 2048 bits or more"
            )
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ConfigurationError("DW_JWT_PUBLIC_KEY must be an RSA key (RS256) or a P-256 EC key (ES256)")


def _check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    raise ConfigurationError(f"DW_JWT_JWKS_URL must be an https URL (http only on loopback), not {url!r}")


def _usable_jwk(entry: Any) -> jwt.PyJWK | None:
    """A JWKS entry as a verification key, or None: only RSA (RS256, 2048 bits or more) and P-256
    (ES256) signing keys with a key id; symmetric keys, shorter RSA keys and keys for other uses or
    algorithms are skipped."""
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
        return None
    if entry.get("alg") is not None and entry["alg"] not in ASYMMETRIC:
        return None
    if "d" in entry:
        # A private key's members: a JWKS publishes public keys only (PyJWT made it a private key,
        # which cannot verify: an AttributeError for a token naming it, a review).
        return None
    try:
        key = jwt.PyJWK(entry)
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return None
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < 2048:
        # As load_public_key refuses a DW_JWT_PUBLIC_KEY of fewer bits.
        return None
    return key if key.algorithm_name in ASYMMETRIC else None


@dataclass
class JwksKeys:
    """The keys of a JWKS URL, by key id: cached, refreshed when stale or when a token names an
    unknown key id (at most once per min_refresh_seconds), fetched without blocking the event loop."""

    url: str
    cache_seconds: float = 300.0
    min_refresh_seconds: float = 30.0
    timeout_seconds: float = JWKS_TIMEOUT_SECONDS
    clock: Callable[[], float] = time.monotonic
    fetches: int = 0
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    _fetched_at: float | None = None
    _attempted_at: float | None = None
    _lock: asyncio.Lock | None = None
    _background: asyncio.Task[None] | None = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        now = self.clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self.cache_seconds
        known = self._keys.get(kid)
        if known is not None:
            # A cached key answers at once; a stale cache is refreshed behind it, so that an
            # identity provider that is down or slow never holds up tokens it already vouched for.
            if stale and self._may_refresh(now) and (self._background is None or self._background.done()):
                self._background = asyncio.create_task(self._refresh(kid), name="jwks-refresh")
            return known
        if self._fetched_at is None or stale or self._may_refresh(now):
            await self._refresh(kid)
        if self._fetched_at is None:
            raise KeysUnavailable(f"the signing keys could not be fetched from {self.url}; retry later")
        return self._keys.get(kid)

    def _may_refresh(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refresh_seconds

    async def _refresh(self, kid: str) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:
                return  # another request fetched while this one waited
            now = self.clock()
            if not self._may_refresh(now):
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                # One deadline for the whole fetch: a server that trickles bytes cannot hold the
                # lock (and every request waiting for an unknown key) longer.
                async with asyncio.timeout(self.timeout_seconds):
                    keys = await self._fetch()
            except (httpx.HTTPError, ValueError, TimeoutError) as exc:
                # Keep the keys we have: a token signed with one of them still verifies.
                log.warning("jwks fetch failed", url=self.url, error=str(exc)[:300], kid=kid[:100])
                return
            self._keys, self._fetched_at = keys, self.clock()
            log.info("jwks fetched", url=self.url, keys=len(keys))

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        body = bytearray()
        async with (
            httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > JWKS_MAX_BYTES:
                    raise ValueError(f"the JWKS is larger than {JWKS_MAX_BYTES} bytes")
        document = json.loads(bytes(body))
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("the JWKS has no keys array")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries[:JWKS_MAX_KEYS]:
            key = _usable_jwk(entry)
            if key is not None and key.key_id is not None:
                keys[key.key_id] = key
        return keys


# --- verification ----------------------------------------------------------------------------------


@dataclass
class TokenVerifier:
    """Verifies a bearer token against the configured key and claims, and reads its caller."""

    settings: Settings
    secret: bytes | None = None
    public_key: Any = None
    public_algorithm: str | None = None
    jwks: JwksKeys | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """Refuses (ConfigurationError) a strict mode that could not verify anything, or could be
        fooled: exactly one key source, a long enough secret, an audience for shared keys."""
        sources = [name for name, value in _key_sources(settings) if value]
        if len(sources) != 1:
            raise ConfigurationError(
                "DW_AUTH_MODE=strict needs exactly one of DW_JWT_SECRET (HS256), DW_JWT_PUBLIC_KEY "
                f"(RS256/ES256) or DW_JWT_JWKS_URL; {'none is' if not sources else ', '.join(sources) + ' are'} set"
            )
        _check_max_lifetime(settings)
        if settings.jwt_secret:
            if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(f"DW_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256)")
            return cls(settings, secret=settings.jwt_secret.encode())
        if not settings.jwt_audience:
            raise ConfigurationError(
                "DW_JWT_AUDIENCE must be set with DW_JWT_PUBLIC_KEY or DW_JWT_JWKS_URL: an identity provider's "
                "keys sign tokens for other services too, and only the audience tells this server's apart"
            )
        if settings.jwt_public_key:
            key, algorithm = load_public_key(settings.jwt_public_key)
            return cls(settings, public_key=key, public_algorithm=algorithm)
        _check_jwks_url(settings.jwt_jwks_url)
        jwks = JwksKeys(
            settings.jwt_jwks_url,
            cache_seconds=settings.jwt_jwks_cache_seconds,
            # At least a second (Settings refuses less): unknown key ids in a flood of forged tokens
            # cost one fetch a second.
            min_refresh_seconds=settings.jwt_jwks_min_refresh_seconds,
        )
        return cls(settings, jwks=jwks)

    async def verify(self, token: str) -> Claims:
        """The token's caller, or TokenRejected saying why not (KeysUnavailable: JWKS down)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is malformed: {exc}") from None
        key, algorithm = await self._key_for(header)
        settings = self.settings
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.jwt_audience or None,
                issuer=settings.jwt_issuer or None,
                leeway=settings.jwt_leeway_seconds,
                options={"require": ["exp", "sub"], "verify_aud": bool(settings.jwt_audience)},
            )
        except jwt.PyJWTError as exc:
            if type(exc) in _TIME_CLAIM_ERRORS:
                # The signature verified, then a time claim was read: a claim that is no number says
                # so (PyJWT reads `true` as 1, expired; a list as "must be an integer").
                _check_time_types(_unverified_claims(token))
            raise TokenRejected(_reason(exc)) from None
        self._check_times(payload)
        return self._claims(payload)

    def _check_times(self, payload: Mapping[str, Any]) -> None:
        """exp, nbf and iat are JSON numbers, and exp is at most DW_JWT_MAX_LIFETIME_SECONDS (and the
        leeway) ahead."""
        _check_time_types(payload)
        settings = self.settings
        ahead = float(payload["exp"]) - time.time()
        if ahead > settings.jwt_max_lifetime_seconds + settings.jwt_leeway_seconds:
            raise TokenRejected(
                f"the token is valid for {ahead:.0f} more seconds, longer than this server accepts "
                f"(DW_JWT_MAX_LIFETIME_SECONDS: {settings.jwt_max_lifetime_seconds:.0f})"
            )

    async def _key_for(self, header: Mapping[str, Any]) -> tuple[Any, str]:
        algorithm = header.get("alg")
        if self.secret is not None:
            return self._pinned(algorithm, "HS256", self.secret)
        if self.public_key is not None:
            assert self.public_algorithm is not None
            return self._pinned(algorithm, self.public_algorithm, self.public_key)
        assert self.jwks is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token has no key id (kid) header")
        found = await self.jwks.key(kid)
        if found is None:
            raise TokenRejected(f"the token's key id {kid[:100]!r} is not in the JWKS")
        assert found.algorithm_name is not None
        return self._pinned(algorithm, found.algorithm_name, found.key)

    @staticmethod
    def _pinned(algorithm: Any, expected: str, key: Any) -> tuple[Any, str]:
        if algorithm != expected:
            shown = str(algorithm)[:20]
            raise TokenRejected(f"the token's algorithm {shown!r} is not accepted (this server takes {expected})")
        return key, expected

    def _claims(self, payload: Mapping[str, Any]) -> Claims:
        settings = self.settings
        subject = payload.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT:
            raise TokenRejected(f"the token's sub must be a non-empty string of at most {MAX_SUBJECT} characters")
        if has_unprintable_character(subject):
            raise TokenRejected("the token's sub must not contain control, invisible or line-separator characters")
        tenant = claim(payload, settings.jwt_tenant_claim)
        if tenant is None:
            raise TokenRejected(f"the token has no tenant claim ({settings.jwt_tenant_claim!r})")
        if not valid_tenant(tenant):
            raise TokenRejected(
                f"the token's tenant claim ({settings.jwt_tenant_claim!r}) must be 1-100 letters, digits, "
                "'_', '.' or '-'"
            )
        return Claims(
            subject=subject,
            tenant=tenant,
            roles=known_roles(claim(payload, settings.jwt_roles_claim)),
            valid_until=float(payload["exp"]) + settings.jwt_leeway_seconds,
        )


_TIME_CLAIMS = ("exp", "nbf", "iat")
# What PyJWT raises for a time claim, once the signature verified (DecodeError itself: "exp must be an
# integer"; its subclass InvalidSignatureError is not in the list).
_TIME_CLAIM_ERRORS = frozenset(
    {jwt.ExpiredSignatureError, jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError, jwt.DecodeError}
)


def _unverified_claims(token: str) -> Mapping[str, Any]:
    """The claims of a token whose signature verified (and whose claims PyJWT then refused)."""
    try:
        claims: Any = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


# A NumericDate past this is no date (year 33658): an integer of 400 digits passes PyJWT's own checks,
# which compare integers, and no float holds it.
_LATEST_TIME = 1e12


def _check_time_types(payload: Mapping[str, Any]) -> None:
    """RFC 7519's NumericDate: a JSON number (PyJWT also reads "1999999999", a string, and true as 1)
    that a float holds, within 10^12 seconds of the epoch."""
    for name in _TIME_CLAIMS:
        value = payload.get(name)
        if name not in payload:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TokenRejected(f"the token's {name} must be a JSON number (seconds since the epoch)")
        # A float's NaN fails the comparison; an int too large for one is compared as an int.
        if not -_LATEST_TIME <= value <= _LATEST_TIME:
            raise TokenRejected(f"the token's {name} is no date: more than 10^12 seconds from the epoch")


def _check_max_lifetime(settings: Settings) -> None:
    if not settings.jwt_max_lifetime_seconds > 0:
        raise ConfigurationError("DW_JWT_MAX_LIFETIME_SECONDS must be a positive number of seconds")


def _key_sources(settings: Settings) -> list[tuple[str, str]]:
    return [
        ("DW_JWT_SECRET", settings.jwt_secret),
        ("DW_JWT_PUBLIC_KEY", settings.jwt_public_key),
        ("DW_JWT_JWKS_URL", settings.jwt_jwks_url),
    ]


_REASONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "the token is not meant for this server (aud)"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) is not trusted"),
    (jwt.MissingRequiredClaimError, ""),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
]


def _reason(exc: jwt.PyJWTError) -> str:
    for cls, text in _REASONS:
        if isinstance(exc, cls):
            return text or f"the token lacks a required claim: {exc}"
    return f"the token is not valid: {str(exc)[:200]}"


# --- minting (dataworkflows token) ----------------------------------------------------------------


def mint_token(
    settings: Settings,
    *,
    subject: str,
    tenant: str,
    roles: Iterable[str],
    ttl_seconds: int,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    """An HS256 token signed with DW_JWT_SECRET, shaped as this server reads tokens (the tenant and
    roles under DW_JWT_TENANT_CLAIM and DW_JWT_ROLES_CLAIM). For local use and tests: production
    tokens come from an identity provider."""
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"DW_JWT_SECRET must be set, at least {MIN_SECRET_BYTES} bytes, to mint tokens")
    if not subject.strip() or len(subject) > MAX_SUBJECT or has_unprintable_character(subject):
        raise ConfigurationError(
            f"the subject must be 1-{MAX_SUBJECT} characters, without control, invisible or line-separator characters"
        )
    if not valid_tenant(tenant):
        raise ConfigurationError("the tenant must be 1-100 letters, digits, '_', '.' or '-'")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ConfigurationError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if ttl_seconds <= 0:
        raise ConfigurationError("the time to live must be a positive number of seconds")
    _check_max_lifetime(settings)
    if ttl_seconds > settings.jwt_max_lifetime_seconds:
        raise ConfigurationError(
            f"the time to live ({ttl_seconds} s) is longer than the server accepts "
            f"(DW_JWT_MAX_LIFETIME_SECONDS: {settings.jwt_max_lifetime_seconds:.0f})"
        )
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "sub": subject,
        settings.jwt_tenant_claim: tenant,
        settings.jwt_roles_claim: sorted(set(roles), key=ROLES.index),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(12),
    }
    chosen_issuer = settings.jwt_issuer if issuer is None else issuer
    chosen_audience = settings.jwt_audience if audience is None else audience
    if chosen_issuer:
        payload["iss"] = chosen_issuer
    if chosen_audience:
        payload["aud"] = chosen_audience
    return jwt.encode(payload, settings.jwt_secret, algorithm="HS256")
