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
    c.LtiCourses.course_from = "label"   # or "id", or "custom:trousse_course"
    launches = LtiCourses(config=c)
    c.Authenticator.post_auth_hook = launches
    c.JupyterHub.default_url = launches.landing

A launch may also name an environment of the course (the link's custom
parameter ``trousse_environment=week1``, or its title): the hook keeps the
launch, and ``landing`` (the hub's ``default_url``) sends the browser on
(see ``landing.py``): a student to that environment's server, a teacher to
the course on trousse's page.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from traitlets import Float, List, Unicode, validate
from traitlets.config import Configurable

from .courses import STUDENT, TEACHER, CourseMapping
from .landing import landing_url

CONTEXT = "https://purl.imsglobal.org/spec/lti/claim/context"
ROLES = "https://purl.imsglobal.org/spec/lti/claim/roles"
CUSTOM = "https://purl.imsglobal.org/spec/lti/claim/custom"
RESOURCE_LINK = "https://purl.imsglobal.org/spec/lti/claim/resource_link"

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


@dataclass(frozen=True)
class Launch:
    """What one launch asked for: a course, the user's role in it, maybe an environment."""

    course: str
    role: str
    environment: str | None
    at: float


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
    environment_from = List(
        Unicode(),
        ["custom:trousse_environment"],
        config=True,
        help="Where a launch names the course's environment, tried in order: "
        "'custom:NAME' (a custom parameter of the LTI link) or 'title' (the "
        "resource link's title). Empty: no launch goes straight to a server.",
    )
    teacher_url = Unicode(
        "{base_url}services/trousse/sign-in/hub?course={course}",
        config=True,
        help="Where a teacher's launch goes ({course}: the course's name, "
        "{base_url}: the hub's base URL): by default trousse's page as the hub's "
        "service 'trousse', signed in by the hub.",
    )
    launch_seconds = Float(
        60.0,
        config=True,
        help="How long a launch waits for the browser's landing (the hub's "
        "default_url) before it is forgotten.",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: the last launch of each user, until its landing
        self._launches: dict[str, Launch] = {}
        self._settled = False

    def _settle(self) -> None:
        """Reads ``c.LtiCourses`` again at the first launch: jupyterhub_config.py
        may set it after building the hook (traitlets reads it when built)."""
        if not self._settled:
            self._settled = True
            self.update_config(self.config)

    def __deepcopy__(self, memo):
        """Itself: traitlets deep-copies configured values, and the hook and its
        landing (``default_url``) must share the launches kept between them."""
        return self

    @validate("course_from")
    def _course_from(self, proposal):
        value = proposal["value"]
        if value in ("label", "id") or _custom_key(value):
            return value
        raise ValueError(f"course_from is 'label', 'id' or 'custom:NAME', not {value!r}")

    @validate("environment_from")
    def _environment_from(self, proposal):
        for value in proposal["value"]:
            if value != "title" and not _custom_key(value):
                raise ValueError(f"environment_from holds 'title' or 'custom:NAME', not {value!r}")
        return proposal["value"]

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

    def groups(self, course: str | None, role: str | None, existing) -> list[str]:
        """The user's groups after a launch (its course and the user's role in
        it, as ``launch`` reads them): that course group, and every group the
        user has that is not a course group."""
        mapping = CourseMapping(self.student_prefix, self.teacher_prefix)
        kept = [
            name
            for name in (_name(g) for g in existing)
            if name and not _course_group(name, mapping)
        ]
        if course:
            prefix = self.teacher_prefix if role == TEACHER else self.student_prefix
            kept.append(prefix + course)
        return sorted(set(kept))

    def environment(self, auth_state: dict) -> str | None:
        """The environment a launch names (normalized as trousse names are), or None."""
        for source in self.environment_from:
            if source == "title":
                link = auth_state.get(RESOURCE_LINK)
                # LTI 1.1: resource_link_title
                value = link.get("title") if isinstance(link, dict) else None
                value = value or auth_state.get("resource_link_title")
            else:
                value = _custom(auth_state, _custom_key(source))
            name = course_name(str(value or ""))
            if name:
                return name
        return None

    def __call__(self, authenticator, handler, authentication):
        """The ``post_auth_hook``: sets ``authentication["groups"]`` and keeps
        the launch for the browser's landing."""
        self._settle()
        auth_state = authentication.get("auth_state") or {}
        name = authentication["name"]
        user = handler.find_user(name) if handler is not None else None
        existing = list(user.groups) if user is not None else []
        course, role = self.launch(auth_state)
        authentication["groups"] = self.groups(course, role, existing)
        self._keep(name, course, role, auth_state)
        return authentication

    def _keep(self, name: str, course: str | None, role: str | None, auth_state: dict) -> None:
        """Keeps the user's launch (the last one wins), and forgets stale ones."""
        now = time.monotonic()
        for stale in [
            n for n, kept in self._launches.items() if now - kept.at >= self.launch_seconds
        ]:
            del self._launches[stale]
        self._launches.pop(name, None)
        if course and role:
            self._launches[name] = Launch(course, role, self.environment(auth_state), now)

    def landing(self, handler) -> str:
        """The hub's ``default_url``: where the browser goes after a launch
        (once), else where JupyterHub would send it."""
        self._settle()
        user = handler.current_user
        launch = self._launches.pop(user.name, None) if user is not None else None
        if launch is not None and time.monotonic() - launch.at >= self.launch_seconds:
            launch = None
        return landing_url(handler, user, launch, self.teacher_url)

    def _course_value(self, auth_state: dict) -> str:
        key = _custom_key(self.course_from)
        if key:
            return str(_custom(auth_state, key) or "")
        context = auth_state.get(CONTEXT)
        if isinstance(context, dict):
            return str(context.get(self.course_from) or "")
        # LTI 1.1: context_label, context_id
        return str(auth_state.get("context_" + self.course_from) or "")


def course_name(text: str) -> str | None:
    """A course (or environment) name trousse accepts made of an LMS's (``INTRO-PY 2026`` →
    ``intro-py-2026``), or None when nothing of it is left."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    name = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", name)[:64]
    name = re.sub(r"[^a-z0-9]+$", "", name)
    return name or None


def _custom_key(source: str) -> str | None:
    """NAME of a ``custom:NAME`` source, else None."""
    if source.startswith("custom:") and len(source) > len("custom:"):
        return source[len("custom:") :]
    return None


def _custom(auth_state: dict, key: str):
    """A custom parameter of the launch (LTI 1.1 sends them as ``custom_NAME``)."""
    custom = auth_state.get(CUSTOM)
    value = custom.get(key) if isinstance(custom, dict) else None
    return value or auth_state.get("custom_" + key)


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
