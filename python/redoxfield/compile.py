"""Compile a :class:`~redoxfield.model.Model` on a :class:`SubvolumeGraph` into
the arrays of ``redoxfield._core.NsmEngine`` -- in one function,
:func:`compile_problem`.

Transport classes (rows of ``transport_coefficients``, one column per species):

- class ``c`` for ``c < n_compartments``: diffusion inside compartment ``c``,
  coefficient ``D_s`` (µm²/s); edges with ``edge_membrane == -1`` whose source
  lies in compartment ``c`` get class ``c``;
  ``D_s`` is the species' value in that compartment (``Species.diffusion_in``:
  0 where it does not live, and always 0 for membrane-bound species);
- class ``n_compartments + m``: crossing membrane ``m``, coefficient the
  permeability ``P_s,m`` (µm/s) from ``Model.permeability``; unset = 0
  (impermeable, as STEPS does by default).

Reaction scope: the intersection of its ``region``, ``compartment`` and
``membrane`` (subvolumes where that membrane has area), of the compartments
where each of its species lives, and, for each membrane-bound species it
involves, of the subvolumes its membranes pass through.

Rate classes (rows of ``rate_constants``, one column per reaction): subvolumes
that share the same volume, compartment, membership of every region used by a
reaction, presence of every membrane used, and area of every membrane that
carries an order-0 surface source share one row. The mesoscopic constants come
from :mod:`redoxfield.units`; a reaction is 0 outside its scope.
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
    #: Storage order for the exact solver (SubvolumeGraph.storage_order); None:
    #: as given. Results are in the graph's order either way.
    layout: NDArray[np.int64] | None = None

    def engine_kwargs(self) -> dict[str, object]:
        net = self.network
        extra = {} if self.layout is None else {"layout": self.layout}
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
            **extra,
        }

    def propensity_constants(self) -> NDArray[np.float64]:
        """(N, R) mesoscopic constant of every reaction in every subvolume."""
        return self.rate_constants[self.rate_class]


def _membrane_index(graph: SubvolumeGraph, name: str, what: str) -> int:
    if name not in graph.membrane_names:
        known = ", ".join(graph.membrane_names) or "none"
        raise ModelError(
            f"{what} refers to unknown membrane {name!r} (the geometry defines: {known})"
        )
    return graph.membrane_names.index(name)


def _species_mask(model: Model, name: str, graph: SubvolumeGraph) -> NDArray[np.bool_] | None:
    """Subvolumes where species ``name`` may exist (None: everywhere)."""
    sp = model.get_species(name)
    assert graph.membrane_areas is not None
    if sp.membranes:
        cols = [_membrane_index(graph, m, f"membrane-bound species {name!r}") for m in sp.membranes]
        return np.any(graph.membrane_areas[:, cols] > 0, axis=1)
    if sp.compartments is not None:
        for c in sp.compartments:
            if c not in graph.compartment_names:
                known = ", ".join(graph.compartment_names)
                raise ModelError(
                    f"species {name!r} lives in unknown compartment {c!r} "
                    f"(the geometry defines: {known})"
                )
        ids = [graph.compartment_names.index(c) for c in sp.compartments]
        return np.isin(graph.compartments, ids)
    return None


def _scope_mask(rx, graph: SubvolumeGraph, model: Model | None = None) -> NDArray[np.bool_]:
    mask = np.ones(graph.n_subvolumes, dtype=bool)
    if rx.membrane is not None:
        assert graph.membrane_areas is not None
        m = _membrane_index(graph, rx.membrane, f"reaction {rx.name!r}")
        mask &= graph.membrane_areas[:, m] > 0
    if model is not None:
        for sp in dict.fromkeys((*rx.reactants, *rx.products)):
            sm = _species_mask(model, sp, graph)
            if sm is not None:
                mask &= sm
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
            f"reaction {rx.name!r} happens nowhere: region {rx.region!r}, compartment "
            f"{rx.compartment!r}, membrane {rx.membrane!r} and the places where its species "
            "live share no subvolume"
        )
    return mask


def compile_problem(model: Model, graph: SubvolumeGraph) -> CoreProblem:
    """Compile ``model`` on ``graph`` (see the module docstring for the classes)."""
    net = compile_network(model)
    for name in net.species:  # unknown compartments / membranes of a species
        _species_mask(model, name, graph)
    n = graph.n_subvolumes
    n_comp = len(graph.compartment_names)
    n_mem = len(graph.membrane_names)

    # Transport classes.
    coeffs = np.zeros((n_comp + n_mem, len(net.species)), dtype=np.float64)
    for c, cname in enumerate(graph.compartment_names):
        coeffs[c] = [sp.diffusion_in(cname) for sp in model.species_list]
    src = graph.edge_sources
    for (sp, mem), p in model.permeabilities.items():
        m = _membrane_index(graph, mem, f"the permeability of {sp!r}")
        if p > 0:
            on_m = graph.edge_membrane == m
            if not on_m.any():
                raise ModelError(
                    f"permeability of {sp!r} through membrane {mem!r}: that membrane has no "
                    "faces between compartments (a sub-voxel membrane_area carries no transport)"
                )
            sides = np.unique(graph.compartments[src[on_m]])
            spec = model.get_species(sp)
            for c in sides:
                cname = graph.compartment_names[int(c)]
                if not spec.lives_in(cname):
                    raise ModelError(
                        f"permeability of {sp!r} through membrane {mem!r}: {sp!r} does not "
                        f"live in compartment {cname!r} on one side of it"
                    )
        coeffs[n_comp + m, net.species.index(sp)] = p
    class_names = tuple(f"diffusion:{c}" for c in graph.compartment_names) + tuple(
        f"membrane:{m}" for m in graph.membrane_names
    )
    edge_class = np.where(
        graph.edge_membrane < 0, graph.compartments[src], n_comp + graph.edge_membrane
    ).astype(np.int64)

    # Rate classes: key = (volume id, compartment, membership of each used region).
    rxs = model.reactions
    masks = [_scope_mask(rx, graph, model) for rx in rxs]
    used_regions = sorted({rx.region for rx in rxs if rx.region is not None})
    assert graph.membrane_areas is not None
    surface_src = sorted(
        {_membrane_index(graph, rx.membrane, rx.name) for rx in rxs if rx.membrane and not rx.order}
    )
    _, vol_id = np.unique(graph.volumes, return_inverse=True)
    key_cols = [vol_id.reshape(-1).astype(np.int64), graph.compartments.astype(np.int64)]
    key_cols += [graph.regions[r].astype(np.int64) for r in used_regions]
    # Presence of every membrane, and the area of those carrying surface sources.
    key_cols += [(graph.membrane_areas[:, m] > 0).astype(np.int64) for m in range(n_mem)]
    for m in surface_src:
        _, a_id = np.unique(graph.membrane_areas[:, m], return_inverse=True)
        key_cols.append(a_id.reshape(-1).astype(np.int64))
    keys = np.stack(key_cols, axis=1)
    _, first, rate_class = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rate_class = rate_class.reshape(-1).astype(np.int64)
    rep_vol = graph.volumes[first]
    constants = np.zeros((first.shape[0], len(rxs)), dtype=np.float64)
    for r, (rx, mask) in enumerate(zip(rxs, masks, strict=True)):
        inside = mask[first]
        if rx.membrane is not None and rx.order == 0:
            m = graph.membrane_names.index(rx.membrane)
            rep_area = graph.membrane_areas[first, m]
            if rx.flux is not None:
                total_area = float(graph.membrane_areas[mask, m].sum())
                c = float(rx.flux) * rep_area / total_area
            else:
                c = units.surface_order0_constant(rx.k, rep_area)
        elif rx.flux is not None:
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
        layout=graph.storage_order(),
    )
