"""The package as a hub image installs it: its wheel, built by
scripts/hub-wheel, into a fresh virtual environment."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_installs_into_a_fresh_environment(tmp_path):
    built = subprocess.run(
        [str(ROOT / "scripts" / "hub-wheel"), str(tmp_path / "dist")],
        check=True,
        capture_output=True,
        text=True,
    )
    wheel = built.stdout.split()[-1]
    assert wheel.endswith(".whl"), built.stdout
    # tornado and traitlets (JupyterHub's own) come from the system, the package from the wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run(
        [python, "-c", "import trousse_jupyterhub as t; print(t.__version__, t.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert shown[0] == "0.2.0"
    assert str(venv) in shown[1], shown
