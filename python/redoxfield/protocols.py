"""Exercise protocols as exact time schedules of contraction activity.

A :class:`Protocol` is a piecewise-constant contraction activity ``a(t)`` in
[0, 1] (0 = rest, 1 = maximal contraction) over ``0 <= t < duration``; after its
end the muscle rests (``a = 0``). Reactions declared with
``Model.reaction(..., activity=(rest, active))`` run at
``k * (rest + (active - rest) * a(t))``; ``Simulation.set_protocol`` turns the
protocol into a rate schedule that the core switches *exactly* at the phase
boundaries (the exact SSA stops at each boundary and rescales its pending
event times, docs/biology.md).

Phases are built by the functions below and joined with :func:`sequence` (or
``+``). Durations are in seconds and always given by the caller: real exercise
bouts last minutes, far beyond what a spatial SSA of a fibre covers, so a
simulated protocol is a scaled one and the scaling is the user's choice, stated
in the scenario.

The protocol kinds follow the exercise literature summarised in issue #5:
moderate continuous contraction, high-intensity intervals (HIIT), electrically
evoked (eccentric) contraction trains, rest and recovery.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import SimulationError

__all__ = [
    "Phase",
    "Protocol",
    "continuous",
    "eccentric_trains",
    "from_dict",
    "hiit",
    "recovery",
    "rest",
    "sequence",
    "stimulation_train",
]


@dataclass(frozen=True)
class Phase:
    """One constant-activity stretch: ``label`` for plots and files."""

    duration: float
    activity: float
    label: str


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SimulationError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise SimulationError(f"{what} = {v!r} must be finite and positive")
    return v


def _level(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SimulationError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise SimulationError(f"{what} = {v!r} must lie in [0, 1] (0 rest, 1 maximal)")
    return v


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SimulationError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Protocol:
    """A sequence of phases starting at t = 0."""

    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        if not self.phases:
            raise SimulationError("a protocol needs at least one phase")

    @property
    def duration(self) -> float:
        return float(sum(p.duration for p in self.phases))

    def __add__(self, other: Protocol) -> Protocol:
        if not isinstance(other, Protocol):
            return NotImplemented
        return Protocol(self.phases + other.phases)

    def breakpoints(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(start times, activity levels): ``a(t) = levels[k]`` for
        ``times[k] <= t < times[k + 1]``; the last entry (at ``duration``) is
        the rest after the protocol. Equal neighbouring levels are merged."""
        times: list[float] = []
        levels: list[float] = []
        t = 0.0
        for p in (*self.phases, Phase(math.inf, 0.0, "after")):
            if not levels or levels[-1] != p.activity:
                times.append(t)
                levels.append(p.activity)
            t += p.duration
        return np.array(times), np.array(levels)

    def activity(self, t: float | Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
        """Activity level at time(s) ``t`` (s)."""
        times, levels = self.breakpoints()
        idx = np.searchsorted(times, np.asarray(t, dtype=np.float64), side="right") - 1
        return np.where(idx < 0, 0.0, levels[np.clip(idx, 0, None)])

    def schedule(
        self, couplings: Mapping[str, tuple[float, float]]
    ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """Switch times and the factor of each coupled reaction at each:
        ``rest + (active - rest) * a``."""
        times, levels = self.breakpoints()
        return times, {name: lo + (hi - lo) * levels for name, (lo, hi) in couplings.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases": [
                {"label": p.label, "duration": p.duration, "activity": p.activity}
                for p in self.phases
            ]
        }

    def describe(self) -> str:
        lines = [f"protocol, {self.duration:g} s:"]
        t = 0.0
        for p in self.phases:
            lines.append(f"  {t:10.4g} s  {p.label:<22} activity {p.activity:g}")
            t += p.duration
        return "\n".join(lines)


def sequence(*parts: Protocol | Iterable[Protocol]) -> Protocol:
    """The protocols one after the other."""
    phases: list[Phase] = []
    for part in parts:
        items = [part] if isinstance(part, Protocol) else list(part)
        for item in items:
            if not isinstance(item, Protocol):
                raise SimulationError(f"sequence() takes protocols, got {type(item).__name__}")
            phases.extend(item.phases)
    return Protocol(tuple(phases))


def rest(duration: float) -> Protocol:
    """No contraction for ``duration`` s."""
    return Protocol((Phase(_positive(duration, "rest duration"), 0.0, "rest"),))


def recovery(duration: float) -> Protocol:
    """Rest after exercise (activity 0), labelled as recovery."""
    return Protocol((Phase(_positive(duration, "recovery duration"), 0.0, "recovery"),))


def continuous(duration: float, intensity: float = 0.5) -> Protocol:
    """Continuous contraction at a constant ``intensity`` (moderate: about 0.5 of
    maximal, the default)."""
    return Protocol(
        (
            Phase(
                _positive(duration, "continuous duration"),
                _level(intensity, "continuous intensity"),
                "continuous",
            ),
        )
    )


def hiit(
    intervals: int,
    work: float,
    rest_between: float,
    work_intensity: float = 1.0,
    rest_intensity: float = 0.1,
) -> Protocol:
    """High-intensity interval training: ``intervals`` bouts of ``work`` s at
    ``work_intensity``, separated (not followed) by ``rest_between`` s of
    active recovery at ``rest_intensity``."""
    n = _count(intervals, "hiit intervals")
    w = Phase(_positive(work, "hiit work"), _level(work_intensity, "hiit work_intensity"), "work")
    r = Phase(
        _positive(rest_between, "hiit rest_between"),
        _level(rest_intensity, "hiit rest_intensity"),
        "interval rest",
    )
    phases: list[Phase] = []
    for k in range(n):
        phases.append(w)
        if k < n - 1:
            phases.append(r)
    return Protocol(tuple(phases))


def stimulation_train(
    pulses: int, frequency: float, pulse_duration: float, intensity: float = 1.0
) -> Protocol:
    """Electrical stimulation: ``pulses`` contractions of ``pulse_duration`` s
    at ``frequency`` Hz (one switch on and off per pulse); ends after the last
    pulse's period."""
    n = _count(pulses, "stimulation pulses")
    period = 1.0 / _positive(frequency, "stimulation frequency")
    on = _positive(pulse_duration, "stimulation pulse_duration")
    if on > period:
        raise SimulationError(
            f"stimulation pulse_duration = {on} s is longer than the period 1/frequency = "
            f"{period} s"
        )
    level = _level(intensity, "stimulation intensity")
    phases: list[Phase] = []
    for _ in range(n):
        phases.append(Phase(on, level, "pulse"))
        if period > on:
            phases.append(Phase(period - on, 0.0, "between pulses"))
    return Protocol(tuple(phases))


def eccentric_trains(
    trains: int, train_duration: float, interval: float, intensity: float = 1.0
) -> Protocol:
    """Electrically evoked (eccentric) contraction trains: ``trains`` tetanic
    trains of ``train_duration`` s at ``intensity``, ``interval`` s apart
    (start to start)."""
    n = _count(trains, "eccentric trains")
    on = _positive(train_duration, "eccentric train_duration")
    every = _positive(interval, "eccentric interval")
    if every < on:
        raise SimulationError(
            f"eccentric interval = {every} s is shorter than train_duration = {on} s"
        )
    level = _level(intensity, "eccentric intensity")
    phases: list[Phase] = []
    for k in range(n):
        phases.append(Phase(on, level, "eccentric train"))
        if k < n - 1 and every > on:
            phases.append(Phase(every - on, 0.0, "between trains"))
    return Protocol(tuple(phases))


_KINDS = {
    "rest": (rest, {"duration"}),
    "recovery": (recovery, {"duration"}),
    "continuous": (continuous, {"duration", "intensity"}),
    "hiit": (hiit, {"intervals", "work", "rest_between", "work_intensity", "rest_intensity"}),
    "stimulation_train": (
        stimulation_train,
        {"pulses", "frequency", "pulse_duration", "intensity"},
    ),
    "eccentric_trains": (eccentric_trains, {"trains", "train_duration", "interval", "intensity"}),
}


def from_dict(data: Mapping[str, Any]) -> Protocol:
    """A protocol from ``{"phases": [{"kind": ..., params...}, ...]}`` (the TOML
    ``[protocol]`` table), or from ``Protocol.to_dict()`` output (phases with
    ``duration``, ``activity`` and ``label``)."""
    phases = data.get("phases") if isinstance(data, Mapping) else None
    if not isinstance(phases, list) or not phases:
        raise SimulationError("a protocol needs a non-empty list 'phases'")
    parts: list[Protocol] = []
    for k, ph in enumerate(phases):
        where = f"protocol phase {k}"
        if not isinstance(ph, Mapping):
            raise SimulationError(f"{where} must be a table, got {ph!r}")
        if "kind" not in ph:
            extra = set(ph) - {"duration", "activity", "label"}
            if extra or not {"duration", "activity"} <= set(ph):
                raise SimulationError(
                    f"{where} needs 'kind' (one of {', '.join(_KINDS)}) and its parameters"
                )
            parts.append(
                Protocol(
                    (
                        Phase(
                            _positive(ph["duration"], f"{where} duration"),
                            _level(ph["activity"], f"{where} activity"),
                            str(ph.get("label", "phase")),
                        ),
                    )
                )
            )
            continue
        kind = ph["kind"]
        if kind not in _KINDS:
            raise SimulationError(
                f"{where}: unknown kind {kind!r} (available: {', '.join(_KINDS)})"
            )
        fn, allowed = _KINDS[kind]
        params = {key: v for key, v in ph.items() if key != "kind"}
        extra = sorted(set(params) - allowed)
        if extra:
            raise SimulationError(
                f"{where} ({kind}): unknown parameter {extra[0]!r} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        try:
            parts.append(fn(**params))
        except TypeError as exc:
            raise SimulationError(f"{where} ({kind}): {exc}") from None
    return sequence(parts)
