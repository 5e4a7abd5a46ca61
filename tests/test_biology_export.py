"""Exercise-induced EV export counters and the extracellular H2O2 sink."""

from __future__ import annotations

import numpy as np

import redoxfield as rf
from redoxfield import biology as bio
from redoxfield import protocols as P
from redoxfield.geometry import as_graph


def test_ev_export_follows_contraction_activity() -> None:
    """Export (Prx and SOD1 into their _EV counters) runs at k_rest at rest and
    at active_over_rest times that during contraction: the ratio of exports in
    equal rest and contraction windows is 2 within 4 standard errors (Poisson
    counts; depletion of the pools over 4 ms is < 0.5 % and neglected)."""
    space = rf.fiber.segment(radius=1.5, sarcomeres=1, ss_mito_share=1.0)
    module = bio.EvExport(k_rest=5.0, active_over_rest=2.0)
    built = bio.Recipe(modules=[*bio.default_modules(), module], activity=None).build(space)
    sim = built.simulation(space, seed=4)
    sim.set_protocol(P.sequence(P.rest(0.002), P.continuous(0.002, intensity=1.0)))
    res = sim.run(0.004, 0.002)
    exported = sum(res.total(s) for s in ("Prx_EV", "SOD1_EV", "SOD2_EV"))
    at_rest, active = exported[1] - exported[0], exported[2] - exported[1]
    ratio = active / at_rest
    se = ratio * np.sqrt(1 / active + 1 / at_rest)
    assert at_rest > 500
    assert abs(ratio - 2.0) < 4 * se, (ratio, se)
    # Only enzyme next to the sarcolemma leaves: the counters sit in its voxels.
    ev = res.counts("Prx_EV", sample=-1)
    graph = as_graph(space)
    near = graph.membrane_areas[:, graph.membrane_names.index("sarcolemma")] > 0
    assert ev[~near].sum() == 0 and ev[near].sum() == res.total("Prx_EV")[-1]


def test_ev_export_is_optional_and_clearance_is_default() -> None:
    names = [type(m).__name__ for m in bio.default_modules()]
    assert "ExtracellularClearance" in names and "EvExport" not in names
    space = rf.fiber.segment(radius=1.5, sarcomeres=1, ss_mito_share=1.0)
    built = bio.Recipe(modules=bio.default_modules(), activity=1.0).build(space)
    (rx,) = [r for r in built.model.reactions if r.name == "extracellular H2O2 clearance"]
    assert rx.compartment == "extracellular" and rx.equation == "H2O2 -> 0"


def test_docs_parameter_table_is_current() -> None:
    """docs/biology.md prints every default with its source: it must match the code."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "biology.md").read_text()
    assert bio.params.markdown_table() in text
