//! `hx exec [-i] [-t] [-d] [-e K=V] [--env-file F] [-u USER] [-w DIR] [--privileged] CONTAINER CMD...`: a new
//! process in a running container, over its exec channel (exec_channel), with docker's exit
//! codes: the process's own, 126 not executable, 127 not found, 125 hx's own failure.
use anyhow::bail;
use hx_engine::backend;
use hx_engine::container::{self, Status as CStatus};
use hx_engine::exec_channel::client::{End, Session};
use pv_init::mux::ExecRequest;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Keep stdin open and pass it to the process
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal (a pty of this terminal's size)
    #[arg(short, long)]
    pub tty: bool,
    /// Start the process and return; its output is dropped
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (K=V, or K to pass this one's value)
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// User (name or id) and optionally group, as in the container: USER[:GROUP]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory in the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Give the process every capability (else it gets the container's workload's)
    #[arg(long)]
    pub privileged: bool,
    /// Container (name or id)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub container: String,
    /// Command and its arguments
    #[arg(required = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// A running, unpaused container's exec channel (`hx exec`, `top`, `stats`).
pub fn channel(
    root: &std::path::Path,
    key: &str,
) -> anyhow::Result<(container::Container, Box<dyn backend::Backend>, PathBuf)> {
    let c = container::find(root, key)?;
    let be = backend::for_container(&c, root)?;
    let dir = container::dir(root, &c.id);
    if c.status != CStatus::Running || !be.is_running(&c) {
        bail!("container {} is not running", c.name);
    }
    if super::pause::is_paused(root, &c) {
        bail!("container {} is paused, unpause it first", c.name);
    }
    let Some(socket) = be.exec_socket(&dir) else {
        bail!("container {}: its backend has no exec channel yet", c.name);
    };
    if c.is_pod_member() {
        hx_engine::pod::wait_member_started(root, &c)?;
    }
    Ok((c, be, socket))
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    if args.interactive && args.tty && !std::io::stdin().is_terminal() {
        errln!("hx: the input device is not a TTY");
        return Ok(1);
    }
    let (c, be, socket) = channel(&g.root, &args.container)?;
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(hx_engine::lifecycle::read_env_file(f)?);
    }
    // `-e K` passes hx's own K, and leaves K out when hx has none (docker).
    env.extend(
        args.env
            .iter()
            .filter_map(|e| hx_engine::lifecycle::expand_env_opt(e)),
    );
    let req = ExecRequest {
        args: args.command.clone(),
        env,
        user: args.user.clone().unwrap_or_default(),
        cwd: args.workdir.clone().unwrap_or_default(),
        tty: if args.tty {
            Some(
                super::interactive::terminal_size()
                    .unwrap_or(pv_init::spec::TtySize { rows: 24, cols: 80 }),
            )
        } else {
            None
        },
        stdin: args.interactive && !args.detach,
        builtin: None,
        member: None,
        // A pod member's processes run in its root inside the pod's VM (docs/pods.md).
        container: c.is_pod_member().then(|| c.id.clone()),
        capabilities: args.privileged.then(pv_init::spec::Capabilities::all),
        no_new_privileges: None,
        seccomp: None,
    };
    if !req.cwd.is_empty() && !req.cwd.starts_with('/') {
        bail!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            req.cwd
        );
    }
    let session = tokio::task::spawn_blocking(move || Session::open(&socket, &req)).await??;
    let control = session.control();
    let detach = args.detach;
    let interactive = args.interactive && !detach;
    let _raw = if args.tty && interactive {
        super::interactive::RawTerminal::enable()
    } else {
        None
    };
    if interactive {
        let control = control.clone();
        std::thread::spawn(move || {
            if hx_engine::input_copy::copy_until_eof(std::io::stdin().lock(), 32 << 10, |b| {
                control.stdin(b)
            }) {
                let _ = control.close_stdin();
            }
        });
    }
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let started = started.clone();
        tokio::task::spawn_blocking(move || {
            session.run(&mut std::io::stdout(), &mut std::io::stderr(), |_| {
                started.store(true, std::sync::atomic::Ordering::Relaxed);
                !detach
            })
        })
    };
    tokio::pin!(reading);
    use tokio::signal::unix::{signal, SignalKind};
    let mut winch = signal(SignalKind::window_change())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let end = loop {
        tokio::select! {
            r = &mut reading => break r??,
            _ = winch.recv(), if args.tty => {
                if let Some(size) = super::interactive::terminal_size() {
                    let _ = control.resize(size.rows, size.cols);
                }
            }
            // Without a terminal there is no ^C byte to send: the signal goes to the process.
            _ = sigint.recv() => { let _ = control.signal(libc::SIGINT); }
            _ = sigterm.recv() => { let _ = control.signal(libc::SIGTERM); }
        }
    };
    drop(_raw);
    match end {
        End::Status(pv_init::status::Status::InitError { code, message }) => {
            errln!("hx: {}", hx_engine::sanitize::line(&message));
            Ok(code)
        }
        End::Status(s) => Ok(s.exit_code().unwrap_or(125)),
        End::Detached(pid) => {
            tracing::info!("exec: process {pid} runs on, detached");
            Ok(0)
        }
        End::Lost => {
            // The channel ends with the VM: give a stopping VM a moment to be gone.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while be.is_running(&c) && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if be.is_running(&c) {
                bail!("container {}: the exec channel closed", c.name);
            }
            if !started.load(std::sync::atomic::Ordering::Relaxed) {
                bail!("container {} is not running", c.name);
            }
            // The container stopped under the process: docker's 137.
            errln!("hx: container {} stopped during the exec", c.name);
            Ok(137)
        }
    }
}
