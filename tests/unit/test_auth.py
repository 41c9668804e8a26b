"""Strict auth without a database: token verification (dataworkflows.tokens), the JWKS cache against a
loopback HTTP server, the role lattice, configuration refusals, route declarations and the token CLI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar, Router, get

from dataworkflows.api.app import create_app
from dataworkflows.api.auth import ROLE_OPT, ROLES, api_handlers, check_routes
from dataworkflows.api.principals import ALL_ROLES, Principal, build_resolver
from dataworkflows.cli import main
from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError
from dataworkflows.tokens import JwksKeys, KeysUnavailable, TokenRejected, TokenVerifier, known_roles, mint_token

SECRET = "s" * 40
HS = Settings(auth_mode="strict", jwt_secret=SECRET, jwt_issuer="https://issuer.test", jwt_audience="dataworkflows")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "roles": ["author", "operator"],
        "iat": now,
        "exp": now + 300,
        "iss": "https://issuer.test",
        "aud": "dataworkflows",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand, as an attacker would: any header, HMAC-signed with any bytes (or unsigned)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    return caught.value.message


# --- HS256 -----------------------------------------------------------------------------------------


async def test_a_valid_hs256_token_names_its_caller_tenant_and_roles() -> None:
    verifier = TokenVerifier.from_settings(HS)
    found = await verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert (found.subject, found.tenant, found.roles) == ("alice", "acme", frozenset({"author", "operator"}))


async def test_forged_expired_immature_and_misaddressed_tokens_are_refused() -> None:
    verifier = TokenVerifier.from_settings(HS)
    now = int(time.time())
    cases = {
        "signature": jwt.encode(claims(), "x" * 40, algorithm="HS256"),
        "expired": jwt.encode(claims(exp=now - 60), SECRET, algorithm="HS256"),
        "not valid yet": jwt.encode(claims(nbf=now + 120), SECRET, algorithm="HS256"),
        "not valid yet (": jwt.encode(claims(iat=now + 120), SECRET, algorithm="HS256"),
        "not meant for this server": jwt.encode(claims(aud="another-service"), SECRET, algorithm="HS256"),
        "issuer": jwt.encode(claims(iss="https://evil.test"), SECRET, algorithm="HS256"),
        'required claim: Token is missing the "exp"': jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
        'missing the "sub"': jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
        'missing the "aud"': jwt.encode(claims(aud=None), SECRET, algorithm="HS256"),
        "no tenant claim": jwt.encode(claims(tenant=None), SECRET, algorithm="HS256"),
        "tenant claim ('tenant') must be": jwt.encode(claims(tenant="a/b"), SECRET, algorithm="HS256"),
        "malformed": "not.a.token",
    }
    for expected, token in cases.items():
        assert expected in await refused(verifier, token), expected


async def test_the_leeway_admits_small_clock_skew_only() -> None:
    verifier = TokenVerifier.from_settings(HS)
    now = int(time.time())
    assert await verifier.verify(jwt.encode(claims(exp=now - 10, nbf=now + 10), SECRET, algorithm="HS256"))
    strict_clock = TokenVerifier.from_settings(replace(HS, jwt_leeway_seconds=0))
    assert "expired" in await refused(strict_clock, jwt.encode(claims(exp=now - 10), SECRET, algorithm="HS256"))


async def test_time_claims_are_numbers_and_exp_is_at_most_the_max_lifetime_ahead() -> None:
    """PyJWT reads a numeric string as a NumericDate ("exp": "1999999999" verified); RFC 7519 says a
    JSON number. And a token valid for years is a password that never changes: exp may be at most
    DW_JWT_MAX_LIFETIME_SECONDS (a day by default) and the leeway ahead when the token is used."""
    verifier = TokenVerifier.from_settings(HS)
    now = int(time.time())
    for name, value in [("exp", str(now + 300)), ("nbf", str(now)), ("iat", str(now))]:
        token = jwt.encode(claims(**{name: value}), SECRET, algorithm="HS256")
        assert await refused(verifier, token) == f"the token's {name} must be a JSON number (seconds since the epoch)"
    for name, value in [("exp", True), ("iat", [now]), ("nbf", {"t": now}), ("nbf", True), ("iat", True)]:
        token = jwt.encode(claims(**{name: value}), SECRET, algorithm="HS256")
        # exp true was "the token has expired": PyJWT reads true as 1.
        assert await refused(verifier, token) == f"the token's {name} must be a JSON number (seconds since the epoch)"
    assert await verifier.verify(jwt.encode(claims(exp=now + 86_400, iat=now - 5.5), SECRET, algorithm="HS256"))
    far = await refused(verifier, jwt.encode(claims(exp=now + 86_400 + 120), SECRET, algorithm="HS256"))
    assert "longer than this server accepts (DW_JWT_MAX_LIFETIME_SECONDS: 86400)" in far
    assert "longer than" in await refused(verifier, jwt.encode(claims(exp=2**38), SECRET, algorithm="HS256"))
    # No date, and not its 300 digits; an integer of 400 digits, which no float holds, was a 500
    # (OverflowError): PyJWT compares integers and let it through.
    for name, value in [("exp", 1e300), ("exp", 10**400), ("nbf", -(10**400)), ("iat", 10**13)]:
        huge = await refused(verifier, hand_made({"alg": "HS256"}, claims(**{name: value}), SECRET.encode()))
        assert huge == f"the token's {name} is no date: more than 10^12 seconds from the epoch", huge
    week = TokenVerifier.from_settings(replace(HS, jwt_max_lifetime_seconds=7 * 86_400))
    assert await week.verify(jwt.encode(claims(exp=now + 6 * 86_400), SECRET, algorithm="HS256"))
    with pytest.raises(ConfigurationError, match="DW_JWT_MAX_LIFETIME_SECONDS must be a positive"):
        TokenVerifier.from_settings(replace(HS, jwt_max_lifetime_seconds=0))


async def test_alg_none_is_refused_in_every_key_mode() -> None:
    unsigned = hand_made({"alg": "none", "typ": "JWT"}, claims(), None)
    assert "algorithm 'none' is not accepted" in await refused(TokenVerifier.from_settings(HS), unsigned)
    key = rsa_key()
    rs = TokenVerifier.from_settings(replace(HS, jwt_secret="", jwt_public_key=public_pem(key)))
    assert "algorithm 'none' is not accepted" in await refused(rs, unsigned)
    # Another HMAC variant is no way around the pin either.
    hs512 = jwt.encode(claims(), SECRET + "x" * 30, algorithm="HS512")
    assert "algorithm 'HS512' is not accepted" in await refused(TokenVerifier.from_settings(HS), hs512)


async def test_hs_rs_confusion_is_refused() -> None:
    """An HS256 token whose HMAC key is the server's public key text (which anyone may know)."""
    key = rsa_key()
    pem = public_pem(key)
    verifier = TokenVerifier.from_settings(replace(HS, jwt_secret="", jwt_public_key=pem))
    forged = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), pem.encode())
    assert "algorithm 'HS256' is not accepted (this server takes RS256)" in await refused(verifier, forged)
    # The real thing verifies.
    assert (await verifier.verify(jwt.encode(claims(), key, algorithm="RS256"))).subject == "alice"
    # And an RS256 token never reaches a server configured with a secret.
    rs_token = jwt.encode(claims(), key, algorithm="RS256")
    assert "algorithm 'RS256' is not accepted" in await refused(TokenVerifier.from_settings(HS), rs_token)


