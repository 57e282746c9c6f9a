"""mesh-harness: chaos and traffic-policy experiments against a service mesh, with statistical verdicts.

The public API: load and check documents, drive the local mesh, run experiments, read verdicts.
Everything else (``harness.*`` submodules) is internal and may change.
"""

from harness._errors import ConfigRejected, FaultError, HarnessError, InputError, MeshError, Problem
from harness.assertions import Evidence, Outcome, WindowEvidence, evaluate
from harness.mesh.local.driver import LocalMesh
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment, load_suite
from harness.model.schema import environment_schema, suite_schema
from harness.model.suite import Experiment, Suite
from harness.runner.results import ExperimentResult, SuiteResult
from harness.runner.session import MeshSession, load_checked, run_suites

__version__ = "0.1.0"

__all__ = [
    "ConfigRejected",
    "Environment",
    "Evidence",
    "Experiment",
    "ExperimentResult",
    "FaultError",
    "HarnessError",
    "InputError",
    "Loaded",
    "LocalMesh",
    "MeshError",
    "MeshSession",
    "Outcome",
    "Problem",
    "Suite",
    "SuiteResult",
    "WindowEvidence",
    "__version__",
    "environment_schema",
    "evaluate",
    "load_checked",
    "load_environment",
    "load_suite",
    "run_suites",
    "suite_schema",
]
