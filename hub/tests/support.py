"""Helpers the hub package's tests share: the trousse binary under test, free
ports, waiting for a URL, calls of trousse's and JupyterHub's APIs, and starting
`trousse serve`, the example channel and a JupyterHub."""

import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

BIN = os.environ.get("TROUSSE_BIN")
HERE = Path(__file__).parent
HUB_VERSION = "5.3.0"


def needs_docker():
    """Whether what a spawn through Docker needs is missing (the reason, else None)."""
    if BIN and shutil.which("docker") and shutil.which("debootstrap"):
        return None
    return "needs TROUSSE_BIN, docker and debootstrap (scripts/test installs them)"


_return_ok_secure = http.cookiejar.DefaultCookiePolicy.return_ok_secure


def _localhost_is_secure(self, cookie, request):
    """As in browsers, `localhost` is a secure context: its `Secure` cookies go over http."""
    host = urllib.parse.urlsplit(request.get_full_url()).hostname
    return host == "localhost" or _return_ok_secure(self, cookie, request)


def localhost_is_secure():
    """Makes the tests' HTTP clients (requests, urllib) send `Secure` cookies to
    `localhost` over http, as browsers do (requests merges cookies into jars of the
    default policy: the rule is set on the policy)."""
    http.cookiejar.DefaultCookiePolicy.return_ok_secure = _localhost_is_secure


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def call(url, token, method="GET", body=None, content_type="application/yaml"):
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def start_serve(work, *args, env=None, port=None):
    """`trousse serve` on `port` (else a free one) with its data in `work` (and
    `env` added to its environment); returns it and its URL."""
    port = port or free_port()
    with open(work / "serve.log", "a") as log:
        serve = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data")]
            + ["--no-jupyter", *args],
            env=dict(os.environ, TROUSSE_DEFAULT_BASE="scratch", **(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return serve, f"http://127.0.0.1:{port}"


def example_channel(work, tamper=()):
    """The example channel written into `work/channel` (the packages named in
    `tamper` made not to match their repodata) and served; returns the server and URL."""
    example = os.path.join(os.path.dirname(BIN), "trousse-example-channel")
    subprocess.run([example, str(work / "channel")], check=True, capture_output=True)
    for name in tamper:
        for archive in (work / "channel" / "noarch").glob(f"{name}-*"):
            archive.write_bytes(b"not the package the repodata describes")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=work / "channel",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    wait_for(url)
    return server, url


def create_token(work, role, *courses):
    """A trousse token of `role` (for `courses`), made in the data directory of `work`."""
    args = [BIN, "token", "create", "--role", role, "--data-dir", str(work / "data")]
    for course in courses:
        args += ["--course", course]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def wait_built(trousse_url, token, created, seconds=300):
    """The environment `created` once its build is over."""
    deadline = time.time() + seconds
    url = f"{trousse_url}/api/v1/environments/{created['id']}"
    while (env := call(url, token))["status"] not in ("ready", "failed"):
        assert time.time() < deadline, f"{created['name']} was never built"
        time.sleep(0.2)
    return env


def hub_call(url, token, method="GET", body=None):
    """A call of JupyterHub's REST API; its JSON answer (None when empty)."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
        return json.loads(text) if text else None


COMMON_CONFIG = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "{hub_ip}"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{work}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{work}/cookie_secret"
c.JupyterHub.pid_file = "{work}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
"""


DOCKER_SPAWNER_CONFIG = """
import trousse_jupyterhub as trousse
from dockerspawner import DockerSpawner

class CourseSpawner(trousse.TrousseSpawnerMixin, DockerSpawner):
    pass

c.JupyterHub.spawner_class = CourseSpawner
c.Trousse.url = {trousse_url!r}
c.Trousse.api_token = {hub_token!r}
# the spawn page reads the user's environments at each load; the start check uses them
c.DockerSpawner.options_form = trousse.options_form(c)
c.DockerSpawner.allowed_images = trousse.allowed_images(c)
c.DockerSpawner.network_name = {network!r}
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
# the spawn is answered at once (202): its progress is followed, as the spawn page does
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.DockerSpawner.start_timeout = 180
c.DockerSpawner.http_timeout = 120
"""


def docker_spawner_config(trousse_url, hub_token, network):
    """A hub's DockerSpawner with trousse's mixin and callables, on `network`."""
    return DOCKER_SPAWNER_CONFIG.format(
        trousse_url=trousse_url, hub_token=hub_token, network=network
    )


def hub_ports():
    """Three distinct free ports for a hub: its own, its proxy's and the
    proxy's API (held at once while chosen: one after the other, the kernel
    may hand the same just-freed port out twice)."""
    sockets = [socket.socket() for _ in range(3)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in sockets)
    finally:
        for s in sockets:
            s.close()


def start_hub(work, config, hub_ip="127.0.0.1", env=None, ports=None):
    """JupyterHub on `ports` (else free ones) with its files in `work` and `config` on
    top, its log in `work/hub.log`, once its API answers; returns it, its API URL and
    the proxy's URL."""
    hub_port, proxy_port, proxy_api_port = ports or hub_ports()
    common = COMMON_CONFIG.format(
        proxy_port=proxy_port,
        hub_ip=hub_ip,
        hub_port=hub_port,
        proxy_api_port=proxy_api_port,
        work=work,
    )
    (work / "jupyterhub_config.py").write_text(common + config)
    with open(work / "hub.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(work / "jupyterhub_config.py")],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = f"http://{hub_ip}:{hub_port}/hub/api/"
    try:
        wait_for(api, 120)
    except TimeoutError:
        process.terminate()
        raise
    return process, api, f"http://127.0.0.1:{proxy_port}"


def base_image():
    """The debootstrap base, built once per run (and kept in target/ between runs)."""
    cache = HERE.parent.parent / "target" / "hub-base" / HUB_VERSION
    if not (cache / "index.json").exists():
        subprocess.run([str(HERE / "make-base-image"), str(cache), HUB_VERSION], check=True)
    return f"oci:{cache}:base"


def docker_network(name, *options, salt=0):
    """A Docker network of the test's own (`salt` tells apart those of one
    test process); returns its gateway address."""
    third = (os.getpid() + len(options) * 97 + salt * 53) % 250
    subnet = f"172.{29 + os.getpid() % 2}.{third}.0/24"
    subprocess.run(
        ["docker", "network", "create", *options, "--subnet", subnet, name],
        check=True,
        capture_output=True,
    )
    return subnet.replace(".0/24", ".1")


def submit(trousse_url, teacher, channel_url, name, packages, exam=False):
    """A teacher's submission of an environment of the course `intro` (`exam`:
    False, True, or an exam's fields such as its window)."""
    spec = f"name: {name}\nchannels: ['{channel_url}']\ndependencies: [{packages}]\n"
    fields = exam if isinstance(exam, dict) else {"exam": exam}
    body = json.dumps({"spec": spec, **fields}).encode()
    url = f"{trousse_url}/api/v1/courses/intro/environments"
    return call(url, teacher, "POST", body, "application/json")


def submit_and_wait(trousse_url, teacher, channel_url, name, packages, exam=False):
    """A submitted environment, once built."""
    created = submit(trousse_url, teacher, channel_url, name, packages, exam)
    env = wait_built(trousse_url, teacher, created)
    assert env["status"] == "ready", env
    return env


def remove_pulled(trousse_url):
    """Removes the images Docker pulled from this trousse's /v2/."""
    host = trousse_url.removeprefix("http://")
    listed = subprocess.run(
        ["docker", "images", "-q", host + "/*/*"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.split()
    if listed:
        subprocess.run(["docker", "rmi", "-f", *listed], check=False, capture_output=True)


def stop_all(*processes):
    """Stops the processes a fixture started (None: never started), each waited for."""
    for process in processes:
        if process is not None:
            process.terminate()
            process.wait(60)
