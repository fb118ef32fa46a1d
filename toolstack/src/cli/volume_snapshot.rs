//! `hx volume snapshot VOL [NAME]`: a point-in-time copy of a volume, also while containers
//! write to it: each running user's guest freezes the volume's filesystem (pv_init::freeze,
//! over the exec channel) for the moment of the host's copy, then thaws it. The snapshot is a
//! volume (listed, mounted and removed like one) that remembers what it copies.
use hx_engine::container::{self, Status};
use hx_engine::volume;
use pv_init::mux::Builtin;
use std::sync::mpsc;
use std::time::Duration;

/// How long a guest may take to say its filesystem is frozen.
const FREEZE_WAIT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The volume to copy
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::volumes))]
    pub volume: String,
    /// The snapshot's name (default: VOLUME-snap-YYYYMMDDHHMMSS)
    pub name: Option<String>,
}

pub fn run(g: &super::Globals, a: Args) -> anyhow::Result<i32> {
    volume::get(&g.root, &a.volume)?;
    let name = a.name.unwrap_or_else(|| {
        format!(
            "{}-snap-{}",
            a.volume,
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        )
    });
    if !volume::valid_name(&name) {
        return Err(volume::VolumeError::BadName(name).into());
    }
    // Every running container that has the volume mounted, by where.
    let users: Vec<(String, String)> = container::list(&g.root)?
        .into_iter()
        .filter(|c| c.status == Status::Running)
        .flat_map(|c| {
            let at: Vec<_> = c
                .mounts
                .iter()
                .filter(|m| m.kind == "volume" && m.source == a.volume)
                .map(|m| m.target.clone())
                .collect();
            at.into_iter().map(move |t| (c.name.clone(), t))
        })
        .collect();
    let mut held = Vec::new();
    for (c, target) in &users {
        held.push(Hold::freeze(g, c, target)?);
    }
    let copied = volume::copy_of(&g.root, &a.volume, &name, Some(&a.volume));
    for h in held {
        h.thaw()?;
    }
    copied?;
    outln!("{name}");
    Ok(0)
}

/// One guest's filesystem, frozen until `thaw` (or until this hx goes away: the guest thaws
/// at the end of the session's input).
struct Hold {
    container: String,
    control: hx_engine::exec_channel::client::Control,
    session: std::thread::JoinHandle<anyhow::Result<hx_engine::exec_channel::client::End>>,
}

impl Hold {
    fn freeze(g: &super::Globals, c: &str, target: &str) -> anyhow::Result<Hold> {
        let s = super::cp::session(
            &g.root,
            c,
            Builtin::Freeze {
                path: target.to_string(),
            },
            true,
        )?;
        let control = s.control();
        let (tx, rx) = mpsc::channel();
        let session = std::thread::spawn(move || {
            let mut out = Signal(Some(tx), Vec::new());
            s.run(&mut out, &mut std::io::sink(), |_| true)
        });
        match rx.recv_timeout(FREEZE_WAIT) {
            Ok(()) => Ok(Hold {
                container: c.to_string(),
                control,
                session,
            }),
            Err(_) => {
                let _ = control.close_stdin();
                let end = session
                    .join()
                    .map_err(|_| anyhow::anyhow!("freeze session panicked"))??;
                super::cp::finish(end, c)?;
                anyhow::bail!("container {c}: {target} was not frozen in {FREEZE_WAIT:?}")
            }
        }
    }

    fn thaw(self) -> anyhow::Result<()> {
        self.control.close_stdin()?;
        let end = self
            .session
            .join()
            .map_err(|_| anyhow::anyhow!("freeze session panicked"))??;
        super::cp::finish(end, &self.container)
    }
}

/// Tells once the guest has written `frozen\n`.
struct Signal(Option<mpsc::Sender<()>>, Vec<u8>);

impl std::io::Write for Signal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.1.len() < 64 {
            self.1.extend_from_slice(&buf[..buf.len().min(64)]);
        }
        if self.1.starts_with(b"frozen\n") {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
