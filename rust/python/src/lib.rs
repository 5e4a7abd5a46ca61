//! The `redoxfield._core` extension: converts numpy arrays into a core
//! `Problem`, runs solvers with the GIL released, and maps core errors to
//! Python exceptions. No simulation logic lives here.

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use redoxfield_core::{Advance, CoreError, Nsm, Problem, RateSchedule, Reaction, SubvolumeGraph};

/// Python exceptions. In their own module so that the Python-visible name
/// `CoreError` does not clash with the core's Rust error type.
mod exceptions {
    use pyo3::create_exception;
    use pyo3::exceptions::PyRuntimeError;

    create_exception!(
        redoxfield._core,
        CoreError,
        PyRuntimeError,
        "A failure inside a run (count overflow, ...); the message names the cause."
    );
}

/// Events between two checks for Ctrl-C and progress callbacks (~0.1 s of work).
const EVENTS_PER_SLICE: u64 = 1 << 20;

fn slice1<'a, T: numpy::Element>(name: &str, a: &'a PyReadonlyArray1<T>) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous 1-D array")))
}

fn to_index(name: &str, values: &[i64], limit: usize) -> PyResult<Vec<u32>> {
    values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            if v < 0 || v as u64 >= limit as u64 {
                Err(PyValueError::new_err(format!(
                    "{name}[{k}] = {v} is out of range 0..{limit}"
                )))
            } else {
                Ok(v as u32)
            }
        })
        .collect()
}

fn to_u32_class(name: &str, values: &[i64]) -> PyResult<Vec<u32>> {
    to_index(name, values, u32::MAX as usize)
}

struct Names(Vec<String>);

impl Names {
    fn species(&self, s: usize) -> String {
        self.0
            .get(s)
            .map_or_else(|| format!("species {s}"), |n| format!("'{n}'"))
    }

    fn error(&self, err: CoreError) -> PyErr {
        match err {
            CoreError::InvalidInput(msg) => PyValueError::new_err(msg),
            CoreError::CountOverflow { species, subvolume } => {
                exceptions::CoreError::new_err(format!(
                    "count of {} in subvolume {subvolume} would exceed {} molecules \
                 (the per-subvolume limit); the run stopped before that event",
                    self.species(species),
                    u32::MAX
                ))
            }
        }
    }
}

/// The rate schedule from `schedule_times` (T,) and `schedule_factors` (T, R):
/// both or neither.
fn schedule_from_arrays(
    arrays: (Option<PyReadonlyArray1<f64>>, Option<PyReadonlyArray2<f64>>),
    n_reactions: usize,
) -> PyResult<RateSchedule> {
    match arrays {
        (None, None) => Ok(RateSchedule::default()),
        (Some(times), Some(factors)) => {
            let times = slice1("schedule_times", &times)?.to_vec();
            let shape = factors.shape();
            if shape[0] != times.len() || shape[1] != n_reactions {
                return Err(PyValueError::new_err(format!(
                    "schedule_factors has shape ({}, {}) but must be (len(schedule_times), \
                     n_reactions) = ({}, {n_reactions})",
                    shape[0],
                    shape[1],
                    times.len()
                )));
            }
            let factors = factors.as_array().iter().copied().collect();
            Ok(RateSchedule { times, factors })
        }
        _ => Err(PyValueError::new_err(
            "give both schedule_times and schedule_factors, or neither",
        )),
    }
}

