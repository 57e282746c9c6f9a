"""Building blocks shared by the Suite and Environment models."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["NAME_PATTERN", "Edge", "Located", "Metadata", "Name", "Percent", "Problems", "Strict", "Target"]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
"""Every service, version and experiment name: a DNS label, so it maps onto Kubernetes unchanged."""

Percent = Annotated[float, Field(ge=0, le=100)]


class Located(ValueError):
    """A model-level validation error about one value below the model, at ``path`` relative to it."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.path = path


class Problems(ValueError):
    """Several :class:`Located` problems found by one model-level check, all reported at once.

    pydantic turns one exception into one error; a check that walks every experiment would otherwise
    show the user only the first of several mistakes, one run of ``validate`` at a time.
    """

    def __init__(self, problems: list[Located]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class Strict(BaseModel):
    """Base for every document model: unknown fields are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Metadata(Strict):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)


class Target(Strict):
    """A service, optionally narrowed to one of its versions."""

    service: Name
    version: Name | None = None

    def __str__(self) -> str:
        return f"{self.service}-{self.version}" if self.version else self.service


class Edge(Strict):
    """A caller→callee edge; ``from`` is a Python keyword, hence the alias."""

    from_: Name = Field(alias="from")
    to: Name

    def __str__(self) -> str:
        return f"{self.from_}->{self.to}"
