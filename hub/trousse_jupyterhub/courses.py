"""Course membership read from JupyterHub groups."""

from __future__ import annotations

from dataclasses import dataclass

STUDENT = "student"
TEACHER = "teacher"


@dataclass(frozen=True)
class CourseMapping:
    """How group names say who is in which course.

    ``course:intro-python`` makes a student of course ``intro-python``,
    ``teacher:intro-python`` a teacher. An LTI launch from Moodle
    (jupyterhub-ltiauthenticator) gives the same groups when the
    authenticator's ``auth_state`` hook (or a ``post_auth_hook``) adds the
    context: see docs/jupyterhub.md.
    """

    student_prefix: str = "course:"
    teacher_prefix: str = "teacher:"

    def courses(self, groups) -> dict[str, str]:
        """The courses of a user's groups, each with the user's role in it."""
        found: dict[str, str] = {}
        for group in groups:
            name = group if isinstance(group, str) else getattr(group, "name", "")
            if name.startswith(self.teacher_prefix):
                course = name[len(self.teacher_prefix) :]
                if _valid(course):
                    found[course] = TEACHER
            elif name.startswith(self.student_prefix):
                course = name[len(self.student_prefix) :]
                if _valid(course):
                    found.setdefault(course, STUDENT)
        return dict(sorted(found.items()))


def _valid(course: str) -> bool:
    """Whether a course name is one trousse accepts (a-z, 0-9, '.', '_', '-')."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
    return (
        0 < len(course) <= 64
        and set(course) <= allowed
        and course[0].isalnum()
        and course[-1].isalnum()
    )
