"""The hub package against a real `trousse serve` (the binary of this
repository, TROUSSE_BIN), with an environment built from the example channel."""

import asyncio
import json
import shutil
import urllib.error
from types import SimpleNamespace

import pytest
from support import BIN, call, create_token, example_channel, start_serve, wait_built, wait_for
from traitlets.config import Config

from trousse_jupyterhub import (
    EnvironmentFailed,
    EnvironmentNotFound,
    ExamClosed,
    Trousse,
    TrousseClient,
    TrousseNotConfigured,
    TrousseSpawnerMixin,
    allowed_images,
    options_form,
    profile_list,
)

pytestmark = pytest.mark.skipif(
    not BIN, reason="TROUSSE_BIN names the trousse binary (scripts/test sets it)"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    work = tmp_path_factory.mktemp("trousse")
    # pyhello's archive no longer matches the repodata: its build fails at fetch
    channel, channel_url = example_channel(work, tamper=["pyhello"])
    serve, url = start_serve(work, "--allow-channel", channel_url)
    try:
        wait_for(f"{url}/health")

        admin, hub = create_token(work, "admin"), create_token(work, "hub")
        spec = f"name: week1\nchannels: ['{channel_url}']\ndependencies: [greet]\n"
        created = call(
            f"{url}/api/v1/courses/intro-python/environments", admin, "POST", spec.encode()
        )
        assert wait_built(url, admin, created, seconds=120)["status"] == "ready", "never built"
        yield SimpleNamespace(url=url, hub=hub, admin=admin, channel=channel_url)
    finally:
        for process in (serve, channel):
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


def spawner(*groups):
    return SimpleNamespace(user=SimpleNamespace(name="ada", groups=list(groups)))


def hub_config(service):
    """A jupyterhub_config.py's ``c.Trousse``, for this service."""
    config = Config()
    config.Trousse.url = service.url
    config.Trousse.api_token = service.hub
    return config


def test_a_student_sees_the_environments_of_her_courses(service):
    config = hub_config(service)
    student = spawner("course:intro-python")
    # DockerSpawner's images are those the form (each page load) read last
    assert allowed_images(config)(student) == {}
    asyncio.run(options_form(config)(student))
    images = allowed_images(config)(student)
    assert len(images) == 1
    [image] = images.values()
    assert image.endswith("/intro-python/week1:latest"), image
    profiles = asyncio.run(profile_list(config)(spawner("course:intro-python")))
    assert profiles[0]["kubespawner_override"]["image"] == image


def test_a_student_outside_the_course_sees_nothing(service):
    config = hub_config(service)
    outsider = spawner("course:other", "staff")
    assert asyncio.run(options_form(config)(outsider)) == ""
    assert allowed_images(config)(outsider) == {}


def test_the_token_never_shows(service):
    assert service.hub not in repr(TrousseClient(service.url, service.hub))
    assert service.hub not in repr(Trousse(config=hub_config(service)))


def test_settings_are_configuration_and_a_missing_one_is_said_at_once(service, monkeypatch):
    monkeypatch.delenv("TROUSSE_URL", raising=False)
    monkeypatch.delenv("TROUSSE_API_TOKEN", raising=False)
    with pytest.raises(TrousseNotConfigured, match="c.Trousse.url, c.Trousse.api_token"):
        allowed_images(Config())
    with pytest.raises(TrousseNotConfigured, match="c.Trousse.api_token"):
        profile_list(Config({"Trousse": {"url": service.url}}))
    # the environment variables existing hubs set still work
    monkeypatch.setenv("TROUSSE_URL", service.url)
    monkeypatch.setenv("TROUSSE_API_TOKEN", service.hub)
    assert Trousse().check().url == service.url
    # the mixin's own settings are traits: set per spawner class, a typo reported
    config = hub_config(service)
    config.Spawner.trousse_exam_network = "exam-net"
    assert Spawner(config, "x").trousse_exam_network == "exam-net"


class FakeSpawnerBase:
    """What the mixin needs of a JupyterHub spawner: start, progress, a user."""

    started = False

    async def start(self):
        self.started = True
        return ("127.0.0.1", 8888)

    async def progress(self):
        yield {"message": "Server starting"}

    def options_from_query(self, query):
        return {"spawner's": query}


class Spawner(TrousseSpawnerMixin, FakeSpawnerBase):
    def __init__(self, config, image, *groups):
        super().__init__(config=config)
        self.user_options = {"image": image}
        self.user = SimpleNamespace(name="ada", groups=list(groups))


def submit(service, course, name, packages):
    channel = service.channel
    spec = f"name: {name}\nchannels: ['{channel}']\ndependencies: [{', '.join(packages)}]\n"
    url = f"{service.url}/api/v1/courses/{course}/environments"
    return call(url, service.admin, "POST", spec.encode())


async def spawn(spawner):
    messages = []

    async def watch():
        async for event in spawner.progress():
            messages.append(event["message"])

    watcher = asyncio.ensure_future(watch())
    try:
        return await spawner.start(), messages
    finally:
        await asyncio.wait_for(watcher, 10)


def test_a_spawn_waits_for_a_building_environment_and_shows_its_progress(service):
    created = submit(service, "intro-python", "week2", ["hello-prefix", "greet"])
    spawner = Spawner(hub_config(service), created["image"], "course:intro-python")
    address, messages = asyncio.run(spawn(spawner))
    assert address == ("127.0.0.1", 8888) and spawner.started
    assert "Environment ready" in messages, messages
    assert messages[-1] == "Server starting", messages


def test_a_failed_environment_refuses_the_spawn_with_its_error(service):
    created = submit(service, "intro-python", "broken", ["pyhello"])
    spawner = Spawner(hub_config(service), created["image"], "course:intro-python")
    with pytest.raises(EnvironmentFailed, match="broken failed to build"):
        asyncio.run(spawn(spawner))
    assert not spawner.started


def test_a_profile_opens_the_environment_default_url(service):
    spec = (
        f"name: dash\nchannels: ['{service.channel}']\ndependencies: [greet]\n"
        "trousse:\n  default_url: /voila/render/app.ipynb\n"
    )
    url = f"{service.url}/api/v1/courses/dashboards/environments"
    created = call(url, service.admin, "POST", spec.encode())
    config = hub_config(service)
    spawner = Spawner(config, created["image"], "course:dashboards")
    asyncio.run(spawn(spawner))  # waits until it is built
    profiles = asyncio.run(profile_list(config)(spawner))
    assert profiles[0]["kubespawner_override"]["default_url"] == "/voila/render/app.ipynb"


def test_an_exam_server_gets_the_exam_network_and_labels(service):
    spec = f"name: final\nchannels: ['{service.channel}']\ndependencies: [greet]\n"
    body = json.dumps({"spec": spec, "exam": True}).encode()
    url = f"{service.url}/api/v1/courses/exams/environments"
    created = call(url, service.admin, "POST", body, "application/json")
    config = hub_config(service)
    config.Spawner.trousse_exam_network = "exam-net"
    spawner = Spawner(config, created["image"], "course:exams")
    spawner.network_name, spawner.extra_labels = "course-net", {"app": "jupyterhub"}
    asyncio.run(spawn(spawner))
    assert spawner.network_name == "exam-net"
    assert spawner.extra_labels == {"app": "jupyterhub", "trousse.io/exam": "true"}
    # the same user's next server, of a course environment, is back on the course network
    week = submit(service, "intro-python", "week3", ["greet"])
    spawner.user_options = {"image": week["image"]}
    spawner.user.groups = ["course:intro-python"]
    asyncio.run(spawn(spawner))
    assert spawner.network_name == "course-net"
    assert spawner.extra_labels == {"app": "jupyterhub"}


def test_an_exam_is_listed_and_started_only_within_its_window(service):
    spec = f"name: midterm\nchannels: ['{service.channel}']\ndependencies: [greet]\n"
    later = {"spec": spec, "exam": True, "opens": "2099-01-01T09:00:00+01:00"}
    url = f"{service.url}/api/v1/courses/exam-window/environments"
    created = call(url, service.admin, "POST", json.dumps(later).encode(), "application/json")
    assert created["window"] == {"opens": "2099-01-01T08:00:00Z", "closes": None, "open": False}
    config = hub_config(service)
    student = spawner("course:exam-window")
    assert asyncio.run(profile_list(config)(student)) == []
    closed = Spawner(config, created["image"], "course:exam-window")
    with pytest.raises(ExamClosed, match="opens at 2099-01-01T08:00:00Z"):
        asyncio.run(spawn(closed))
    assert not closed.started
    # the teacher opens it now: it is listed first and starts
    window = f"{service.url}/api/v1/courses/exam-window/exams/midterm/window"
    body = json.dumps({"opens": "2020-01-01T00:00:00Z", "closes": "2099-01-01T00:00:00Z"})
    opened = call(window, service.admin, "PUT", body.encode(), "application/json")
    assert opened["window"]["open"] is True
    [profile] = asyncio.run(profile_list(config)(student))
    assert profile["slug"] == "exam-window-midterm"
    started = Spawner(config, profile["kubespawner_override"]["image"], "course:exam-window")
    asyncio.run(spawn(started))
    assert started.started
    # a course environment has no window
    bad = json.dumps({"closes": "2099-01-01T00:00:00Z"}).encode()
    listed = call(f"{service.url}/api/v1/courses/intro-python/environments", service.admin)
    assert all(env["window"] is None for env in listed["environments"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(
            f"{service.url}/api/v1/courses/intro-python/exams/week1/window",
            service.admin,
            "PUT",
            bad,
            "application/json",
        )
    assert refused.value.code == 404
    assert "not an exam" in json.loads(refused.value.read())["message"]


class Db:
    """JupyterHub's database session, as the mixin uses it."""

    commits = 0

    def commit(self):
        self.commits += 1


class DockerLike(Spawner):
    """Has DockerSpawner's allowed images: the mixin sets its image key."""

    def _get_allowed_images(self):
        return {}


class KubeLike(Spawner):
    """Has KubeSpawner's profile list: the mixin sets its profile."""

    profile_list = ()


def launched(spawner_class, service, named, *groups):
    """A spawner started as a launch asks (``?environment=``), JupyterHub
    having saved the query's options; returns it and its saved options."""
    spawner = spawner_class(hub_config(service), None, *groups)
    spawner.user_options = spawner.options_from_query({"environment": [named]})
    spawner.orm_spawner = SimpleNamespace(user_options=dict(spawner.user_options))
    spawner.db = Db()
    return spawner


def test_a_launch_names_its_environment_and_what_is_kept_is_what_it_resolved_to(service):
    assert Spawner(hub_config(service), None).options_from_query({"image": ["x"]}) == {
        "spawner's": {"image": ["x"]}
    }
    for spawner_class, kept in (
        (DockerLike, {"image": "week1 — intro-python"}),
        (KubeLike, {"profile": "intro-python-week1"}),
    ):
        spawner = launched(spawner_class, service, "intro-python/week1", "course:intro-python")
        asyncio.run(spawn(spawner))
        assert spawner.started
        # a later start without options (JupyterHub reuses the saved ones) starts
        # the same environment, by the spawner's own key
        assert spawner.user_options == kept and spawner.orm_spawner.user_options == kept
        assert spawner.db.commits == 1


def test_a_launch_naming_no_environment_of_the_user_s_courses_is_refused(service):
    for named, groups in (("intro-python/nope", "course:intro-python"), ("intro-python/week1", "")):
        refused = launched(DockerLike, service, named, groups)
        with pytest.raises(EnvironmentNotFound, match=f"no environment {named} in your courses"):
            asyncio.run(spawn(refused))
        assert not refused.started
        # nothing of the refused request is kept for the next start
        assert refused.user_options == {} and refused.orm_spawner.user_options == {}
