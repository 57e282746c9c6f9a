"""How the consul driver compares and swaps config entries: ``normalized`` (an entry as the harness wrote it
equals the entry as Consul returns it) and ``swap`` with check-and-set, against a tiny fake of the agent's
API. Nothing here runs Consul: the entries "as Consul returns them" were read from Consul v1.16.1."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.mesh.consul import changes, entries
from harness.mesh.consul.changes import Conflict, normalized, swap
from harness.mesh.consul.driver import CONSUL_DEFAULTS
from harness.mesh.policy import resolve
from harness.model.loader import load_environment

REPO = Path(__file__).resolve().parents[3]
ENV = load_environment(REPO / "environments" / "consul-local.yaml").model

# As Consul v1.16.1 returned them (GET /v1/config/<kind>/<name>) after the harness wrote them.
RETURNED_DEFAULTS = {
    "Kind": "service-defaults", "Name": "reviews", "Protocol": "http", "TransparentProxy": {}, "MeshGateway": {},
    "Expose": {},
    "UpstreamConfig": {"Overrides": [{
        "Name": "ratings", "Peer": "",
        "Limits": {"MaxConnections": 100, "MaxPendingRequests": 100, "MaxConcurrentRequests": 100},
        "PassiveHealthCheck": {"Interval": 1000000000, "MaxFailures": 5, "EnforcingConsecutive5xx": 100,
                               "MaxEjectionPercent": 50, "BaseEjectionTime": 10000000000},
        "MeshGateway": {}}]},
    "CreateIndex": 18, "ModifyIndex": 18}
RETURNED_INTENTIONS = {
    "Kind": "service-intentions", "Name": "details",
    "Sources": [{"Name": "productpage", "Action": "deny", "Precedence": 9, "Type": "consul"}],
    "CreateIndex": 90, "ModifyIndex": 90}
RETURNED_ROUTER = {
    "Kind": "service-router", "Name": "reviews",
    "Routes": [{"Match": {"HTTP": {"PathPrefix": "/"}},
                "Destination": {"RequestTimeout": "3s", "NumRetries": 2, "RetryOn": ["5xx"]}}],
    "CreateIndex": 22, "ModifyIndex": 22}


def written(kind: str, name: str) -> dict[str, Any]:
    policies = {(s.name, c.to): resolve(c, CONSUL_DEFAULTS) for s in ENV.spec.services for c in s.calls}
    [entry] = [e for e in entries.base_entries(ENV, policies, "gw", 1) if (e["Kind"], e["Name"]) == (kind, name)]
    return entry


class TestNormalized:
    def test_indexes_are_dropped(self) -> None:
        entry = {"Kind": "service-splitter", "Name": "reviews", "Splits": [{"Weight": 100, "ServiceSubset": "v1"}]}
        assert normalized({**entry, "CreateIndex": 3, "ModifyIndex": 7, "Hash": 12345}) == entry
        assert normalized(None) is None

    def test_consuls_durations_in_nanoseconds_equal_the_written_text(self) -> None:
        """The written reviews service-defaults (``Interval: 1s``) is what Consul returns (``1000000000``), with
        its empty fields (``Peer: ""``, ``MeshGateway: {}``) left out."""
        assert normalized(RETURNED_DEFAULTS) == normalized(written("service-defaults", "reviews"))
        assert normalized(RETURNED_ROUTER) == normalized(written("service-router", "reviews"))
        assert normalized(RETURNED_DEFAULTS)["UpstreamConfig"]["Overrides"][0]["PassiveHealthCheck"] == {
            "Interval": 1.0, "MaxFailures": 5, "EnforcingConsecutive5xx": 100, "MaxEjectionPercent": 50,
            "BaseEjectionTime": 10.0}

    def test_a_different_duration_is_different(self) -> None:
        other = copy.deepcopy(RETURNED_DEFAULTS)
        other["UpstreamConfig"]["Overrides"][0]["PassiveHealthCheck"]["Interval"] = 2000000000
        assert normalized(other) != normalized(written("service-defaults", "reviews"))
        router = copy.deepcopy(RETURNED_ROUTER)
        router["Routes"][0]["Destination"]["RequestTimeout"] = "3000ms"
        assert normalized(router) == normalized(RETURNED_ROUTER)
        router["Routes"][0]["Destination"]["RequestTimeout"] = "3.5s"
        assert normalized(router) != normalized(RETURNED_ROUTER)

    def test_precedence_and_the_default_type_are_dropped(self) -> None:
        """Consul computes ``Precedence`` into each intention source and fills in ``Type: consul``."""
        mine = {"Kind": "service-intentions", "Name": "details", "Sources": [{"Name": "productpage", "Action": "deny"}]}
        assert normalized(RETURNED_INTENTIONS) == mine
        other_type = copy.deepcopy(RETURNED_INTENTIONS)
        other_type["Sources"][0]["Type"] = "peer"
        assert normalized(other_type) != mine
        allowed = copy.deepcopy(RETURNED_INTENTIONS)
        allowed["Sources"][0]["Action"] = "allow"
        assert normalized(allowed) != mine

    def test_empty_values_are_dropped(self) -> None:
        assert normalized({"Kind": "service-defaults", "Name": "ratings", "Protocol": "http", "TransparentProxy": {},
                           "MeshGateway": {}, "Expose": {}, "Meta": None, "Mode": "", "Sources": [],
                           "CreateIndex": 19, "ModifyIndex": 19}) == {
            "Kind": "service-defaults", "Name": "ratings", "Protocol": "http"}
        # A value is not empty because it is false or zero...
        assert normalized({"Kind": "k", "Name": "n", "MaxConnections": 0, "Enabled": False}) == {
            "Kind": "k", "Name": "n", "MaxConnections": 0, "Enabled": False}
        # ...except where Consul keeps no zero (omitempty): a zero MaxFailures or duration is no setting to it.
        assert normalized({"Kind": "k", "Name": "n", "MaxFailures": 0, "RequestTimeout": "0s", "Interval": 0}) == {
            "Kind": "k", "Name": "n"}

    def test_intention_sources_compare_in_consuls_order(self) -> None:
        """Consul keeps exact names before the wildcard; a deny appended after "*" is the same entry."""
        ours = {"Kind": "service-intentions", "Name": "api",
                "Sources": [{"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "deny"}]}
        consuls = {"Kind": "service-intentions", "Name": "api",
                   "Sources": [{"Name": "web", "Action": "deny", "Precedence": 9, "Type": "consul"},
                               {"Name": "*", "Action": "deny", "Precedence": 8, "Type": "consul"}]}
        assert normalized(ours) == normalized(consuls)
        assert normalized(ours) != normalized({**ours, "Sources": [{"Name": "web", "Action": "allow"},
                                                                  {"Name": "*", "Action": "deny"}]})


# ----------------------------------------------------------------------------------- swap
class FakeAPI:
    """The agent's config entries, with Consul's check-and-set: a write with ``cas`` takes only while the
    entry's ModifyIndex is still ``cas`` (0: only while absent). ``lose`` makes every check-and-set lose, as
    when someone writes between the harness's read and its write."""

    def __init__(self, *stored: dict[str, Any], lose: bool = False) -> None:
        self.index = 100
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in stored:
            self.store(entry)
        self.writes: list[tuple[str, str, str, int | None]] = []
        self.lose = lose

    def store(self, entry: dict[str, Any]) -> None:
        self.index += 1
        self.entries[(entry["Kind"], entry["Name"])] = {**copy.deepcopy(entry), "CreateIndex": self.index,
                                                        "ModifyIndex": self.index}

    def _current_index(self, kind: str, name: str) -> int:
        return int(self.entries.get((kind, name), {}).get("ModifyIndex", 0))

    def config_entry(self, kind: str, name: str) -> dict[str, Any] | None:
        entry = self.entries.get((kind, name))
        return copy.deepcopy(entry) if entry is not None else None

    def put_config_entry(self, entry: dict[str, Any], cas: int | None = None) -> bool:
        self.writes.append(("put", entry["Kind"], entry["Name"], cas))
        if self.lose or (cas is not None and cas != self._current_index(entry["Kind"], entry["Name"])):
            return False
        self.store(entry)
        return True

    def delete_config_entry(self, kind: str, name: str, cas: int | None = None) -> bool:
        self.writes.append(("delete", kind, name, cas))
        if self.lose or (cas is not None and cas != self._current_index(kind, name)):
            return False
        self.entries.pop((kind, name), None)
        return True


