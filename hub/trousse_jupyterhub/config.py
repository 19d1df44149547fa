"""``c.Trousse``: where trousse is and how groups name courses, configured in
``jupyterhub_config.py`` like the rest of JupyterHub (a typo is reported)."""

from __future__ import annotations

import os

from traitlets import Float, Unicode, default
from traitlets.config import Configurable

from .client import TrousseClient
from .courses import CourseMapping


class TrousseNotConfigured(RuntimeError):
    """trousse's URL or token is missing: the hub cannot list environments."""


class Trousse(Configurable):
    """The trousse service the hub asks for its users' course environments."""

    url = Unicode(
        help="trousse's URL as the hub reaches it, e.g. http://trousse:8080 "
        "[default: $TROUSSE_URL]",
    ).tag(config=True)

    api_token = Unicode(
        help="A trousse token of role hub (`trousse token create --role hub`) "
        "[default: $TROUSSE_API_TOKEN]",
    ).tag(config=True)

    timeout = Float(10.0, help="Seconds one request to trousse may take.").tag(config=True)

    student_prefix = Unicode(
        "course:", help="The prefix of the groups of a course's students."
    ).tag(config=True)

    teacher_prefix = Unicode(
        "teacher:", help="The prefix of the groups of a course's teachers."
    ).tag(config=True)

    @default("url")
    def _default_url(self):
        return os.environ.get("TROUSSE_URL", "")

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get("TROUSSE_API_TOKEN", "")

    def __repr__(self) -> str:
        return f"Trousse(url={self.url!r}, api_token=<redacted>)"

    def check(self) -> Trousse:
        """Raises unless the URL and the token are set."""
        missing = [
            name
            for name, value, env in (
                ("url", self.url, "TROUSSE_URL"),
                ("api_token", self.api_token, "TROUSSE_API_TOKEN"),
            )
            if not value
        ]
        if missing:
            named = ", ".join(f"c.Trousse.{m}" for m in missing)
            raise TrousseNotConfigured(
                f"trousse is not configured: set {named} in jupyterhub_config.py "
                "(or TROUSSE_URL / TROUSSE_API_TOKEN in the hub's environment); "
                "the token is one of role hub: trousse token create --role hub"
            )
        return self

    def client(self) -> TrousseClient:
        """The client of the configured service."""
        self.check()
        return TrousseClient(self.url, self.api_token, self.timeout)

    def mapping(self) -> CourseMapping:
        """How groups name courses."""
        return CourseMapping(self.student_prefix, self.teacher_prefix)
