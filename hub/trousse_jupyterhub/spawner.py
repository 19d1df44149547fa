"""A spawner mixin: the chosen environment, if still building, is waited for
with its build events on the spawn page; a failed one refuses the spawn."""

from __future__ import annotations

import asyncio

from traitlets import Dict, Unicode
from traitlets.config import Configurable

from .choices import Choice, choice_of, window_open
from .client import follow
from .config import Trousse
from .hub import keep_images, user_environments


class EnvironmentFailed(RuntimeError):
    """The chosen environment's build failed: the spawn is refused with its error."""


class ExamClosed(RuntimeError):
    """The chosen exam is outside its time window: the spawn is refused."""


class EnvironmentNotFound(RuntimeError):
    """A launch named an environment that is none of the user's courses': the spawn is refused."""


def environment_key(environment: dict) -> str:
    """``COURSE/NAME``: how a launch names an environment."""
    return f"{environment.get('course')}/{environment.get('name')}"


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


class TrousseSpawnerMixin(Configurable):
    """Mix before a spawner class (``class S(TrousseSpawnerMixin, DockerSpawner)``);
    its settings are ``c.S.trousse_exam_network`` and ``c.S.trousse_exam_labels``,
    trousse's own are ``c.Trousse``."""

    trousse_exam_network = Unicode(
        None,
        allow_none=True,
        help="DockerSpawner: the network of exam servers, created --internal (no "
        "route out) with the hub listening on its gateway.",
    ).tag(config=True)

    trousse_exam_labels = Dict(
        {"trousse.io/exam": "true"},
        help="KubeSpawner: the labels of exam pods, which a NetworkPolicy locks down.",
    ).tag(config=True)

    @property
    def trousse(self) -> Trousse:
        """``c.Trousse``, as this spawner's configuration gives it."""
        return Trousse(parent=self)

    def _trousse_exam_policy(self, environment: dict) -> None:
        """An exam's server gets no outbound network: the spawner's options say so.
        The options are the configured ones again for the user's next server."""
        policed = ("network_name", "extra_labels")
        if not hasattr(self, "_trousse_configured"):
            self._trousse_configured = {k: getattr(self, k) for k in policed if hasattr(self, k)}
        for key, value in self._trousse_configured.items():
            setattr(self, key, value)
        if not environment.get("exam"):
            return
        if self.trousse_exam_network and hasattr(self, "network_name"):
            self.network_name = self.trousse_exam_network
        if hasattr(self, "extra_labels"):
            self.extra_labels = {**(self.extra_labels or {}), **self.trousse_exam_labels}

    def options_from_query(self, query_data):
        """A launch's ``?environment=COURSE/NAME`` (the LTI landing's), else the
        spawner's own reading of the query."""
        named = query_data.get("environment")
        if named:
            return {"environment": named[0]}
        return super().options_from_query(query_data)

    def _trousse_wanted(self) -> str | None:
        """What the spawn asks for: DockerSpawner's image key, KubeSpawner's
        profile slug, an image (BinderHub's launch), or the only choice."""
        options = getattr(self, "user_options", None) or {}
        wanted = options.get("image") or options.get("profile")
        if not wanted and hasattr(self, "_get_allowed_images"):
            # DockerSpawner shows no form for a single image, and would start its default one
            allowed = self._get_allowed_images()
            if isinstance(allowed, dict) and len(allowed) == 1:
                wanted = next(iter(allowed))
        return wanted or getattr(self, "image", None)

    def _trousse_environment(self, environments: list[dict]) -> dict | None:
        """The trousse environment the spawn asks for, among the user's courses'
        (a launch's ``environment`` must be one of them)."""
        named = (getattr(self, "user_options", None) or {}).get("environment")
        wanted = None if named else self._trousse_wanted()
        for environment in environments:
            if not environment.get("current", True):
                continue
            choice = choice_of(environment)
            if named == environment_key(environment) or (wanted and choice.names(wanted)):
                self._trousse_chosen(choice)
                return environment
        if named:
            raise EnvironmentNotFound(
                f"there is no environment {named} in your courses: ask its teacher "
                "whether the link names it rightly"
            )
        return None

    def _trousse_chosen(self, choice: Choice) -> None:
        """The spawner's own options say the chosen environment: DockerSpawner's
        image key, KubeSpawner's profile (from trousse's ``profile_list``)."""
        options = dict(self.user_options or {})
        if hasattr(self, "_get_allowed_images"):
            # DockerSpawner checks its key: an image or the only choice becomes one
            options["image"] = choice.display_name
        if hasattr(self, "profile_list"):
            options["profile"] = choice.slug
        self.user_options = options

    @staticmethod
    def _trousse_check_window(environment: dict) -> None:
        """An exam outside its time window is refused, saying when it opens or closed."""
        if window_open(environment):
            return
        window = environment.get("window") or {}
        name = environment_key(environment)
        opens, closes = window.get("opens"), window.get("closes")
        if opens and closes:
            when = f"its window is {opens} to {closes}"
        elif opens:
            when = f"it opens at {opens}"
        else:
            when = f"it closed at {closes}"
        raise ExamClosed(f"the exam {name} cannot be started now: {when} (UTC)")

    def _trousse_events(self) -> asyncio.Queue:
        if not hasattr(self, "_trousse_queue"):
            self._trousse_queue = asyncio.Queue()
            self._trousse_waited = asyncio.Event()
        return self._trousse_queue

    async def start(self):
        # each spawn has its own events
        self._trousse_queue, self._trousse_waited = asyncio.Queue(), asyncio.Event()
        environment = None
        try:
            # read once: what the spawn asks for, and (DockerSpawner) the images its
            # start check compares with, which the last page load read
            environments = await user_environments(self, self.trousse)
            if hasattr(self, "_get_allowed_images"):
                keep_images(self, environments)
            environment = self._trousse_environment(environments)
            if environment is not None:
                self._trousse_check_window(environment)
                await self._trousse_wait(environment)
            self._trousse_exam_policy(environment or {})
            self._trousse_settle(refused=False)
        finally:
            self._trousse_settle(refused=True)
            self._trousse_waited.set()
        started = await super().start()
        if environment is not None:
            await self._trousse_report_launch(environment)
        return started

    def _trousse_settle(self, refused: bool) -> None:
        """A launch's ``environment`` is a request, not a setting: what JupyterHub
        keeps (and reuses for a start that brings no options) is the image key or
        profile it was resolved to, or nothing when the spawn was refused."""
        options = getattr(self, "user_options", None) or {}
        if "environment" not in options:
            return
        settled = {} if refused else {k: v for k, v in options.items() if k != "environment"}
        self.user_options = settled
        orm = getattr(self, "orm_spawner", None)
        if orm is not None:
            orm.user_options = settled
            if getattr(self, "db", None) is not None:
                self.db.commit()

    async def _trousse_report_launch(self, environment: dict) -> None:
        """Tells trousse the server started (its learning-analytics traces); a
        failure is logged, never the spawn's."""
        try:
            await self.trousse.client().report_launch(environment["id"], self.user.name)
        except Exception as error:  # noqa: BLE001 - the spawn must not fail on a trace
            self.log.warning("trousse did not record the launch: %s", error)

    async def _trousse_wait(self, environment: dict) -> None:
        """Returns once the environment is ready; raises if its build failed."""
        status = environment.get("status")
        error = environment.get("error")
        if status == "ready":
            self._trousse_events().put_nowait("Environment ready")
        else:
            async for event in follow(self.trousse.client(), environment["id"]):
                message = describe(event)
                if message:
                    self._trousse_events().put_nowait(message)
                if event.get("event") == "done":
                    status, error = event.get("status"), event.get("error")
        if status == "failed":
            name = environment_key(environment)
            raise EnvironmentFailed(f"the environment {name} failed to build: {error}")

    async def pull_image(self, image):
        """DockerSpawner's pull takes `REPO:TAG` apart, which breaks an exam's image
        (pinned `REPO@sha256:…`): that one is pulled by its digest here."""
        if "@" not in image:
            return await super().pull_image(image)
        policy = str(getattr(self, "pull_policy", "ifnotpresent")).lower()
        if policy == "skip":
            return None
        import docker.errors

        if policy != "always":
            try:
                return await self.docker("inspect_image", image)
            except docker.errors.NotFound:
                if policy == "never":
                    raise
        repository, digest = image.split("@", 1)
        self.log.info("pulling %s", image)
        return await self.docker("pull", repository, digest)

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
