//! The `redoxfield._core` extension: converts numpy arrays into a core
//! `Problem`, runs solvers with the GIL released, and maps core errors to
//! Python exceptions. No simulation logic lives here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use numpy::ndarray::{Array2, Array3, Array4};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArray4, PyReadonlyArray1, PyReadonlyArray2,
    PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use redoxfield_core::{
    ensemble_totals, Advance, CoreError, ExactSolver, Molecules, MoleculesMethod, Nsm, OpSplit,
    OpSplitOptions, Problem, RateSchedule, Reaction, SubvolumeGraph,
};

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
            CoreError::TooManyMolecules { species, limit } => {
                exceptions::CoreError::new_err(format!(
                    "the molecules solver holds at most {limit} molecules of {}; the run \
                     stopped before the event that would pass that (use solver 'nsm')",
                    self.species(species)
                ))
            }
            CoreError::Cancelled { .. } => exceptions::CoreError::new_err(err.to_string()),
        }
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
    layout: Option<PyReadonlyArray1<i64>>,
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
        schedule: schedule_from_arrays(schedule.0, schedule.1, n_reactions)?,
        layout: match &layout {
            Some(order) => to_index("layout", slice1("layout", order)?, n)?,
            None => Vec::new(),
        },
    };
    Ok((problem, Names(species_names.unwrap_or_default())))
}

/// The `RateSchedule` from the optional `schedule_times` (T,) and
/// `schedule_factors` (T, R) arrays (both or neither); values are checked by
/// `RateSchedule::validate`.
fn schedule_from_arrays(
    times: Option<PyReadonlyArray1<f64>>,
    factors: Option<PyReadonlyArray2<f64>>,
    n_reactions: usize,
) -> PyResult<RateSchedule> {
    match (times, factors) {
        (None, None) => Ok(RateSchedule::default()),
        (Some(t), Some(f)) => {
            let times = slice1("schedule_times", &t)?.to_vec();
            let shape = f.shape();
            if shape[0] != times.len() || shape[1] != n_reactions {
                return Err(PyValueError::new_err(format!(
                    "schedule_factors has shape ({}, {}) but must be (len(schedule_times), \
                     n_reactions) = ({}, {n_reactions})",
                    shape[0],
                    shape[1],
                    times.len()
                )));
            }
            Ok(RateSchedule {
                times,
                factors: f.as_array().iter().copied().collect(),
            })
        }
        _ => Err(PyValueError::new_err(
            "schedule_times and schedule_factors must be given together",
        )),
    }
}

/// Steps of the approximate solver between two checks for Ctrl-C.
const STEPS_PER_SLICE: u64 = 8;

/// What the two engine classes share, so that their Python methods are
/// written once (the free functions below).
trait Engine: Send {
    fn n_subvolumes(&self) -> usize;
    fn n_species(&self) -> usize;
    fn time(&self) -> f64;
    fn total_events(&self) -> u64;
    fn counts(&self) -> Vec<u32>;
    fn counts_into(&self, out: &mut [u32]);
    fn totals(&self) -> Vec<u64>;
    fn diffusion_events(&self) -> Vec<u64>;
    fn reaction_events(&self) -> Vec<u64>;
    /// A bounded piece of work towards t_stop, between two Ctrl-C checks.
    fn advance_slice(&mut self, t_stop: f64) -> Result<Advance, CoreError>;
    /// A flag that stops a running slice from another thread, for solvers
    /// whose slice has no bound on its work (one operator-splitting step can
    /// be an endless SSA); None if a slice is always short.
    fn cancel_flag(&self) -> Option<Arc<AtomicBool>>;
}

/// The trait methods of `Engine` for a core solver type, forwarding to its
/// inherent methods of the same names.
macro_rules! engine_impl {
    ($t:ty, $slice:expr, $cancel:expr) => {
        impl Engine for $t {
            fn n_subvolumes(&self) -> usize {
                <$t>::n_subvolumes(self)
            }
            fn n_species(&self) -> usize {
                <$t>::n_species(self)
            }
            fn time(&self) -> f64 {
                <$t>::time(self)
            }
            fn total_events(&self) -> u64 {
                <$t>::total_events(self)
            }
            fn counts(&self) -> Vec<u32> {
                <$t>::counts(self)
            }
            fn counts_into(&self, out: &mut [u32]) {
                <$t>::counts_into(self, out)
            }
            fn totals(&self) -> Vec<u64> {
                <$t>::totals(self)
            }
            fn diffusion_events(&self) -> Vec<u64> {
                <$t>::diffusion_events(self).to_vec()
            }
            fn reaction_events(&self) -> Vec<u64> {
                <$t>::reaction_events(self).to_vec()
            }
            fn advance_slice(&mut self, t_stop: f64) -> Result<Advance, CoreError> {
                <$t>::advance(self, t_stop, $slice)
            }
            fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
                $cancel(self)
            }
        }
    };
}
engine_impl!(Nsm, EVENTS_PER_SLICE, |_: &Nsm| None);
engine_impl!(Molecules, EVENTS_PER_SLICE, |_: &Molecules| None);
engine_impl!(OpSplit, STEPS_PER_SLICE, |e: &OpSplit| Some(
    e.cancel_flag()
));

