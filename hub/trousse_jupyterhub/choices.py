"""The spawn page's choices: a user's course environments, ordered and shaped
for KubeSpawner's ``profile_list`` or DockerSpawner's ``allowed_images``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """One environment a user may pick."""

    slug: str
    #: The name on the spawn page, and DockerSpawner's key: it does not change
    #: with the build's status, so a page shown while building still spawns.
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

    def names(self, wanted: str) -> bool:
        """Whether a spawn's option (a key, a profile slug or an image) means it."""
        return wanted in (self.display_name, self.slug, self.image)


def window_open(env: dict) -> bool:
    """Whether an environment may be started now: an exam outside its window may not."""
    window = env.get("window")
    return not env.get("exam") or window is None or bool(window.get("open"))


def choice_keys(course: str, name: str) -> tuple[str, str]:
    """The keys a spawner's options name an environment by: DockerSpawner's
    image key (the display name) and KubeSpawner's profile slug."""
    return f"{name} — {course}", f"{course}-{name}"


def choice_of(env: dict) -> Choice:
    """The choice of one of trousse's environment objects."""
    course, name = env["course"], env["name"]
    display_name, slug = choice_keys(course, name)
    status = env.get("status", "ready")
    kind = "Exam" if env.get("exam") else "Course"
    closes = (env.get("window") or {}).get("closes")
    until = f", open until {closes}" if env.get("exam") and closes else ""
    return Choice(
        slug=slug,
        display_name=display_name,
        description=f"{kind} environment of {course}: {env.get('packages', 0)} packages{until}",
        image=env["image"],
        status=status,
        exam=bool(env.get("exam")),
        default_url=env.get("default_url"),
    )


def choices_for(environments) -> list[Choice]:
    """The choices of trousse's environment objects: current ones only, exams
    only while open; open exams first, failed ones last (their spawn is
    refused with the build's error), then by course and name."""
    choices = [
        choice_of(env) for env in environments if env.get("current", True) and window_open(env)
    ]
    choices.sort(key=lambda c: (not c.exam, c.status == "failed", c.slug))
    return choices


def _shown(choice: Choice) -> str:
    """The display name with the build's status, where a spawn page shows it."""
    return (
        choice.display_name
        if choice.status == "ready"
        else f"{choice.display_name} ({choice.status})"
    )


def kubespawner_profiles(choices: list[Choice]) -> list[dict]:
    """KubeSpawner ``profile_list`` entries, the first one the default."""
    profiles = []
    for i, choice in enumerate(choices):
        override = {"image": choice.image}
        if choice.default_url:
            override["default_url"] = choice.default_url
        profiles.append(
            {
                "display_name": _shown(choice),
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