@dataclass(frozen=True)
class Node:
    id: str


class FakeMesh:
    """What ``swap`` uses of the driver: its API, its nodes, and each node's configuration digest."""

    def __init__(self, api: FakeAPI, control_plane: str = "local") -> None:
        self.api = api
        self.control_plane = control_plane
        self.watched: list[tuple[str, Any]] = []

    def push_marks(self, node_ids: list[str]) -> dict[str, float]:
        self.watched.append(("marks", list(node_ids)))
        return {"productpage-v1-0": 1.0}

    def await_push_marks(self, before: dict[str, float]) -> None:
        self.watched.append(("await", dict(before)))

    def nodes(self) -> list[Node]:
        return [Node("productpage-v1-0"), Node("gateway")]

    def node(self, node_id: str) -> Node:
        return Node(node_id)

    def config_digest(self, node: Node) -> str:
        return f"digest-of-{node.id}"


@pytest.fixture(name="pushes")
def _pushes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Every wait for Consul's push ``swap`` starts (with the digests it waits to move)."""
    waited: list[dict[str, str]] = []
    monkeypatch.setattr(changes, "_await_push", lambda mesh, before: waited.append(dict(before)))
    return waited


SPLIT_BEFORE = entries.splitter("reviews", {"v1": 34, "v2": 33, "v3": 33})
SPLIT_AFTER = entries.splitter("reviews", {"v1": 100, "v2": 0, "v3": 0})


