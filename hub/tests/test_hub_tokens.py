"""trousse as a JupyterHub service: a real JupyterHub (from PyPI) whose users'
tokens trousse resolves through `/hub/api/user` into course rights."""

import shutil
import urllib.error
from types import SimpleNamespace

import pytest
from support import BIN, call, hub_call, start_hub, start_serve, wait_for

pytestmark = pytest.mark.skipif(not BIN, reason="TROUSSE_BIN names the trousse binary")

SERVICE_TOKEN = "trousse-test-service-token-0123456789"

HUB_CONFIG = """
c.Authenticator.allowed_users = {{"ada", "grace", "eve"}}
c.JupyterHub.load_groups = {{
    "course:intro-python": {{"users": ["ada", "grace"]}},
    "teacher:intro-python": {{"users": ["grace"]}},
}}
c.JupyterHub.services = [{{"name": "trousse-test", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [
    {{"name": "trousse-test", "scopes": ["admin:users", "tokens"], "services": ["trousse-test"]}}
]
"""


def status_of(url, token, method="GET", body=None):
    try:
        call(url, token, method, body)
        return 200
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("hub")
    process, api, _ = start_hub(work, HUB_CONFIG.format(token=SERVICE_TOKEN))
    try:
        tokens = {
            user: hub_call(f"{api}users/{user}/tokens", SERVICE_TOKEN, "POST", b"{}")["token"]
            for user in ("ada", "grace", "eve")
        }
        yield SimpleNamespace(api=api, tokens=tokens)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def trousse(hub, tmp_path_factory):
    work = tmp_path_factory.mktemp("trousse")
    serve, url = start_serve(work, "--hub-api-url", hub.api)
    try:
        wait_for(f"{url}/health")
        yield url
    finally:
        serve.terminate()
        serve.wait()
        shutil.rmtree(work, ignore_errors=True)


def test_a_student_reads_her_courses_only(hub, trousse):
    ada = hub.tokens["ada"]
    course = f"{trousse}/api/v1/courses/intro-python/environments"
    assert status_of(course, ada) == 200
    assert status_of(f"{trousse}/api/v1/courses/other/environments", ada) == 403
    assert status_of(course, ada, "POST", b"dependencies: [x]\n") == 403


def test_a_teacher_manages_his_course(hub, trousse):
    grace = hub.tokens["grace"]
    # past the role check the spec is read: a broken one is a 400, not a 403
    broken = b"dependencies: [\n"
    mine = f"{trousse}/api/v1/courses/intro-python/environments"
    assert status_of(mine, grace, "POST", broken) == 400
    assert status_of(f"{trousse}/api/v1/courses/other/environments", grace, "POST", broken) == 403


def test_users_outside_courses_and_unknown_tokens(hub, trousse):
    course = f"{trousse}/api/v1/courses/intro-python/environments"
    assert status_of(course, hub.tokens["eve"]) == 403
    assert status_of(course, "not-a-hub-token") == 401
