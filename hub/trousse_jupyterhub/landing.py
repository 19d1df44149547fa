"""Where the browser goes after an LTI launch (the hub's ``default_url``).

The LMS sends the browser to the hub's root (the tool's URL, ``https://HUB/hub/``)
once the launch is signed in; JupyterHub asks its ``default_url`` where to go:

- a teacher: the course on trousse's page (signed in by the hub);
- a student whose launch names an environment: the spawn of that environment
  (``/hub/spawn/USER?environment=COURSE/NAME``), which the spawner mixin
  starts with its rules (the build's progress while it builds, an exam only in
  its window, a failed build refused); with named servers each environment is
  a server of its own, ``COURSE~NAME`` (``~`` is in no trousse name);
- anyone else, and any other visit: where JupyterHub sends them itself.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from .choices import choice_keys
from .courses import TEACHER


def landing_url(handler, user, launch, teacher_url: str) -> str:
    """The URL `user`'s launch lands on (``launch`` None: JupyterHub's usual one)."""
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
    hub = handler.hub.base_url
    spawn = f"{hub}spawn/{user.escaped_name}"
    query = "?" + urlencode({"environment": f"{course}/{environment}"})
    if handler.allow_named_servers:
        return f"{spawn}/{quote(server_name(course, environment), safe='')}{query}"
    spawner = user.spawner
    if spawner.active and not runs(spawner, course, environment):
        return f"{hub}home"
    return spawn + query


def server_name(course: str, environment: str) -> str:
    """The named server of an environment: one per environment, no two alike."""
    return f"{course}~{environment}"


def runs(spawner, course: str, environment: str) -> bool:
    """Whether a server was started with the environment (its image key or profile)."""
    options = spawner.user_options or {}
    image_key, profile = choice_keys(course, environment)
    return options.get("image") == image_key or options.get("profile") == profile


def usual_url(handler, user) -> str:
    """Where JupyterHub sends a visitor of its root without a ``default_url``:
    the login (back here after it), else a valid ``?next=``, the user's server
    or its spawn, or the hub's home."""
    hub = handler.hub.base_url
    if user is None:
        login = handler.settings["login_url"]
        if handler.request.path == login:
            return f"{hub}home"  # as JupyterHub does: no login page sent to itself
        return login + "?" + urlencode({"next": handler.request.uri})
    if not handler.redirect_to_server:
        usual = f"{hub}home"
    else:
        usual = user.url if user.spawner.active else f"{hub}spawn"
    return _next_or(handler, user, usual)


def _next_or(handler, user, usual: str) -> str:
    """JupyterHub's own reading of ``?next=`` (it refuses other hosts), else
    `usual`. Called as the base handler's: LTI's callback handler reads its
    state there instead."""
    try:
        from jupyterhub.handlers.base import BaseHandler
    except ImportError:  # not in a hub
        return usual
    if isinstance(handler, BaseHandler):
        return BaseHandler.get_next_url(handler, user, default=usual)
    return usual