async def test_es256_and_a_public_key_file(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_text(public_pem(key))
    verifier = TokenVerifier.from_settings(replace(HS, jwt_secret="", jwt_public_key=str(path)))
    assert (await verifier.verify(jwt.encode(claims(), key, algorithm="ES256"))).tenant == "acme"
    other = ec.generate_private_key(ec.SECP256R1())
    assert "signature" in await refused(verifier, jwt.encode(claims(), other, algorithm="ES256"))


def test_roles_and_claims_are_read_as_configured() -> None:
    assert known_roles(["viewer", "root", 3, "admin"]) == {"viewer", "admin"}
    assert known_roles("operator author bogus") == {"operator", "author"}
    assert known_roles({"admin": True}) == frozenset()


async def test_nested_and_namespaced_claims() -> None:
    settings = replace(HS, jwt_tenant_claim="https://dw.test/tenant", jwt_roles_claim="realm_access.roles")
    token = jwt.encode(
        claims(tenant=None, roles=None, **{"https://dw.test/tenant": "t1", "realm_access": {"roles": ["viewer"]}}),
        SECRET,
        algorithm="HS256",
    )
    found = await TokenVerifier.from_settings(settings).verify(token)
    assert (found.tenant, found.roles) == ("t1", {"viewer"})


def test_the_role_lattice() -> None:
    def may(*held: str) -> set[str]:
        return {role for role in ROLES if Principal("p", roles=frozenset(held)).has_role(role)}

    assert may("viewer") == {"viewer"}
    assert may("operator") == {"operator", "viewer"}
    assert may("author") == {"author", "viewer"}
    assert may("author", "operator") == {"author", "operator", "viewer"}
    assert may("admin") == set(ROLES)
    assert may() == set()
    assert Principal(None).roles == ALL_ROLES, "loose mode's principal holds every role"


# --- configuration ---------------------------------------------------------------------------------


def test_strict_mode_refuses_to_start_without_a_sound_key(tmp_path: Path) -> None:
    key = rsa_key()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases = {
        "needs exactly one of": Settings(auth_mode="strict"),
        "DW_JWT_SECRET, DW_JWT_PUBLIC_KEY are set": replace(HS, jwt_public_key=public_pem(key)),
        "at least 32 bytes": Settings(auth_mode="strict", jwt_secret="short"),
        "DW_JWT_AUDIENCE must be set": Settings(auth_mode="strict", jwt_public_key=public_pem(key)),
        "holds a private key": replace(HS, jwt_secret="", jwt_public_key=private),
        "nor a readable PEM file": replace(HS, jwt_secret="", jwt_public_key=str(tmp_path / "missing.pem")),
        "2048 bits": replace(HS, jwt_secret="", jwt_public_key=public_pem(small)),
        "https URL": replace(HS, jwt_secret="", jwt_jwks_url="http://idp.example.com/jwks"),
        "DW_AUTH_MODE must be loose or strict": Settings(auth_mode="relaxed"),
    }
    for expected, settings in cases.items():
        with pytest.raises(ConfigurationError) as caught:
            build_resolver(settings)
        assert expected in caught.value.message, expected
    with pytest.raises(ConfigurationError, match="exactly one of"):
        create_app(Settings(database_url="postgresql://127.0.0.1:1/none", auth_mode="strict"))
    assert Settings.from_env({"DW_AUTH_MODE": "strict", "DW_JWT_SECRET": SECRET}).auth_mode == "strict"
    assert SECRET not in repr(HS), "the secret stays out of the settings' repr (and logs)"


def test_every_api_route_declares_a_role() -> None:
    app = create_app(Settings(database_url="postgresql://127.0.0.1:1/none"))
    routes = list(api_handlers(app))
    assert len(routes) > 40
    undeclared = [(path, method) for path, method, handler in routes if handler.opt.get(ROLE_OPT) is None]
    assert not undeclared
    public = sorted({path for path, _, handler in routes if handler.opt[ROLE_OPT] == "public"})
    assert public == ["/api/v1/hooks/{trigger_id:str}"], "only the webhook receiver is public"


def test_an_app_with_an_undeclared_route_refuses_to_start() -> None:
    @get("/forgotten", sync_to_thread=False)
    def forgotten() -> str:
        return "open"

    app = Litestar(route_handlers=[Router(path="/api/v1", route_handlers=[forgotten])])
    with pytest.raises(ConfigurationError, match="GET /api/v1/forgotten"):
        check_routes(app)


# --- JWKS ------------------------------------------------------------------------------------------


class Jwks:
    """A JWKS served from 127.0.0.1, whose keys a test can rotate; counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, kid: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        self.keys.append({**jwk, "kid": kid, "use": "sig"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    try:
        yield served
    finally:
        served.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_verifier(served: Jwks, clock: Clock) -> TokenVerifier:
    verifier = TokenVerifier.from_settings(replace(HS, jwt_secret="", jwt_jwks_url=served.url))
    assert verifier.jwks is not None
    verifier.jwks = JwksKeys(served.url, cache_seconds=300, min_refresh_seconds=30, clock=clock)
    return verifier


def signed(key: Any, kid: str, algorithm: str = "RS256", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers={"kid": kid})


async def test_jwks_keys_verify_and_rotation_is_picked_up_on_an_unknown_kid(jwks: Jwks) -> None:
    clock = Clock()
    old, new = rsa_key(), ec.generate_private_key(ec.SECP256R1())
    jwks.publish("k1", old)
    verifier = jwks_verifier(jwks, clock)
    assert (await verifier.verify(signed(old, "k1"))).subject == "alice"
    assert (await verifier.verify(signed(old, "k1"))).subject == "alice"
    assert jwks.fetches == 1, "the keys are cached"

    # The identity provider rotates: k2 is published, k1 withdrawn.
    jwks.keys.clear()
    jwks.publish("k2", new)
    clock.now += 31
    assert (await verifier.verify(signed(new, "k2", "ES256"))).subject == "alice"
    assert jwks.fetches == 2, "an unknown kid fetched the keys again"
    # k1 is gone from the cache with the refresh.
    clock.now += 31
    assert "not in the JWKS" in await refused(verifier, signed(old, "k1"))


async def test_unknown_kids_cost_one_fetch_per_interval(jwks: Jwks) -> None:
    clock = Clock()
    key = rsa_key()
    jwks.publish("k1", key)
    verifier = jwks_verifier(jwks, clock)
    assert await verifier.verify(signed(key, "k1"))
    for n in range(50):
        assert "not in the JWKS" in await refused(verifier, signed(key, f"made-up-{n}"))
    assert jwks.fetches == 1, "unknown kids within the interval fetch nothing"
    clock.now += 30
    assert "not in the JWKS" in await refused(verifier, signed(key, "made-up-again"))
    assert jwks.fetches == 2
    # The cache's age alone also refreshes it, behind the cached key (which answers at once).
    clock.now += 301
    assert await verifier.verify(signed(key, "k1"))
    for _ in range(200):
        if jwks.fetches == 3:
            break
        await asyncio.sleep(0.01)
    assert jwks.fetches == 3


async def test_jwks_pins_algorithms_per_key_and_skips_symmetric_keys(jwks: Jwks) -> None:
    clock = Clock()
    key = rsa_key()
    jwks.publish("k1", key)
    # A symmetric key in the JWKS must never verify anything.
    jwks.keys.append({"kty": "oct", "kid": "shared", "k": b64(SECRET.encode()), "alg": "HS256"})
    verifier = jwks_verifier(jwks, clock)
    hs = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "shared"})
    assert "not in the JWKS" in await refused(verifier, hs)
    # An HS256 token naming the RSA key's kid, keyed with its public JWK text: refused by the pin.
    confused = hand_made({"alg": "HS256", "kid": "k1"}, claims(), json.dumps(jwks.keys[0]).encode())
    assert "algorithm 'HS256' is not accepted (this server takes RS256)" in await refused(verifier, confused)
    assert "algorithm 'none'" in await refused(verifier, hand_made({"alg": "none", "kid": "k1"}, claims(), None))
    assert "no key id" in await refused(verifier, jwt.encode(claims(), key, algorithm="RS256"))
    # An RSA key shorter than DW_JWT_PUBLIC_KEY may be (2048 bits) is no key here either.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwks.publish("weak", weak)
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        weak_token = jwt.encode(claims(), weak, algorithm="RS256", headers={"kid": "weak"})
    assert "key id 'weak' is not in the JWKS" in await refused(verifier, weak_token)
    # A private key's JWK (its "d" and the rest) is no JWKS entry either, whatever its size.
    private = rsa_key()
    jwks.keys.append({**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private)), "kid": "private", "use": "sig"})
    private_token = jwt.encode(claims(), private, algorithm="RS256", headers={"kid": "private"})
    assert "key id 'private' is not in the JWKS" in await refused(verifier, private_token)


async def test_an_unreachable_jwks_answers_unavailable_and_is_not_hammered(jwks: Jwks) -> None:
    clock = Clock()
    key = rsa_key()
    jwks.status = 500
    verifier = jwks_verifier(jwks, clock)
    for _ in range(5):
        with pytest.raises(KeysUnavailable):
            await verifier.verify(signed(key, "k1"))
    assert jwks.fetches == 1
    # Back up: after the interval it is fetched again, and the keys it had survive a later outage.
    jwks.status = 200
    jwks.publish("k1", key)
    clock.now += 30
    assert await verifier.verify(signed(key, "k1"))
    jwks.status = 500
    clock.now += 400
    assert await verifier.verify(signed(key, "k1")), "stale keys keep working while the JWKS is down"
    for _ in range(200):  # the refresh runs behind the cached key
        if jwks.fetches == 3:
            break
        await asyncio.sleep(0.01)
    assert jwks.fetches == 3


# --- dataworkflows token ---------------------------------------------------------------------------


async def test_minted_tokens_verify(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    token = mint_token(HS, subject="bob", tenant="t-2", roles=["viewer", "admin"], ttl_seconds=60)
    found = await TokenVerifier.from_settings(HS).verify(token)
    assert (found.subject, found.tenant, found.roles) == ("bob", "t-2", {"viewer", "admin"})
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience="dataworkflows")
    assert payload["exp"] - payload["iat"] == 60 and payload["iss"] == "https://issuer.test"

    # main() would point structlog at this test's captured stderr, which later tests would find closed.
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    monkeypatch.setenv("DW_JWT_SECRET", SECRET)
    monkeypatch.setenv("DW_JWT_AUDIENCE", "dataworkflows")
    monkeypatch.delenv("DW_JWT_ISSUER", raising=False)
    code = main(["token", "--sub", "carol", "--tenant", "acme", "--role", "operator", "--role", "viewer"])
    printed = capsys.readouterr().out.strip()
    assert code == 0
    payload = jwt.decode(printed, SECRET, algorithms=["HS256"], audience="dataworkflows")
    assert (payload["sub"], payload["tenant"], payload["roles"]) == ("carol", "acme", ["viewer", "operator"])
    assert "iss" not in payload

    assert main(["token", "--sub", "carol", "--role", "admin", "--ttl", "0"]) == 2
    assert "positive" in capsys.readouterr().err
    assert main(["token", "--sub", "carol", "--role", "admin", "--ttl", "86401"]) == 2
    assert "longer than the server accepts (DW_JWT_MAX_LIFETIME_SECONDS: 86400)" in capsys.readouterr().err
    monkeypatch.setenv("DW_JWT_SECRET", "short")
    assert main(["token", "--sub", "carol", "--role", "admin"]) == 2
    assert "DW_JWT_SECRET must be set" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["X-Tenant-Id", "X-Principal-Id", "X-Principal-Type"])
async def test_a_tenant_or_principal_header_given_twice_is_refused(name: str) -> None:
    """The first of two was taken without a word: behind a proxy that appends its own, the client's
    copy would have won."""
    import types

    from litestar.datastructures import Headers
    from litestar.exceptions import ClientException

    from dataworkflows.api.principals import HeaderPrincipalResolver

    twice = types.SimpleNamespace(headers=Headers([(name.lower().encode(), b"acme"), (name.lower().encode(), b"x")]))
    with pytest.raises(ClientException, match=f"give the header {name} once"):
        await HeaderPrincipalResolver().resolve(twice)  # type: ignore[arg-type]
    once = types.SimpleNamespace(headers=Headers([(b"x-tenant-id", b"acme"), (b"x-principal-id", b"ana")]))
    principal = await HeaderPrincipalResolver().resolve(once)  # type: ignore[arg-type]
    assert (principal.id, principal.tenant) == ("ana", "acme")


def test_a_correlation_id_header_given_twice_is_refused() -> None:
    """A review: as X-Principal-Id was, the first of two was taken (behind a proxy that appends its own,
    the client's copy won). (The test client folds repeated headers into one: a request as Litestar gets
    it from the server.)"""
    import types

    from litestar.datastructures import Headers

    from dataworkflows.api.schemas import ExecuteRequest
    from dataworkflows.api.workflows import _correlation_id
    from dataworkflows.errors import HeaderRefused

    twice = types.SimpleNamespace(headers=Headers([(b"x-correlation-id", b"client"), (b"x-correlation-id", b"proxy")]))
    with pytest.raises(HeaderRefused, match="give the header X-Correlation-Id once"):
        _correlation_id(ExecuteRequest(), twice)  # type: ignore[arg-type]
    once = types.SimpleNamespace(headers=Headers([(b"x-correlation-id", b"client")]))
    assert _correlation_id(ExecuteRequest(), once) == "client"  # type: ignore[arg-type]
