"""Compile a :class:`~redoxfield.model.Model` on a :class:`SubvolumeGraph` into
the arrays of ``redoxfield._core.NsmEngine`` -- in one function,
:func:`compile_problem`.

Transport classes (rows of ``transport_coefficients``, one column per species):

- class ``c`` for ``c < n_compartments``: diffusion inside compartment ``c``,
  coefficient ``D_s`` (µm²/s); edges with ``edge_membrane == -1`` whose source
  lies in compartment ``c`` get class ``c``;
- class ``n_compartments + m``: crossing membrane ``m``, coefficient the
  permeability ``P_s,m`` (µm/s). The model has no permeabilities yet, so these
  rows are 0 (impermeable, as STEPS does by default).

Rate classes (rows of ``rate_constants``, one column per reaction): subvolumes
that share the same volume, compartment and membership of every region used by
a reaction share one row. The mesoscopic constants come from
:mod:`redoxfield.units`; a reaction is 0 outside its scope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from . import units
from .errors import ModelError
from .geometry.graph import SubvolumeGraph
from .model import Model

__all__ = ["CoreProblem", "ReactionNetwork", "compile_network", "compile_problem"]


@dataclass(frozen=True, eq=False)
class ReactionNetwork:
    """Index form of a Model: species/reactions as integer arrays (no geometry)."""

    species: tuple[str, ...]
    diffusion: NDArray[np.float64]  # (S,) µm²/s
    reaction_names: tuple[str, ...]
    reactants: NDArray[np.int64]  # (R, 2), -1 = empty slot
    product_offsets: NDArray[np.int64]  # (R+1,)
    product_species: NDArray[np.int64]  # (P,)
    order: NDArray[np.int64]  # (R,)


def compile_network(model: Model) -> ReactionNetwork:
    """Species and reactions of ``model`` as index arrays."""
    names = model.species_names
    if not names:
        raise ModelError("the model has no species")
    index = {n: i for i, n in enumerate(names)}
    rxs = model.reactions
    reactants = np.full((len(rxs), 2), -1, dtype=np.int64)
    offsets = np.zeros(len(rxs) + 1, dtype=np.int64)
    products: list[int] = []
    for r, rx in enumerate(rxs):
        for slot, sp in enumerate(rx.reactants):
            reactants[r, slot] = index[sp]
        products.extend(index[sp] for sp in rx.products)
        offsets[r + 1] = len(products)
    return ReactionNetwork(
        species=names,
        diffusion=np.array([s.D for s in model.species_list], dtype=np.float64),
        reaction_names=tuple(rx.name for rx in rxs),
        reactants=reactants,
        product_offsets=offsets,
        product_species=np.array(products, dtype=np.int64),
        order=np.array([rx.order for rx in rxs], dtype=np.int64),
    )


@dataclass(frozen=True, eq=False)
class CoreProblem:
    """Everything ``NsmEngine`` needs except the counts and the seed."""

    network: ReactionNetwork
    volumes: NDArray[np.float64]
    edge_offsets: NDArray[np.int64]
    edge_targets: NDArray[np.int64]
    edge_coupling: NDArray[np.float64]
    edge_class: NDArray[np.int64]
    transport_coefficients: NDArray[np.float64]  # (n_transport_classes, S)
    transport_class_names: tuple[str, ...]
    rate_class: NDArray[np.int64]  # (N,)
    rate_constants: NDArray[np.float64]  # (n_rate_classes, R)

    def engine_kwargs(self) -> dict[str, object]:
        net = self.network
        return {
            "volumes": self.volumes,
            "edge_offsets": self.edge_offsets,
            "edge_targets": self.edge_targets,
            "edge_coupling": self.edge_coupling,
            "edge_class": self.edge_class,
            "transport_coefficients": self.transport_coefficients,
            "reactants": net.reactants,
            "product_offsets": net.product_offsets,
            "product_species": net.product_species,
            "rate_class": self.rate_class,
            "rate_constants": self.rate_constants,
            "species_names": list(net.species),
        }

    def propensity_constants(self) -> NDArray[np.float64]:
        """(N, R) mesoscopic constant of every reaction in every subvolume."""
        return self.rate_constants[self.rate_class]


def _scope_mask(rx, graph: SubvolumeGraph) -> NDArray[np.bool_]:
    mask = np.ones(graph.n_subvolumes, dtype=bool)
    if rx.region is not None:
        if rx.region not in graph.regions:
            known = ", ".join(graph.regions) or "none"
            raise ModelError(
                f"reaction {rx.name!r} refers to unknown region {rx.region!r} "
                f"(the geometry defines: {known})"
            )
        mask &= graph.regions[rx.region]
    if rx.compartment is not None:
        if rx.compartment not in graph.compartment_names:
            known = ", ".join(graph.compartment_names)
            raise ModelError(
                f"reaction {rx.name!r} refers to unknown compartment {rx.compartment!r} "
                f"(the geometry defines: {known})"
            )
        mask &= graph.compartments == graph.compartment_names.index(rx.compartment)
    if not mask.any():
        raise ModelError(
            f"reaction {rx.name!r} happens nowhere: region {rx.region!r} and compartment "
            f"{rx.compartment!r} share no subvolume"
        )
    return mask


def compile_problem(model: Model, graph: SubvolumeGraph) -> CoreProblem:
    """Compile ``model`` on ``graph`` (see the module docstring for the classes)."""
    net = compile_network(model)
    n = graph.n_subvolumes
    n_comp = len(graph.compartment_names)
    n_mem = len(graph.membrane_names)

    # Transport classes.
    coeffs = np.zeros((n_comp + n_mem, len(net.species)), dtype=np.float64)
    coeffs[:n_comp] = net.diffusion[None, :]
    class_names = tuple(f"diffusion:{c}" for c in graph.compartment_names) + tuple(
        f"membrane:{m}" for m in graph.membrane_names
    )
    src = graph.edge_sources
    edge_class = np.where(
        graph.edge_membrane < 0, graph.compartments[src], n_comp + graph.edge_membrane
    ).astype(np.int64)

    # Rate classes: key = (volume id, compartment, membership of each used region).
    rxs = model.reactions
    masks = [_scope_mask(rx, graph) for rx in rxs]
    used_regions = sorted({rx.region for rx in rxs if rx.region is not None})
    _, vol_id = np.unique(graph.volumes, return_inverse=True)
    key_cols = [vol_id.reshape(-1).astype(np.int64), graph.compartments.astype(np.int64)]
    key_cols += [graph.regions[r].astype(np.int64) for r in used_regions]
    keys = np.stack(key_cols, axis=1)
    _, first, rate_class = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rate_class = rate_class.reshape(-1).astype(np.int64)
    rep_vol = graph.volumes[first]
    constants = np.zeros((first.shape[0], len(rxs)), dtype=np.float64)
    for r, (rx, mask) in enumerate(zip(rxs, masks, strict=True)):
        inside = mask[first]
        if rx.flux is not None:
            total_volume = float(graph.volumes[mask].sum())
            c = units.order0_flux_constant(rx.flux, rep_vol, total_volume)
        else:
            assert rx.k is not None
            c = units.mesoscopic_constant(rx.order, rx.k, rep_vol, same_species=rx.homodimer)
        constants[:, r] = np.where(inside, c, 0.0)
    if len(rxs) == 0:
        rate_class = np.zeros(n, dtype=np.int64)
        constants = np.zeros((1, 0), dtype=np.float64)
    if not np.all(np.isfinite(constants)):
        bad = int(np.nonzero(~np.isfinite(constants).all(axis=0))[0][0])
        raise ModelError(
            f"reaction {rxs[bad].name!r}: its mesoscopic constant is not finite for these "
            "subvolume volumes (rate constant too large?)"
        )
    return CoreProblem(
        network=net,
        volumes=np.ascontiguousarray(graph.volumes, dtype=np.float64),
        edge_offsets=np.ascontiguousarray(graph.edge_offsets, dtype=np.int64),
        edge_targets=np.ascontiguousarray(graph.edge_targets, dtype=np.int64),
        edge_coupling=np.ascontiguousarray(graph.edge_coupling, dtype=np.float64),
        edge_class=edge_class,
        transport_coefficients=coeffs,
        transport_class_names=class_names,
        rate_class=rate_class,
        rate_constants=np.ascontiguousarray(constants),
    )
