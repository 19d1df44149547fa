"""LTI launches into course groups (the post_auth_hook), on the claims
jupyterhub-ltiauthenticator hands over: LTI 1.3's id_token, LTI 1.1's
launch parameters."""

from types import SimpleNamespace

import pytest
from traitlets.config import Config

from trousse_jupyterhub.lti import CONTEXT, CUSTOM, MEMBERSHIP, ROLES, LtiCourses, course_name


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
