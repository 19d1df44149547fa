"""LTI launches into course groups (the post_auth_hook), on the claims
jupyterhub-ltiauthenticator hands over: LTI 1.3's id_token, LTI 1.1's
launch parameters."""

import copy
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from trousse_jupyterhub.lti import (
    CONTEXT,
    CUSTOM,
    MEMBERSHIP,
    RESOURCE_LINK,
    ROLES,
    LtiCourses,
    course_name,
)


def lti13(label="INTRO", context_id="c-42", roles=("Learner",), custom=None):
    state = {
        CONTEXT: {"id": context_id, "label": label, "title": "Intro to Python"},
        ROLES: [MEMBERSHIP + r for r in roles],
        "sub": "u1",
    }
    if custom is not None:
        state[CUSTOM] = custom
    return state


class Handler:
    """What the hook reads of JupyterHub's handler: the user, if known."""

    def __init__(self, users):
        self.users = users

    def find_user(self, name):
        groups = self.users.get(name)
        if groups is None:
            return None
        return SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups])


def run(hook, state, existing=None):
    handler = Handler({"ada": existing} if existing is not None else {})
    return hook(None, handler, {"name": "ada", "auth_state": state})["groups"]


def test_a_learner_joins_the_course_and_an_instructor_teaches_it():
    hook = LtiCourses()
    assert run(hook, lti13()) == ["course:intro"]
    assert run(hook, lti13(roles=("Instructor",))) == ["teacher:intro"]
    # an instructor who is also a learner teaches
    assert run(hook, lti13(roles=("Learner", "Instructor"))) == ["teacher:intro"]


def test_a_launch_replaces_the_course_groups_of_the_last_one_and_keeps_the_others():
    groups = run(LtiCourses(), lti13(label="stats"), ["course:intro", "teacher:old", "staff"])
    assert groups == ["course:stats", "staff"]


def test_the_course_comes_from_the_label_the_id_or_a_custom_parameter():
    state = lti13(
        label="Intro Python 2026", context_id="MOODLE_17", custom={"trousse_course": "py1"}
    )
    assert run(LtiCourses(), state) == ["course:intro-python-2026"]
    by_id = LtiCourses(config=Config({"LtiCourses": {"course_from": "id"}}))
    assert run(by_id, state) == ["course:moodle_17"]
    custom = LtiCourses(config=Config({"LtiCourses": {"course_from": "custom:trousse_course"}}))
    assert run(custom, state) == ["course:py1"]
    with pytest.raises(Exception, match="course_from"):
        LtiCourses(course_from="title")


def test_without_a_context_or_a_known_role_no_course_is_given():
    assert run(LtiCourses(), {"sub": "u1"}, ["course:intro"]) == []
    assert run(LtiCourses(), lti13(roles=("Mentor",)), ["x"]) == ["x"]
    assert run(LtiCourses(), lti13(label="!!!")) == []


def test_administrators_teach_when_configured():
    admin = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"
    state = lti13(roles=())
    state[ROLES] = [admin]
    assert run(LtiCourses(), state) == []
    hook = LtiCourses(config=Config({"LtiCourses": {"admin_roles": [admin]}}))
    assert run(hook, state) == ["teacher:intro"]


def test_lti11_launch_parameters_give_the_same_groups():
    params = {
        "context_label": "INTRO",
        "context_id": "7",
        "roles": "Learner,urn:lti:role:ims/lis/TeachingAssistant",
    }
    assert run(LtiCourses(), params) == ["course:intro"]
    params["roles"] = "urn:lti:role:ims/lis/Instructor"
    params["custom_trousse_course"] = "py"
    custom = LtiCourses(config=Config({"LtiCourses": {"course_from": "custom:trousse_course"}}))
    assert run(custom, params) == ["teacher:py"]


def test_course_names_are_made_from_any_label():
    assert course_name("  INTRO-PY 2026 ") == "intro-py-2026"
    assert course_name("Mécanique (L1)") == "m-canique-l1"
    assert course_name("---") is None
    assert len(course_name("a" * 100)) == 64


def test_the_environment_comes_from_a_custom_parameter_or_the_link_title():
    state = lti13(custom={"trousse_environment": "Week 1"})
    state[RESOURCE_LINK] = {"id": "r", "title": "Final exam"}
    assert LtiCourses().environment(state) == "week-1"
    titled = LtiCourses(config=Config({"LtiCourses": {"environment_from": ["title"]}}))
    assert titled.environment(state) == "final-exam"
    # tried in order: the custom parameter first, the title when it is missing
    both = ["custom:trousse_environment", "title"]
    either = LtiCourses(config=Config({"LtiCourses": {"environment_from": both}}))
    assert either.environment(lti13() | {RESOURCE_LINK: {"title": "Week 2"}}) == "week-2"
    assert LtiCourses().environment(lti13()) is None
    # LTI 1.1
    assert LtiCourses().environment({"custom_trousse_environment": "quiz"}) == "quiz"
    assert titled.environment({"resource_link_title": "Lab 3"}) == "lab-3"
    with pytest.raises(Exception, match="environment_from"):
        LtiCourses(environment_from=["label"])


