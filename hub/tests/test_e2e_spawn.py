"""End to end: a real JupyterHub with DockerSpawner and this package launches,
for a student of a course, the image trousse built; Docker pulls it from
trousse's /v2/, the server answers through the hub's proxy, and a kernel runs
a program of the course environment.

Python and the single-user server come from the base image (Debian made by
debootstrap, jupyterhub and jupyterlab from PyPI: no conda-forge here); the
course's packages from the example channel, on top."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_hub_tokens import hub_call, start_hub
from test_service import BIN, call, example_channel, start_serve, wait_for

HUB_VERSION = "5.3.0"
HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(
    not BIN or not shutil.which("docker") or not shutil.which("debootstrap"),
    reason="needs TROUSSE_BIN, docker and debootstrap (scripts/test installs them)",
)

SERVICE_TOKEN = "e2e-service-token-0123456789abcdef"

HUB_CONFIG = """
import trousse_jupyterhub as trousse
from dockerspawner import DockerSpawner

class CourseSpawner(trousse.TrousseSpawnerMixin, DockerSpawner):
    pass

client = trousse.TrousseClient({trousse_url!r}, {hub_token!r})
c.JupyterHub.spawner_class = CourseSpawner
CourseSpawner.trousse_client = client
c.DockerSpawner.allowed_images = trousse.allowed_images(client=client)
c.DockerSpawner.network_name = {network!r}
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.start_timeout = 180
c.DockerSpawner.http_timeout = 120
c.Authenticator.allowed_users = {{"ada", "eve"}}
c.JupyterHub.load_groups = {{"course:intro": {{"users": ["ada"]}}}}
c.JupyterHub.services = [{{"name": "e2e", "api_token": {service_token!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "e2e", "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"],
      "services": ["e2e"]}}
]
"""


def base_image(tmp_path_factory):
    """The debootstrap base, built once per run (and kept in target/ between runs)."""
    cache = HERE.parent.parent / "target" / "hub-base" / HUB_VERSION
    if not (cache / "index.json").exists():
        subprocess.run([str(HERE / "make-base-image"), str(cache), HUB_VERSION], check=True)
    return f"oci:{cache}:base"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    base = base_image(tmp_path_factory)
    channel, channel_url = example_channel(work)
    network = f"trousse-e2e-{uuid.uuid4().hex[:8]}"
    subnet = f"172.{29 + os.getpid() % 2}.{os.getpid() % 250}.0/24"
    gateway = subnet.replace(".0/24", ".1")
    subprocess.run(
        ["docker", "network", "create", "--subnet", subnet, network],
        check=True,
        capture_output=True,
    )
    serve, trousse_url = start_serve(
        work,
        "--allow-channel",
        channel_url,
        "--default-base",
        base,
        "--hub-version",
        "5",
    )
    hub = None
    try:
        wait_for(f"{trousse_url}/health")

        def token(role, *courses):
            args = [BIN, "token", "create", "--role", role, "--data-dir", str(work / "data")]
            for course in courses:
                args += ["--course", course]
            return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

        teacher, hub_token = token("teacher", "intro"), token("hub")

        def built(name, packages):
            spec = f"name: {name}\nchannels: ['{channel_url}']\ndependencies: [{packages}]\n"
            url = f"{trousse_url}/api/v1/courses/intro/environments"
            created = call(url, teacher, "POST", spec.encode())
            deadline = time.time() + 300
            while (env := call(f"{trousse_url}/api/v1/environments/{created['id']}", teacher))[
                "status"
            ] not in ("ready", "failed"):
                assert time.time() < deadline
                time.sleep(0.5)
            assert env["status"] == "ready", env
            return env

        env = built("week1", "greet")
        # the next week's environment: the same layers, and one package more
        week2 = built("week2", "greet, hello-prefix")
        config = HUB_CONFIG.format(
            trousse_url=trousse_url,
            hub_token=hub_token,
            network=network,
            service_token=SERVICE_TOKEN,
        )
        env_vars = dict(os.environ, PYTHONPATH=str(HERE.parent))
        hub, api, proxy = start_hub(work, config, hub_ip=gateway, env=env_vars)
        yield SimpleNamespace(
            api=api,
            proxy=proxy,
            image=env["image"],
            image2=week2["image"],
            log=work / "hub.log",
        )
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(60)
        for process in (serve, channel):
            process.terminate()
            process.wait()
        subprocess.run(["docker", "network", "rm", network], check=False, capture_output=True)


def run_in_kernel(world, user, token, code):
    """Runs `code` in a new kernel of the user's server; returns its stdout."""
    import websocket

    base = f"{world.proxy}/user/{user}"
    kernel = hub_call(f"{base}/api/kernels", token, "POST", b"{}")
    ws = websocket.create_connection(
        f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel['id']}/channels",
        header=[f"Authorization: token {token}"],
        timeout=60,
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": user,
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False},
                "channel": "shell",
            }
        )
    )
    out = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            out += message["content"]["text"]
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    ws.close()
    return out


def test_a_student_spawns_the_course_image_and_runs_its_program(world):
    # eve is in no course: no image is hers, the hub refuses her spawn
    with pytest.raises(urllib.error.HTTPError) as refused:
        body = json.dumps({"image": "week1 — intro"}).encode()
        hub_call(f"{world.api}users/eve/server", SERVICE_TOKEN, "POST", body)
    assert refused.value.code == 400
    # the display name the hub offers ada is the key her spawn names
    key = "week1 — intro"
    subprocess.run(["docker", "rmi", "-f", world.image], check=False, capture_output=True)
    cold = spawn(world, "ada", key)
    token = hub_call(f"{world.api}users/ada/tokens", SERVICE_TOKEN, "POST", b"{}")["token"]
    out = run_in_kernel(
        world,
        "ada",
        token,
        "import subprocess; print(subprocess.run(['/opt/conda/bin/greet'], capture_output=True, text=True).stdout)",
    )
    assert "greetings from /opt/conda" in out, out
    stop(world, "ada")
    # the same click again, the image now on the node (figures, not assertions)
    warm = spawn(world, "ada", key)
    stop(world, "ada")
    # next week's image: the node has its layers but one
    subprocess.run(["docker", "rmi", "-f", world.image2], check=False, capture_output=True)
    but_one = spawn(world, "ada", "week2 — intro")
    stop(world, "ada")
    for image in (world.image, world.image2):
        subprocess.run(["docker", "rmi", "-f", image], check=False, capture_output=True)
    print(
        f"\nclick to running server: cold node {cold:.1f} s, image on the node {warm:.1f} s,"
        f" all layers but one on the node {but_one:.1f} s"
    )


def spawn(world, user, key):
    """Starts the user's server with the image `key` through the hub; returns the seconds taken."""
    started = time.time()
    body = json.dumps({"image": key}).encode()
    hub_call(f"{world.api}users/{user}/server", SERVICE_TOKEN, "POST", body)
    while (
        not hub_call(f"{world.api}users/{user}", SERVICE_TOKEN)["servers"].get("", {}).get("ready")
    ):
        assert time.time() < started + 240, world.log.read_text()[-3000:]
        time.sleep(0.25)
    return time.time() - started


def stop(world, user):
    """Stops the user's server and waits until it is gone."""
    hub_call(f"{world.api}users/{user}/server", SERVICE_TOKEN, "DELETE")
    deadline = time.time() + 60
    while hub_call(f"{world.api}users/{user}", SERVICE_TOKEN)["servers"]:
        assert time.time() < deadline
        time.sleep(0.25)
