//! The engine's helper processes, run from the shim binary itself (the engine re-executes
//! `current_exe()`): `--root R __keeper ID`, `--root R __exec-keeper ID REQUEST` (what
//! hx_engine::oci spawns), `__log-relay DIR --max-size N --max-file N`, `__pod-member DIR --fds A,B,.. --control FD` (a CRI pod's
//! container, hx_engine::backend::pod), `__xen-monitor DIR`.
//! Their output is the workload's: errors go to the engine's record, never to stdout.
use std::path::Path;

/// The helper's exit code, or None when `args` is not a helper's command line.
pub fn run(args: &[String]) -> Option<i32> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    let result = match a.as_slice() {
        ["--root", root, "__keeper", id] => {
            runtime().block_on(hx_engine::oci::keeper::keep(Path::new(root), id))
        }
        ["--root", root, "__exec-keeper", id, request] => {
            runtime().block_on(hx_engine::oci::exec::keep(Path::new(root), id, request))
        }
        ["__log-relay", dir, "--max-size", size, "--max-file", files] => {
            let (Ok(size), Ok(files)) = (size.parse(), files.parse()) else {
                return Some(2);
            };
            hx_engine::log_relay::run(Path::new(dir), size, files).map(|()| 0)
        }
        ["__pod-member", dir, "--fds", fds, "--control", control] => {
            let (Ok(fds), Ok(control)) = (
                fds.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<i32>, _>>(),
                control.parse(),
            ) else {
                return Some(2);
            };
            hx_engine::backend::pod::keep(Path::new(dir), &fds, control).map(|()| 0)
        }
        ["__xen-monitor", dir] => {
            runtime().block_on(hx_engine::backend::xen::monitor::run(dir.into()))
        }
        _ => return None,
    };
    Some(result.unwrap_or_else(|e| {
        // The helper's stderr is the workload's (containerd's fifo, CRI's log): one line.
        hx_engine::errln!("containerd-shim-hx-v2: {e:#}");
        1
    }))
}
