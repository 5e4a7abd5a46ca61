"""Helpers of the biology tests: small geometries and a time-averaging driver
that keeps no samples (the engine's counts are summed into numpy arrays)."""

from __future__ import annotations

import numpy as np

import redoxfield as rf


def averaged_counts(sim, windows, dt, species):
    """Mean counts per subvolume of each of ``species`` over each time window
    ``(t0, t1)``, sampled every ``dt`` (the windows in increasing order), and the
    engine at the end (for its reaction counters)."""
    eng = sim.make_engine()
    n, s = sim.counts.shape
    buf = np.empty((n, s), dtype=np.uint32)
    idx = [list(sim.species).index(x) for x in species]
    out = []
    for t0, t1 in windows:
        ts = np.arange(t0 + dt, t1 + 1e-12, dt)
        acc = np.zeros((n, len(idx)))
        if t0 > eng.time:
            eng.advance(t0, None)
        for t in ts:
            eng.advance(float(t), None)
            eng.counts_into(buf)
            acc += buf[:, idx]
        out.append(acc / len(ts))
    return out, eng


def reaction_events(eng, sim, name):
    """Cumulative count of reaction ``name`` in the engine."""
    names = [r.name for r in sim.model.reactions]
    return int(np.asarray(eng.reaction_events())[names.index(name)])


def mito_column(h=1.0, nerve=False):
    """A coarse lattice: mitochondrial matrix | IMS | cytosol | extracellular
    (sarcolemma), and with ``nerve``: | nerve terminal | its IMS | its matrix.
    One voxel each (well mixed at this h), region ``fibre`` on the muscle side."""
    nx = 7 if nerve else 4
    space = rf.Lattice(shape=(nx, 1, 1), spacing=h)
    comp = np.array(
        [
            "mito_matrix",
            "mito_ims",
            "cytosol",
            "extracellular",
            "nerve_terminal",
            "mito_ims",
            "mito_matrix",
        ][:nx]
    )
    for name in ("extracellular", "mito_ims", "mito_matrix", "nerve_terminal"):
        if (comp == name).any():
            space.compartment(name, comp == name)
    space.membrane("mito_inner", between=("mito_matrix", "mito_ims"))
    pairs = [("mito_ims", "cytosol")] + ([("mito_ims", "nerve_terminal")] if nerve else [])
    space.membrane("mito_outer", between=pairs)
    space.membrane("sarcolemma", between=("cytosol", "extracellular"))
    if nerve:
        space.membrane("nerve_membrane", between=("nerve_terminal", "extracellular"))
    space.region("fibre", np.arange(nx) < 3)
    return space