/// The core `Problem` from the engine's numpy arrays (shapes and index ranges
/// checked here; values by `Problem::validate`).
#[allow(clippy::too_many_arguments)]
fn problem_from_arrays(
    volumes: PyReadonlyArray1<f64>,
    edge_offsets: PyReadonlyArray1<i64>,
    edge_targets: PyReadonlyArray1<i64>,
    edge_coupling: PyReadonlyArray1<f64>,
    edge_class: PyReadonlyArray1<i64>,
    transport_coefficients: PyReadonlyArray2<f64>,
    reactants: PyReadonlyArray2<i64>,
    product_offsets: PyReadonlyArray1<i64>,
    product_species: PyReadonlyArray1<i64>,
    rate_class: PyReadonlyArray1<i64>,
    rate_constants: PyReadonlyArray2<f64>,
    counts: PyReadonlyArray2<i64>,
    species_names: Option<Vec<String>>,
    schedule: (Option<PyReadonlyArray1<f64>>, Option<PyReadonlyArray2<f64>>),
) -> PyResult<(Problem, Names)> {
    let volumes = slice1("volumes", &volumes)?.to_vec();
    let n = volumes.len();
    let [n_counts, n_species] = [counts.shape()[0], counts.shape()[1]];
    if n_counts != n {
        return Err(PyValueError::new_err(format!(
            "counts has {n_counts} rows but there are {n} subvolumes"
        )));
    }
    let tshape = transport_coefficients.shape();
    if tshape[1] != n_species {
        return Err(PyValueError::new_err(format!(
            "transport_coefficients has {} columns but there are {n_species} species",
            tshape[1]
        )));
    }
    let n_edges = edge_targets.len();
    let offsets = slice1("edge_offsets", &edge_offsets)?;
    let edge_offsets: Vec<usize> = to_index("edge_offsets", offsets, n_edges + 1)?
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let graph = SubvolumeGraph {
        volumes,
        edge_offsets,
        edge_targets: to_index("edge_targets", slice1("edge_targets", &edge_targets)?, n)?,
        edge_coupling: slice1("edge_coupling", &edge_coupling)?.to_vec(),
        edge_class: to_u32_class("edge_class", slice1("edge_class", &edge_class)?)?,
    };

    let rshape = reactants.shape();
    let n_reactions = rshape[0];
    if rshape[1] != 2 {
        return Err(PyValueError::new_err(format!(
            "reactants must have shape (n_reactions, 2), got ({}, {})",
            rshape[0], rshape[1]
        )));
    }
    let reactants = reactants.as_array();
    let poffsets = slice1("product_offsets", &product_offsets)?;
    let pspecies = slice1("product_species", &product_species)?;
    if poffsets.len() != n_reactions + 1 {
        return Err(PyValueError::new_err(format!(
            "product_offsets has length {} but must have n_reactions + 1 = {}",
            poffsets.len(),
            n_reactions + 1
        )));
    }
    let mut reactions = Vec::with_capacity(n_reactions);
    for r in 0..n_reactions {
        let mut rx = Reaction::default();
        for slot in 0..2 {
            let v = reactants[[r, slot]];
            if v >= 0 {
                rx.reactants.extend(to_index("reactants", &[v], n_species)?);
            } else if v != -1 {
                return Err(PyValueError::new_err(format!(
                    "reactants[{r}, {slot}] = {v}: use -1 for an empty slot"
                )));
            }
        }
        let (lo, hi) = (poffsets[r], poffsets[r + 1]);
        if lo < 0 || hi < lo || hi as usize > pspecies.len() {
            return Err(PyValueError::new_err(format!(
                "product_offsets[{r}..{}] = {lo}..{hi} is not a valid range of product_species",
                r + 1
            )));
        }
        rx.products = to_index(
            "product_species",
            &pspecies[lo as usize..hi as usize],
            n_species,
        )?;
        reactions.push(rx);
    }
    if poffsets.last().copied() != Some(pspecies.len() as i64) {
        return Err(PyValueError::new_err(
            "product_offsets[-1] must equal the length of product_species",
        ));
    }
    let kshape = rate_constants.shape();
    if kshape[1] != n_reactions {
        return Err(PyValueError::new_err(format!(
            "rate_constants has {} columns but there are {n_reactions} reactions",
            kshape[1]
        )));
    }
    let mut initial_counts = Vec::with_capacity(n * n_species);
    for (k, &c) in counts.as_array().iter().enumerate() {
        if c < 0 || c > u32::MAX as i64 {
            let names = Names(species_names.clone().unwrap_or_default());
            return Err(PyValueError::new_err(format!(
                "initial count {c} of {} in subvolume {} is outside 0..={}",
                names.species(k % n_species.max(1)),
                k / n_species.max(1),
                u32::MAX
            )));
        }
        initial_counts.push(c as u32);
    }
    let problem = Problem {
        n_species,
        graph,
        transport_coefficients: transport_coefficients.as_array().iter().copied().collect(),
        reactions,
        rate_class: to_u32_class("rate_class", slice1("rate_class", &rate_class)?)?,
        rate_constants: rate_constants.as_array().iter().copied().collect(),
        initial_counts,
        schedule: schedule_from_arrays(schedule, n_reactions)?,
    };
    Ok((problem, Names(species_names.unwrap_or_default())))
}