def options(running):
    """A server's options, as the mixin leaves them: DockerSpawner's image key
    (``COURSE/NAME:docker``) or KubeSpawner's profile (``COURSE/NAME:kube``)."""
    if running is None:
        return {}
    key, _, spawner = running.partition(":")
    course, name = key.split("/")
    return (
        {"image": f"{name} — {course}"} if spawner == "docker" else {"profile": f"{course}-{name}"}
    )


class Landing:
    """What the landing reads of a JupyterHub handler and its user."""

    def __init__(self, user=None, named=False, running=None):
        self.current_user = user and SimpleNamespace(
            name=user,
            escaped_name=user,
            url=f"/user/{user}/",
            spawner=SimpleNamespace(active=running is not None, user_options=options(running)),
        )
        self.hub = SimpleNamespace(base_url="/hub/")
        self.base_url = "/"
        self.allow_named_servers = named
        self.redirect_to_server = True
        self.settings = {"login_url": "/hub/login"}
        self.request = SimpleNamespace(uri="/hub/", path="/hub/")


def keep(hook, roles=("Learner",), environment="week1"):
    """The hook run on ada's launch."""
    state = lti13(roles=roles, custom={"trousse_environment": environment})
    hook(None, Handler({}), {"name": "ada", "auth_state": state})


def launched(hook, roles=("Learner",), environment="week1", **changes):
    """Where ada's launch lands."""
    keep(hook, roles, environment)
    return hook.landing(Landing("ada", **changes))


def test_a_student_lands_on_the_environment_s_spawn_once():
    hook = LtiCourses()
    assert launched(hook) == "/hub/spawn/ada?environment=intro%2Fweek1"
    # JupyterHub's configuration deep-copies the hook and the landing: still one
    landing = copy.deepcopy(hook.landing)
    keep(copy.deepcopy(hook))
    assert landing(Landing("ada")) == "/hub/spawn/ada?environment=intro%2Fweek1"
    # the launch is used once: the next visit of the hub's root goes where it would
    assert hook.landing(Landing("ada")) == "/hub/spawn"
    assert hook.landing(Landing("ada", running="intro/week1:docker")) == "/user/ada/"
    assert hook.landing(Landing()) == "/hub/login?next=%2Fhub%2F"
    # asked by the login page itself: no login page sent to itself
    at_login = Landing()
    at_login.request = SimpleNamespace(uri="/hub/login?next=x", path="/hub/login")
    assert hook.landing(at_login) == "/hub/home"


def test_a_running_server_of_another_environment_and_named_servers():
    hook = LtiCourses()
    spawn = "/hub/spawn/ada?environment=intro%2Fweek1"
    # the same environment (DockerSpawner's or KubeSpawner's): its spawn, which
    # JupyterHub sends on to the running server
    assert launched(hook, running="intro/week1:docker") == spawn
    assert launched(hook, running="intro/week1:kube") == spawn
    # another one: the hub's home, where the student stops it
    assert launched(hook, running="intro/week2:docker") == "/hub/home"
    assert launched(hook, running="intro-week1/x:kube") == "/hub/home"
    # with named servers, each environment is a server of its own
    named = launched(hook, named=True, running="intro/week2:docker")
    assert named == "/hub/spawn/ada/intro~week1?environment=intro%2Fweek1"


def test_a_teacher_lands_on_the_course_and_a_launch_without_environment_where_it_would():
    hook = LtiCourses()
    teacher = launched(hook, roles=("Instructor",))
    assert teacher == "/services/trousse/sign-in/hub?course=intro"
    assert launched(hook, environment="") == "/hub/spawn"
    # a stale launch is forgotten
    stale = LtiCourses(config=Config({"LtiCourses": {"launch_seconds": 0.0}}))
    assert launched(stale) == "/hub/spawn"


def test_settings_given_after_the_hook_is_built_count():
    # jupyterhub_config.py may build the hook first and set c.LtiCourses after
    config = Config()
    hook = LtiCourses(config=config)
    config.LtiCourses.course_from = "id"
    config.LtiCourses.environment_from = ["title"]
    state = lti13(context_id="C-9") | {RESOURCE_LINK: {"title": "Lab 2"}}
    assert run(hook, state) == ["course:c-9"]
    assert hook.landing(Landing("ada")) == "/hub/spawn/ada?environment=c-9%2Flab-2"
