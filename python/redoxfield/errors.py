"""Exception types of redoxfield, in one module.

Every error raised for bad user input is a :class:`ValueError` subclass whose
message names the bad thing (a species, a reaction, a region, a key of a scenario
file, ...), so ``except ValueError`` catches all of them and ``except
redoxfield.errors.RedoxfieldError`` catches only ours. Failures inside a running
simulation come from the compiled core as ``redoxfield._core.CoreError``.
"""

from __future__ import annotations

__all__ = [
    "EnsembleError",
    "GeometryError",
    "ModelError",
    "RedoxfieldError",
    "ScenarioError",
    "SimulationError",
]


class RedoxfieldError(Exception):
    """Base class of every exception raised by the Python package."""


class ModelError(RedoxfieldError, ValueError):
    """Bad species, reaction, rate constant or diffusion coefficient."""


class GeometryError(RedoxfieldError, ValueError):
    """Bad lattice, subvolume graph or region."""


class SimulationError(RedoxfieldError, ValueError):
    """Bad initial condition, run setting or output target."""


class ScenarioError(RedoxfieldError, ValueError):
    """Bad scenario file (TOML): the message names the key and its location."""


class EnsembleError(RedoxfieldError, ValueError):
    """Bad ensemble or sweep (unknown parameter, empty value list), an unreachable
    Dask scheduler, failed or missing trajectories of an ensemble."""
