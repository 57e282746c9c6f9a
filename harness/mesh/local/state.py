"""``state.json`` of a local mesh: what ``up`` records and every later command reads back, validated.

Every key and JSON type is checked on read (pydantic, strict), so a damaged file is reported as
StateCorrupt with what is wrong, never a KeyError deep in a command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness._process import BOOT_ID_PATTERN, Proc, from_ticks
from harness.mesh.local.envoy_binary import EnvoyBinary
from harness.mesh.local.topology import Layout
from harness.model.environment import EdgePolicy

__all__ = ["ProcDoc", "State", "problems"]


Port = Annotated[int, Field(ge=1, le=65535)]


class _Doc(BaseModel):
    """A part of ``state.json`` as this version writes it: exact keys, exact JSON types."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class ProcDoc(_Doc):
    name: str
    pid: int = Field(gt=1)  # never init, never 0 (which would address our own process group)
    started: float
    log: str
    # Absent from files an older mesh-harness wrote: ``started`` is then compared alone.
    boot: float | None = Field(default=None, ge=0)
    boot_id: str | None = Field(default=None, pattern=f"^{BOOT_ID_PATTERN}$")

    @field_validator("started", mode="before")
    @classmethod
    def _start_time(cls, value: object) -> object:
        # An int is a start in clock ticks from the version before psutil: convert, so that mesh can be stopped.
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError("should be a process start time: seconds since the epoch (or, from an older "
                             "mesh-harness, clock ticks since boot)")
        return from_ticks(value) if isinstance(value, int) else value

    def proc(self) -> Proc:
        return Proc(self.name, self.pid, self.started, self.log, self.boot, self.boot_id)


class _InstanceDoc(_Doc):
    id: str
    service: str
    version: str
    replica: int = Field(ge=0)
    app_port: Port
    inbound_port: Port
    admin_port: Port
    outbound_ports: dict[str, Port]
    base_id: int = Field(ge=0)


class _LayoutDoc(_Doc):
    instances: list[_InstanceDoc]
    gateway_port: Port
    gateway_admin_port: Port
    gateway_base_id: int = Field(ge=0)
    toxiproxy_port: int = Field(default=0, ge=0, le=65535)  # 0: a mesh of an older version, without one
    prometheus_port: int = Field(default=0, ge=0, le=65535)  # 0: no Prometheus of its own
    bind: str = "127.0.0.1"
    addresses: dict[str, str] = Field(default_factory=dict)


class _EnvoyDoc(_Doc):
    path: str
    version: str
    source: str


class _StateDoc(_Doc):
    env: dict[str, Any]
    env_path: str
    layout: _LayoutDoc
    procs: list[ProcDoc]
    overrides: dict[str, dict[str, Any]]
    splits: dict[str, dict[str, float]]
    version: int = Field(ge=1)
    started_at: float
    envoy: _EnvoyDoc | None = None  # absent in state files of older versions
    interposed: dict[str, dict[str, Port]] = Field(default_factory=dict)
    stopped: dict[str, Literal["killed", "paused"]] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _policies(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for edge, policy in value.items():
            if edge.count("->") != 1:
                raise ValueError(f"key {edge!r} is not an edge 'caller->callee'")
            try:
                EdgePolicy.model_validate(policy)
            except ValidationError as exc:
                raise ValueError(f"{edge}: {problems(exc)}") from None
        return value


def problems(exc: ValidationError, limit: int = 3) -> str:
    """A validation error as 'where: what' for the first few problems, e.g. ``procs[2].pid: missing``."""
    words = {"missing": "missing", "extra_forbidden": "unexpected key (this mesh-harness never writes it)"}
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        what = words.get(err["type"], err["msg"].removeprefix("Value error, "))
        parts.append(f"{where or 'top level'}: {what}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


@dataclass
class State:
    env: dict[str, Any]
    env_path: str
    layout: Layout
    procs: list[Proc] = field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    version: int = 1
    started_at: float = 0.0
    envoy: EnvoyBinary | None = None
    interposed: dict[str, dict[str, int]] = field(default_factory=dict)
    """Edges with a Toxiproxy in the path: ``caller->callee`` -> callee instance id -> the proxy's port,
    which that caller's Envoys then use as the instance's endpoint."""
    stopped: dict[str, str] = field(default_factory=dict)
    """Instances whose app a fault stopped on purpose (``killed`` or ``paused``): not a mesh that is down."""

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env, "env_path": self.env_path, "layout": self.layout.to_json(),
            "procs": [p.to_json() for p in self.procs], "overrides": self.overrides, "splits": self.splits,
            "version": self.version, "started_at": self.started_at,
            "envoy": asdict(self.envoy) if self.envoy else None,
            "interposed": self.interposed, "stopped": self.stopped,
        }

    @classmethod
    def from_json(cls, data: object) -> State:
        """Validate what ``state.json`` holds; ValidationError (or ValueError) says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"holds a JSON {_json_kind(data)} where an object is expected")
        doc = _StateDoc.model_validate(data)
        return cls(
            env=doc.env, env_path=doc.env_path, layout=Layout.from_json(doc.layout.model_dump()),
            procs=[p.proc() for p in doc.procs], overrides=doc.overrides, splits=doc.splits,
            version=doc.version, started_at=doc.started_at,
            envoy=EnvoyBinary(**doc.envoy.model_dump()) if doc.envoy else None,
            interposed=doc.interposed, stopped=dict(doc.stopped),
        )


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)

