"""Genetically encoded biosensors as species, and the read-out an experimenter records.

A two-state sensor ``S`` (reduced) / ``S_ox`` is oxidised by its analyte and
reduced back: ``analyte + S -> S_ox`` at ``k_ox`` (1/(M s)), ``S_ox -> S`` at
``k_red`` (1/s; Trx for HyPer7, Grx/GSH for roGFP2, nothing for a MitoSOX-like
dye). With the analyte at a steady ``c`` the oxidised fraction relaxes as a
first-order system, ``θ_ss = k_ox c / (k_ox c + k_red)``, ``τ = 1 / (k_ox c +
k_red)`` -- what tests/test_biology_sensors.py checks the simulation against.

Read-out (:func:`readout`): the excitation ratio of a ratiometric probe with
fully reduced ratio ``R_red`` = 1 and fully oxidised ``R_ox`` = ``dynamic_range``;
``alpha`` is the brightness of the oxidised form at the denominator wavelength
relative to the reduced one (roGFP2's 488 nm), so
``R = (θ alpha R_ox + (1 - θ) R_red) / (θ alpha + 1 - θ)``, the inverse of the
usual OxD formula. An irreversible dye reports ``1 + θ (dynamic_range - 1)``, its
fluorescence relative to the unoxidised dye.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from .core import Context, check_fields
from .params import value as v

__all__ = [
    "SENSORS",
    "HyPer7",
    "MitoSOX",
    "RoGFP2Orp1",
    "Sensor",
    "SensorReadout",
    "readout",
]

#: Region added by a sensor with ``region = "nox2_proximal"``: cytosolic subvolumes
#: that carry sarcolemma, T-tubule or NMJ membrane (where p47phox docks on NOX2).
NOX2_PROXIMAL = "nox2_proximal"


@dataclass
class Sensor:
    name: str = "sensor"
    analyte: str = "H2O2"
    compartment: str = "cytosol"
    region: str | None = None
    concentration: float = v("sensor")
    k_ox: float = 0.0
    k_red: float = 0.0
    dynamic_range: float = 1.0
    alpha: float = 1.0
    kind: str = "ratiometric"

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.name.replace("_", "").isalnum() or not self.name[0].isalpha():
            raise ModelError(f"bad sensor name {self.name!r}: letters, digits and '_'")

    def theta_steady(self, c_uM: float) -> float:
        """Predicted steady oxidised fraction at a constant analyte ``c_uM``."""
        a = self.k_ox * c_uM * 1e-6
        return a / (a + self.k_red) if a + self.k_red > 0 else 0.0

    def tau(self, c_uM: float) -> float:
        """Predicted relaxation time (s) at a constant analyte ``c_uM``."""
        return 1.0 / (self.k_ox * c_uM * 1e-6 + self.k_red)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": type(self).__name__,
            "analyte": self.analyte,
            "compartment": self.compartment,
            "region": self.region,
            "k_ox": self.k_ox,
            "k_red": self.k_red,
            "dynamic_range": self.dynamic_range,
            "alpha": self.alpha,
            "kind": self.kind,
        }

    def build(self, ctx: Context) -> dict[str, Any] | None:
        if self.compartment not in ctx.compartments:
            raise ModelError(
                f"sensor {self.name!r}: the geometry has no compartment {self.compartment!r} "
                f"(it has: {', '.join(ctx.compartments)})"
            )
        if self.region == NOX2_PROXIMAL and NOX2_PROXIMAL not in ctx.regions:
            _add_nox2_proximal(ctx)
        if self.region is not None and self.region not in ctx.regions:
            known = ", ".join(sorted(ctx.regions)) or "none"
            raise ModelError(f"sensor {self.name!r}: unknown region {self.region!r} ({known})")
        if self.analyte not in ctx.model.species_names:
            raise ModelError(
                f"sensor {self.name!r} reads {self.analyte!r}, which no module declares"
            )
        if self.name in ctx.model.species_names:
            raise ModelError(f"sensor name {self.name!r} is already a species")
        ox = self.name + "_ox"
        ctx.species(self.name, compartments=(self.compartment,))
        ctx.species(ox, compartments=(self.compartment,))
        ctx.reaction(
            f"{self.analyte} + {self.name} -> {ox}",
            self.k_ox,
            tag="sensor",
            name=f"{self.name} oxidation",
        )
        if self.k_red > 0:
            ctx.reaction(
                f"{ox} -> {self.name}", self.k_red, tag="sensor", name=f"{self.name} reduction"
            )
        ctx.init(self.name, concentration=self.concentration, region=self.region)
        return self.spec()


def _add_nox2_proximal(ctx: Context) -> None:
    g = ctx.graph
    space = ctx.space
    if space is None or not hasattr(space, "region"):
        raise ModelError("region 'nox2_proximal' needs a geometry that takes regions")
    areas = np.zeros(g.n_subvolumes)
    for m in ("sarcolemma", "ttubule", "nmj_postsynaptic"):
        if m in g.membrane_names:
            areas += np.asarray(g.membrane_areas)[:, g.membrane_names.index(m)]
    cyto = np.asarray(g.compartments) == list(g.compartment_names).index("cytosol")
    mask = (areas > 0) & cyto
    if not mask.any():
        raise ModelError("region 'nox2_proximal': no cytosolic subvolume carries NOX2 membrane")
    space.region(NOX2_PROXIMAL, mask)
    ctx.refresh()


@dataclass
class HyPer7(Sensor):
    """HyPer7 (Pak et al. 2020 Cell Metab): OxyR-based, fast, reduced by Trx."""

    name: str = "HyPer7"
    k_ox: float = v("k_hyper7_ox")
    k_red: float = v("k_hyper7_red")
    dynamic_range: float = v("hyper7_range")


@dataclass
class RoGFP2Orp1(Sensor):
    """roGFP2-Orp1 (Gutscher et al. 2009 JBC): H2O2 via Orp1, reduced by Grx/GSH."""

    name: str = "roGFP2_Orp1"
    k_ox: float = v("k_orp1_ox")
    k_red: float = v("k_orp1_red")
    dynamic_range: float = v("rogfp2_range")
    alpha: float = v("rogfp2_alpha")


@dataclass
class MitoSOX(Sensor):
    """A MitoSOX-like superoxide reporter in the matrix: irreversibly oxidised."""

    name: str = "MitoSOX"
    analyte: str = "O2m"
    compartment: str = "mito_matrix"
    k_ox: float = v("k_mitosox")
    k_red: float = 0.0
    dynamic_range: float = v("mitosox_range")
    kind: str = "intensity"


#: Sensor type (as in a scenario's [[biology.sensors]] table) -> class.
SENSORS = {"HyPer7": HyPer7, "roGFP2-Orp1": RoGFP2Orp1, "MitoSOX": MitoSOX}


@dataclass(frozen=True)
class SensorReadout:
    """What an experimenter records from one sensor over time: ``ratio``
    (excitation ratio, or relative fluorescence for an intensity dye),
    ``normalised`` (ratio over its value at t = 0) and the model-side
    ``oxidised_fraction``."""

    times: NDArray[np.float64]
    oxidised_fraction: NDArray[np.float64]
    ratio: NDArray[np.float64]
    normalised: NDArray[np.float64]


def ratio_from_fraction(theta: NDArray[np.float64], spec: dict[str, Any]) -> NDArray[np.float64]:
    theta = np.asarray(theta, dtype=float)
    r_ox = float(spec["dynamic_range"])
    if spec.get("kind") == "intensity":
        return 1.0 + theta * (r_ox - 1.0)
    a = float(spec.get("alpha", 1.0))
    return (theta * a * r_ox + (1 - theta)) / (theta * a + (1 - theta))


def readout(res: Any, sensor: str | Sensor, region: str | None = None) -> SensorReadout:
    """The read-out of ``sensor`` (its name in the run, or a :class:`Sensor`) from
    a :class:`~redoxfield.Result`, summed over ``region`` (a region or compartment
    name; default where the sensor is)."""
    if isinstance(sensor, Sensor):
        spec = sensor.spec()
    else:
        specs = json.loads(res.attrs.get("biology", "{}") or "{}").get("sensors", {})
        if sensor not in specs:
            known = ", ".join(specs) or "none"
            raise ModelError(f"no sensor {sensor!r} in this result (sensors: {known})")
        spec = specs[sensor]
    name = spec["name"]
    for s in (name, name + "_ox"):
        if s not in res.species:
            raise ModelError(f"sensor species {s!r} is not in this result")
    if region is None:
        red = res.total(name).astype(float)
        ox = res.total(name + "_ox").astype(float)
    else:
        red = res.region_total(name, region).astype(float)
        ox = res.region_total(name + "_ox", region).astype(float)
    tot = red + ox
    theta = np.divide(ox, tot, out=np.zeros_like(tot), where=tot > 0)
    ratio = ratio_from_fraction(theta, spec)
    return SensorReadout(np.asarray(res.times), theta, ratio, ratio / ratio[0])
