"""End to end: a real JupyterHub with DockerSpawner and this package launches,
for a student of a course, the image trousse built; Docker pulls it from
trousse's /v2/, the server answers through the hub's proxy, and a kernel runs
a program of the course environment.

Also on the real hub: a spawn while the environment builds, a failed
environment refused with its error, an exam server without a route out of its
network, and BinderHub's launch mode starting a server.

Python and the single-user server come from the base image (Debian made by
debootstrap, jupyterhub and jupyterlab from PyPI: no conda-forge here); the
course's packages from the example channel, on top."""

import gzip
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import (
    base_image,
    call,
    create_token,
    docker_network,
    docker_spawner_config,
    example_channel,
    free_port,
    hub_call,
    hub_ports,
    needs_docker,
    remove_pulled,
    start_hub,
    start_serve,
    stop_all,
    submit,
    submit_and_wait,
    wait_built,
    wait_for,
)

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(bool(needs_docker()), reason=str(needs_docker()))

SERVICE_TOKEN = "e2e-service-token-0123456789abcdef"

HUB_CONFIG = """
c.CourseSpawner.trousse_exam_network = {exam_network!r}
c.Authenticator.allowed_users = {{"ada", "eve"}}
c.JupyterHub.load_groups = {{
    "course:intro": {{"users": ["ada"]}},
    "teacher:binder": {{"users": ["ada"]}},
}}
c.JupyterHub.services = [{{"name": "e2e", "api_token": {service_token!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "e2e", "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"],
      "services": ["e2e"]}}
]
"""


def sh(*args):
    """Runs a command of the test's network set-up."""
    subprocess.run(args, check=True, capture_output=True)


def exam_firewall(network, gateway, hub_port):
    """The INPUT rules that leave an exam network only the hub among the host's
    addresses (Docker's `--internal` drops forwarded traffic only); returns them."""
    bridge = (
        "br-"
        + subprocess.run(
            ["docker", "network", "inspect", "-f", "{{.Id}}", network],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()[:12]
    )
    rules = [
        ["INPUT", "-i", bridge, "-j", "DROP"],
        [
            "INPUT",
            "-i",
            bridge,
            "-d",
            gateway,
            "-p",
            "tcp",
            "--dport",
            str(hub_port),
            "-j",
            "ACCEPT",
        ],
        [
            "INPUT",
            "-i",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
    ]
    for rule in rules:
        sh("iptables", "-I", *rule)
    return rules


def git_repository(work, channel_url):
    """A Binder-style repository served by `git daemon` on loopback; returns the
    daemon and the repository's git:// URL."""
    root = work / "git"
    repo = root / "course.git"
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    spec = f"name: course\nchannels: ['{channel_url}']\ndependencies: [greet]\n"
    (repo / "environment.yml").write_text(spec)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "course"], check=True)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}"]
        + ["--listen=127.0.0.1", f"--port={port}", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return daemon, port, f"git://127.0.0.1:{port}/course.git"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    base = base_image()
    channel, channel_url = example_channel(work)
    # a copy whose pyhello (in no other environment here, so in no cache) no longer
    # matches its repodata: an environment with it fails
    (work / "broken").mkdir()
    broken_channel, broken_url = example_channel(work / "broken", tamper=["pyhello"])
    suffix = uuid.uuid4().hex[:8]
    network, exam_network = f"trousse-e2e-{suffix}", f"trousse-exam-{suffix}"
    gateway = docker_network(network)
    # exam servers: no route out of their network, whose gateway the hub listens on
    exam_gateway = docker_network(exam_network, "--internal")
    git_daemon, git_port, repo_url = git_repository(work, channel_url)
    ports = hub_ports()
    hub_port, proxy_port = ports[0], ports[1]
    # and from it, of the host's own addresses, only the hub (docs/jupyterhub.md)
    firewall = exam_firewall(exam_network, exam_gateway, hub_port)
    serve, trousse_url = start_serve(
        work,
        "--allow-channel",
        channel_url,
        "--allow-channel",
        broken_url,
        "--default-base",
        base,
        "--hub-version",
        "5",
        "--allow-git-host",
        f"127.0.0.1:{git_port}",
        "--binder-course",
        "binder",
        "--hub-api-url",
        f"http://{exam_gateway}:{hub_port}/hub/api/",
        "--hub-public-url",
        f"http://127.0.0.1:{proxy_port}/",
        env={"JUPYTERHUB_API_TOKEN": SERVICE_TOKEN},
    )
    hub = None
    try:
        wait_for(f"{trousse_url}/health")

        teacher, hub_token = create_token(work, "teacher", "intro"), create_token(work, "hub")
        env = submit_and_wait(trousse_url, teacher, channel_url, "week1", "greet, hello-prefix")
        # the next week's environment: the same layers, and one package more
        week2 = submit_and_wait(
            trousse_url, teacher, channel_url, "week2", "greet, hello-prefix, python"
        )
        config = docker_spawner_config(trousse_url, hub_token, network) + HUB_CONFIG.format(
            exam_network=exam_network, service_token=SERVICE_TOKEN
        )
        env_vars = dict(os.environ, PYTHONPATH=str(HERE.parent))
        hub, api, proxy = start_hub(work, config, hub_ip=exam_gateway, env=env_vars, ports=ports)
        yield SimpleNamespace(
            api=api,
            proxy=proxy,
            trousse=trousse_url,
            teacher=teacher,
            channel=channel_url,
            broken_channel=broken_url,
            image=env["image"],
            image2=week2["image"],
            gateway=gateway,
            exam_network=exam_network,
            repo_url=repo_url,
            base=base,
            log=work / "hub.log",
        )
    finally:
        stop_all(hub, serve, channel, broken_channel, git_daemon)
        # the images the node pulled from this trousse
        remove_pulled(trousse_url)
        for rule in firewall:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)
        for name in (network, exam_network):
            subprocess.run(["docker", "network", "rm", name], check=False, capture_output=True)


