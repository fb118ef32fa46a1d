//! runc's command line (what containerd's runc shim and podman's conmon call), as clap
//! arguments; each command is one call into hx_engine::oci.
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hx-runtime",
    version,
    about = "An OCI runtime that runs each container in its own hx micro-VM",
    // runc's (urfave/cli) rule: a repeated option's last value wins. dockerd passes its own
    // --root after the runtimeArgs of daemon.json.
    args_override_self = true
)]
pub struct Cli {
    /// Where the runtime keeps its state (an hx store)
    #[arg(long, global = true, default_value = "/run/hx-runtime")]
    pub root: PathBuf,
    /// Log file (errors and warnings; the caller reads the last error from it)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Accepted for runc compatibility: a VM has no cgroup of the caller's
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// More detail in the log
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle (its process waits for `start`)
    Create(CreateArgs),
    /// Run the created container's process
    Start { id: String },
    /// The container's state, as OCI state JSON
    State { id: String },
    /// Send a signal to the container's process (KILL ends the VM)
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Accepted: the container's processes are all in its VM
        #[arg(short, long)]
        all: bool,
    },
    /// Remove the container and everything it holds
    Delete {
        id: String,
        /// Kill it first if it runs
        #[arg(short, long)]
        force: bool,
    },
    /// The host processes of the container (its keeper and VM)
    Ps {
        id: String,
        #[arg(short, long, default_value = "table")]
        format: String,
        /// ps(1) options (ignored)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run another process in the container (process.json: an OCI Process)
    Exec(ExecArgs),
    /// Freeze the container's VM
    Pause { id: String },
    /// Thaw the container's VM
    Resume { id: String },
    /// Change the container's limits: its VM's memory target, CPU cap and weight (runc update)
    Update(UpdateArgs),
    /// What this runtime supports (OCI features JSON)
    Features,
    /// The container's keeper (internal: started by `create`)
    #[command(name = "__keeper", hide = true)]
    Keeper { id: String },
    /// One exec session (internal: started by `exec`)
    #[command(name = "__exec-keeper", hide = true)]
    ExecKeeper { id: String, request: String },
    /// The engine's log relay (internal)
    #[command(name = "__log-relay", hide = true)]
    LogRelay {
        dir: PathBuf,
        #[arg(long)]
        max_size: u64,
        #[arg(long)]
        max_file: u32,
    },
    /// The engine's Xen monitor (internal)
    #[command(name = "__xen-monitor", hide = true)]
    XenMonitor { dir: PathBuf },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub id: String,
    /// The bundle directory (config.json and the root filesystem)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Where to write the pid of the container's process
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal)
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Accepted for runc compatibility (no descriptors beyond stdio reach a VM)
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    pub id: String,
    /// The process to run (an OCI Process JSON file)
    #[arg(short, long)]
    pub process: PathBuf,
    /// Unix socket that receives the pty master (process.terminal)
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process started; the caller reaps the pid-file process
    #[arg(short, long)]
    pub detach: bool,
    /// Where to write the pid of the process that waits for it
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (process.terminal says)
    #[arg(short, long)]
    pub tty: bool,
    /// Accepted for runc compatibility
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    pub id: String,
    /// An OCI linux.resources JSON file, or - for standard input (the flags below override it)
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// CPU quota in µs per period (-1: no cap)
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU period in µs
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub cpu_share: Option<u64>,
}
