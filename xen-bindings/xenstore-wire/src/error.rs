use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// xenstored answered a request with an error: `source` carries the errno it named.
    #[error("xenstore {op} {path}: {source}")]
    Xenstore {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// xenstored (or something posing as it) broke the wire protocol.
    #[error("xenstore protocol: {0}")]
    Protocol(String),
    /// A value a guest wrote failed the checks for untrusted data.
    #[error("xenstore {path}: value from the guest rejected: {reason}")]
    Untrusted { path: String, reason: String },
    /// A path or permission list xenstored would refuse, caught before sending.
    #[error("xenstore path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
}

impl Error {
    /// The errno xenstored answered with, if this is one of its error replies.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Xenstore { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn os(op: &'static str, path: &str, errno: i32) -> Self {
        Error::Xenstore {
            op,
            path: path.to_string(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}
