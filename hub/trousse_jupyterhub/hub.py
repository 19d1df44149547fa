"""The callables a ``jupyterhub_config.py`` sets."""

from __future__ import annotations

import os

from .choices import choices_for, docker_allowed_images, kubespawner_profiles
from .client import TrousseClient
from .courses import CourseMapping


def _client() -> TrousseClient:
    """The client of the trousse service the hub is configured with."""
    return TrousseClient(
        os.environ.get("TROUSSE_URL", "http://127.0.0.1:8080"),
        os.environ.get("TROUSSE_API_TOKEN", ""),
    )


def user_courses(spawner, mapping: CourseMapping | None = None) -> dict[str, str]:
    """The courses of the spawner's user, from their groups."""
    return (mapping or CourseMapping()).courses(getattr(spawner.user, "groups", []))


async def _choices(spawner, mapping: CourseMapping | None, client: TrousseClient):
    return choices_for(await client.environments_of(user_courses(spawner, mapping)))


def profile_list(mapping: CourseMapping | None = None, client: TrousseClient | None = None):
    """A KubeSpawner ``profile_list`` callable: the user's course environments."""

    async def profiles(spawner):
        return kubespawner_profiles(await _choices(spawner, mapping, client or _client()))

    return profiles


def allowed_images(mapping: CourseMapping | None = None, client: TrousseClient | None = None):
    """A DockerSpawner ``allowed_images`` callable: the user's course environments.

    DockerSpawner calls it without awaiting, so it reads trousse synchronously
    (a loopback or in-cluster call of a few milliseconds)."""

    def images(spawner):
        reader = client or _client()
        courses = user_courses(spawner, mapping)
        environments = [env for course in courses for env in reader.environments_sync(course)]
        return docker_allowed_images(choices_for(environments))

    return images
