"""LTI 1.3 launches through a real JupyterHub with jupyterhub-ltiauthenticator
and LtiCourses as its post_auth_hook. The test plays the LMS: it serves its
JWKS on loopback and signs each launch's id_token with its own key."""

import http.server
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from support import hub_call, start_hub

ISSUER = "https://lms.example.org"
CLIENT = "trousse-hub"
CHECKER = "lti-checker-token-0123456789"
KEY = RSAKey.generate_key(2048, parameters={"kid": "lms-1", "use": "sig", "alg": "RS256"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "lms-1", "use": "sig", "alg": "RS256"})
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


def serve_jwks():
    body = json.dumps({"keys": [KEY.as_dict(private=False)]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("lti-hub")
    jwks = serve_jwks()
    port = jwks.server_address[1]
    config = f"""
c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
c.LTI13Authenticator.issuer = "{ISSUER}"
c.LTI13Authenticator.client_id = ["{CLIENT}"]
c.LTI13Authenticator.authorize_url = "http://127.0.0.1:{port}/auth"
c.LTI13Authenticator.jwks_endpoint = "http://127.0.0.1:{port}/jwks.json"
c.LTI13Authenticator.username_key = "sub"
c.Authenticator.manage_groups = True
c.Authenticator.allow_all = True
from trousse_jupyterhub import LtiCourses
c.Authenticator.post_auth_hook = LtiCourses(config=c)
c.JupyterHub.services = [{{"name": "checker", "api_token": "{CHECKER}"}}]
c.JupyterHub.load_roles = [
    {{"name": "checker", "scopes": ["list:users", "read:users", "read:groups"], "services": ["checker"]}}
]
"""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    process, api, public = start_hub(work, config, env=env)
    yield api, public
    process.terminate()
    process.wait()
    jwks.shutdown()


def claims(nonce, sub="ada", label="INTRO", roles=("Learner",), **changes):
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        LTI + "message_type": "LtiResourceLinkRequest",
        LTI + "version": "1.3.0",
        LTI + "deployment_id": "1",
        LTI + "target_link_uri": "http://hub.example/hub/home",
        LTI + "resource_link": {"id": "r1", "title": "Jupyter"},
        LTI + "roles": [ROLE + r for r in roles],
        LTI + "context": {"id": "c-1", "label": label, "title": "Intro"},
    }
    body.update(changes)
    return body


def launch(public, sign=KEY, **kwargs):
    """A launch as the LMS drives the browser: login initiation, then the
    signed id_token posted back. Returns the session and the callback's answer."""
    session = requests.Session()
    start = session.get(
        f"{public}/hub/lti13/oauth_login",
        params={
            "iss": ISSUER,
            "login_hint": "u",
            "target_link_uri": f"{public}/hub/home",
            "client_id": CLIENT,
        },
        allow_redirects=False,
        timeout=30,
    )
    assert start.status_code == 302, start.text
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["Location"]).query))
    token = jwt.encode({"alg": "RS256", "kid": "lms-1"}, claims(query["nonce"], **kwargs), sign)
    answer = session.post(
        f"{public}/hub/lti13/oauth_callback",
        data={"id_token": token, "state": query["state"]},
        allow_redirects=False,
        timeout=30,
    )
    return session, answer, (token, query["state"])


def groups(api, name):
    return sorted(hub_call(f"{api}users/{name}", CHECKER)["groups"])


def test_a_learner_launch_gives_the_course_and_an_instructor_launch_teaches_it(hub):
    api, public = hub
    _, answer, _ = launch(public, sub="ada")
    assert answer.status_code == 302, answer.text
    assert groups(api, "ada") == ["course:intro"]
    _, answer, _ = launch(public, sub="grace", roles=("Instructor",))
    assert answer.status_code == 302, answer.text
    assert groups(api, "grace") == ["teacher:intro"]
    # a launch from another course: its course replaces the last one
    _, answer, _ = launch(public, sub="ada", label="STATS")
    assert answer.status_code == 302, answer.text
    assert groups(api, "ada") == ["course:stats"]


def test_bad_signatures_expired_tokens_and_replays_are_refused(hub):
    api, public = hub
    _, answer, _ = launch(public, sign=OTHER, sub="mallory")
    assert answer.status_code in (400, 401), answer.text
    past = int(time.time()) - 3600
    _, answer, _ = launch(public, sub="late", iat=past, exp=past + 60)
    assert answer.status_code in (400, 401), answer.text
    session, answer, (token, state) = launch(public, sub="eve")
    assert answer.status_code == 302, answer.text
    replay = session.post(
        f"{public}/hub/lti13/oauth_callback",
        data={"id_token": token, "state": state},
        allow_redirects=False,
        timeout=30,
    )
    assert replay.status_code == 400, replay.text
    users = hub_call(f"{api}users", CHECKER)
    names = {u["name"] for u in users}
    assert "mallory" not in names and "late" not in names
