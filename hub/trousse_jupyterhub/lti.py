"""LTI launches into course groups: a ``post_auth_hook`` for
jupyterhub-ltiauthenticator (its LTI 1.3 and LTI 1.1 authenticators).

A launch from a course of the LMS carries that course (the LTI context) and
the user's roles in it; the hook turns them into the groups trousse reads
(``course:NAME`` for a learner, ``teacher:NAME`` for an instructor or a
configured administrator role). With ``c.Authenticator.manage_groups = True``
the groups a launch gives replace those an earlier launch gave: the user is
in the course launched from, and keeps every group that is not a course
group (given by hand, or by another authenticator's rules)::

    c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
    c.Authenticator.manage_groups = True
    c.Authenticator.allow_all = True
    c.Authenticator.post_auth_hook = LtiCourses(config=c)
    c.LtiCourses.course_from = "label"   # or "id", or "custom:trousse_course"
"""

from __future__ import annotations

import re

from traitlets import List, Unicode, validate
from traitlets.config import Configurable

from .courses import STUDENT, TEACHER, CourseMapping

CONTEXT = "https://purl.imsglobal.org/spec/lti/claim/context"
ROLES = "https://purl.imsglobal.org/spec/lti/claim/roles"
CUSTOM = "https://purl.imsglobal.org/spec/lti/claim/custom"

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


class LtiCourses(Configurable):
    """Course groups from an LTI launch's context and roles."""

    course_from = Unicode(
        "label",
        config=True,
        help="What names the trousse course: the context's 'label', its 'id', "
        "or 'custom:NAME' (a custom parameter of the LTI link).",
    )
    instructor_roles = List(
        Unicode(),
        [
            MEMBERSHIP + "Instructor",
            MEMBERSHIP + "ContentDeveloper",
            "Instructor",
            "urn:lti:role:ims/lis/Instructor",
            "ContentDeveloper",
        ],
        config=True,
        help="Roles that make a teacher of the course (LTI 1.3 URIs, LTI 1.1 names).",
    )
    learner_roles = List(
        Unicode(),
        [MEMBERSHIP + "Learner", "Learner", "urn:lti:role:ims/lis/Learner", "Student"],
        config=True,
        help="Roles that make a student of the course.",
    )
    admin_roles = List(
        Unicode(),
        [],
        config=True,
        help="Further roles that make a teacher of the course (e.g. the LMS's "
        "administrators: http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator).",
    )
    student_prefix = Unicode("course:", config=True, help="Group prefix of a course's students.")
    teacher_prefix = Unicode("teacher:", config=True, help="Group prefix of a course's teachers.")

    @validate("course_from")
    def _course_from(self, proposal):
        value = proposal["value"]
        if value in ("label", "id") or (value.startswith("custom:") and len(value) > 7):
            return value
        raise ValueError(f"course_from is 'label', 'id' or 'custom:NAME', not {value!r}")

    def launch(self, auth_state: dict) -> tuple[str | None, str | None]:
        """The trousse course and the user's role in it (``student``/``teacher``), or Nones."""
        course = course_name(self._course_value(auth_state))
        roles = set(_roles(auth_state))
        if roles & set(self.instructor_roles + self.admin_roles):
            role = TEACHER
        elif roles & set(self.learner_roles):
            role = STUDENT
        else:
            role = None
        return (course, role) if course and role else (None, None)

    def groups(self, auth_state: dict, existing) -> list[str]:
        """The user's groups after this launch: its course group, and every
        group the user has that is not a course group."""
        mapping = CourseMapping(self.student_prefix, self.teacher_prefix)
        kept = [
            name
            for name in (_name(g) for g in existing)
            if name and not _course_group(name, mapping)
        ]
        course, role = self.launch(auth_state)
        if course:
            prefix = self.teacher_prefix if role == TEACHER else self.student_prefix
            kept.append(prefix + course)
        return sorted(set(kept))

    def __call__(self, authenticator, handler, authentication):
        """The ``post_auth_hook``: sets ``authentication["groups"]``."""
        auth_state = authentication.get("auth_state") or {}
        user = handler.find_user(authentication["name"]) if handler is not None else None
        existing = list(user.groups) if user is not None else []
        authentication["groups"] = self.groups(auth_state, existing)
        return authentication

    def _course_value(self, auth_state: dict) -> str:
        if self.course_from.startswith("custom:"):
            key = self.course_from[len("custom:") :]
            custom = auth_state.get(CUSTOM) or {}
            # LTI 1.1 sends custom parameters as custom_NAME
            return str(custom.get(key) or auth_state.get("custom_" + key) or "")
        context = auth_state.get(CONTEXT)
        if isinstance(context, dict):
            return str(context.get(self.course_from) or "")
        # LTI 1.1: context_label, context_id
        return str(auth_state.get("context_" + self.course_from) or "")


def course_name(text: str) -> str | None:
    """A course name trousse accepts made of an LMS's (``INTRO-PY 2026`` →
    ``intro-py-2026``), or None when nothing of it is left."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    name = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", name)[:64]
    name = re.sub(r"[^a-z0-9]+$", "", name)
    return name or None


def _roles(auth_state: dict) -> list[str]:
    roles = auth_state.get(ROLES)
    if isinstance(roles, list):
        return [str(r) for r in roles]
    # LTI 1.1: a comma-separated list
    return [r.strip() for r in str(auth_state.get("roles") or "").split(",") if r.strip()]


def _name(group) -> str:
    return group if isinstance(group, str) else getattr(group, "name", "")


def _course_group(name: str, mapping: CourseMapping) -> bool:
    """Whether a group is a course group, valid course name or not."""
    return name.startswith((mapping.student_prefix, mapping.teacher_prefix))
