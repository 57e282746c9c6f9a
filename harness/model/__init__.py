"""The Suite and Environment documents: models, YAML loading with positions, JSON Schema."""

from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment, load_suite
from harness.model.suite import Experiment, Suite

__all__ = ["Environment", "Experiment", "Loaded", "Suite", "load_environment", "load_suite"]
