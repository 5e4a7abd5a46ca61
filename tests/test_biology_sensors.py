"""Biosensors (issue 5, acceptance bullets 5-6): HyPer7 and roGFP2-Orp1 reading
the same NOX2 transient, and a vitamin C-like supplement lowering it.

One cytosolic voxel of 1 um^3 behind a sarcolemma with NOX2 (tests/_biology.py),
contracting from t = 0 (NOX2 assembles in ~50 ms, far faster than the sensors).
The mean H2O2 over the run comes from the exact counter of the 160/s sink."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from redoxfield import biology as bio
from redoxfield.units import MOLECULES_PER_UM_UM3

from ._biology import averaged_counts, mito_column, reaction_events

HAVE_CORE = importlib.util.find_spec("redoxfield._core") is not None
pytestmark = pytest.mark.skipif(not HAVE_CORE, reason="compiled core not built")

T_END, DT = 200.0, 2.0
SINK = bio.PARAMS["k_other_sinks"].value


def _sensors():
    # 10 uM roGFP2-Orp1 so that its small oxidised fraction is hundreds of molecules
    return [bio.HyPer7(), bio.RoGFP2Orp1(concentration=10.0)]


def _run(interventions=(), seed=5):
    space = mito_column()
    recipe = bio.Recipe(
        [bio.Nox2(density=2000.0), bio.PrxTrx(), bio.Membranes()],
        _sensors(),
        interventions,
        activity=1.0,
    )
    sim = recipe.build(space).simulation(space, seed=seed)
    windows = [(t, t + DT) for t in np.arange(0.0, T_END, DT)]
    names = ["HyPer7", "HyPer7_ox", "roGFP2_Orp1", "roGFP2_Orp1_ox"]
    avgs, eng = averaged_counts(sim, windows, DT, names)
    tot = np.array([a.sum(axis=0) for a in avgs])  # (T, 4): one sample per window end
    theta = {
        "HyPer7": tot[:, 1] / (tot[:, 0] + tot[:, 1]),
        "roGFP2_Orp1": tot[:, 3] / (tot[:, 2] + tot[:, 3]),
    }
    n_mean = reaction_events(eng, sim, "other H2O2 sinks in cytosol") / (SINK * T_END)
    c_uM = n_mean / (float(sim.graph.volumes[2]) * MOLECULES_PER_UM_UM3)
    times = np.array([w[1] for w in windows])
    return times, theta, c_uM


def _fit(times, theta):
    """Amplitude and time constant of theta = A (1 - exp(-t/tau)) (least squares on
    a grid of tau, A linear)."""
    best = None
    for tau in np.geomspace(1.0, 1000.0, 400):
        g = 1 - np.exp(-times / tau)
        a = float(g @ theta / (g @ g))
        err = float(((theta - a * g) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, a, tau)
    return best[1], best[2]


#: Seeds pooled by the control run: a free (amplitude, tau) fit of roGFP2-Orp1's slow,
#: small rise from one trajectory scatters by 25-40 % (seeds 5-7 gave amplitudes
#: 0.049, 0.036 and 0.027 for 0.0355 predicted), so the curve is averaged over three.
CONTROL_SEEDS = (5, 6, 7)


@pytest.fixture(scope="module")
def control():
    runs = [_run(seed=seed) for seed in CONTROL_SEEDS]
    times = runs[0][0]
    theta = {k: np.mean([r[1][k] for r in runs], axis=0) for k in runs[0][1]}
    return times, theta, float(np.mean([r[2] for r in runs]))


def test_hyper7_and_rogfp2_report_the_same_transient_as_predicted(control):
    times, theta, c = control
    out = {}
    for sensor in _sensors():
        th = theta[sensor.name]
        amp, tau = sensor.theta_steady(c), sensor.tau(c)
        predicted = amp * (1 - np.exp(-times / amp_tau_guard(tau)))
        rms = float(np.sqrt(np.mean((th - predicted) ** 2))) / amp
        fit_amp, fit_tau = _fit(times, th)
        early = float(th[times <= 20.0][-1]) / amp  # rise reached at t = 20 s
        out[sensor.name] = (amp, tau, early, fit_amp)
        print(
            f"{sensor.name}: predicted amplitude {amp:.4f}, tau {tau:.1f} s; fitted "
            f"{fit_amp:.4f}, {fit_tau:.1f} s; RMS deviation {100 * rms:.1f} % of the amplitude; "
            f"{100 * early:.0f} % of it reached at 20 s (mean H2O2 {1e3 * c:.3g} nM)"
        )
        # HyPer7: ~600 molecules at theta ~ 0.4; roGFP2-Orp1: 6000 at ~0.035 (binomial
        # noise ~ 4 % of the amplitude per sample and run; the fitted amplitude of the
        # three-run mean scatters by ~15 %)
        assert rms < 0.15
        assert fit_amp == pytest.approx(amp, rel=0.2)
    h, r = out["HyPer7"], out["roGFP2_Orp1"]
    # the same H2O2: HyPer7 rises more (amplitude) and faster (kinetics)
    assert h[3] > 5 * r[3]
    assert h[2] > 0.7 and r[2] < 0.35
    ratio_h = bio.sensors.ratio_from_fraction(np.array([h[3]]), bio.HyPer7().spec())[0]
    ratio_r = bio.sensors.ratio_from_fraction(np.array([r[3]]), bio.RoGFP2Orp1().spec())[0]
    print(f"recorded ratio change: HyPer7 x{ratio_h:.3f}, roGFP2-Orp1 x{ratio_r:.3f}")


def amp_tau_guard(tau: float) -> float:
    return max(tau, 1e-9)


def test_supplement_lowers_the_sensor_transient(control):
    times, theta, c = control
    _, theta_s, c_s = _run([bio.supplement(concentration=100.0, k_h2o2=6e7)])
    peak = theta["HyPer7"][-10:].mean()
    peak_s = theta_s["HyPer7"][-10:].mean()
    sensor = bio.HyPer7()
    print(
        f"HyPer7 oxidised fraction, last 20 s: {peak:.3f} -> {peak_s:.3f} with the supplement "
        f"(mean H2O2 {1e3 * c:.3g} -> {1e3 * c_s:.3g} nM; predicted "
        f"{sensor.theta_steady(c):.3f} -> {sensor.theta_steady(c_s):.3f})"
    )
    # the scavenger doubles k_eff (6000/s next to Prx's 5700/s): H2O2 about halves
    assert c_s == pytest.approx(c * 5840 / (5840 + 6000), rel=0.15)
    assert peak_s < 0.8 * peak
    assert peak_s == pytest.approx(sensor.theta_steady(c_s), rel=0.2)
