//! The keeper: the process the OCI runtime's `create` leaves behind (its pid is in
//! `--pid-file`; containerd's shim reaps it as a subreaper and reports its exit status as the
//! container's). It holds the stdio the runtime was given (pipes, or a pty whose master went
//! to `--console-socket`), lives in the container's network namespace, waits for `start`
//! (`exec.fifo`), boots the VM and owns it (the engine's owner lock), relays the workload's
//! output and input, forwards the signals it gets, and exits with the workload's exit code.
use super::{netns, record};
use crate::backend;
use crate::container;
use crate::lifecycle::{self, StartOptions, Started};
use crate::output_log::Follower;
use crate::runtime;
use anyhow::Context;
use hx_images::Store;
use pv_init::status::Control;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::time::Duration;

/// `hx-runtime __keeper ID`: the keeper's whole life; its exit code is the workload's.
pub async fn keep(root: &Path, id: &str) -> anyhow::Result<i32> {
    // Before `start` can return: a resize the caller sends right after it (containerd's
    // ResizePty) must find the handler in place, not SIGWINCH's default (ignored).
    let winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let started = match wait_and_start(root, id).await {
        Ok(s) => s,
        Err(e) => {
            // What `start` reports (the keeper's stderr is the workload's).
            let _ = std::fs::write(
                record::dir(root, id).join(record::START_ERROR),
                format!("{e:#}"),
            );
            return Err(e);
        }
    };
    relay(root, started, winch).await
}

/// Docker's embedded DNS for the guest (network/dns_relay.rs), when the VM took over the
/// namespace's interface: the relay's address exists once `start` made the VM's interface.
fn start_dns_relay() {
    use crate::network::dns_relay::{serve, EMBEDDED_DNS, RELAY_HOST};
    tokio::spawn(async {
        if let Err(e) = serve((RELAY_HOST, 53).into(), (EMBEDDED_DNS, 53).into()).await {
            tracing::warn!("the DNS relay stopped: {e:#}");
        }
    });
}

async fn wait_and_start(root: &Path, id: &str) -> anyhow::Result<Started> {
    let fifo = record::dir(root, id).join(record::FIFO);
    let f = tokio::task::spawn_blocking(move || wait_for_start(&fifo))
        .await?
        .context("opening exec.fifo")?;
    (&f).write_all(b"0")?;
    drop(f);
    let rec = record::load(root, id)?;
    let engine_id = rec
        .engine_id
        .clone()
        .context("the container was not created")?;
    let network = netns::guest_network(&rec.netns)?;
    let took_over = network.as_deref().is_some_and(|n| n.starts_with("ns:"));
    let root2 = root.to_path_buf();
    let started = tokio::task::spawn_blocking(move || {
        lifecycle::start(
            &root2,
            &engine_id,
            StartOptions {
                network,
                ..Default::default()
            },
        )
    })
    .await??;
    if took_over {
        start_dns_relay();
    }
    Ok(started)
}

/// Opens `fifo` for writing once `start` opened it for reading. Polled (a non-blocking open
/// fails with ENXIO until then) rather than blocked in: a keeper whose container was deleted
/// before `start` — or whose `create` was killed before it recorded the keeper — sees its
/// fifo gone and ends instead of waiting forever.
fn wait_for_start(fifo: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("the container was deleted before start")
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Output to one of the keeper's descriptors, unbuffered; a reader that left loses the rest
/// (the workload runs on, like under runc when the shim's pipe closes).
pub(super) struct Fd(std::mem::ManuallyDrop<std::fs::File>);

impl Fd {
    pub(super) fn new(fd: i32) -> Fd {
        // SAFETY: 1 and 2 are open for the keeper's life; ManuallyDrop never closes them.
        Fd(std::mem::ManuallyDrop::new(unsafe {
            std::fs::File::from_raw_fd(fd)
        }))
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            r => r,
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The keeper's stdin into the workload's, on a thread (a blocking read); its end is the
/// workload's (the container is stdin-once). Over the backend's own input path
/// (workload_input: the relay's socket on QEMU, the console on Xen).
fn forward_stdin(
    c: &crate::container::Container,
    dir: &Path,
    root: &Path,
    be: &dyn backend::Backend,
) -> anyhow::Result<()> {
    let Some((mut input, _once)) = crate::workload_input::open(c, dir, be)? else {
        return Ok(());
    };
    let (c, root) = (c.clone(), root.to_path_buf());
    std::thread::spawn(move || {
        if !input.wait_ready() {
            return;
        }
        let stdin = Fd::new(0);
        if crate::input_copy::copy_until_eof(&*stdin.0, 16 << 10, |b| input.send(b)) {
            // Its own backend object: the caller's is not Send.
            if let Ok(be) = backend::for_container(&c, &root) {
                input.end(be.as_ref());
            }
        }
    });
    Ok(())
}

pub(super) fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

async fn relay(
    root: &Path,
    started: Started,
    mut winch: tokio::signal::unix::Signal,
) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let Started {
        container: c,
        owner,
    } = started;
    let dir = container::dir(root, &c.id);
    let be = backend::for_container(&c, root)?;
    let request = lifecycle::request_of(root, &c)?;
    let tty = request.tty.is_some();
    // A CRI pod's member has no input channel (oci/mod.rs: member_request).
    if request.stdin {
        forward_stdin(&c, &dir, root, be.as_ref())?;
    }
    let mut output = Follower::open(&dir, true)?;
    let (mut stdout, mut stderr) = (Fd::new(1), Fd::new(2));
    // Signals sent to the keeper itself go to the workload, like runc's init gets them.
    let (tx, mut signals) = tokio::sync::mpsc::unbounded_channel();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ] {
        let mut s = signal(kind)?;
        let tx = tx.clone();
        let n = kind.as_raw_value();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(n).is_err() {
                    break;
                }
            }
        });
    }
    let exited = c.vm_process().and_then(|p| p.exit_notifier());
    let vm_exit = async {
        match &exited {
            Some(fd) => drop(fd.readable().await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(vm_exit);
    let mut vm_gone = false;
    if tty {
        if let Some((rows, cols)) = terminal_size() {
            let _ = be.send_control(&c, &dir, &Control::Resize { rows, cols }.to_line());
        }
    }
    loop {
        let any = output.pump(&mut stdout, &mut stderr)?;
        if !be.is_running(&c) {
            break;
        }
        let delay = if any { 5 } else { 25 };
        tokio::select! {
            _ = winch.recv(), if tty => {
                if let Some((rows, cols)) = terminal_size() {
                    let _ = be.send_control(&c, &dir, &Control::Resize { rows, cols }.to_line());
                }
            }
            Some(sig) = signals.recv() => {
                let _ = be.send_control(&c, &dir, &Control::Signal(sig).to_line());
            }
            _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
            _ = &mut vm_exit, if !vm_gone => vm_gone = true,
        }
    }
    output.pump(&mut stdout, &mut stderr)?;
    let _lock = Store::open(root)?.lock()?;
    drop(owner);
    let current = container::load(root, &c.id).unwrap_or(c);
    let outcome = runtime::outcome(&dir);
    runtime::settle(root, current, be.as_ref())?;
    if let Some(e) = outcome.error() {
        let _ = writeln!(stderr, "hx-runtime: {}", crate::sanitize::line(&e));
    }
    Ok(outcome.exit_code())
}
