"""Geometries. Every geometry compiles to a :class:`SubvolumeGraph` via ``to_graph()``."""

from .graph import SubvolumeGraph
from .lattice import Lattice, Selector
from .selectors import Box, Where
from .tetmesh import TetMesh

__all__ = ["Box", "Lattice", "Selector", "SubvolumeGraph", "TetMesh", "Where", "as_graph"]


def as_graph(space: object) -> SubvolumeGraph:
    """The subvolume graph of a geometry object (anything with ``to_graph()``) or a graph."""
    if isinstance(space, SubvolumeGraph):
        return space
    to_graph = getattr(space, "to_graph", None)
    if to_graph is None:
        from ..errors import GeometryError

        raise GeometryError(
            f"{type(space).__name__} is not a geometry: expected a Lattice, a TetMesh, a "
            "SubvolumeGraph or an object with a to_graph() method"
        )
    return to_graph()
