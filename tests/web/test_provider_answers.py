"""Answers a real provider cannot be made to give, from a provider of the
test's own: an ID token with a wrong nonce, expired, or signed by another
key is refused; a good one is accepted, and the provider sees the PKCE
verifier match the challenge."""

import base64
import hashlib
import json
import shutil
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from conftest import browser_session, serve_page

KEY, OTHER_KEY = (
    RSAKey.generate_key(2048, parameters={"kid": "k1"}),
    RSAKey.generate_key(2048, parameters={"kid": "k1"}),
)


class Provider(BaseHTTPRequestHandler):
    """Discovery, keys, authorization and token endpoints; `server.mode` says
    what the ID token gets wrong."""

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        base = self.server.base
        path, _, query = self.path.partition("?")
        if path == "/.well-known/openid-configuration":
            self.answer(
                200,
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "jwks_uri": f"{base}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        elif path == "/jwks":
            self.answer(200, {"keys": [KEY.as_dict(private=False)]})
        elif path == "/authorize":
            params = dict(urllib.parse.parse_qsl(query))
            self.server.seen = params
            target = f"{params['redirect_uri']}?code=the-code&state={params['state']}"
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        seen = self.server.seen
        challenge = (
            base64.urlsafe_b64encode(
                hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            )
            .rstrip(b"=")
            .decode()
        )
        if seen.get("code_challenge_method") != "S256" or challenge != seen.get("code_challenge"):
            self.server.pkce_ok = False
            return self.answer(400, {"error": "invalid_grant", "error_description": "PKCE"})
        self.server.pkce_ok = True
        mode, now = self.server.mode, int(time.time())
        claims = {
            "iss": self.server.base,
            "sub": "eve",
            "aud": "trousse",
            "iat": now,
            "exp": now - 600 if mode == "expired" else now + 600,
            "nonce": "another-nonce" if mode == "wrong_nonce" else seen["nonce"],
            "groups": ["math1-teachers"],
        }
        key = OTHER_KEY if mode == "other_key" else KEY
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        self.answer(200, {"access_token": "at", "token_type": "Bearer", "id_token": token})


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    server.base = f"http://localhost:{server.server_port}"
    server.mode, server.seen, server.pkce_ok = "good", {}, None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("crafted")
    serve, page = serve_page(work, server.base)
    yield server, page, work
    serve.terminate()
    serve.wait()
    server.shutdown()
    shutil.rmtree(work, ignore_errors=True)


def sign_in(page):
    session = browser_session()
    to_provider = session.get(f"{page}sign-in/oidc", allow_redirects=False, timeout=30)
    back = session.get(to_provider.headers["Location"], allow_redirects=False, timeout=30)
    return session, session.get(back.headers["Location"], allow_redirects=False, timeout=30)


@pytest.mark.parametrize("mode", ["wrong_nonce", "expired", "other_key"])
def test_a_bad_id_token_is_refused(crafted, mode):
    server, page, _ = crafted
    server.mode = mode
    session, answer = sign_in(page)
    assert answer.status_code == 401, answer.text
    assert "ID token is refused" in answer.text
    assert "trousse-session" not in answer.headers.get("Set-Cookie", "")
    assert session.get(f"{page}api/v1/courses", timeout=30).status_code == 401


def test_a_good_id_token_signs_in_with_pkce_and_the_secret_stays_out_of_the_log(
    crafted,
):
    server, page, work = crafted
    server.mode = "good"
    session, answer = sign_in(page)
    assert answer.status_code == 303, answer.text
    assert server.pkce_ok is True
    assert server.seen["nonce"] and server.seen["state"]
    assert session.get(f"{page}api/v1/courses", timeout=30).json()["teaching"] == ["math1"]
    # the same answer cannot be replayed: the state was used
    again = session.get(
        f"{page}sign-in/oidc/callback?code=the-code&state={server.seen['state']}",
        timeout=30,
    )
    assert again.status_code == 400
    assert "a-client-secret-never-logged" not in (work / "serve.log").read_text()
