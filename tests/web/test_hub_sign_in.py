"""trousse as a JupyterHub service: a hub user opens trousse's page through
the hub's proxy and is signed in by the hub's OAuth (no second sign-in),
with the course rights of their hub groups."""

import re
import shutil

import pytest
from support import free_port, hub_ports, start_hub, start_serve, wait_for

from conftest import browser_session

TOKEN = "trousse-page-service-token-0123456789"

HUB_CONFIG = """
c.Authenticator.allowed_users = {{"grace", "ada"}}
c.JupyterHub.load_groups = {{
    "teacher:math1": {{"users": ["grace"]}},
    "course:math1": {{"users": ["ada", "grace"]}},
    "course:phys2": {{"users": ["grace"]}},
}}
c.JupyterHub.services = [{{
    "name": "trousse", "url": "http://127.0.0.1:{port}", "api_token": "{token}",
    "oauth_no_confirm": True,
}}]
# hub users may sign in to the service (JupyterHub's `access:services` scope)
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=trousse"]}}
]
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("hub-page")
    port, ports = free_port(), hub_ports()
    hub, api, proxy = start_hub(work, HUB_CONFIG.format(port=port, token=TOKEN), ports=ports)
    page = f"http://localhost:{ports[1]}/services/trousse/"
    serve, _ = start_serve(
        work,
        *("--page-url", page, "--hub-oauth", "--hub-api-url", api),
        env={
            "JUPYTERHUB_CLIENT_ID": "service-trousse",
            "JUPYTERHUB_API_TOKEN": TOKEN,
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/trousse/oauth_callback",
        },
        port=port,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        wait_for(f"{proxy}/hub/login")  # once the proxy routes to the hub
        yield page, proxy.replace("127.0.0.1", "localhost")
    finally:
        for process in (serve, hub):
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def hub_login(proxy, name):
    """A browser session signed in to the hub (its dummy authenticator)."""
    session = browser_session()
    form = session.get(f"{proxy}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)
    done = session.post(
        f"{proxy}/hub/login",
        data={"username": name, "password": "x", "_xsrf": xsrf},
        allow_redirects=False,  # to the user's server, which is not started here
        timeout=60,
    )
    assert done.status_code == 302, done.text
    return session


def test_a_hub_user_is_signed_in_by_the_hub_with_the_rights_of_their_groups(hub):
    page, proxy = hub
    grace = hub_login(proxy, "grace")
    first = grace.get(page, headers={"Accept-Language": "en"}, timeout=30)
    assert "Sign in with JupyterHub" in first.text
    # one click: the hub's OAuth answers at once (she is signed in to the hub)
    home = grace.get(f"{page}sign-in/hub", headers={"Accept-Language": "en"}, timeout=60)
    assert home.status_code == 200 and home.url == page, home.text
    assert "grace" in home.text and "Teaching" in home.text
    courses = grace.get(f"{page}api/v1/courses", timeout=30).json()
    assert courses == {"role": "teacher", "teaching": ["math1"], "taking": ["phys2"], "others": []}
    ada = hub_login(proxy, "ada")
    ada.get(f"{page}sign-in/hub", timeout=60)
    assert ada.get(f"{page}api/v1/courses", timeout=30).json()["taking"] == ["math1"]
    assert ada.get(f"{page}courses/phys2", timeout=30).status_code == 403