/// Exact next-subvolume method on one trajectory. See _core.pyi for the contract.
#[pyclass(module = "redoxfield._core")]
struct NsmEngine {
    nsm: Nsm,
    names: Names,
}

#[pymethods]
impl NsmEngine {
    #[new]
    #[pyo3(signature = (*, volumes, edge_offsets, edge_targets, edge_coupling, edge_class,
        transport_coefficients, reactants, product_offsets, product_species, rate_class,
        rate_constants, counts, seed, replicate = 0, species_names = None,
        schedule_times = None, schedule_factors = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        volumes: PyReadonlyArray1<f64>,
        edge_offsets: PyReadonlyArray1<i64>,
        edge_targets: PyReadonlyArray1<i64>,
        edge_coupling: PyReadonlyArray1<f64>,
        edge_class: PyReadonlyArray1<i64>,
        transport_coefficients: PyReadonlyArray2<f64>,
        reactants: PyReadonlyArray2<i64>,
        product_offsets: PyReadonlyArray1<i64>,
        product_species: PyReadonlyArray1<i64>,
        rate_class: PyReadonlyArray1<i64>,
        rate_constants: PyReadonlyArray2<f64>,
        counts: PyReadonlyArray2<i64>,
        seed: u64,
        replicate: u64,
        species_names: Option<Vec<String>>,
        schedule_times: Option<PyReadonlyArray1<f64>>,
        schedule_factors: Option<PyReadonlyArray2<f64>>,
    ) -> PyResult<Self> {
        let (problem, names) = problem_from_arrays(
            volumes,
            edge_offsets,
            edge_targets,
            edge_coupling,
            edge_class,
            transport_coefficients,
            reactants,
            product_offsets,
            product_species,
            rate_class,
            rate_constants,
            counts,
            species_names,
            (schedule_times, schedule_factors),
        )?;
        let nsm = Nsm::new(&problem, seed, replicate).map_err(|e| names.error(e))?;
        nsm.check_propensity_bound().map_err(|e| names.error(e))?;
        Ok(NsmEngine { nsm, names })
    }

    /// The engine of these arrays in the state saved by `checkpoint()`.
    #[staticmethod]
    #[pyo3(signature = (*, volumes, edge_offsets, edge_targets, edge_coupling, edge_class,
        transport_coefficients, reactants, product_offsets, product_species, rate_class,
        rate_constants, counts, state, species_names = None, schedule_times = None,
        schedule_factors = None, **_ignored))]
    #[allow(clippy::too_many_arguments)]
    fn restore(
        volumes: PyReadonlyArray1<f64>,
        edge_offsets: PyReadonlyArray1<i64>,
        edge_targets: PyReadonlyArray1<i64>,
        edge_coupling: PyReadonlyArray1<f64>,
        edge_class: PyReadonlyArray1<i64>,
        transport_coefficients: PyReadonlyArray2<f64>,
        reactants: PyReadonlyArray2<i64>,
        product_offsets: PyReadonlyArray1<i64>,
        product_species: PyReadonlyArray1<i64>,
        rate_class: PyReadonlyArray1<i64>,
        rate_constants: PyReadonlyArray2<f64>,
        counts: PyReadonlyArray2<i64>,
        state: &[u8],
        species_names: Option<Vec<String>>,
        schedule_times: Option<PyReadonlyArray1<f64>>,
        schedule_factors: Option<PyReadonlyArray2<f64>>,
        _ignored: Option<Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let (problem, names) = problem_from_arrays(
            volumes,
            edge_offsets,
            edge_targets,
            edge_coupling,
            edge_class,
            transport_coefficients,
            reactants,
            product_offsets,
            product_species,
            rate_class,
            rate_constants,
            counts,
            species_names,
            (schedule_times, schedule_factors),
        )?;
        let nsm = Nsm::restore(&problem, state).map_err(|e| names.error(e))?;
        Ok(NsmEngine { nsm, names })
    }

    /// The full solver state as bytes (versioned, checksummed; see
    /// rust/core/src/checkpoint.rs).
    fn checkpoint<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &self.nsm.checkpoint())
    }

    #[getter]
    fn time(&self) -> f64 {
        self.nsm.time()
    }
    #[getter]
    fn n_subvolumes(&self) -> usize {
        self.nsm.n_subvolumes()
    }
    #[getter]
    fn n_species(&self) -> usize {
        self.nsm.n_species()
    }
    #[getter]
    fn n_reactions(&self) -> usize {
        self.nsm.n_reactions()
    }
    #[getter]
    fn total_events(&self) -> u64 {
        self.nsm.total_events()
    }
    #[getter]
    fn bytes_per_subvolume(&self) -> f64 {
        self.nsm.bytes_per_subvolume()
    }

    #[pyo3(signature = (t_stop, progress = None, max_seconds = None))]
    fn advance(
        &mut self,
        py: Python<'_>,
        t_stop: f64,
        progress: Option<Bound<'_, PyAny>>,
        max_seconds: Option<f64>,
    ) -> PyResult<bool> {
        if !t_stop.is_finite() {
            return Err(PyValueError::new_err(format!(
                "t_stop = {t_stop} must be finite"
            )));
        }
        let start = std::time::Instant::now();
        loop {
            let nsm = &mut self.nsm;
            let outcome = py.detach(|| nsm.advance(t_stop, EVENTS_PER_SLICE));
            let outcome = outcome.map_err(|e| self.names.error(e))?;
            if let Some(cb) = &progress {
                cb.call1((self.nsm.time(), self.nsm.total_events()))?;
            }
            if outcome == Advance::Reached {
                return Ok(true);
            }
            py.check_signals()?;
            if max_seconds.is_some_and(|m| start.elapsed().as_secs_f64() >= m) {
                return Ok(false);
            }
        }
    }

    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u32>>> {
        let shape = (self.nsm.n_subvolumes(), self.nsm.n_species());
        let arr = Array2::from_shape_vec(shape, self.nsm.counts())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(arr.into_pyarray(py))
    }

    fn counts_into(&self, mut out: PyReadwriteArray2<u32>) -> PyResult<()> {
        let shape = [self.nsm.n_subvolumes(), self.nsm.n_species()];
        if out.shape() != shape {
            return Err(PyValueError::new_err(format!(
                "out has shape {:?} but the counts have shape {:?}",
                out.shape(),
                shape
            )));
        }
        let dst = out
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("out must be a C-contiguous uint32 array"))?;
        self.nsm.counts_into(dst);
        Ok(())
    }

    fn totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let t: Vec<i64> = self.nsm.totals().into_iter().map(|v| v as i64).collect();
        PyArray1::from_vec(py, t)
    }

    fn diffusion_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, self.nsm.diffusion_events())
    }

    fn reaction_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, self.nsm.reaction_events())
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreError", m.py().get_type::<exceptions::CoreError>())?;
    m.add_class::<NsmEngine>()?;
    Ok(())
}
