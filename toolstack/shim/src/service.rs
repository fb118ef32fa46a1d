//! The shim's process-level commands (containerd_shim::Shim): `start` spawns the daemon
//! (containerd_shim::spawn: the same binary with `-socket`, in the bundle directory), records
//! and prints its address; `delete` cleans up after a shim that is gone; the daemon serves
//! task.rs until Shutdown.
use crate::task::Service;
use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, StartOpts};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Shim {
    id: String,
    namespace: String,
    exit: Arc<ExitSignal>,
}

/// Where the engine keeps this namespace's containers: `$HX_SHIM_ROOT/<namespace>`
/// (default `/run/hx-shim`; containerd passes its environment to the shim).
pub fn root(namespace: &str) -> anyhow::Result<PathBuf> {
    if namespace.is_empty()
        || namespace.starts_with('.')
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        anyhow::bail!("namespace {namespace:?} is not a plain name");
    }
    let base = std::env::var_os("HX_SHIM_ROOT").unwrap_or_else(|| "/run/hx-shim".into());
    Ok(Path::new(&base).join(namespace))
}

fn other(e: anyhow::Error) -> containerd_shim::Error {
    containerd_shim::Error::Other(format!("{e:#}"))
}

impl containerd_shim::Shim for Shim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Shim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // One shim per container.
        let grouping = opts.id.clone();
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    /// After the daemon died (or was never reached): whatever the container left goes.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let root = root(&self.namespace).map_err(other)?;
        let bundle = std::env::current_dir().map_err(|e| other(e.into()))?;
        if hx_engine::oci::record::dir(&root, &self.id).exists() {
            hx_engine::oci::delete(&root, &self.id, true).map_err(other)?;
        }
        crate::rootfs::unmount(&bundle);
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(containerd_shim::util::timestamp()?).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        let root = root(&self.namespace).unwrap_or_else(|_| PathBuf::from("/run/hx-shim/invalid"));
        Service::new(root, self.namespace.clone(), publisher, self.exit.clone())
    }
}
