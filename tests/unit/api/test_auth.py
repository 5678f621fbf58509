"""Authentication: local users with argon2 hashes, socpipe's access and refresh tokens, API keys,
the sign-in rate limit, the audit of sign-ins, and OIDC against a local stand-in issuer (a real
HTTP server with discovery and a JWKS, signing ID tokens with its own RSA key)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from alerting.store import InMemoryAlertStore
from api.app import create_app
from api.audit import AuditQuery, InMemoryAuditLog
from api.security import Principal, TokenIssuer
from api.users import InMemoryUserStore
from socpipe.errors import ConfigError
from socpipe.settings import Role, load_settings

PASSWORD = "mật khẩu đủ dài 2026"
KEY = "automation-key-0123456789"


def _app(**api: Any) -> tuple[TestClient, InMemoryUserStore, InMemoryAuditLog]:
    users, audit = InMemoryUserStore(), InMemoryAuditLog()
    users.add("lan.nguyen", PASSWORD, Role.ANALYST)
    users.add("px.viewer", PASSWORD, Role.AGENCY_VIEWER, "phuong-phuc-xa")
    settings = load_settings(
        api={
            "tokens": [{"name": "script", "token": KEY, "role": "soc_admin"}],
            "jwt_secret": "k" * 40,
            **api,
        }
    )
    app = create_app(settings, store=InMemoryAlertStore(), users=users, audit=audit)
    return TestClient(app), users, audit


def _sign_in(client: TestClient, username: str = "lan.nguyen", password: str = PASSWORD) -> Any:
    return client.post("/auth/token", json={"username": username, "password": password})


def test_users_are_kept_with_argon2_hashes_and_checked_in_the_same_way() -> None:
    users = InMemoryUserStore()
    user = users.add("lan.nguyen", PASSWORD, Role.ANALYST)
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert users.verify("lan.nguyen", PASSWORD) == user
    assert users.verify("lan.nguyen", PASSWORD + "x") is None
    assert users.verify("nobody", PASSWORD) is None
    with pytest.raises(ConfigError, match="exists"):
        users.add("lan.nguyen", PASSWORD, Role.ANALYST)
    with pytest.raises(ConfigError, match="at least 12"):
        users.add("short", "ngắn", Role.ANALYST)
    with pytest.raises(ConfigError, match="needs an agency"):
        users.add("viewer", PASSWORD, Role.AGENCY_VIEWER)
    with pytest.raises(ConfigError, match="not confined"):
        users.add("analyst2", PASSWORD, Role.ANALYST, "so-tttt")
    users.update("lan.nguyen", disabled=True)
    assert users.verify("lan.nguyen", PASSWORD) is None
    users.update("lan.nguyen", disabled=False)
    users.set_password("lan.nguyen", "một mật khẩu mới dài")
    assert users.verify("lan.nguyen", PASSWORD) is None
    assert users.verify("lan.nguyen", "một mật khẩu mới dài") is not None


def test_sign_in_gives_tokens_that_open_the_api_and_refresh() -> None:
    client, _, audit = _app()
    answer = _sign_in(client)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["role"] == "analyst" and tokens["expires_in"] == 900
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json() == {
        "name": "lan.nguyen",
        "role": "analyst",
        "agency": None,
        "method": "password",
        "language": "vi",
    }
    # A refresh token is not an access token.
    refused = client.get("/alerts", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refused.status_code == 401
    renewed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200 and renewed.json()["access_token"] != tokens["access_token"]
    (entry, *_) = audit.search(AuditQuery(action="refresh"))
    assert entry["user"]["name"] == "lan.nguyen" and entry["event"]["outcome"] == "success"


def test_a_local_user_s_language_is_kept_and_others_are_told_so() -> None:
    client, users, audit = _app()
    bearer = {"Authorization": f"Bearer {_sign_in(client).json()['access_token']}"}
    changed = client.patch("/auth/me", json={"language": "en"}, headers=bearer)
    assert changed.status_code == 200, changed.text
    assert changed.json()["language"] == "en"
    assert users.get("lan.nguyen").language == "en"  # kept in the user's record
    assert client.get("/auth/me", headers=bearer).json()["language"] == "en"
    (entry,) = audit.search(AuditQuery(action="update_me"))
    assert entry["detail"] == {"language": "en"}
    # Only the two languages of the console, and nothing else about oneself.
    for body in ({"language": "fr"}, {"language": "en", "role": "soc_admin"}, {}):
        assert client.patch("/auth/me", json=body, headers=bearer).status_code == 422
    # An API key has no record to keep it in.
    key = client.patch(
        "/auth/me", json={"language": "en"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert key.status_code == 409 and "console keeps it" in key.json()["detail"]
    assert (
        client.get("/auth/me", headers={"Authorization": f"Bearer {KEY}"}).json()["language"]
        is None
    )


def test_a_wrong_password_is_refused_and_recorded() -> None:
    client, _, audit = _app()
    answer = _sign_in(client, password="sai mật khẩu rồi")
    assert answer.status_code == 401
    (entry,) = audit.search(AuditQuery(action="sign_in"))
    assert entry["event"]["outcome"] == "failure"
    assert entry["target"] == {"type": "user", "id": "lan.nguyen"}
    assert "sai mật khẩu" not in json.dumps(entry, ensure_ascii=False)


def test_a_disabled_user_cannot_refresh() -> None:
    client, users, _ = _app()
    tokens = _sign_in(client).json()
    users.update("lan.nguyen", disabled=True)
    answer = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert answer.status_code == 401


def test_expired_and_forged_tokens_are_refused() -> None:
    issuer = TokenIssuer("k" * 40, 900, 3600)
    analyst = Principal("lan.nguyen", Role.ANALYST, None, "password")
    old = issuer.issue(analyst, "access", now=time.time() - 1000)
    forged = TokenIssuer("x" * 40, 900, 3600).issue(analyst, "access")
    assert issuer.verify(issuer.issue(analyst, "access"), "access") == analyst
    assert issuer.verify(old, "access") is None
    assert issuer.verify(forged, "access") is None
    client, _, _ = _app()
    for token in (old, forged, "not.a.jwt", ""):
        assert (
            client.get("/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )


def test_an_agency_viewer_token_carries_its_agency() -> None:
    client, _, _ = _app()
    tokens = _sign_in(client, "px.viewer").json()
    assert tokens["agency"] == "phuong-phuc-xa"
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/alerts", params={"agency": "so-tttt"}, headers=headers).status_code == 403


def test_sign_in_is_rate_limited_per_address() -> None:
    client, _, _ = _app(signin_per_minute=3)
    statuses = [_sign_in(client, password="sai mật khẩu rồi").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    limited = _sign_in(client)  # even the right password waits
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_api_keys_need_an_agency_for_scoped_roles() -> None:
    with pytest.raises(ConfigError, match="needs its agency"):
        load_settings(api={"tokens": [{"name": "c", "token": KEY, "role": "collector"}]})


# --- OIDC -------------------------------------------------------------------------------------


class Issuer:
    """A stand-in for the province's identity provider: discovery, JWKS, signed ID tokens."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk |= {"kid": "idp-1", "use": "sig", "alg": "RS256"}
        documents: dict[str, Any] = {"/jwks": {"keys": [jwk]}}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        documents["/.well-known/openid-configuration"] = {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
        }
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.issuer = issuer

    def token(self, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": "socpipe-console", "iat": now, "exp": now + 300}
        body |= {"sub": "u-1", "preferred_username": "hoa.le", "roles": ["soc-analysts"]}
        body |= claims
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": "idp-1"})


@pytest.fixture
def idp() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.server.shutdown()


def _oidc_client(idp: Issuer) -> TestClient:
    oidc = {
        "issuer": idp.url,
        "audience": "socpipe-console",
        "role_map": {"soc-analysts": "analyst", "phuong-viewers": "agency_viewer"},
    }
    client, _, _ = _app(oidc=oidc)
    return client


def test_oidc_sign_in_maps_the_providers_claims(idp: Issuer) -> None:
    client = _oidc_client(idp)
    answer = client.post("/auth/oidc", json={"id_token": idp.token()})
    assert answer.status_code == 200, answer.text
    access = answer.json()["access_token"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {access}"}).json()
    assert me == {
        "name": "hoa.le",
        "role": "analyst",
        "agency": None,
        "method": "oidc",
        "language": None,
    }
    viewer = idp.token(roles=["phuong-viewers"], agency="phuong-phuc-xa")
    scoped = client.post("/auth/oidc", json={"id_token": viewer}).json()
    assert scoped["role"] == "agency_viewer" and scoped["agency"] == "phuong-phuc-xa"


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"aud": "another-app"}, 401),
        ({"exp": int(time.time()) - 60}, 401),
        ({"iss": "https://evil.example"}, 401),
        ({"roles": ["canteen"]}, 403),
        ({"roles": ["phuong-viewers"]}, 403),  # a scoped role without its agency
    ],
)
def test_oidc_refuses_what_the_provider_did_not_vouch_for(
    idp: Issuer, claims: dict[str, Any], status: int
) -> None:
    client = _oidc_client(idp)
    assert client.post("/auth/oidc", json={"id_token": idp.token(**claims)}).status_code == status


def test_oidc_refuses_a_token_signed_by_another_key(idp: Issuer) -> None:
    client = _oidc_client(idp)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert client.post("/auth/oidc", json={"id_token": idp.token(key=other)}).status_code == 401


def test_oidc_is_404_when_not_configured() -> None:
    client, _, _ = _app()
    assert client.post("/auth/oidc", json={"id_token": "x" * 20}).status_code == 404
