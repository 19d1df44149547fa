"""The teachers' page's tests: `trousse serve` with its page, a real OpenID
Connect provider (oidc-provider-mock) on loopback, and a provider of the
test's own for answers a real one cannot be made to give. Pages are on
`localhost`, where browsers treat `Secure` cookies over http as secure."""

import json
import os
import shutil
import sys
from types import SimpleNamespace

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "hub", "tests"))

from support import (
    BIN,
    call,
    create_token,
    example_channel,
    free_port,
    localhost_is_secure,
    start_serve,
    wait_built,
    wait_for,
)

RULES = """
[[rule]]
claim = "groups"
match = "(?P<course>[a-z0-9-]+)-teachers"
role = "teacher"

[[rule]]
claim = "groups"
match = "(?P<course>[a-z0-9-]+)-students"
role = "student"
"""

pytestmark = pytest.mark.skipif(not BIN, reason="TROUSSE_BIN names the trousse binary")


localhost_is_secure()


def browser_session():
    """A requests session that, like a browser on localhost, sends `Secure` cookies over http."""
    return requests.Session()


@pytest.fixture(scope="session")
def provider():
    """A real OpenID Connect provider on localhost (it requires a nonce)."""
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


def serve_page(work, issuer, *extra):
    """`trousse serve` with its page on localhost, signing in with `issuer`."""
    (work / "rules.toml").write_text(RULES)
    port = free_port()
    page = f"http://localhost:{port}/"
    serve, url = start_serve(
        work,
        "--page-url",
        page,
        "--oidc-issuer",
        issuer,
        "--oidc-client-id",
        "trousse",
        "--role-rules",
        str(work / "rules.toml"),
        *extra,
        env={"TROUSSE_OIDC_CLIENT_SECRET": "a-client-secret-never-logged"},
        port=port,
    )
    wait_for(f"{url}/health")
    return serve, page


@pytest.fixture(scope="module")
def service(tmp_path_factory, provider):
    """trousse with its page, a built course environment and an exam not yet open."""
    work = tmp_path_factory.mktemp("page")
    channel, channel_url = example_channel(work)
    serve, page = serve_page(work, provider, "--allow-channel", channel_url)
    try:
        admin = create_token(work, "admin")
        spec = f"name: week1\nchannels: ['{channel_url}']\ndependencies: [greet]\n"
        url = f"{page}api/v1/courses/math1/environments"
        created = call(url, admin, "POST", spec.encode())
        assert wait_built(page.rstrip("/"), admin, created, seconds=120)["status"] == "ready"
        exam = {
            "spec": spec.replace("week1", "final"),
            "exam": True,
            "opens": "2099-01-01T09:00:00Z",
        }
        call(url, admin, "POST", json.dumps(exam).encode(), "application/json")
        yield SimpleNamespace(
            page=page, admin=admin, provider=provider, work=work, channel=channel_url
        )
    finally:
        for process in (serve, channel):
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


def set_user(provider, sub, **claims):
    """The provider's user `sub`, with these claims."""
    requests.put(f"{provider}/users/{sub}", json=claims, timeout=10).raise_for_status()


def sign_in(page, sub):
    """A session signed in as `sub` through the provider's own form, as a browser would."""
    session = browser_session()
    to_provider = session.get(f"{page}sign-in/oidc", allow_redirects=False, timeout=30)
    assert to_provider.status_code == 303, to_provider.text
    authorize = to_provider.headers["Location"]
    form = session.get(authorize, timeout=30)
    assert form.status_code == 200
    back = session.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert back.status_code in (302, 303), back.text
    home = session.get(back.headers["Location"], allow_redirects=False, timeout=30)
    assert home.status_code == 303, home.text
    session.last_sign_in = home
    return session
