from types import SimpleNamespace

from trousse_jupyterhub import CourseMapping


def test_groups_name_courses_and_roles():
    groups = ["course:intro-python", "teacher:stats", "course:stats", "staff", "course:Bad Name"]
    assert CourseMapping().courses(groups) == {"intro-python": "student", "stats": "teacher"}


def test_prefixes_are_configurable_and_group_objects_work():
    mapping = CourseMapping(student_prefix="lti-", teacher_prefix="lti-instructor-")
    groups = [SimpleNamespace(name="lti-instructor-maths"), SimpleNamespace(name="lti-physics")]
    assert mapping.courses(groups) == {"maths": "teacher", "physics": "student"}


def test_names_trousse_refuses_are_ignored():
    groups = ["course:", "course:-x", "course:x/../y", "course:" + "a" * 65]
    assert CourseMapping().courses(groups) == {}


def test_a_typo_in_the_settings_is_reported(caplog):
    import logging
    import warnings

    from traitlets.config import Config

    from trousse_jupyterhub import Trousse

    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        Trousse(config=Config({"Trousse": {"urll": "http://trousse:8080"}}))
    said = caplog.text + "".join(str(w.message) for w in warned)
    # traitlets names the option and the one meant (JupyterHub logs it at start)
    assert "urll" in said and "not recognized" in said and "url" in said, said
