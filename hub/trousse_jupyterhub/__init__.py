"""JupyterHub integration of trousse.

The environments of the courses a user belongs to (from their JupyterHub
groups) become the spawn page's choices: a ``profile_list`` callable for
KubeSpawner and an ``allowed_images`` callable for DockerSpawner.
"""

from .choices import Choice, choice_of, choices_for, docker_allowed_images, kubespawner_profiles
from .client import TrousseClient
from .courses import CourseMapping
from .hub import allowed_images, profile_list
from .spawner import EnvironmentFailed, ExamClosed, TrousseSpawnerMixin

__all__ = [
    "Choice",
    "CourseMapping",
    "EnvironmentFailed",
    "ExamClosed",
    "TrousseClient",
    "TrousseSpawnerMixin",
    "allowed_images",
    "choice_of",
    "choices_for",
    "docker_allowed_images",
    "kubespawner_profiles",
    "profile_list",
]
