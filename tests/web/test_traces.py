"""Learning-analytics traces reach a real Learning Record Store (Ralph,
which validates each xAPI statement it takes, and refuses a whole batch
for one invalid statement); with the LRS down, requests still answer at
once, and the statements arrive once it is up. Ralph's file backend takes
one write per file: the statements queued while it was down go in one batch."""

import os
import re
import shutil
import subprocess
import time

import pytest
import requests
from support import create_token, example_channel, free_port, start_serve, wait_built, wait_for

from conftest import RULES, set_user, sign_in

RALPH = os.environ.get(
    "TROUSSE_RALPH", os.path.expanduser("~/.cache/trousse-tests/ralph/bin/ralph")
)
LRS_AUTH = ("trousse", "an-lrs-password-never-logged")

pytestmark = pytest.mark.skipif(not os.path.exists(RALPH), reason="scripts/test installs Ralph")


class Lrs:
    """Ralph's LRS on a fixed port, with its statements in a folder: stopped and started again."""

    def __init__(self, work):
        self.work, self.port, self.process = work, free_port(), None
        self.env = dict(
            os.environ, RALPH_AUTH_FILE=str(work / "auth.json"), RALPH_RUNSERVER_BACKEND="fs"
        )
        subprocess.run(
            [RALPH, "auth", "-u", LRS_AUTH[0], "-p", LRS_AUTH[1], "-s", "all"]
            + ["-M", "mailto:trousse@example.org", "-w"],
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/xAPI/"

    def start(self):
        with open(self.work / "lrs.log", "a") as log:
            self.process = subprocess.Popen(
                [
                    RALPH,
                    "runserver",
                    "-b",
                    "fs",
                    "--fs-default-directory-path",
                    str(self.work / "lrs"),
                ]
                + ["-h", "127.0.0.1", "-p", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(f"http://127.0.0.1:{self.port}/__heartbeat__", 60)

    def stop(self):
        self.process.terminate()
        self.process.wait(30)

    def statements(self):
        answer = requests.get(f"{self.url}statements", auth=LRS_AUTH, timeout=10)
        answer.raise_for_status()
        return answer.json()["statements"]

    def wait_for_verb(self, verb, seconds=90):
        deadline = time.time() + seconds
        while time.time() < deadline:
            found = [s for s in self.statements() if s["verb"]["display"]["en-US"] == verb]
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"no '{verb}' statement reached the LRS")


@pytest.fixture(scope="module")
def traced(tmp_path_factory, provider):
    work = tmp_path_factory.mktemp("traces")
    lrs = Lrs(work)  # not started: the LRS is down at first
    channel, channel_url = example_channel(work)
    (work / "rules.toml").write_text(RULES)
    port = free_port()
    page = f"http://localhost:{port}/"
    serve, _ = start_serve(
        work,
        *("--page-url", page, "--oidc-issuer", provider, "--oidc-client-id", "trousse"),
        *("--role-rules", str(work / "rules.toml"), "--allow-channel", channel_url),
        *("--xapi-endpoint", lrs.url),
        env={
            "TROUSSE_OIDC_CLIENT_SECRET": "a-client-secret-never-logged",
            "TROUSSE_XAPI_AUTH": ":".join(LRS_AUTH),
        },
        port=port,
    )
    try:
        wait_for(f"{page}health")
        yield lrs, page, channel_url, work, provider
    finally:
        for process in (serve, channel, lrs.process):
            if process is None:
                continue
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def test_statements_wait_while_the_lrs_is_down_and_reach_it_once_up(traced):
    lrs, page, channel, work, provider = traced
    set_user(provider, "hana", name="Hana", groups=["bio1-teachers"])
    teacher = sign_in(page, "hana")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', teacher.get(page, timeout=30).text).group(
        1
    )
    spec = f"name: lab1\nchannels: ['{channel}']\ndependencies: [greet]\n"
    started = time.monotonic()
    created = teacher.post(
        f"{page}api/v1/courses/bio1/environments",
        data=spec,
        headers={"Content-Type": "application/yaml", "X-CSRF-Token": csrf},
        timeout=30,
    )
    answered = time.monotonic() - started
    assert created.status_code in (200, 202) and answered < 5, (created.text, answered)
    print(f"a submission answered in {answered * 1000:.0f} ms with the LRS down")
    env = created.json()
    admin = create_token(work, "admin")
    wait_built(page.rstrip("/"), admin, env, seconds=120)
    reported = requests.post(
        f"{page}api/v1/environments/{env['id']}/launches",
        json={"user": "ada"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert reported.status_code == 204, reported.text
    archived = teacher.post(
        f"{page}api/v1/environments/{env['id']}/archive", headers={"X-CSRF-Token": csrf}, timeout=30
    )
    assert archived.status_code == 200
    deadline = time.time() + 30
    while "did not take traces" not in (work / "serve.log").read_text():
        assert time.time() < deadline, "the sender never tried the LRS"
        time.sleep(0.5)
    lrs.start()
    lrs.wait_for_verb("archived", seconds=60)
    verbs = {s["verb"]["display"]["en-US"]: s for s in lrs.statements()}
    assert set(verbs) == {"created", "built", "launched", "archived"}, set(verbs)
    assert verbs["created"]["actor"]["account"] == {"homePage": page.rstrip("/"), "name": "hana"}
    assert verbs["launched"]["actor"]["account"]["name"] == "ada"
    assert verbs["built"]["object"]["id"] == f"{page}environments/{env['id']}"
    parent = verbs["archived"]["context"]["contextActivities"]["parent"][0]["id"]
    assert parent == f"{page}courses/bio1"
    assert LRS_AUTH[1] not in (work / "serve.log").read_text()
