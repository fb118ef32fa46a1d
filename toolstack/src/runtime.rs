//! What happened to a container's VM, reconciling state with reality, and removal.
use crate::backend::{self, Backend};
use crate::container::{self, Container, Status};
use pv_init::status::Status as GuestStatus;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The workload ended: exit code (128+N for signal N).
    Exited(i32),
    /// pv-init could not start the workload (docker's 125/126/127).
    InitError { code: i32, message: String },
    /// The guest kernel panicked.
    Panic(String),
    /// The VM ended without a word from the guest.
    Lost(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c,
            Outcome::InitError { code, .. } => *code,
            Outcome::Panic(_) | Outcome::Lost(_) => 125,
        }
    }

    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Exited(_) => None,
            Outcome::InitError { message, .. } => Some(message.clone()),
            Outcome::Panic(m) => Some(format!("guest kernel panicked: {m}")),
            Outcome::Lost(m) => Some(m.clone()),
        }
    }
}

/// Reads the guest's status channel and console log after the VM has gone.
pub fn outcome(dir: &Path) -> Outcome {
    let status = std::fs::read_to_string(dir.join("status.log")).unwrap_or_default();
    let last = status
        .lines()
        .rev()
        .filter_map(GuestStatus::parse_line)
        .find(|s| s.exit_code().is_some());
    match last {
        Some(GuestStatus::InitError { code, message }) => {
            return Outcome::InitError { code, message }
        }
        Some(s) => return Outcome::Exited(s.exit_code().unwrap_or(125)),
        None => {}
    }
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    if let Some(line) = console
        .lines()
        .find(|l| l.contains("Kernel panic - not syncing"))
    {
        let msg = line
            .split("Kernel panic - not syncing:")
            .nth(1)
            .unwrap_or(line)
            .trim()
            .to_string();
        return Outcome::Panic(msg);
    }
    // The VM's host process: QEMU, or the Xen domain's monitor.
    let qemu = std::fs::read_to_string(dir.join("qemu.log"))
        .or_else(|_| std::fs::read_to_string(dir.join("monitor.log")))
        .unwrap_or_default();
    let detail = qemu
        .lines()
        .last()
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    Outcome::Lost(format!(
        "the VM ended without reporting a status (console log: {}){detail}",
        dir.join("console.log").display()
    ))
}

/// Marks a container whose VM has gone as exited and cleans its runtime files; removes it if
/// it was started with --rm. Returns the updated container, or None if removed.
pub fn settle(
    root: &Path,
    mut c: Container,
    be: &dyn Backend,
) -> anyhow::Result<Option<Container>> {
    let dir = container::dir(root, &c.id);
    if c.status == Status::Running && !be.is_running(&c) {
        let o = outcome(&dir);
        c.status = Status::Exited;
        c.exit_code = Some(o.exit_code());
        c.error = o.error();
        c.finished_at = Some(container::now_rfc3339());
        be.cleanup(&c, &dir)?;
        release_network(root, &c)?;
        container::save(root, &c)?;
    }
    if c.status == Status::Exited && c.auto_remove {
        remove_dir(root, &c)?;
        crate::volume::remove_anonymous(root, &c.mounts);
        return Ok(None);
    }
    Ok(Some(c))
}

/// Brings every container's state in line with what really runs, network included.
pub fn reconcile(root: &Path) -> anyhow::Result<Vec<Container>> {
    let mut out = Vec::new();
    for c in container::list(root)? {
        let be = backend::for_container(&c, root)?;
        if let Some(c) = settle(root, c, be.as_ref())? {
            out.push(c);
        }
    }
    let running: Vec<(String, crate::network::NetworkState)> = out
        .iter()
        .filter(|c| c.status == Status::Running)
        .filter_map(|c| Some((c.id.clone(), c.network.clone()?)))
        .collect();
    if let Err(e) = crate::network::reconcile(root, &running) {
        tracing::warn!("reconciling the network: {e:#}");
    }
    Ok(out)
}

/// Frees the container's address, port rules and host interface.
fn release_network(root: &Path, c: &Container) -> anyhow::Result<()> {
    match &c.network {
        Some(n) => crate::network::release(root, &c.id, n),
        None => Ok(()),
    }
}

/// Kills the VM if needed and removes everything the container left.
pub fn remove(root: &Path, c: &Container, be: &dyn Backend) -> anyhow::Result<()> {
    be.kill(c)?;
    be.cleanup(c, &container::dir(root, &c.id))?;
    release_network(root, c)?;
    remove_dir(root, c)
}

fn remove_dir(root: &Path, c: &Container) -> anyhow::Result<()> {
    let d = container::dir(root, &c.id);
    match crate::volume::remove_container_dir(&d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::anyhow!("removing {}: {e}", d.display()))
        }
        _ => Ok(()),
    }
}
