"""LTI 1.3 launches through a real JupyterHub with jupyterhub-ltiauthenticator,
LtiCourses (its post_auth_hook and landing), DockerSpawner with trousse's mixin,
and trousse as the hub's service. The test plays the LMS: its JWKS and its
authorization endpoint on loopback, which signs each launch's id_token with
its own key and answers with the form that posts it to the hub, as Moodle does.

A learner's launch naming `week1` ends with her server running week1's image
(Docker pulls it from trousse's /v2/); a closed exam's says when it opens; an
instructor's opens the course on trousse's page, signed in by the hub, and
their hub token submits; another course's launch takes the first course away;
a bad signature, an expired token and a replay are refused."""

import html
import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from support import (
    base_image,
    create_token,
    docker_network,
    docker_spawner_config,
    example_channel,
    free_port,
    hub_call,
    hub_ports,
    localhost_is_secure,
    needs_docker,
    remove_pulled,
    start_hub,
    start_serve,
    stop_all,
    submit_and_wait,
    wait_for,
)

# the hub's page and trousse's are on localhost, whose Secure cookies browsers send over http
localhost_is_secure()

pytestmark = pytest.mark.skipif(bool(needs_docker()), reason=str(needs_docker()))

ISSUER = "https://lms.example.org"
CLIENT = "trousse-hub"
CHECKER = "lti-checker-token-0123456789"
SERVICE = "lti-trousse-service-token-0123456789"
KEY = RSAKey.generate_key(2048, parameters={"kid": "lms-1", "use": "sig", "alg": "RS256"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "lms-1", "use": "sig", "alg": "RS256"})
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"

# what a hub with LtiCourses sets, whichever LTI authenticator it runs
LTI_HOOK = """
import trousse_jupyterhub as trousse
c.Authenticator.manage_groups = True
c.Authenticator.allow_all = True
launches = trousse.LtiCourses(config=c)
c.Authenticator.post_auth_hook = launches
c.JupyterHub.default_url = launches.landing
"""

HUB_CONFIG = """
c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
c.LTI13Authenticator.issuer = {issuer!r}
c.LTI13Authenticator.client_id = [{client!r}]
c.LTI13Authenticator.authorize_url = {lms!r} + "/auth"
c.LTI13Authenticator.jwks_endpoint = {lms!r} + "/jwks.json"
c.LTI13Authenticator.username_key = "sub"

# containers of this run's own (another run's hub may be using the same user names)
c.DockerSpawner.name_template = "lti-{run}-{{username}}"

c.JupyterHub.services = [
    {{"name": "trousse", "url": {trousse_url!r}, "api_token": {service!r},
      "oauth_no_confirm": True}},
    {{"name": "checker", "api_token": {checker!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=trousse"]}},
    {{"name": "checker", "services": ["checker"],
      "scopes": ["admin:users", "admin:servers", "read:groups", "tokens"]}},
]
"""


class Lms:
    """The LMS the test plays, on loopback: its public keys, and its
    authorization endpoint, which answers a login hint the test registered
    with the form that posts the signed launch to the hub."""

    def __init__(self):
        self.launches = {}
        lms = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/jwks.json":
                    body = json.dumps({"keys": [KEY.as_dict(private=False)]})
                    return self.answer(200, "application/json", body)
                query = dict(urllib.parse.parse_qsl(url.query))
                status, body = lms.authorize(query)
                return self.answer(status, "text/html", body)

            def answer(self, status, kind, body):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorize(self, query):
        """The platform's side of the OIDC launch: the hub's request checked,
        the registered launch signed with the request's nonce."""
        expected = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "client_id": CLIENT,
        }
        wrong = [k for k, v in expected.items() if query.get(k) != v]
        launch = self.launches.pop(query.get("login_hint"), None)
        if wrong or launch is None or not query.get("redirect_uri", "").endswith("/oauth_callback"):
            return 400, f"refused: {wrong or 'unknown login hint'}"
        claims, key = launch
        token = jwt.encode({"alg": "RS256", "kid": "lms-1"}, claims(query["nonce"]), key)
        fields = {"id_token": token, "state": query["state"]}
        inputs = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items()
        )
        action = html.escape(query["redirect_uri"])
        return 200, f'<form method="post" action="{action}">{inputs}</form>'


