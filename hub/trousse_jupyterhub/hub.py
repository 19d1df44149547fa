"""The callables a ``jupyterhub_config.py`` sets: KubeSpawner's
``profile_list``, DockerSpawner's ``options_form`` and ``allowed_images``.
Each reads trousse asynchronously, at each page load."""

from __future__ import annotations

import html

from traitlets.config import Configurable

from .choices import choices_for, docker_allowed_images, kubespawner_profiles
from .config import Trousse


def trousse_of(spawner, config=None) -> Trousse:
    """The ``Trousse`` settings for a spawner: the given config's, else the spawner's."""
    if config is not None:
        return Trousse(config=config)
    if isinstance(spawner, Configurable):
        return Trousse(parent=spawner)
    return Trousse()


def user_courses(spawner, trousse: Trousse) -> dict[str, str]:
    """The courses of the spawner's user, from their groups."""
    return trousse.mapping().courses(getattr(spawner.user, "groups", []))


async def user_environments(spawner, trousse: Trousse) -> list[dict]:
    """The environments of the courses of the spawner's user, as trousse lists them."""
    return await trousse.client().environments_of(user_courses(spawner, trousse))


def _checked(config) -> None:
    """Fails at once, in jupyterhub_config.py, when trousse is not configured."""
    Trousse(config=config).check()


def profile_list(config=None):
    """A KubeSpawner ``profile_list`` callable: the user's course environments.

    Pass the hub's config (``profile_list(c)``) to use ``c.Trousse``."""
    _checked(config)

    async def profiles(spawner):
        environments = await user_environments(spawner, trousse_of(spawner, config))
        return kubespawner_profiles(choices_for(environments))

    return profiles


def keep_images(spawner, environments: list[dict]) -> dict[str, str]:
    """Keeps the images of `environments` on the spawner, where DockerSpawner's
    synchronous ``allowed_images`` finds them."""
    images = docker_allowed_images(choices_for(environments))
    spawner._trousse_images = images
    return images


async def refresh_images(spawner, config=None) -> dict[str, str]:
    """Reads the user's environments and keeps their images on the spawner."""
    environments = await user_environments(spawner, trousse_of(spawner, config))
    return keep_images(spawner, environments)


def allowed_images(config=None):
    """A DockerSpawner ``allowed_images`` callable. DockerSpawner calls it
    without awaiting (for its form and its start check), so it answers from
    what the spawner's ``options_form`` (each page load) and the mixin's
    ``start`` last read: set ``options_form`` too."""
    _checked(config)

    def images(spawner):
        return dict(getattr(spawner, "_trousse_images", None) or {})

    return images


def options_form(config=None):
    """A DockerSpawner ``options_form`` callable: the user's environments read
    again at each load of the spawn page, as a choice of images."""
    _checked(config)

    async def form(spawner):
        images = await refresh_images(spawner, config)
        if len(images) <= 1:
            return ""
        current = getattr(spawner, "image", None)
        options = "".join(
            '<option value="{0}"{1}>{0}</option>'.format(
                html.escape(key), " selected" if image == current else ""
            )
            for key, image in images.items()
        )
        return (
            '<label for="image">Select an environment:</label>'
            f'<select class="form-control" name="image" required autofocus>{options}</select>'
        )

    return form
