//! The runtime's own record of an OCI container, beside the engine's: `<root>/oci/<id>/`
//! holds `record.json` (bundle, keeper process, hooks, annotations), `exec.fifo` (present
//! until `start`: the keeper blocks opening it), `rootfs.erofs` and, when the keeper failed
//! to start the VM, `start-error`.
use super::bundle::{Hooks, NetNs};
use crate::process::Tracked;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FIFO: &str = "exec.fifo";
pub const ROOTFS: &str = "rootfs.erofs";
pub const START_ERROR: &str = "start-error";
const RECORD: &str = "record.json";
/// The OCI runtime spec version the state JSON follows.
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    /// The engine's container (`<root>/containers/<engine_id>`), once created.
    pub engine_id: Option<String>,
    /// The keeper (the pid in `--pid-file`); None until it is spawned.
    pub keeper_pid: Option<i32>,
    pub keeper_start: Option<u64>,
    pub annotations: BTreeMap<String, String>,
    pub hooks: Hooks,
    pub netns: NetNs,
    /// A Kubernetes pod's sandbox or member (cri.rs); None for a container of its own.
    #[serde(default)]
    pub pod: Option<super::cri::PodRole>,
    /// The host cgroup (below each hierarchy's root) its keeper and VM run in: the spec's
    /// `linux.cgroupsPath`, for `hx-runtime` (host_group.rs).
    #[serde(default)]
    pub host_group: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

pub fn oci_dir(root: &Path) -> PathBuf {
    root.join("oci")
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    oci_dir(root).join(id)
}

impl Record {
    pub fn keeper(&self) -> Option<Tracked> {
        Tracked::new(self.keeper_pid, self.keeper_start)
    }

    pub fn save(&self, root: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        hx_images::store::write_atomic(&dir(root, &self.id).join(RECORD), &bytes)?;
        Ok(())
    }

    /// The OCI state JSON (what `state` prints and hooks read on stdin).
    pub fn state_json(&self, status: Status) -> serde_json::Value {
        let pid = match status {
            Status::Stopped => 0,
            _ => self.keeper_pid.unwrap_or(0),
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
        })
    }
}

pub fn load(root: &Path, id: &str) -> anyhow::Result<Record> {
    let path = dir(root, id).join(RECORD);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("container {id} does not exist")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
}

/// runc's rule for ids (`^[\w+-\.]+$`, a path component), bounded, starting with a letter or
/// digit like an hx container name.
pub fn valid_id(id: &str) -> bool {
    id.len() <= 128
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-+".contains(&b))
}

/// The engine container's name: the id, cut to the 63 bytes a name may have (docker's ids are
/// 64 hex digits; the record keeps the engine's own id, names only have to be unique).
pub fn engine_name(id: &str) -> String {
    id.chars().take(63).collect::<String>().replace('+', "_")
}
