"""JupyterHub integration of trousse.

The environments of the courses a user belongs to (from their JupyterHub
groups) become the spawn page's choices: a ``profile_list`` callable for
KubeSpawner, ``options_form`` and ``allowed_images`` callables for
DockerSpawner, configured as ``c.Trousse``.
"""

from .choices import Choice, choice_of, choices_for, docker_allowed_images, kubespawner_profiles
from .client import TrousseClient
from .config import Trousse, TrousseNotConfigured
from .courses import CourseMapping
from .hub import allowed_images, options_form, profile_list
from .lti import LtiCourses
from .spawner import EnvironmentFailed, EnvironmentNotFound, ExamClosed, TrousseSpawnerMixin

__version__ = "0.2.0"

__all__ = [
    "Choice",
    "CourseMapping",
    "EnvironmentFailed",
    "EnvironmentNotFound",
    "ExamClosed",
    "LtiCourses",
    "Trousse",
    "TrousseClient",
    "TrousseNotConfigured",
    "TrousseSpawnerMixin",
    "allowed_images",
    "choice_of",
    "choices_for",
    "docker_allowed_images",
    "kubespawner_profiles",
    "options_form",
    "profile_list",
]
