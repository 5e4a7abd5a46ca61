"""redoxfield: stochastic spatial reaction-diffusion of H2O2 redox signalling in
skeletal muscle. A Rust core (``redoxfield._core``) driven from Python.

>>> import redoxfield as rf
>>> m = rf.Model(); space = rf.Lattice(shape=(10, 10, 10), spacing=0.1)

See docs/python-api.md.
"""

from . import fiber
from ._version import __version__
from .ensemble import Ensemble
from .ensemble_result import EnsembleResult
from .errors import (
    EnsembleError,
    GeometryError,
    ModelError,
    RedoxfieldError,
    ScenarioError,
    SimulationError,
)
from .fast_ensemble import EnsembleTotals, ensemble_totals
from .geometry import Box, Lattice, SubvolumeGraph, TetMesh, Where
from .model import Model
from .result import Result
from .scenario import builtin_scenarios, load_scenario
from .simulation import Simulation

__all__ = [
    "Box",
    "Ensemble",
    "EnsembleError",
    "EnsembleResult",
    "EnsembleTotals",
    "GeometryError",
    "Lattice",
    "Model",
    "ModelError",
    "RedoxfieldError",
    "Result",
    "ScenarioError",
    "Simulation",
    "SimulationError",
    "SubvolumeGraph",
    "TetMesh",
    "Where",
    "__version__",
    "fiber",
    "builtin_scenarios",
    "ensemble_totals",
    "load_scenario",
]
