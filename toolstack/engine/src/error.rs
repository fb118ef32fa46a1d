/// Errors of the toolstack itself; exit codes in docs/cli.md.
#[derive(Debug, thiserror::Error)]
pub enum HxError {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("container {0} is running: stop it first or use -f")]
    Running(String),
    #[error("container {0} is being created by a live hx run: wait for it, or kill that hx run")]
    Creating(String),
    #[error("container {0} is being started by a live hx: wait for it, or kill that hx")]
    Starting(String),
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    #[error("not a Xen dom0: {0}")]
    NotDom0(String),
    #[error("no such domain: {0}")]
    NoSuchDomain(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("container {0} has no checkpoint {1}")]
    NoSuchCheckpoint(String, String),
    #[error("container {0} already has a checkpoint {1}")]
    CheckpointExists(String, String),
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// A user network request docker refuses with exit code 1 (the message is docker's).
    #[error("{0}")]
    Network(String),
}

impl HxError {
    pub fn exit_code(&self) -> i32 {
        match self {
            HxError::NoSuchContainer(_) => 1,
            HxError::Running(_) | HxError::Creating(_) | HxError::Starting(_) => 1,
            HxError::NameInUse(_) => 125,
            HxError::NoSuchDomain(_) => 1,
            HxError::NotDom0(_) => 3,
            HxError::Refused(_) => 5,
            HxError::NoSuchCheckpoint(..) => 6,
            HxError::CheckpointExists(..) => 7,
            HxError::NetworkNotFound(_) | HxError::Network(_) => 1,
        }
    }
}

/// The error chain on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
