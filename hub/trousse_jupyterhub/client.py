"""A small client of trousse's API, on tornado (which JupyterHub runs on)."""

from __future__ import annotations

import asyncio
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

    def _environments_url(self, course: str) -> str:
        return f"{self.url}/api/v1/courses/{quote(course, safe='')}/environments"

    @staticmethod
    def _environments_in(code: int, body: bytes, url: str) -> list[dict]:
        """The environments of an answer (none for a course trousse does not know)."""
        if code == 404:
            return []
        if code != 200:
            raise RuntimeError(f"trousse answered {code} for {url}")
        found = json.loads(body)
        return found.get("environments", found if isinstance(found, list) else [])

    async def environments(self, course: str) -> list[dict]:
        """The environments of one course (none when trousse does not know it)."""
        url = self._environments_url(course)
        request = HTTPRequest(
            url,
            headers={"Authorization": f"Bearer {self._token}"},
            request_timeout=self.timeout,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        return self._environments_in(response.code, response.body, url)

    async def report_launch(self, environment_id: str, user: str) -> None:
        """Tells trousse that `user`'s server started from an environment (for its traces)."""
        url = f"{self.url}/api/v1/environments/{quote(environment_id, safe='')}/launches"
        request = HTTPRequest(
            url,
            method="POST",
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            body=json.dumps({"user": user}),
            request_timeout=self.timeout,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code not in (200, 204):
            raise RuntimeError(f"trousse answered {response.code} for {url}")

    async def environments_of(self, courses) -> list[dict]:
        """The environments of several courses, in course order."""
        found = []
        for course in courses:
            found.extend(await self.environments(course))
        return found


def parse_events(text: str):
    """The JSON data of the complete server-sent events in `text`, and the rest."""
    events = []
    while "\n\n" in text:
        block, text = text.split("\n\n", 1)
        data = "\n".join(
            line[len("data:") :].lstrip() for line in block.split("\n") if line.startswith("data:")
        )
        if data:
            try:
                events.append(json.loads(data))
            except ValueError:
                continue
    return events, text


async def follow(client: TrousseClient, environment_id: str):
    """An environment's build events, as they come, until the last (`done`)."""
    queue: asyncio.Queue = asyncio.Queue()
    buffer = ""

    def on_chunk(chunk: bytes):
        nonlocal buffer
        events, buffer = parse_events(buffer + chunk.decode("utf-8", "replace"))
        for event in events:
            queue.put_nowait(event)

    url = f"{client.url}/api/v1/environments/{quote(environment_id, safe='')}/events"
    request = HTTPRequest(
        url,
        headers={"Authorization": f"Bearer {client._token}", "Accept": "text/event-stream"},
        streaming_callback=on_chunk,
        request_timeout=3600,
    )
    fetch = asyncio.ensure_future(AsyncHTTPClient().fetch(request, raise_error=False))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, fetch}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if queue.empty():
                    return
                continue
            event = getter.result()
            yield event
            if event.get("event") == "done":
                return
    finally:
        fetch.cancel()