def claims_for(sub, label="INTRO", roles=("Learner",), environment=None, **changes):
    """The id_token of a resource link launch, for a nonce."""

    def claims(nonce):
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
            LTI + "target_link_uri": "http://hub.example/hub/",
            LTI + "resource_link": {"id": "r1", "title": "Jupyter"},
            LTI + "roles": [ROLE + r for r in roles],
            LTI + "context": {"id": "c-1", "label": label, "title": "Intro"},
        }
        if environment:
            body[LTI + "custom"] = {"trousse_environment": environment}
        body.update(changes)
        return body

    return claims


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("lti")
    lms = Lms()
    base = base_image()
    channel, channel_url = example_channel(work)
    run = uuid.uuid4().hex[:8]
    network = f"trousse-lti-{run}"
    gateway = docker_network(network, salt=1)
    ports, port = hub_ports(), free_port()
    hub_port, proxy_port = ports[0], ports[1]
    public = f"http://localhost:{proxy_port}"
    serve, trousse_url = start_serve(
        work,
        *("--allow-channel", channel_url, "--default-base", base, "--hub-version", "5"),
        *("--hub-api-url", f"http://{gateway}:{hub_port}/hub/api/"),
        *("--hub-public-url", f"{public}/", "--page-url", f"{public}/services/trousse/"),
        "--hub-oauth",
        env={
            "JUPYTERHUB_API_TOKEN": SERVICE,
            "JUPYTERHUB_CLIENT_ID": "service-trousse",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/trousse/oauth_callback",
        },
        port=port,
    )
    hub = None
    try:
        wait_for(f"{trousse_url}/health")
        teacher, hub_token = create_token(work, "teacher", "intro"), create_token(work, "hub")
        week1 = submit_and_wait(trousse_url, teacher, channel_url, "week1", "greet")
        later = {"exam": True, "opens": "2099-01-01T09:00:00Z"}
        submit_and_wait(trousse_url, teacher, channel_url, "final", "greet", exam=later)
        config = docker_spawner_config(trousse_url, hub_token, network) + LTI_HOOK
        config += HUB_CONFIG.format(
            issuer=ISSUER,
            client=CLIENT,
            lms=lms.url,
            run=run,
            trousse_url=trousse_url,
            service=SERVICE,
            checker=CHECKER,
        )
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        hub, api, _ = start_hub(work, config, hub_ip=gateway, env=env, ports=ports)
        wait_for(f"{public}/hub/login")  # once the proxy routes to the hub
        yield SimpleNamespace(
            run=run,
            lms=lms,
            api=api,
            public=public,
            trousse=trousse_url,
            channel=channel_url,
            week1=week1,
            log=work / "hub.log",
        )
    finally:
        stop_all(hub, serve, channel)
        lms.server.shutdown()
        remove_pulled(trousse_url)
        subprocess.run(["docker", "network", "rm", network], check=False, capture_output=True)


def launch(world, claims, key=KEY, target="/hub/"):
    """A launch as the LMS drives the browser: the hub's login initiation, the
    LMS's authorization (the signed launch), the form posted to the hub.
    Returns the browser, the hub's answer and the form (for a replay)."""
    hint = uuid.uuid4().hex
    world.lms.launches[hint] = (claims, key)
    browser = requests.Session()
    start = browser.get(
        f"{world.public}/hub/lti13/oauth_login",
        params={
            "iss": ISSUER,
            "login_hint": hint,
            "target_link_uri": f"{world.public}{target}",
            "client_id": CLIENT,
            "lti_deployment_id": "1",
        },
        allow_redirects=False,
        timeout=30,
    )
    assert start.status_code == 302, start.text
    form = browser.get(start.headers["Location"], timeout=30)
    assert form.status_code == 200, form.text
    action = html.unescape(re.search(r'action="([^"]+)"', form.text).group(1))
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', form.text)
    }
    answer = browser.post(action, data=fields, allow_redirects=False, timeout=60)
    return browser, answer, (action, fields)


