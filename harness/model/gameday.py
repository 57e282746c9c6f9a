"""The GameDay document (SUITE-FORMAT §4): which suites a scheduled game day runs, against what, when it
may run, where its history is kept and whom it tells.

A game day is run by ``mesh-harness gameday FILE``; scheduling is left to the schedulers people already
run (a Kubernetes CronJob, a CI schedule, cron), for which ``gameday manifests`` writes the files. The
``window`` is a safety gate checked by the harness itself at start, whatever started it: a game day
scheduled by mistake at 3 a.m. refuses to touch the mesh.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import Field, field_validator

from harness.model.common import Metadata, Strict

__all__ = ["DAYS", "GameDay", "GameDaySpec", "GameDayWindow", "Notify"]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_CRON_FIELD = re.compile(r"^(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/\d+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/\d+)?)*$")


class GameDayWindow(Strict):
    """When the game day may touch the mesh: days of the week and hours, in a time zone."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    hours: str = "00:00-24:00"
    timezone: str = "UTC"

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.match(value)
        if not match:
            raise ValueError(f"hours must be HH:MM-HH:MM, e.g. 09:00-16:00 (got {value!r})")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ValueError(f"{value!r} is not a time of day: hours 00-23 (24:00 ends the day), minutes 00-59")
        if (h2, m2) <= (h1, m1):
            raise ValueError(f"the window {value!r} ends before it starts; write e.g. 09:00-16:00 (a window over "
                             "midnight is two game days)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: write an IANA name such as Europe/Berlin or UTC") from None
        return value

    def allows(self, when: dt.datetime) -> bool:
        """Is ``when`` (any aware time) inside the window, read in its time zone?"""
        local = when.astimezone(zoneinfo.ZoneInfo(self.timezone))
        start, end = self.bounds()
        minutes = local.hour * 60 + local.minute
        return DAYS[local.weekday()] in self.days and start <= minutes < end

    def bounds(self) -> tuple[int, int]:
        """The hours as minutes of the day: [start, end)."""
        match = _HOURS.match(self.hours)
        assert match is not None  # validated
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        return h1 * 60 + m1, h2 * 60 + m2

    def describe(self) -> str:
        return f"{', '.join(self.days)} {self.hours} {self.timezone}"


class Notify(Strict):
    """Where a summary is posted after each run (a JSON body with a ``text`` field, as chat webhooks take)."""

    webhook: Annotated[str, Field(pattern=r"^https?://\S+$")]


class GameDaySpec(Strict):
    environment: str | None = None
    suites: list[str] = Field(min_length=1)
    select: str | None = None
    schedule: str | None = None
    window: GameDayWindow | None = None
    history: str | None = None
    notify: list[Notify] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(f"schedule must be a cron line of five fields (minute hour day-of-month month "
                             f"day-of-week), e.g. \"0 10 * * 3\" (got {value!r})")
        return value


class GameDay(Strict):
    api_version: Literal["harness/v1"] = Field(alias="apiVersion")
    kind: Literal["GameDay"]
    metadata: Metadata
    spec: GameDaySpec

    @property
    def history(self) -> str:
        """Where its runs are kept: ``spec.history``, else ``gamedays/NAME`` (relative to the working
        directory, as the schedules run it)."""
        return self.spec.history or f"gamedays/{self.metadata.name}"
