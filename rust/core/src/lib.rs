//! redoxfield-core: exact and approximate spatial stochastic simulation of
//! reaction-diffusion on a subvolume graph.
//!
//! The crate knows nothing of biology, units or file formats: it sees
//! subvolumes with volumes, directed neighbour edges with couplings and
//! transport classes, a mass-action network with mesoscopic constants per
//! subvolume class, integer counts and a seed (see `Problem`).

pub mod calendar;
pub mod ensemble;
pub mod error;
pub mod lattice;
pub mod memory;
pub mod molecules;
pub mod nsm;
pub mod opsplit;
pub mod problem;
pub mod queue;
pub mod rng;

pub use ensemble::{ensemble_totals, EnsembleOutput, ExactSolver};
pub use error::CoreError;
pub use molecules::{Molecules, MoleculesMethod};
pub use nsm::{Advance, Nsm};
pub use opsplit::{OpSplit, OpSplitOptions};
pub use problem::{Problem, RateSchedule, Reaction, SubvolumeGraph};
pub use rng::Stream;
