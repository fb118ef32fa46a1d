//! `hx console DOMAIN`: attach to a domain's console, as `xl console` (Ctrl-] leaves). For an
//! hx container the console pty belongs to its monitor (two readers would split the output
//! between them), so hx follows the container's console log instead until the domain ends; a
//! container started with `-i` also gets hx's keys (written into the pty, as `hx run -i` does),
//! so `hx console` re-attaches to an `-it` container whose `hx run` went away. A QEMU
//! container's console is its serial console (kernel and pv-init messages), or for one started
//! with `-i` its workload's terminal, keys included, as on Xen.
use super::domain;
use hx_engine::logfile::Tail;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name or id)
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domain: String,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    // A container whose VM is not a Xen domain (QEMU): its serial console, from the log.
    if let Ok(c) = hx_engine::container::find(&g.root, &args.domain) {
        let be = hx_engine::backend::for_container(&c, &g.root)?;
        if !be.has_domain_types() {
            let dir = hx_engine::container::dir(&g.root, &c.id);
            if takes_input(&dir) {
                return workload_terminal(g, &c.name).await;
            }
            return follow_serial(g, &c, be.as_ref()).await;
        }
    }
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    let xs = xen_bindings::Xenstore::open()?;
    if let Some(cid) = domain::hx_container(&xs, id) {
        let dir = hx_engine::container::dir(&g.root, &cid);
        let log = dir.join("console.log");
        if log.is_file() {
            let mut t = Tail::open(&log, true)?;
            let (_raw, keys) = if takes_input(&dir) {
                keys_to_console(id)?
            } else {
                (None, None)
            };
            loop {
                if keys.as_ref().is_some_and(|k| k.try_recv().is_ok()) {
                    return Ok(0);
                }
                t.pump(&mut std::io::stdout())?;
                if ctx.info(id).is_err() {
                    t.pump(&mut std::io::stdout())?;
                    return Ok(0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(ctx.console_exec(id).into())
}

/// The serial console of a VM that is no Xen domain (kernel messages and pv-init's
/// diagnostics; the workload's output is `hx logs`), followed until the VM ends or Ctrl-]
/// on a terminal.
async fn follow_serial(
    g: &super::Globals,
    c: &hx_engine::container::Container,
    be: &dyn hx_engine::backend::Backend,
) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let dir = hx_engine::container::dir(&g.root, &c.id);
    let mut t = Tail::open(&dir.join("console.log"), true)?;
    let (raw, leave) = if std::io::stdin().is_terminal() {
        let raw = super::interactive::RawTerminal::enable();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut b = [0u8; 64];
            while let Ok(n) = stdin.read(&mut b) {
                if n == 0 || b[..n].contains(&0x1d) {
                    let _ = tx.send(());
                    return;
                }
            }
        });
        (raw, Some(rx))
    } else {
        (None, None)
    };
    loop {
        t.pump(&mut std::io::stdout())?;
        if leave.as_ref().is_some_and(|l| l.try_recv().is_ok()) || !be.is_running(c) {
            t.pump(&mut std::io::stdout())?;
            drop(raw);
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A QEMU container started with `-i`: what a Xen console of it is, the workload's terminal —
/// its output from now on and hx's keys as its input (through the relay, `hx attach`'s path;
/// Ctrl-] on a `-t` container or the end of the input leaves it running). Exit 0, like
/// `xl console`, also when the container ends.
async fn workload_terminal(g: &super::Globals, name: &str) -> anyhow::Result<i32> {
    let o = super::attach::Options {
        stdin: true,
        detach_keys: vec![0x1d],
        sig_proxy: false,
    };
    super::attach::attach(&g.root, name, &o).await?;
    Ok(0)
}

/// Whether the container's workload reads its console (started with `-i`).
fn takes_input(dir: &std::path::Path) -> bool {
    std::fs::read(dir.join("spec.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<pv_init::spec::ContainerSpec>(&b).ok())
        .is_some_and(|s| s.stdin)
}

/// Copies hx's stdin into the domain's console pty on a thread until Ctrl-] (on a terminal,
/// which is raw meanwhile) or the end of stdin; the receiver hears when to leave.
type Keys = (
    Option<super::interactive::RawTerminal>,
    Option<std::sync::mpsc::Receiver<()>>,
);
fn keys_to_console(domid: u32) -> anyhow::Result<Keys> {
    use std::io::{IsTerminal, Read, Write};
    let on_terminal = std::io::stdin().is_terminal();
    let tty = hx_engine::backend::xen::console_tty(domid)?;
    let mut console = hx_engine::workload_input::console_writer(&tty)?;
    let raw = if on_terminal {
        super::interactive::RawTerminal::enable()
    } else {
        None
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                // Piped input ended: keep following the output; the workload decides.
                return;
            }
            let chunk = &buf[..n];
            let (keys, leave) = match chunk.iter().position(|b| *b == 0x1d && on_terminal) {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            if console
                .write_all(keys)
                .and_then(|_| console.flush())
                .is_err()
                || leave
            {
                let _ = tx.send(());
                return;
            }
        }
    });
    Ok((raw, Some(rx)))
}