def user_token(world, user):
    """A new hub token of `user`, made by the test's service."""
    return hub_call(f"{world.api}users/{user}/tokens", SERVICE_TOKEN, "POST", b"{}")["token"]


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
        if message["msg_type"] == "error":
            out += f"{message['content']['ename']}: {message['content']['evalue']}"
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    ws.close()
    return out


def test_a_student_spawns_the_course_image_and_runs_its_program(world):
    # eve is in no course: no image is hers, the hub refuses her spawn
    refused = spawn_and_follow(world, "eve", "week1 — intro")
    assert refused[-1].get("failed"), refused
    assert "not allowed" in refused[-1]["message"], refused
    # the display name the hub offers ada is the key her spawn names
    key = "week1 — intro"
    subprocess.run(["docker", "rmi", "-f", world.image], check=False, capture_output=True)
    cold = spawn(world, "ada", key)
    token = user_token(world, "ada")
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
    print_pull_bytes(world)


def print_pull_bytes(world):
    """Bytes a node pulls for next week's image when it has this week's: trousse's
    per-package layers against the same environment as one layer on the same base."""
    _, week1 = manifest_layers(world, world.image)
    repo2, week2 = manifest_layers(world, world.image2)
    held = {layer["digest"] for layer in week1}
    missing = [layer for layer in week2 if layer["digest"] not in held]
    per_package = sum(layer["size"] for layer in missing)
    base = base_layers(world.base)
    environment = [layer for layer in week2 if layer["digest"] not in base]
    one_layer = one_layer_bytes(world, repo2, environment)
    assert 0 < per_package < one_layer
    print(
        f"pull bytes, node holding week1: per-package layers {per_package} B"
        f" ({len(missing)} layer),"
        f" one environment layer (docker-stacks style) {one_layer} B"
        f" ({one_layer / per_package:.1f}x); environment {len(environment)} layers"
    )


def manifest_layers(world, image):
    """The repository and layers of an image, read from trousse's /v2/."""
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    request = urllib.request.Request(
        f"{world.trousse}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return repository, json.load(answer)["layers"]


def base_layers(base):
    """The layer digests of the base image's OCI layout (`oci:DIR:TAG`)."""
    layout = Path(base[len("oci:") :].rsplit(":", 1)[0])

    def blob(digest):
        return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())

    [manifest] = json.loads((layout / "index.json").read_text())["manifests"]
    return {layer["digest"] for layer in blob(manifest["digest"])["layers"]}


def one_layer_bytes(world, repository, layers):
    """The gzip size of `layers` squashed into one, as a Dockerfile's single
    `RUN mamba install` would make it."""
    members = {}
    for layer in layers:
        url = f"{world.trousse}/v2/{repository}/blobs/{layer['digest']}"
        with urllib.request.urlopen(url, timeout=60) as answer:
            blob = answer.read()
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read() if member.isfile() else None
                members[member.name] = (member, data)
    out = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as tar,
    ):
        for member, data in members.values():
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return len(out.getvalue())


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


