"""The spawn page's choices: a user's course environments, ordered and shaped
for KubeSpawner's ``profile_list`` or DockerSpawner's ``allowed_images``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """One environment a user may start."""

    slug: str
    display_name: str
    description: str
    image: str
    status: str
    exam: bool
    default_url: str | None = None

    @property
    def startable(self) -> bool:
        """Whether a server may start from it (a building one starts once ready)."""
        return self.status in ("ready", "queued", "building")


def choices_for(environments) -> list[Choice]:
    """The choices of trousse's environment objects: current ones only, failed
    ones left out, exams first, then by course and name."""
    choices = []
    for env in environments:
        if not env.get("current", True) or env.get("status") == "failed":
            continue
        course, name = env["course"], env["name"]
        status = env.get("status", "ready")
        note = "" if status == "ready" else f" ({status})"
        kind = "Exam" if env.get("exam") else "Course"
        choices.append(
            Choice(
                slug=f"{course}-{name}",
                display_name=f"{name} — {course}{note}",
                description=f"{kind} environment of {course}: {env.get('packages', 0)} packages",
                image=env["image"],
                status=status,
                exam=bool(env.get("exam")),
                default_url=env.get("default_url"),
            )
        )
    choices.sort(key=lambda c: (not c.exam, c.slug))
    return choices


def kubespawner_profiles(choices: list[Choice]) -> list[dict]:
    """KubeSpawner ``profile_list`` entries, the first one the default."""
    profiles = []
    for i, choice in enumerate(choices):
        override = {"image": choice.image}
        if choice.default_url:
            override["default_url"] = choice.default_url
        profiles.append(
            {
                "display_name": choice.display_name,
                "description": choice.description,
                "slug": choice.slug,
                "default": i == 0,
                "kubespawner_override": override,
            }
        )
    return profiles


def docker_allowed_images(choices: list[Choice]) -> dict[str, str]:
    """DockerSpawner ``allowed_images``: display name -> image, in order."""
    return {choice.display_name: choice.image for choice in choices}
