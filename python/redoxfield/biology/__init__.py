"""The exercise-redox biology of skeletal muscle as composable modules,
biosensors and interventions (docs/biology.md).

    from redoxfield import biology as bio

    space = rf.fiber.segment()
    recipe = bio.Recipe(
        modules=bio.default_modules(),
        sensors=[bio.HyPer7(), bio.RoGFP2Orp1(name="roGFP_mito", compartment="mito_matrix")],
        interventions=[bio.knockout("Ncf1")],
        activity=1.0,          # static contraction level; None: driven by a protocol
    )
    built = recipe.build(space)          # BioModel: .model, .initial, .tags, .sensors
    res = built.simulation(space, seed=1).run(t_end=0.05, dt_sample=0.005)
    bio.readout(res, "HyPer7").ratio     # the 500/400 ratio an experimenter records
"""

from .core import NEURON, BioModel, Context, Init, Recipe
from .interventions import (
    GENES,
    INTERVENTIONS,
    ageing,
    denervation,
    inhibitor,
    knockout,
    neuron_sod1_rescue,
    supplement,
)
from .modules import (
    MODULES,
    OPTIONAL_MODULES,
    Catalase,
    EvExport,
    ExtracellularClearance,
    Gpx,
    Membranes,
    Mitochondria,
    Nos,
    Nox2,
    Nox4,
    PrxTrx,
    RelayTarget,
    Sod,
    default_modules,
)
from .params import PARAMS, Param
from .sensors import SENSORS, HyPer7, MitoSOX, RoGFP2Orp1, Sensor, SensorReadout, readout
from .table import from_table, recipe_from_table

__all__ = [
    "GENES",
    "INTERVENTIONS",
    "MODULES",
    "NEURON",
    "OPTIONAL_MODULES",
    "PARAMS",
    "SENSORS",
    "BioModel",
    "Catalase",
    "Context",
    "EvExport",
    "ExtracellularClearance",
    "Gpx",
    "HyPer7",
    "Init",
    "Membranes",
    "MitoSOX",
    "Mitochondria",
    "Nos",
    "Nox2",
    "Nox4",
    "Param",
    "PrxTrx",
    "Recipe",
    "RelayTarget",
    "RoGFP2Orp1",
    "Sensor",
    "SensorReadout",
    "Sod",
    "ageing",
    "default_modules",
    "denervation",
    "from_table",
    "inhibitor",
    "knockout",
    "neuron_sod1_rescue",
    "readout",
    "recipe_from_table",
    "supplement",
]
