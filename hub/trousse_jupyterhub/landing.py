"""Where the browser goes after an LTI launch (the hub's ``default_url``).

The LMS sends the browser to the hub's root (the tool's URL, ``https://HUB/hub/``)
once the launch is signed in; JupyterHub asks its ``default_url`` where to go:

- a teacher: the course on trousse's page (signed in by the hub);
- a student whose launch names an environment: the spawn of that environment
  (``/hub/spawn/USER?environment=COURSE/NAME``), which the spawner mixin
  starts with its rules (the build's progress while it builds, an exam only in
  its window, a failed build refused); with named servers each environment is
  a server of its own;
- anyone else, and any other visit: where JupyterHub sends them itself.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from .courses import TEACHER


def landing_url(handler, launch, teacher_url: str) -> str:
    """The URL a launch lands on (``launch`` None: JupyterHub's usual one)."""
    user = handler.current_user
    if user is not None and launch is not None:
        try:
            if launch.role == TEACHER:
                return teacher_url.format(
                    base_url=handler.base_url, course=quote(launch.course, safe="")
                )
            if launch.environment:
                return student_url(handler, user, launch.course, launch.environment)
        except Exception:  # the hub's root must answer whatever a launch holds
            handler.log.exception("trousse: no landing for %s's launch", user.name)
    return usual_url(handler, user)


def student_url(handler, user, course: str, environment: str) -> str:
    """The spawn of a course environment for a student: a named server of its
    own where the hub allows them, else the user's server, unless that one
    runs another environment (then the hub's home, where it is stopped)."""
    key = f"{course}/{environment}"
    hub = handler.hub.base_url
    spawn = f"{hub}spawn/{user.escaped_name}"
    query = "?" + urlencode({"environment": key})
    if handler.allow_named_servers:
        return f"{spawn}/{quote(course + '-' + environment, safe='')}{query}"
    spawner = user.spawner
    if spawner.active and (spawner.user_options or {}).get("environment") != key:
        return f"{hub}home"
    return spawn + query


def usual_url(handler, user) -> str:
    """Where JupyterHub sends a visitor of its root without a ``default_url``."""
    if user is None:
        return handler.settings["login_url"] + "?" + urlencode({"next": handler.request.uri})
    hub = handler.hub.base_url
    if not handler.redirect_to_server:
        return f"{hub}home"
    return user.url if user.spawner.active else f"{hub}spawn"