/// `advance` of both engine classes: work in slices with the GIL released,
/// report progress, honour Ctrl-C and the wall-time budget between slices.
fn advance_engine<E: Engine>(
    py: Python<'_>,
    engine: &mut E,
    names: &Names,
    t_stop: f64,
    progress: Option<Bound<'_, PyAny>>,
    max_seconds: Option<f64>,
) -> PyResult<bool> {
    if !t_stop.is_finite() {
        return Err(PyValueError::new_err(format!(
            "t_stop = {t_stop} must be finite"
        )));
    }
    if let Some(cancel) = engine.cancel_flag() {
        return advance_watched(py, engine, &cancel, names, t_stop, progress, max_seconds);
    }
    let start = Instant::now();
    loop {
        let outcome = py.detach(|| engine.advance_slice(t_stop));
        let outcome = outcome.map_err(|e| names.error(e))?;
        let report = (engine.time(), engine.total_events());
        if let Some(done) = between_slices(py, outcome, report, &progress, start, max_seconds)? {
            return Ok(done);
        }
    }
}

/// What both advance loops do after a slice that ended with `outcome` at
/// (time, events): report progress, then stop with `advance`'s return value
/// (Some) when t_stop is reached or the wall-time budget is spent, or go on
/// (None); Ctrl-C and a raising callback are errors.
fn between_slices(
    py: Python<'_>,
    outcome: Advance,
    (time, events): (f64, u64),
    progress: &Option<Bound<'_, PyAny>>,
    start: Instant,
    max_seconds: Option<f64>,
) -> PyResult<Option<bool>> {
    if let Some(cb) = progress {
        cb.call1((time, events))?;
    }
    if outcome == Advance::Reached {
        return Ok(Some(true));
    }
    py.check_signals()?;
    if max_seconds.is_some_and(|m| start.elapsed().as_secs_f64() >= m) {
        return Ok(Some(false));
    }
    Ok(None)
}

/// What the worker of `advance_watched` reports after each slice: the
/// outcome, the time and the events so far.
type SliceReport = (Result<Advance, CoreError>, f64, u64);

/// `advance_engine` for a solver whose slice can run for long: the slices run
/// on a worker thread while this (the main) thread, with the GIL released,
/// waits for each report and looks for Ctrl-C every 50 ms (Python delivers
/// signals to the main thread only). On Ctrl-C it sets the solver's cancel
/// flag and waits for the worker, which stops between steps (the solver stays
/// usable) or inside one (the solver then refuses to go on).
fn advance_watched<E: Engine>(
    py: Python<'_>,
    engine: &mut E,
    cancel: &AtomicBool,
    names: &Names,
    t_stop: f64,
    progress: Option<Bound<'_, PyAny>>,
    max_seconds: Option<f64>,
) -> PyResult<bool> {
    cancel.store(false, Ordering::Relaxed);
    let start = Instant::now();
    let (report, reports) = mpsc::channel::<SliceReport>();
    let (go_on, orders) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || loop {
            let outcome = engine.advance_slice(t_stop);
            let last = outcome != Ok(Advance::Paused);
            if report
                .send((outcome, engine.time(), engine.total_events()))
                .is_err()
                || last
                || orders.recv().is_err()
            {
                return;
            }
        });
        // The receiver is not Sync: it travels into each GIL-free wait and back.
        let mut reports = Some(reports);
        let result = loop {
            let rx = reports
                .take()
                .expect("the receiver is put back after each wait");
            let (got, rx) = py.detach(move || {
                let got = rx.recv_timeout(Duration::from_millis(50));
                (got, rx)
            });
            reports = Some(rx);
            let (outcome, time, events) = match got {
                Err(RecvTimeoutError::Timeout) => match py.check_signals() {
                    Ok(()) => continue,
                    Err(e) => break Err(e),
                },
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(PyRuntimeError::new_err(
                        "the solver's worker thread panicked",
                    ))
                }
                Ok(r) => r,
            };
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => break Err(names.error(e)),
            };
            match between_slices(py, outcome, (time, events), &progress, start, max_seconds) {
                Ok(None) => {}
                Ok(Some(done)) => break Ok(done),
                Err(e) => break Err(e),
            }
            if go_on.send(()).is_err() {
                break Err(PyRuntimeError::new_err(
                    "the solver's worker thread stopped",
                ));
            }
        };
        // Whatever ended the wait, the worker must stop before the engine is
        // used again: a dropped order channel ends it after its slice, the
        // flag ends a slice that is still running.
        drop(go_on);
        if result.is_err() {
            cancel.store(true, Ordering::Relaxed);
        }
        let joined = py.detach(move || worker.join());
        cancel.store(false, Ordering::Relaxed);
        match joined {
            Ok(()) => result,
            Err(_) => Err(PyRuntimeError::new_err(
                "the solver's worker thread panicked",
            )),
        }
    })
}