def spawn_and_follow(world, user, key):
    """Asks the hub for the user's server with `key` and follows the spawn's progress
    events until it is ready or failed; returns them."""
    body = json.dumps({"image": key}).encode()
    try:
        hub_call(f"{world.api}users/{user}/server", SERVICE_TOKEN, "POST", body)
    except urllib.error.HTTPError as e:
        # a spawn that fails at once is answered with its error
        return [{"failed": True, "message": json.loads(e.read()).get("message", "")}]
    request = urllib.request.Request(f"{world.api}users/{user}/server/progress")
    request.add_header("Authorization", f"token {SERVICE_TOKEN}")
    deadline = time.time() + 30
    while True:
        try:
            stream = urllib.request.urlopen(request, timeout=240)
            break
        except urllib.error.HTTPError as e:
            # "not starting": a spawn failing at once is still being cleaned up
            assert e.code == 400 and time.time() < deadline, e
            time.sleep(0.2)
    events = []
    with stream:
        for line in stream:
            if not line.startswith(b"data:"):
                continue
            events.append(json.loads(line[5:]))
            if events[-1].get("ready") or events[-1].get("failed"):
                break
    return events


def browser(world, user):
    """A browser session of `user`, logged in through the hub's login form
    (the dummy authenticator takes any password)."""
    import http.cookiejar
    import re

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{world.proxy}/hub/login", timeout=60) as response:
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', response.read().decode()).group(1)
    form = urllib.parse.urlencode({"username": user, "password": "any", "_xsrf": xsrf})
    opener.open(f"{world.proxy}/hub/login?next=", form.encode(), timeout=60).close()
    return opener


def spawn_page(world, session, user):
    """The spawn page, as the user's browser loads it."""
    with session.open(f"{world.proxy}/hub/spawn/{user}", timeout=60) as response:
        return response.read().decode()


def set_window(world, name, window):
    url = f"{world.trousse}/api/v1/courses/intro/exams/{name}/window"
    return call(url, world.teacher, "PUT", json.dumps(window).encode(), "application/json")


def test_the_spawn_page_shows_what_is_new_at_each_load(world):
    if hub_call(f"{world.api}users/ada", SERVICE_TOKEN)["servers"]:
        stop(world, "ada")
    session = browser(world, "ada")
    page = spawn_page(world, session, "ada")
    assert "week1 — intro" in page and "week2 — intro" in page, page[-2000:]
    # the teacher adds an environment while the hub runs: the next load shows it
    submit(world.trousse, world.teacher, world.channel, "week4", "greet")
    assert "week4 — intro" in spawn_page(world, session, "ada")
    # an exam appears when its window is moved to now, not before
    spec = f"name: quiz\nchannels: ['{world.channel}']\ndependencies: [greet]\n"
    body = {"spec": spec, "exam": True, "opens": "2099-01-01T00:00:00Z"}
    url = f"{world.trousse}/api/v1/courses/intro/environments"
    call(url, world.teacher, "POST", json.dumps(body).encode(), "application/json")
    assert "quiz — intro" not in spawn_page(world, session, "ada")
    set_window(world, "quiz", {"opens": "2000-01-01T00:00:00Z"})
    assert "quiz — intro" in spawn_page(world, session, "ada")
    set_window(world, "quiz", {"opens": "2000-01-01T00:00:00Z", "closes": "2001-01-01T00:00:00Z"})


def test_a_spawn_while_the_environment_builds_shows_its_progress(world):
    # a combination not built yet: the spawn is asked for while it builds
    created = submit(world.trousse, world.teacher, world.channel, "week3", "hello-prefix, python")
    assert created["status"] in ("queued", "building"), created
    events = spawn_and_follow(world, "ada", "week3 — intro")
    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready"), messages
    assert "Environment ready" in messages, messages
    token = user_token(world, "ada")
    code = "import os; print(os.path.exists('/opt/conda/bin/python3.12'))"
    assert "True" in run_in_kernel(world, "ada", token, code)
    stop(world, "ada")


def test_a_failed_environment_refuses_the_spawn_with_its_error(world):
    created = submit(world.trousse, world.teacher, world.broken_channel, "broken", "pyhello")
    failed = wait_built(world.trousse, world.teacher, created)
    assert failed["status"] == "failed", failed
    events = spawn_and_follow(world, "ada", "broken — intro")
    assert events[-1].get("failed"), events
    assert "intro/broken failed to build" in events[-1]["message"], events
    assert not hub_call(f"{world.api}users/ada", SERVICE_TOKEN)["servers"]


