"""A small client of trousse's API, on tornado (which JupyterHub runs on)."""

from __future__ import annotations

import json
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


class TrousseClient:
    """Reads the environments of courses with a token (the hub's)."""

    def __init__(self, url: str, token: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"TrousseClient({self.url!r}, token=<redacted>)"

    async def environments(self, course: str) -> list[dict]:
        """The environments of one course (none when trousse does not know it)."""
        url = f"{self.url}/api/v1/courses/{quote(course, safe='')}/environments"
        request = HTTPRequest(
            url,
            headers={"Authorization": f"Bearer {self._token}"},
            request_timeout=self.timeout,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 404:
            return []
        if response.code != 200:
            raise RuntimeError(f"trousse answered {response.code} for {url}")
        body = json.loads(response.body)
        return body.get("environments", body if isinstance(body, list) else [])

    async def environments_of(self, courses) -> list[dict]:
        """The environments of several courses, in course order."""
        found = []
        for course in courses:
            found.extend(await self.environments(course))
        return found