def landing(world, browser, answer, stop_at="/hub/spawn-pending/"):
    """The redirects a browser follows from the hub's answer, until a page
    that is not one (or `stop_at`); returns the paths it went through."""
    paths = []
    for _ in range(10):
        if answer.status_code not in (301, 302, 303, 307):
            return paths + [answer.status_code]
        location = urllib.parse.urljoin(answer.url or world.public, answer.headers["Location"])
        target = urllib.parse.urlsplit(location)
        paths.append(target.path + (f"?{target.query}" if target.query else ""))
        if target.path.startswith(stop_at):
            return paths
        answer = browser.get(location, allow_redirects=False, timeout=60)
    raise AssertionError(f"too many redirects: {paths}")


def groups(world, name):
    return sorted(hub_call(f"{world.api}users/{name}", CHECKER)["groups"])


def server(world, name, seconds=240):
    """The user's server once the hub says whether it started; None if it failed."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        user = hub_call(f"{world.api}users/{name}", CHECKER)
        found = user["servers"].get("")
        if found and found["ready"]:
            return found
        if not found and user["pending"] is None:
            return None
        time.sleep(0.25)
    raise AssertionError(world.log.read_text()[-3000:])


def progress(world, name):
    """The spawn's progress events, as its page shows them, until its end."""
    events, deadline = [], time.time() + 30
    while True:
        stream = requests.get(
            f"{world.api}users/{name}/server/progress",
            headers={"Authorization": f"token {CHECKER}"},
            stream=True,
            timeout=240,
        )
        # "not starting": a spawn that failed at once is still being cleaned up
        if stream.status_code != 400 or time.time() > deadline:
            break
        stream.close()
        time.sleep(0.2)
    with stream:
        assert stream.status_code == 200, stream.text
        for line in stream.iter_lines():
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("ready") or events[-1].get("failed"):
                    break
    return events


def hub_token(world, name):
    """A new hub token of the user, as their notebook or a script would hold one."""
    return hub_call(f"{world.api}users/{name}/tokens", CHECKER, "POST", b"{}")["token"]