@pytest.fixture
def outside(world):
    """A host beyond the Docker host (a network namespace behind a veth, routed by
    the host), listening on a port: where a server's outbound traffic would go."""
    name = f"trousse-out-{uuid.uuid4().hex[:6]}"
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    host_side, ns_side = f"{name[-6:]}h", f"{name[-6:]}n"
    sh("ip", "netns", "add", name)
    server = None
    try:
        sh("ip", "link", "add", host_side, "type", "veth", "peer", "name", ns_side)
        sh("ip", "link", "set", ns_side, "netns", name)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", host_side)
        sh("ip", "link", "set", host_side, "up")
        inside = ["ip", "netns", "exec", name]
        sh(*inside, "ip", "addr", "add", f"{net}.2/24", "dev", ns_side)
        sh(*inside, "ip", "link", "set", ns_side, "up")
        sh(*inside, "ip", "route", "add", "default", "via", f"{net}.1")
        address = (f"{net}.2", 8000)
        accept = f"import socket\ns = socket.create_server({address!r})\nwhile True: s.accept()[0].close()"
        server = subprocess.Popen([*inside, sys.executable, "-c", accept])
        deadline = time.time() + 30
        while True:  # listening once the host, routing to it, connects
            try:
                socket.create_connection(address, timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the outside host never listened"
                time.sleep(0.1)
        yield address
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        subprocess.run(["ip", "link", "del", host_side], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def reach(world, user, address):
    """Whether the user's server connects to `address`, from its kernel."""
    token = user_token(world, user)
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection({address!r}, timeout=5).close(); print('REACHED')\n"
        "except OSError as e:\n"
        "    print('REFUSED', e)\n"
    )
    out = run_in_kernel(world, user, token, code)
    assert "REACHED" in out or "REFUSED" in out, out
    return "REACHED" in out


def test_an_exam_server_has_no_outbound_network(world, outside):
    # the Docker host's own address on the course network: what the host serves
    on_host = socket.create_server((world.gateway, 0))
    try:
        host_service = on_host.getsockname()
        # a course server reaches beyond the host, and the host's services
        spawn(world, "ada", "week1 — intro")
        assert reach(world, "ada", outside)
        assert reach(world, "ada", host_service)
        stop(world, "ada")
        # the exam's reaches neither, and still answers through the hub
        exam = submit_and_wait(
            world.trousse, world.teacher, world.channel, "final", "greet", exam=True
        )
        assert "@sha256:" in exam["image"], exam
        spawn(world, "ada", "final — intro")
        container = subprocess.run(
            ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", "jupyter-ada"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert list(json.loads(container)) == [world.exam_network], container
        assert not reach(world, "ada", outside)
        assert not reach(world, "ada", host_service)
        stop(world, "ada")
    finally:
        on_host.close()


def test_binderhub_launch_mode_starts_the_users_server(world):
    token = user_token(world, "ada")
    escaped = urllib.parse.quote(world.repo_url, safe="")
    request = urllib.request.Request(
        f"{world.trousse}/services/binder/build/git/{escaped}/main",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
    )
    events = []
    with urllib.request.urlopen(request, timeout=300) as stream:
        for line in stream:
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
    phases = [e["phase"] for e in events]
    assert phases[0] == "waiting" and "built" in phases and "launching" in phases, events
    ready = events[-1]
    assert ready["phase"] == "ready", events
    assert ready["url"] == f"{world.proxy}/user/ada/", ready
    # the token handed out opens that server, through the hub's proxy
    status = urllib.request.Request(
        f"{ready['url']}api/status", headers={"Authorization": f"token {ready['token']}"}
    )
    with urllib.request.urlopen(status, timeout=30) as answer:
        assert answer.status == 200
    # the repository's files are at their fixed path, which a persistent home does not hide
    code = "print(open('/srv/repo/environment.yml').read())"
    assert "dependencies: [greet]" in run_in_kernel(world, "ada", ready["token"], code)
    server = hub_call(f"{world.api}users/ada", SERVICE_TOKEN)["servers"][""]
    assert server["user_options"]["repo_url"] == world.repo_url, server
    stop(world, "ada")
    subprocess.run(["docker", "rmi", "-f", ready["imageName"]], check=False, capture_output=True)
