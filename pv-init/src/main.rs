//! pv-init: PID 1 of an hx guest. Reads the container spec from the config disk, assembles the
//! root (read-only image + writable overlay), runs the workload, reports how it ended, powers off.
mod agent;
mod cgroup;
mod device_filter;
mod devices;
mod exec;
mod introspect;
mod mounts;
mod network;
mod pod;
mod process;
mod sysctl;
mod users;
mod warm_wait;

use pv_init::status::Status;
use std::io::Write;
use std::sync::Mutex;

/// Where status lines go; set once the channel is found.
static STATUS: Mutex<Option<devices::StatusSink>> = Mutex::new(None);
/// On Xen the console is the workload's output: pv-init's diagnostics stay off it once status
/// lines have somewhere to go (the host prints the reason from the status).
static QUIET_CONSOLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A failure to start the workload: exit code (docker's 125/126/127) and a one-line reason.
#[derive(Debug)]
pub struct InitError {
    pub code: i32,
    pub message: String,
}

impl InitError {
    pub fn setup(message: impl Into<String>) -> Self {
        InitError {
            code: 125,
            message: message.into(),
        }
    }
}

/// An OS error as the C library words it, in lower case ("invalid argument"), without Rust's
/// "(os error N)".
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

pub fn console(msg: &str) {
    if QUIET_CONSOLE.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(c, "pv-init: {msg}");
    }
}

fn report(status: &Status) {
    if let Some(sink) = STATUS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        sink.report(status);
    }
}

/// Restored from a checkpoint on Xen: the new domain's xenstore holds none of our status
/// nodes, and its monitor reads from node 0.
fn restart_status_numbering() {
    if let Some(devices::StatusSink::Xenstore { next, .. }) =
        STATUS.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
    {
        *next = 0;
    }
}

fn power_off() -> ! {
    mounts::release_volumes();
    nix::unistd::sync();
    if QUIET_CONSOLE.load(std::sync::atomic::Ordering::Relaxed) {
        // On Xen the console is the workload's output: keep the kernel's "reboot: System
        // halted" (KERN_EMERG, so loglevel=1 prints it) off it. A panic still prints: panic()
        // raises the console level itself.
        let _ = std::fs::write("/proc/sys/kernel/printk", "0");
    }
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Not PID 1 (a test run) or the call failed: there is nothing else to do.
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(pod::PAUSE_ARG) && std::process::id() != 1 {
        pod::pause();
    }
    if pv_init::host_stop::is_helper(&args, std::process::id()) {
        // Run by the kernel as poweroff_cmd: hand the request to PID 1 (pv_init::host_stop).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(1),
            nix::sys::signal::Signal::try_from(pv_init::host_stop::REQUEST_SIGNAL).ok(),
        );
        std::process::exit(0);
    }
    if pv_init::hold::is_hold(&args, std::process::id()) {
        pv_init::hold::hold();
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("pv-init panicked: {info}");
        console(&msg);
        report(&Status::InitError {
            code: 125,
            message: msg.replace('\n', " "),
        });
        power_off();
    }));
    let outcome = run();
    match outcome {
        Ok(status) => report(&status),
        Err(e) => {
            console(&format!("error: {}", e.message));
            report(&Status::InitError {
                code: e.code,
                message: e.message,
            });
        }
    }
    power_off();
}

fn run() -> Result<Status, InitError> {
    mounts::early()?;
    let backend = devices::Backend::detect();
    let (mut channels, status) = devices::Channels::find(backend)?;
    *STATUS.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    if backend == devices::Backend::Xen {
        QUIET_CONSOLE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if warm_wait::requested() {
        warm_wait::wait(&mut channels.control)?;
    }
    let disks = devices::Disks::find()?;
    let spec = disks.read_spec()?;
    network::configure(spec.network.as_ref())?;
    let input = if spec.stdin {
        Some(devices::open_stdin(backend)?)
    } else {
        None
    };
    mounts::assemble_root(&spec, &disks)?;
    sysctl::apply(&spec.sysctls)?;
    exec::run_workload(&spec, channels, input)
}
