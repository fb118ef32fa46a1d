//! containerd-shim-hx-v2: containerd's shim v2 (runtime `io.containerd.hx.v2`) over
//! hx-engine's OCI module: one shim process per container, each container an hx micro-VM.
//! containerd starts it with `start` (it daemonises and prints its socket address) and
//! `delete`; the daemon serves the Task service over ttrpc (containerd's `containerd-shim`
//! crate). The shim binary is also the engine's helper processes (keeper, exec keeper, log
//! relay, Xen monitor), re-executed with the hidden `__*` commands of helpers.rs.
mod helpers;
mod metrics;
mod rootfs;
mod service;
mod stdio;
mod task;

use std::process::ExitCode;

/// What containerd calls the runtime (`ctr run --runtime io.containerd.hx.v2`).
pub const RUNTIME_ID: &str = "io.containerd.hx.v2";

fn main() -> ExitCode {
    if let Some(code) = hx_engine::backend::xen::hotplug::from_argv0() {
        return ExitCode::from(code as u8);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = helpers::run(&args) {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let config = containerd_shim::Config {
        // The shim reaps its own children by pid (each keeper's status is its container's
        // exit code); a reaper of every child would take the statuses the engine's own
        // `Command`s wait for (mkfs.erofs, QEMU probes).
        no_reaper: true,
        // The VM (QEMU, the log relay) runs in a session of its own and must not become the
        // shim's unreaped zombie.
        no_sub_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<service::Shim>(RUNTIME_ID, Some(config));
    ExitCode::SUCCESS
}
