"""Schedules for a game day, for the schedulers people already run: a Kubernetes CronJob, a GitHub Actions
scheduled workflow, a cron line. The harness runs no daemon of its own.

The files run ``mesh-harness gameday FILE --yes``: whoever reviews and applies a schedule has confirmed
it, and the game day's ``window`` still refuses a run outside its hours. Kubernetes reads the schedule in
the window's time zone (``timeZone``); GitHub Actions and cron read it in UTC and the machine's zone
respectively, which the files say where it matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness._errors import InputError
from harness.model.gameday import GameDay

__all__ = ["cron_line", "cronjob", "workflow", "write_manifests"]

DEFAULT_SCHEDULE = "0 10 * * 3"


def _schedule(gameday: GameDay) -> str:
    return gameday.spec.schedule or DEFAULT_SCHEDULE


def cronjob(gameday: GameDay, file: str) -> dict[str, Any]:
    """A ``batch/v1`` CronJob running the game day in a pod, its history on a PersistentVolumeClaim."""
    from harness import __version__  # at call time: the package imports this module's neighbours

    name = f"gameday-{gameday.metadata.name}"[:52]  # CronJob names leave 11 characters for the Job suffix
    history = gameday.history
    spec: dict[str, Any] = {
        "schedule": _schedule(gameday),
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {"backoffLimit": 0, "activeDeadlineSeconds": 5400, "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "mesh-harness", "mesh-harness/gameday":
                                    gameday.metadata.name}},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": "mesh-harness",
                "containers": [{
                    "name": "gameday",
                    "image": f"mesh-harness:{__version__}",
                    "workingDir": "/work",
                    "args": ["gameday", file, "--yes"],
                    "volumeMounts": [{"name": "history", "mountPath": f"/work/{history}"}],
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                }],
                "volumes": [{"name": "history", "persistentVolumeClaim": {"claimName": f"{name}-history"}}],
            },
        }}},
    }
    if gameday.spec.window is not None:
        spec["timeZone"] = gameday.spec.window.timezone
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "mesh-harness"}}, "spec": spec}


def workflow(gameday: GameDay, file: str) -> dict[str, Any]:
    """A GitHub Actions workflow on the game day's schedule (UTC), keeping its history as an artifact."""
    history = gameday.history
    return {
        "name": f"game day {gameday.metadata.name}",
        "on": {"schedule": [{"cron": _schedule(gameday)}], "workflow_dispatch": {}},
        "concurrency": {"group": f"gameday-{gameday.metadata.name}", "cancel-in-progress": False},
        "jobs": {"gameday": {
            "runs-on": "ubuntu-latest",
            "timeout-minutes": 90,
            "steps": [
                {"uses": "actions/checkout@v4"},
                {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11"}},
                {"run": "sudo apt-get update && sudo apt-get install -y prometheus npm"},
                {"run": "pip install ."},
                {"name": "earlier runs", "uses": "actions/cache/restore@v4",
                 "with": {"path": history, "key": f"gameday-{gameday.metadata.name}-",
                          "restore-keys": f"gameday-{gameday.metadata.name}-"}},
                {"run": f"mesh-harness gameday {file} --yes"},
                {"name": "keep the history", "if": "always()", "uses": "actions/cache/save@v4",
                 "with": {"path": history, "key": f"gameday-{gameday.metadata.name}-${{{{ github.run_id }}}}"}},
                {"if": "always()", "uses": "actions/upload-artifact@v4",
                 "with": {"name": f"gameday-{gameday.metadata.name}", "path": history}},
            ],
        }},
    }


def cron_line(gameday: GameDay, file: str, project: str = "/path/to/project") -> str:
    """A crontab line (the machine's time zone) running the game day from the project directory."""
    history = gameday.history
    log = f"{history.rstrip('/')}/cron.log"
    # The history directory exists only after a first run; the shell opens the log before the command runs.
    return f"{_schedule(gameday)} cd {project} && mkdir -p {history} && mesh-harness gameday {file} --yes >> {log} 2>&1"


def _dump(data: dict[str, Any], header: str) -> str:
    return header + yaml.safe_dump(data, sort_keys=False, width=120)


def write_manifests(gameday: GameDay, file: str, output: Path) -> list[Path]:
    """Write the CronJob and the workflow into ``output``; return their paths."""
    try:
        return _write(gameday, file, output)
    except OSError as exc:
        raise InputError(f"--output {output}: cannot write the schedules there ({exc.strerror or exc})") from None


def _write(gameday: GameDay, file: str, output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    name = gameday.metadata.name
    zone = gameday.spec.window.timezone if gameday.spec.window else "UTC"
    cron = output / f"gameday-{name}-cronjob.yaml"
    cron.write_text(_dump(cronjob(gameday, file), (
        f"# mesh-harness game day {name}: a Kubernetes CronJob (schedule read in {zone}).\n"
        "# The image is yours: one with mesh-harness installed and this project in /work. The service account\n"
        "# needs the rights the environment's driver uses, within the environment's safety lists.\n")))
    flow = output / f"gameday-{name}.yml"
    flow.write_text(_dump(workflow(gameday, file), (
        f"# mesh-harness game day {name}: a GitHub Actions scheduled workflow. GitHub reads the cron in UTC"
        + (f";\n# the game day's window is in {zone}, and refuses a run outside it.\n" if zone != "UTC" else ".\n")
        + "# Put it in .github/workflows/.\n")))
    return [cron, flow]
