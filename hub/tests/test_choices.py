from trousse_jupyterhub import choices_for, docker_allowed_images, kubespawner_profiles


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


def test_exams_first_failed_and_replaced_left_out():
    envs = [
        env("stats", "course"),
        env("intro", "week1"),
        env("intro", "exam", exam=True),
        env("intro", "broken", status="failed"),
        env("intro", "old", current=False),
    ]
    slugs = [c.slug for c in choices_for(envs)]
    assert slugs == ["intro-exam", "intro-week1", "stats-course"]


def test_a_building_environment_is_offered_and_says_so():
    [choice] = choices_for([env("intro", "week2", status="building")])
    assert choice.startable
    assert "(building)" in choice.display_name


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
