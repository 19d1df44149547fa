"""A spawner mixin: the chosen environment, if still building, is waited for
with its build events on the spawn page; a failed one refuses the spawn."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from .client import TrousseClient, follow
from .courses import CourseMapping
from .hub import _client


class EnvironmentFailed(RuntimeError):
    """The chosen environment's build failed: the spawn is refused with its error."""


def describe(event: dict) -> str | None:
    """A spawn-page line for a build event, or None for events not worth one."""
    kind = event.get("event")
    if kind == "status":
        return f"Environment {event.get('status')}"
    if kind == "stage_started":
        return f"Building: {event.get('stage')}"
    if kind == "done":
        return f"Environment {event.get('status')}"
    return None


class TrousseSpawnerMixin:
    """Mix before a spawner class (``class S(TrousseSpawnerMixin, DockerSpawner)``)."""

    trousse_client: TrousseClient | None = None
    trousse_mapping: CourseMapping | None = None
    #: DockerSpawner: the network of exam servers, created `--internal` (no route
    #: out) with the hub listening on its gateway.
    trousse_exam_network: str | None = None
    #: KubeSpawner: the labels of exam pods, which a NetworkPolicy locks down.
    trousse_exam_labels: ClassVar[dict] = {"trousse.io/exam": "true"}

    def _trousse_exam_policy(self, environment: dict) -> None:
        """An exam's server gets no outbound network: the spawner's options say so."""
        if not environment.get("exam"):
            return
        if self.trousse_exam_network and hasattr(self, "network_name"):
            self.network_name = self.trousse_exam_network
        if hasattr(self, "extra_labels"):
            self.extra_labels = {**(self.extra_labels or {}), **self.trousse_exam_labels}

    def _trousse_image(self) -> str | None:
        options = getattr(self, "user_options", None) or {}
        return options.get("image") or getattr(self, "image", None)

    async def _trousse_environment(self) -> dict | None:
        """The trousse environment of the chosen image, among the user's courses."""
        image = self._trousse_image()
        if not image:
            return None
        client = self.trousse_client or _client()
        courses = (self.trousse_mapping or CourseMapping()).courses(self.user.groups)
        for environment in await client.environments_of(courses):
            if environment.get("image") == image:
                return environment
        return None

    def _trousse_events(self) -> asyncio.Queue:
        if not hasattr(self, "_trousse_queue"):
            self._trousse_queue = asyncio.Queue()
            self._trousse_waited = asyncio.Event()
        return self._trousse_queue

    async def start(self):
        self._trousse_events()
        try:
            environment = await self._trousse_environment()
            if environment is not None:
                await self._trousse_wait(environment)
                self._trousse_exam_policy(environment)
        finally:
            self._trousse_waited.set()
        return await super().start()

    async def _trousse_wait(self, environment: dict) -> None:
        """Returns once the environment is ready; raises if its build failed."""
        status = environment.get("status")
        error = environment.get("error")
        if status == "ready":
            self._trousse_events().put_nowait("Environment ready")
        else:
            client = self.trousse_client or _client()
            async for event in follow(client, environment["id"]):
                message = describe(event)
                if message:
                    self._trousse_events().put_nowait(message)
                if event.get("event") == "done":
                    status, error = event.get("status"), event.get("error")
        if status == "failed":
            name = f"{environment.get('course')}/{environment.get('name')}"
            raise EnvironmentFailed(f"the environment {name} failed to build: {error}")

    async def progress(self):
        """The build's events while it builds, then the spawner's own."""
        queue = self._trousse_events()
        while not (queue.empty() and self._trousse_waited.is_set()):
            try:
                message = await asyncio.wait_for(queue.get(), 0.5)
            except asyncio.TimeoutError:
                continue
            yield {"message": message}
        parent = getattr(super(), "progress", None)
        if parent is not None:
            async for event in parent():
                yield event
