//! Errors a job can fail with.
//!
//! Runtime failures always name the operator (its id and name) and the worker they happened on,
//! so that "which of my functions broke" is answered by the message itself.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error from a source, sink or user function.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a job did not finish successfully.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The configuration is not usable; nothing was started. Retrying will not help.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The job graph is not usable (for example, it has no sink); nothing was started.
    #[error("invalid job graph: {0}")]
    Graph(String),
    /// A user function (or a connector) panicked.
    #[error("operator {operator} panicked on worker {worker}: {message}")]
    OperatorPanicked {
        /// The operator, as `#id name`.
        operator: OperatorName,
        /// The worker thread it ran on.
        worker: usize,
        /// The panic message.
        message: String,
    },
    /// An operator returned an error (typically an I/O error in a source or sink).
    #[error("operator {operator} failed on worker {worker}: {source}")]
    OperatorFailed {
        /// The operator, as `#id name`.
        operator: OperatorName,
        /// The worker thread it ran on.
        worker: usize,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The job was cancelled through its [`JobHandle`](crate::JobHandle).
    #[error("job was cancelled")]
    Cancelled,
    /// A worker thread could not be started.
    #[error("could not start worker thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// Checkpointing failed: a checkpoint could not be written or committed, or the state to
    /// restore from could not be read or does not fit this job.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl JobError {
    /// Whether running the job again, unchanged, may succeed (transient I/O failures).
    ///
    /// Panics, invalid configuration and invalid graphs are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::OperatorFailed { source, .. } => source
                .downcast_ref::<std::io::Error>()
                .map(|e| {
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                    )
                })
                .unwrap_or(false),
            JobError::Spawn(_) => true,
            _ => false,
        }
    }

    /// The operator this error is attributed to, if any.
    pub fn operator(&self) -> Option<&OperatorName> {
        match self {
            JobError::OperatorPanicked { operator, .. }
            | JobError::OperatorFailed { operator, .. } => Some(operator),
            _ => None,
        }
    }
}

/// Identifies an operator in errors and metrics: its id in the graph and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperatorName {
    /// Position of the operator in the job graph (stable for a given job definition).
    pub id: usize,
    /// The operator's name (`map`, `key_by`, or what the user named it).
    pub name: String,
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} `{}`", self.id, self.name)
    }
}

/// An error raised inside the runtime, attributed to an operator by id. Converted into a
/// [`JobError`] (with names) when the job ends.
#[derive(Debug)]
pub(crate) struct OpFailure {
    pub(crate) op: usize,
    pub(crate) kind: FailureKind,
}

#[derive(Debug)]
pub(crate) enum FailureKind {
    Error(BoxError),
    Panic(String),
    /// Another worker failed first; this worker stopped because of it.
    Aborted,
}

impl OpFailure {
    pub(crate) fn error(op: usize, e: impl Into<BoxError>) -> Self {
        Self {
            op,
            kind: FailureKind::Error(e.into()),
        }
    }

    pub(crate) fn aborted(op: usize) -> Self {
        Self {
            op,
            kind: FailureKind::Aborted,
        }
    }
}

/// Result of pushing into an operator.
pub(crate) type OpResult = Result<(), OpFailure>;
