from trousse_jupyterhub import choice_of, choices_for, docker_allowed_images, kubespawner_profiles


def env(course, name, **extra):
    base = {
        "course": course,
        "name": name,
        "image": f"trousse.example.org/{course}/{name}:latest",
        "status": "ready",
        "exam": False,
        "current": True,
        "packages": 12,
    }
    base.update(extra)
    return base


def test_open_exams_first_failed_last_replaced_and_closed_left_out():
    envs = [
        env("stats", "course"),
        env("intro", "week1"),
        env("intro", "exam", exam=True, window={"opens": "x", "closes": "y", "open": True}),
        env("intro", "later", exam=True, window={"opens": "x", "closes": None, "open": False}),
        env("intro", "broken", status="failed"),
        env("intro", "old", current=False),
    ]
    slugs = [c.slug for c in choices_for(envs)]
    assert slugs == ["intro-exam", "intro-week1", "stats-course", "intro-broken"]


def test_a_building_environment_is_offered_under_a_name_that_stays():
    [building] = choices_for([env("intro", "week2", status="building")])
    [ready] = choices_for([env("intro", "week2")])
    assert building.startable
    # DockerSpawner's key: the page shown while building still names it once ready
    assert building.display_name == ready.display_name
    assert docker_allowed_images([building]) == docker_allowed_images([ready])
    # KubeSpawner's profiles show the status (their key is the slug)
    [profile] = kubespawner_profiles([building])
    assert "(building)" in profile["display_name"]


def test_a_choice_is_named_by_its_key_slug_or_image():
    choice = choice_of(env("intro", "week1"))
    assert choice.names("week1 — intro")
    assert choice.names("intro-week1")
    assert choice.names("trousse.example.org/intro/week1:latest")
    assert not choice.names("week1")


def test_kubespawner_profiles_carry_the_image_and_default_url():
    profiles = kubespawner_profiles(
        choices_for([env("intro", "dash", default_url="/voila/render/app.ipynb"), env("zoo", "x")])
    )
    assert [p["slug"] for p in profiles] == ["intro-dash", "zoo-x"]
    assert profiles[0]["default"] and not profiles[1]["default"]
    override = profiles[0]["kubespawner_override"]
    assert override == {
        "image": "trousse.example.org/intro/dash:latest",
        "default_url": "/voila/render/app.ipynb",
    }


def test_docker_allowed_images_map_names_to_images():
    images = docker_allowed_images(choices_for([env("intro", "week1")]))
    assert list(images.values()) == ["trousse.example.org/intro/week1:latest"]


def test_a_closed_exam_is_refused_saying_when():
    import pytest

    from trousse_jupyterhub import ExamClosed, TrousseSpawnerMixin

    check = TrousseSpawnerMixin._trousse_check_window
    closed = env(
        "intro", "final", exam=True, window={"closes": "2020-01-01T00:00:00Z", "open": False}
    )
    with pytest.raises(ExamClosed, match="it closed at 2020-01-01T00:00:00Z"):
        check(closed)
    later = {"opens": "2099-01-01T00:00:00Z", "closes": "2099-01-02T00:00:00Z", "open": False}
    with pytest.raises(ExamClosed, match="its window is 2099-01-01T00:00:00Z to 2099-01-02"):
        check(env("intro", "final", exam=True, window=later))
    check(env("intro", "final", exam=True, window={**later, "open": True}))