def swap_data(old: dict[str, Any] | None, new: dict[str, Any] | None, kind: str = "service-splitter",
              name: str = "reviews") -> dict[str, Any]:
    return {"op": "consul-entries", "entries": [{"kind": kind, "name": name, "from": old, "to": new}],
            "watch": ["productpage-v1-0", "gateway", "no-such-node"]}


class TestSwap:
    def test_writes_with_check_and_set_and_waits_for_the_push(self, pushes: list[dict[str, str]]) -> None:
        api = FakeAPI(SPLIT_BEFORE)
        index = api.entries[("service-splitter", "reviews")]["ModifyIndex"]
        swap(FakeMesh(api), swap_data(SPLIT_BEFORE, SPLIT_AFTER))
        assert api.writes == [("put", "service-splitter", "reviews", index)]
        assert normalized(api.config_entry("service-splitter", "reviews")) == SPLIT_AFTER
        # Watched nodes the mesh does not have are left out of the wait.
        assert pushes == [{"productpage-v1-0": "digest-of-productpage-v1-0", "gateway": "digest-of-gateway"}]

    def test_in_a_datacenter_the_push_is_watched_through_prometheus(self, pushes: list[dict[str, str]]) -> None:
        """A datacenter's sidecars have no admin endpoint the harness reaches: their accepted-update counts are
        read (through Prometheus) before the first write and waited on after it; nothing when nothing is
        written (a replayed undo asks Prometheus nothing)."""
        mesh = FakeMesh(FakeAPI(SPLIT_BEFORE), control_plane="cluster")
        mesh.config_digest = None  # type: ignore[assignment,method-assign]  # a datacenter's: never asked
        swap(mesh, swap_data(SPLIT_BEFORE, SPLIT_AFTER))
        assert normalized(mesh.api.config_entry("service-splitter", "reviews")) == SPLIT_AFTER
        assert pushes == []
        assert mesh.watched == [("marks", ["productpage-v1-0", "gateway", "no-such-node"]),
                                ("await", {"productpage-v1-0": 1.0})]
        swap(mesh, swap_data(SPLIT_BEFORE, SPLIT_AFTER))  # already so
        assert len(mesh.watched) == 2

    def test_creates_only_while_absent_and_deletes_at_its_index(self, pushes: list[dict[str, str]]) -> None:
        intentions = {"Kind": "service-intentions", "Name": "details",
                      "Sources": [{"Name": "productpage", "Action": "deny"}]}
        api = FakeAPI()
        swap(FakeMesh(api), swap_data(None, intentions, "service-intentions", "details"))
        assert api.writes == [("put", "service-intentions", "details", 0)]
        index = api.entries[("service-intentions", "details")]["ModifyIndex"]
        swap(FakeMesh(api), swap_data(intentions, None, "service-intentions", "details"))
        assert api.writes[1:] == [("delete", "service-intentions", "details", index)]
        assert api.config_entry("service-intentions", "details") is None
        assert len(pushes) == 2

    def test_an_entry_someone_else_changed_is_a_conflict_and_nothing_is_written(
            self, pushes: list[dict[str, str]]) -> None:
        theirs = entries.splitter("reviews", {"v1": 50, "v2": 50})
        api = FakeAPI(theirs)
        with pytest.raises(Conflict, match="service-splitter reviews was changed by someone else since the harness "
                                           "read it; it is left as it is"):
            swap(FakeMesh(api), swap_data(SPLIT_BEFORE, SPLIT_AFTER))
        assert api.writes == []
        assert normalized(api.config_entry("service-splitter", "reviews")) == theirs
        assert pushes == []

    def test_an_entry_someone_else_created_is_a_conflict(self, pushes: list[dict[str, str]]) -> None:
        theirs = {"Kind": "service-intentions", "Name": "details", "Sources": [{"Name": "web", "Action": "allow"}]}
        api = FakeAPI(theirs)
        mine = {"Kind": "service-intentions", "Name": "details", "Sources": [{"Name": "productpage", "Action": "deny"}]}
        with pytest.raises(Conflict):
            swap(FakeMesh(api), swap_data(None, mine, "service-intentions", "details"))
        assert api.writes == []
        assert pushes == []

    def test_check_and_set_lost_is_a_conflict(self, pushes: list[dict[str, str]]) -> None:
        api = FakeAPI(SPLIT_BEFORE, lose=True)
        with pytest.raises(Conflict, match="changed by someone else while the harness wrote it"):
            swap(FakeMesh(api), swap_data(SPLIT_BEFORE, SPLIT_AFTER))
        assert len(api.writes) == 1  # tried once, not again over the other writer
        assert normalized(api.config_entry("service-splitter", "reviews")) == SPLIT_BEFORE
        assert pushes == []

    def test_a_lost_delete_is_a_conflict(self, pushes: list[dict[str, str]]) -> None:
        mine = {"Kind": "service-intentions", "Name": "details", "Sources": [{"Name": "productpage", "Action": "deny"}]}
        api = FakeAPI(mine, lose=True)
        with pytest.raises(Conflict):
            swap(FakeMesh(api), swap_data(mine, None, "service-intentions", "details"))
        assert api.config_entry("service-intentions", "details") is not None
        assert pushes == []

    def test_an_entry_already_at_to_is_not_written_and_not_waited_for(self, pushes: list[dict[str, str]]) -> None:
        """A replayed undo, or an undo of what never took: nothing to write, no push to wait for."""
        api = FakeAPI(SPLIT_AFTER)
        swap(FakeMesh(api), swap_data(SPLIT_BEFORE, SPLIT_AFTER))
        assert api.writes == []
        assert pushes == []
        absent = FakeAPI()
        swap(FakeMesh(absent), swap_data(SPLIT_BEFORE, None))
        assert absent.writes == []
        assert pushes == []

    def test_as_consul_returns_it_counts_as_already_there(self, pushes: list[dict[str, str]]) -> None:
        """Consul's own text of an entry (nanoseconds, empty fields, computed Precedence) is the entry written."""
        api = FakeAPI(RETURNED_DEFAULTS, RETURNED_INTENTIONS)
        swap(FakeMesh(api), {"op": "consul-entries", "watch": [], "entries": [
            {"kind": "service-defaults", "name": "reviews", "from": None,
             "to": written("service-defaults", "reviews")},
            {"kind": "service-intentions", "name": "details", "from": None,
             "to": {"Kind": "service-intentions", "Name": "details",
                    "Sources": [{"Name": "productpage", "Action": "deny"}]}}]})
        assert api.writes == []
        assert pushes == []

    def test_apply_then_undo_restores_the_entry_and_undo_twice_writes_nothing(
            self, pushes: list[dict[str, str]]) -> None:
        api = FakeAPI(SPLIT_BEFORE)
        do = swap_data(SPLIT_BEFORE, SPLIT_AFTER)
        undo = swap_data(SPLIT_AFTER, SPLIT_BEFORE)
        swap(FakeMesh(api), do)
        swap(FakeMesh(api), undo)
        assert normalized(api.config_entry("service-splitter", "reviews")) == SPLIT_BEFORE
        swap(FakeMesh(api), undo)
        assert [w[0] for w in api.writes] == ["put", "put"]
        assert len(pushes) == 2
