use std::fmt;

/// Everything that can go wrong in the core. Never a panic: every input is
/// validated and every run-time failure (such as a count overflow) is returned.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// An input array is malformed; the message names the array and the index.
    InvalidInput(String),
    /// An event would push a count past `u32::MAX`; the state is left as it was
    /// before that event.
    CountOverflow { species: usize, subvolume: usize },
    /// The molecules solver would hold more than `limit` molecules of the
    /// moving species; the state is left as it was before that event.
    TooManyMolecules { species: usize, limit: usize },
    /// The caller's cancel flag was seen in the middle of a step of the
    /// operator-splitting solver: the state is partial and the solver refuses
    /// to go on.
    Cancelled { time: f64 },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidInput(msg) => write!(f, "{msg}"),
            CoreError::CountOverflow { species, subvolume } => write!(
                f,
                "count of species {species} in subvolume {subvolume} would exceed {} molecules",
                u32::MAX
            ),
            CoreError::TooManyMolecules { species, limit } => write!(
                f,
                "the molecules solver holds at most {limit} molecules of species {species}"
            ),
            CoreError::Cancelled { time } => write!(
                f,
                "cancelled in the middle of the step from t = {time} s; the state is \
                 partial, so this solver cannot go on"
            ),
        }
    }
}

impl std::error::Error for CoreError {}

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, CoreError> {
    Err(CoreError::InvalidInput(msg.into()))
}
