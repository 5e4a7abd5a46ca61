"""The ``[biology]`` table of a scenario file, mapped one to one onto the Python API.

::

    [biology]
    activity = 1.0                      # Recipe(activity=1.0); omit with a [protocol]
    modules = ["nox2", "prx", "sod"]    # or "all" (every module but "ev_export")
    [biology.nox2]                      # Nox2(density=50.0): parameters of a listed module
    density = 50.0
    [[biology.sensors]]                 # HyPer7(name="HyPer7", compartment="cytosol")
    type = "HyPer7"
    compartment = "cytosol"
    [[biology.interventions]]           # knockout("Sod1")
    type = "knockout"
    gene = "Sod1"

Every key is checked; errors name the key (``[biology.nox2].densty``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ModelError, ScenarioError
from .core import BioModel, Recipe
from .interventions import INTERVENTIONS
from .modules import MODULES, OPTIONAL_MODULES
from .sensors import SENSORS

__all__ = ["from_table", "recipe_from_table"]


def _kwargs(cls: Any, table: dict, where: str) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for k, val in table.items():
        if k not in fields:
            raise ScenarioError(
                f"unknown key {k!r} in {where} (allowed: {', '.join(sorted(fields))})"
            )
        out[k] = tuple(val) if isinstance(val, list) else val
    return out


def _typed_entries(
    table: dict, key: str, registry: dict[str, Any], what: str, make: Any
) -> list[Any]:
    """The ``[[biology.<key>]]`` entries, each ``make(registry[type], rest, where)``;
    errors name the entry (``biology.sensors[1]``)."""
    out = []
    for i, t in enumerate(table.get(key, [])):
        where = f"biology.{key}[{i}]"
        if not isinstance(t, dict) or "type" not in t:
            raise ScenarioError(f"{where} needs a 'type' ({', '.join(registry)})")
        t = dict(t)
        kind = t.pop("type")
        if kind not in registry:
            raise ScenarioError(f"{where}: unknown {what} {kind!r} ({', '.join(registry)})")
        try:
            out.append(make(registry[kind], t, where))
        except (TypeError, ModelError) as exc:
            raise ScenarioError(f"{where}: {exc}") from None
    return out


def recipe_from_table(table: dict) -> Recipe:
    """A :class:`Recipe` from a parsed ``[biology]`` table."""
    if not isinstance(table, dict):
        raise ScenarioError("[biology] must be a table")
    allowed = {"activity", "modules", "sensors", "interventions", *MODULES}
    for k in table:
        if k not in allowed:
            raise ScenarioError(
                f"unknown key {k!r} in [biology] (allowed: {', '.join(sorted(allowed))})"
            )
    names = table.get("modules", "all")
    if names == "all":
        names = [n for n in MODULES if n not in OPTIONAL_MODULES]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ScenarioError('[biology].modules must be "all" or an array of module names')
    modules = []
    for n in names:
        if n not in MODULES:
            raise ScenarioError(
                f"[biology].modules: unknown module {n!r} (available: {', '.join(MODULES)})"
            )
        params = table.get(n, {})
        if not isinstance(params, dict):
            raise ScenarioError(f"[biology.{n}] must be a table")
        try:
            modules.append(MODULES[n](**_kwargs(MODULES[n], params, f"[biology.{n}]")))
        except (TypeError, ModelError) as exc:
            raise ScenarioError(f"[biology.{n}]: {exc}") from None
    for n in MODULES:
        if n in table and n not in names:
            raise ScenarioError(f"[biology.{n}] sets parameters of a module not in modules")
    sensors = _typed_entries(
        table,
        "sensors",
        SENSORS,
        "sensor type",
        lambda cls, t, where: cls(**_kwargs(cls, t, where)),
    )
    interventions = _typed_entries(
        table, "interventions", INTERVENTIONS, "intervention", lambda fn, t, where: fn(**t)
    )
    activity = table.get("activity")
    try:
        return Recipe(modules, sensors, interventions, activity)
    except ModelError as exc:
        raise ScenarioError(f"[biology].activity: {exc}") from None


def from_table(table: dict, space: Any) -> BioModel:
    """Build the ``[biology]`` table on ``space`` (what scenario.py calls)."""
    recipe = recipe_from_table(table)
    try:
        return recipe.build(space)
    except ModelError as exc:
        raise ScenarioError(f"[biology]: {exc}") from None