fn counts_array<'py, E: Engine>(py: Python<'py>, e: &E) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let shape = (e.n_subvolumes(), e.n_species());
    let arr = Array2::from_shape_vec(shape, e.counts())
        .map_err(|err| PyRuntimeError::new_err(err.to_string()))?;
    Ok(arr.into_pyarray(py))
}

fn fill_counts<E: Engine>(e: &E, mut out: PyReadwriteArray2<u32>) -> PyResult<()> {
    let shape = [e.n_subvolumes(), e.n_species()];
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
    e.counts_into(dst);
    Ok(())
}

fn totals_array<'py, E: Engine>(py: Python<'py>, e: &E) -> Bound<'py, PyArray1<i64>> {
    let t: Vec<i64> = e.totals().into_iter().map(|v| v as i64).collect();
    PyArray1::from_vec(py, t)
}

/// Operator-splitting approximate solver on one trajectory, multithreaded.
/// See _core.pyi for the contract.
#[pyclass(module = "redoxfield._core")]
struct OpSplitEngine {
    solver: OpSplit,
    names: Names,
}

#[pymethods]
impl OpSplitEngine {
    #[new]
    #[pyo3(signature = (*, volumes, edge_offsets, edge_targets, edge_coupling, edge_class,
        transport_coefficients, reactants, product_offsets, product_species, rate_class,
        rate_constants, counts, seed, replicate = 0, species_names = None,
        schedule_times = None, schedule_factors = None, layout = None, tolerance = None, tau = None,
        threads = 0))]
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
        layout: Option<PyReadonlyArray1<i64>>,
        tolerance: Option<f64>,
        tau: Option<f64>,
        threads: usize,
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
            layout,
        )?;
        let options = OpSplitOptions {
            tolerance: tolerance.unwrap_or(redoxfield_core::opsplit::DEFAULT_TOLERANCE),
            tau,
            threads,
        };
        let solver =
            OpSplit::new(&problem, seed, replicate, options).map_err(|e| names.error(e))?;
        Ok(OpSplitEngine { solver, names })
    }

    #[getter]
    fn time(&self) -> f64 {
        self.solver.time()
    }
    #[getter]
    fn n_subvolumes(&self) -> usize {
        self.solver.n_subvolumes()
    }
    #[getter]
    fn n_species(&self) -> usize {
        self.solver.n_species()
    }
    #[getter]
    fn n_reactions(&self) -> usize {
        self.solver.n_reactions()
    }
    #[getter]
    fn total_events(&self) -> u64 {
        self.solver.total_events()
    }
    #[getter]
    fn bytes_per_subvolume(&self) -> f64 {
        self.solver.bytes_per_subvolume()
    }
    #[getter]
    fn threads(&self) -> usize {
        self.solver.threads()
    }
    #[getter]
    fn steps(&self) -> u64 {
        self.solver.steps()
    }
    #[getter]
    fn tolerance(&self) -> f64 {
        self.solver.options().tolerance
    }
    #[getter]
    fn tau_option(&self) -> Option<f64> {
        self.solver.options().tau
    }
    #[getter]
    fn tau_bound(&self) -> f64 {
        self.solver.tau_bound()
    }
    /// (shortest, longest) step taken so far, s.
    #[getter]
    fn tau_used(&self) -> (f64, f64) {
        self.solver.tau_range()
    }
    #[getter]
    fn ssa_runs(&self) -> u64 {
        self.solver.ssa_runs()
    }
    fn lattice_walk(&self, species: usize) -> bool {
        self.solver.lattice_walk(species)
    }

    #[pyo3(signature = (t_stop, progress = None, max_seconds = None))]
    fn advance(
        &mut self,
        py: Python<'_>,
        t_stop: f64,
        progress: Option<Bound<'_, PyAny>>,
        max_seconds: Option<f64>,
    ) -> PyResult<bool> {
        advance_engine(
            py,
            &mut self.solver,
            &self.names,
            t_stop,
            progress,
            max_seconds,
        )
    }

    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u32>>> {
        counts_array(py, &self.solver)
    }

    fn counts_into(&self, out: PyReadwriteArray2<u32>) -> PyResult<()> {
        fill_counts(&self.solver, out)
    }

    fn totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        totals_array(py, &self.solver)
    }

    fn diffusion_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, Engine::diffusion_events(&self.solver))
    }

    fn reaction_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, Engine::reaction_events(&self.solver))
    }
}

