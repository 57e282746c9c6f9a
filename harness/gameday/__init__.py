"""Game days (SUITE-FORMAT §4): a scheduled run of chosen suites, kept with its history.

``mesh-harness gameday FILE`` runs the game day's suites through pytest and the harness's plugin (the
same path as ``pytest suites/``: Allure results, the verdict table, results JSON), keeps the run under the
game day's ``history`` directory, rebuilds the Allure report with the trend over every run kept, and
posts a summary to its webhooks. ``gameday history FILE`` prints the verdicts and key figures of every
run, oldest first; ``gameday manifests FILE --output DIR`` writes a Kubernetes CronJob and a CI
scheduled workflow for it. The harness never runs a scheduler of its own.
"""

from harness.gameday.history import RunSummary, read_history
from harness.gameday.run import GameDayPlan, plan_gameday, run_gameday

__all__ = ["GameDayPlan", "RunSummary", "plan_gameday", "read_history", "run_gameday"]