def test_a_learner_launch_naming_week1_ends_on_her_server_running_week1(world):
    clicked = time.time()
    browser, answer, _ = launch(world, claims_for("lea", environment="week1"))
    assert answer.status_code == 302, answer.text
    paths = landing(world, browser, answer)
    assert paths[:2] == ["/hub/", "/hub/spawn/lea?environment=intro%2Fweek1"], paths
    assert paths[2].startswith("/hub/spawn-pending/lea"), paths
    assert groups(world, "lea") == ["course:intro"]
    messages = [event.get("message", "") for event in progress(world, "lea")]
    assert "Environment ready" in messages, messages
    assert server(world, "lea") is not None, world.log.read_text()[-3000:]
    ready = time.time() - clicked
    image = subprocess.run(
        ["docker", "inspect", "-f", "{{.Config.Image}}", f"lti-{world.run}-lea"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert image == world.week1["image"], image
    # her browser, signed in by the launch, opens JupyterLab on it through the hub's
    # proxy (the server's own OAuth with the hub, then the page)
    lab = browser.get(f"{world.public}/user/lea/lab", timeout=60)
    assert lab.status_code == 200 and lab.url == f"{world.public}/user/lea/lab", lab.url
    assert "JupyterLab" in lab.text
    print(f"\nLTI launch to running server (image pulled from trousse): {ready:.1f} s")
    # the same link again while it runs: straight to her server
    browser, answer, _ = launch(world, claims_for("lea", environment="week1"))
    paths = landing(world, browser, answer, stop_at="/user/lea/")
    assert paths[:2] == ["/hub/", "/hub/spawn/lea?environment=intro%2Fweek1"], paths
    assert paths[2].startswith("/user/lea/") and len(paths) == 3, paths
    stop(world, "lea")


def stop(world, name):
    """Stops the user's server and waits until it is gone."""
    hub_call(f"{world.api}users/{name}/server", CHECKER, "DELETE")
    deadline = time.time() + 60
    while hub_call(f"{world.api}users/{name}", CHECKER)["servers"]:
        assert time.time() < deadline, f"{name}'s server never stopped"
        time.sleep(0.25)


def test_a_launch_to_a_closed_exam_says_when_it_opens(world):
    browser, answer, _ = launch(world, claims_for("noor", environment="final"))
    paths = landing(world, browser, answer)
    assert paths[1] == "/hub/spawn/noor?environment=intro%2Ffinal", paths
    events = progress(world, "noor")
    assert events[-1].get("failed"), events
    assert (
        "intro/final cannot be started now: it opens at 2099-01-01T09:00:00Z"
        in (events[-1]["message"])
    ), events
    assert server(world, "noor") is None
    # a link naming no environment of the course is refused, saying so
    browser, answer, _ = launch(world, claims_for("noor", environment="week9"))
    landing(world, browser, answer)
    events = progress(world, "noor")
    assert "no environment intro/week9 in your courses" in events[-1]["message"], events
    assert server(world, "noor") is None


def test_an_instructor_launch_opens_the_course_on_trousse_and_teaches_it(world):
    # the tool's URL without its slash: the callback asks the landing itself
    claims = claims_for("grace", roles=("Instructor",))
    browser, answer, _ = launch(world, claims, target="/hub")
    paths = landing(world, browser, answer)
    assert paths[0] == "/services/trousse/sign-in/hub?course=intro", paths
    # the hub's OAuth signs her in to trousse's page, which shows the course
    assert paths[-2:] == ["/services/trousse/courses/intro", 200], paths
    page = browser.get(f"{world.public}/services/trousse/courses/intro", timeout=30)
    assert "grace" in page.text and "week1" in page.text, page.text
    assert groups(world, "grace") == ["teacher:intro"]
    # her hub token has a teacher's rights on trousse: a submission is accepted
    spec = f"name: week2\nchannels: ['{world.channel}']\ndependencies: [greet]\n"
    submitted = requests.post(
        f"{world.trousse}/api/v1/courses/intro/environments",
        headers={"Authorization": f"Bearer {hub_token(world, 'grace')}"},
        json={"spec": spec},
        timeout=60,
    )
    assert submitted.status_code in (200, 201, 202), submitted.text
    # a learner's is refused
    refused = requests.post(
        f"{world.trousse}/api/v1/courses/intro/environments",
        headers={"Authorization": f"Bearer {hub_token(world, 'lea')}"},
        json={"spec": spec},
        timeout=60,
    )
    assert refused.status_code == 403, refused.text


def test_a_launch_from_another_course_takes_the_first_away(world):
    browser, answer, _ = launch(world, claims_for("ada", environment=None))
    assert answer.status_code == 302, answer.text
    assert groups(world, "ada") == ["course:intro"]
    # a link naming no environment: where JupyterHub would send her (the spawn page)
    assert landing(world, browser, answer, stop_at="/hub/spawn") == ["/hub/", "/hub/spawn"]
    _, answer, _ = launch(world, claims_for("ada", label="STATS"))
    assert answer.status_code == 302, answer.text
    assert groups(world, "ada") == ["course:stats"]
    listed = requests.get(
        f"{world.trousse}/api/v1/courses/intro/environments",
        headers={"Authorization": f"Bearer {hub_token(world, 'ada')}"},
        timeout=60,
    )
    assert listed.status_code == 403, listed.text


def test_bad_signatures_expired_tokens_and_replays_are_refused(world):
    _, answer, _ = launch(world, claims_for("mallory"), key=OTHER)
    assert answer.status_code in (400, 401), answer.text
    past = int(time.time()) - 3600
    _, answer, _ = launch(world, claims_for("late", iat=past, exp=past + 60))
    assert answer.status_code in (400, 401), answer.text
    browser, answer, (action, fields) = launch(world, claims_for("eve"))
    assert answer.status_code == 302, answer.text
    replay = browser.post(action, data=fields, allow_redirects=False, timeout=30)
    assert replay.status_code == 400, replay.text
    names = {user["name"] for user in hub_call(f"{world.api}users", CHECKER)}
    assert "mallory" not in names and "late" not in names


LTI11_CONFIG = """
c.JupyterHub.authenticator_class = "ltiauthenticator.lti11.auth.LTI11Authenticator"
c.LTI11Authenticator.consumers = {{"moodle-key": {secret!r}}}
c.LTI11Authenticator.username_key = "user_id"
c.JupyterHub.services = [{{"name": "checker", "api_token": {checker!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "checker", "services": ["checker"], "scopes": ["list:users", "read:users", "read:groups"]}}
]
"""
LTI11_SECRET = "moodle-shared-secret-0123456789"


@pytest.fixture(scope="module")
def lti11_hub(tmp_path_factory):
    """A hub for LTI 1.1 launches (older Moodle sites): no spawner is reached."""
    work = tmp_path_factory.mktemp("lti11")
    config = LTI_HOOK + LTI11_CONFIG.format(secret=LTI11_SECRET, checker=CHECKER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    hub, api, public = start_hub(work, config, env=env)
    try:
        wait_for(f"{public}/hub/api/")  # once the proxy routes to the hub
        yield SimpleNamespace(api=api, public=public.replace("127.0.0.1", "localhost"))
    finally:
        stop_all(hub)


def lti11_launch(hub, user, roles, secret=LTI11_SECRET, **params):
    """An LTI 1.1 launch as Moodle posts it: form fields signed with OAuth 1.0a
    (HMAC-SHA1) by the consumer's secret."""
    from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client

    fields = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "resource_link_id": "r1",
        "resource_link_title": "Jupyter",
        "user_id": user,
        "roles": roles,
        "context_id": "7",
        "context_label": "INTRO",
        **params,
    }
    url = f"{hub.public}/hub/lti/launch"
    client = Client("moodle-key", client_secret=secret, signature_type=SIGNATURE_TYPE_BODY)
    _, headers, body = client.sign(
        url,
        http_method="POST",
        body=fields,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return requests.post(url, data=body, headers=headers, allow_redirects=False, timeout=60)


def test_lti11_launches_give_the_course_and_land_where_they_point(lti11_hub):
    answer = lti11_launch(lti11_hub, "amy", "Learner", custom_trousse_environment="week1")
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"] == "/hub/spawn/amy?environment=intro%2Fweek1"
    user = hub_call(f"{lti11_hub.api}users/amy", CHECKER)
    assert user["groups"] == ["course:intro"]
    answer = lti11_launch(lti11_hub, "ben", "Instructor")
    assert answer.headers["Location"] == "/services/trousse/sign-in/hub?course=intro"
    assert hub_call(f"{lti11_hub.api}users/ben", CHECKER)["groups"] == ["teacher:intro"]
    # signed with another secret: refused, no user
    forged = lti11_launch(lti11_hub, "mallory", "Instructor", secret="guessed")
    assert forged.status_code == 401, forged.text
    names = {u["name"] for u in hub_call(f"{lti11_hub.api}users", CHECKER)}
    assert "mallory" not in names