/// (totals (R, T, S), region totals (R, T, G, S) or None, events (R,)).
type EnsembleArrays<'py> = (
    Bound<'py, PyArray3<i64>>,
    Option<Bound<'py, PyArray4<i64>>>,
    Bound<'py, PyArray1<u64>>,
);

/// Many exact replicates (NSM or molecules) in parallel (core `ensemble_totals`), GIL
/// released; Ctrl-C stops them. See _core.pyi.
#[pyfunction]
#[pyo3(signature = (*, volumes, edge_offsets, edge_targets, edge_coupling, edge_class,
    transport_coefficients, reactants, product_offsets, product_species, rate_class,
    rate_constants, counts, seed, replicates, times, regions = None, threads = 0,
    species_names = None, schedule_times = None, schedule_factors = None, layout = None,
    solver = "nsm", method = "auto"))]
#[allow(clippy::too_many_arguments)]
fn run_ensemble_totals<'py>(
    py: Python<'py>,
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
    replicates: Vec<u64>,
    times: PyReadonlyArray1<f64>,
    regions: Option<Vec<PyReadonlyArray1<i64>>>,
    threads: usize,
    species_names: Option<Vec<String>>,
    schedule_times: Option<PyReadonlyArray1<f64>>,
    schedule_factors: Option<PyReadonlyArray2<f64>>,
    layout: Option<PyReadonlyArray1<i64>>,
    solver: &str,
    method: &str,
) -> PyResult<EnsembleArrays<'py>> {
    let solver = match solver {
        "nsm" => ExactSolver::Nsm,
        "molecules" => ExactSolver::Molecules(molecules_method(method)?),
        other => {
            return Err(PyValueError::new_err(format!(
                "solver {other:?} cannot run an ensemble of exact replicates; use \"nsm\" or \"molecules\""
            )))
        }
    };
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
        layout,
    )?;
    let times = slice1("times", &times)?.to_vec();
    let n = problem.n_subvolumes();
    let mut members = Vec::new();
    for (g, r) in regions.iter().flatten().enumerate() {
        members.push(to_index(
            &format!("regions[{g}]"),
            slice1("regions", r)?,
            n,
        )?);
    }
    let cancel = AtomicBool::new(false);
    let out = std::thread::scope(|scope| -> PyResult<_> {
        let job = scope.spawn(|| {
            ensemble_totals(
                &problem,
                seed,
                &replicates,
                &times,
                &members,
                threads,
                solver,
                &cancel,
            )
        });
        loop {
            py.detach(|| {
                let t0 = Instant::now();
                while !job.is_finished() && t0.elapsed() < Duration::from_millis(100) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            if job.is_finished() {
                return job
                    .join()
                    .map_err(|_| PyRuntimeError::new_err("the ensemble worker panicked"));
            }
            if let Err(e) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = job.join();
                return Err(e);
            }
        }
    })?;
    let out = out
        .map_err(|e| names.error(e))?
        .ok_or_else(|| PyRuntimeError::new_err("the ensemble was cancelled"))?;
    let (r, t, s, g) = (
        replicates.len(),
        times.len(),
        problem.n_species,
        members.len(),
    );
    let to_i64 = |v: Vec<u64>| -> Vec<i64> { v.into_iter().map(|x| x as i64).collect() };
    let totals = Array3::from_shape_vec((r, t, s), to_i64(out.totals))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?
        .into_pyarray(py);
    let by_region = if regions.is_some() {
        Some(
            Array4::from_shape_vec((r, t, g, s), to_i64(out.region_totals))
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?
                .into_pyarray(py),
        )
    } else {
        None
    };
    Ok((totals, by_region, PyArray1::from_vec(py, out.events)))
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
        schedule_times = None, schedule_factors = None, layout = None))]
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
        layout: Option<PyReadonlyArray1<i64>>,
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
            layout,
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
        schedule_factors = None, layout = None, **_ignored))]
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
        layout: Option<PyReadonlyArray1<i64>>,
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
            layout,
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
        advance_engine(
            py,
            &mut self.nsm,
            &self.names,
            t_stop,
            progress,
            max_seconds,
        )
    }

    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u32>>> {
        counts_array(py, &self.nsm)
    }

    fn counts_into(&self, out: PyReadwriteArray2<u32>) -> PyResult<()> {
        fill_counts(&self.nsm, out)
    }

    fn totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        totals_array(py, &self.nsm)
    }

    fn diffusion_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, Engine::diffusion_events(&self.nsm))
    }

    fn reaction_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, Engine::reaction_events(&self.nsm))
    }
}

/// Exact SSA with one clock per molecule of the lone moving species, on one
/// trajectory. See _core.pyi for the contract.
#[pyclass(module = "redoxfield._core")]
struct MoleculesEngine {
    solver: Molecules,
    names: Names,
}

/// The molecules solver's `method` option by name.
fn molecules_method(name: &str) -> PyResult<MoleculesMethod> {
    match name {
        "auto" => Ok(MoleculesMethod::Auto),
        "clocks" => Ok(MoleculesMethod::Clocks),
        "thinning" => Ok(MoleculesMethod::Thinning),
        other => Err(PyValueError::new_err(format!(
            "method {other:?} of the molecules solver must be \"auto\", \"clocks\" or \"thinning\""
        ))),
    }
}

#[pymethods]
impl MoleculesEngine {
    #[new]
    #[pyo3(signature = (*, volumes, edge_offsets, edge_targets, edge_coupling, edge_class,
        transport_coefficients, reactants, product_offsets, product_species, rate_class,
        rate_constants, counts, seed, replicate = 0, species_names = None,
        schedule_times = None, schedule_factors = None, layout = None, method = "auto"))]
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
        layout: Option<PyReadonlyArray1<i64>>,
        method: &str,
    ) -> PyResult<Self> {
        let method = molecules_method(method)?;
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
            layout,
        )?;
        let solver = Molecules::with_method(&problem, seed, replicate, method)
            .map_err(|e| names.error(e))?;
        Ok(MoleculesEngine { solver, names })
    }

    /// How this engine draws events: "clocks" or "thinning".
    #[getter]
    fn method(&self) -> &'static str {
        match self.solver.method() {
            MoleculesMethod::Thinning => "thinning",
            _ => "clocks",
        }
    }

    /// Thinning candidates rejected so far (0 with clocks).
    #[getter]
    fn rejected_candidates(&self) -> u64 {
        self.solver.rejected_candidates()
    }

    #[getter]
    fn time(&self) -> f64 {
        self.solver.time()
    }
    #[getter]
    fn n_subvolumes(&self) -> usize {
        self.solver.n_subvolumes()
    }
    #[getter]
    fn n_species(&self) -> usize {
        self.solver.n_species()
    }
    #[getter]
    fn n_reactions(&self) -> usize {
        self.solver.n_reactions()
    }
    #[getter]
    fn total_events(&self) -> u64 {
        self.solver.total_events()
    }
    #[getter]
    fn bytes_per_subvolume(&self) -> f64 {
        self.solver.bytes_per_subvolume()
    }
    /// Index of the species whose molecules carry the clocks.
    #[getter]
    fn mobile_species(&self) -> usize {
        self.solver.mobile_species()
    }

    #[pyo3(signature = (t_stop, progress = None, max_seconds = None))]
    fn advance(
        &mut self,
        py: Python<'_>,
        t_stop: f64,
        progress: Option<Bound<'_, PyAny>>,
        max_seconds: Option<f64>,
    ) -> PyResult<bool> {
        advance_engine(
            py,
            &mut self.solver,
            &self.names,
            t_stop,
            progress,
            max_seconds,
        )
    }

    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u32>>> {
        counts_array(py, &self.solver)
    }

    fn counts_into(&self, out: PyReadwriteArray2<u32>) -> PyResult<()> {
        fill_counts(&self.solver, out)
    }

    fn totals<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        totals_array(py, &self.solver)
    }

    fn diffusion_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, Engine::diffusion_events(&self.solver))
    }

    fn reaction_events<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, Engine::reaction_events(&self.solver))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreError", m.py().get_type::<exceptions::CoreError>())?;
    m.add_class::<NsmEngine>()?;
    m.add_class::<OpSplitEngine>()?;
    m.add_class::<MoleculesEngine>()?;
    m.add_function(wrap_pyfunction!(run_ensemble_totals, m)?)?;
    Ok(())
}
