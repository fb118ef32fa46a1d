//! `hx cp CONTAINER:SRC DEST|-` and `hx cp SRC|- CONTAINER:DEST` (docker cp): files and
//! directories between the host and a container (a stopped one through its offline VM), as tar streams over its exec channel,
//! modes and symlinks kept, placed by docker's rules (pv_init::copy). What comes from the guest
//! is unpacked as hostile (no escape from DEST, no special files or setuid bits, bounded).
use anyhow::{bail, Context};
use hx_engine::exec_channel::client::{End, Session};
use hx_engine::offline::OfflineVm;
use pv_init::mux::{Builtin, ExecRequest};
use std::io::{Read, Write};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// CONTAINER:PATH, a host path, or - (a tar stream on stdin)
    pub source: String,
    /// CONTAINER:PATH, a host path, or - (a tar stream to stdout)
    pub destination: String,
}

/// `NAME:PATH` names a container path; anything starting with `/` or `.` is local (docker's
/// rule: write `./a:b` for a local name with a colon).
fn container_path(arg: &str) -> Option<(&str, String)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (name, path) = arg.split_once(':')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    // Relative container paths start at its root, as docker's do.
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Some((name, path))
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let root = g.root.clone();
    let r =
        tokio::task::spawn_blocking(move || copy(&root, &args.source, &args.destination)).await?;
    match r {
        Ok(()) => Ok(0),
        Err(e) => {
            errln!("hx: {}", super::one_line(&e));
            Ok(1)
        }
    }
}

fn copy(root: &Path, source: &str, destination: &str) -> anyhow::Result<()> {
    match (container_path(source), container_path(destination)) {
        (Some((name, path)), None) => from_container(root, name, path, destination),
        (None, Some((name, path))) => into_container(root, source, name, path),
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source (CONTAINER:PATH)"),
    }
}

/// A builtin session on a running container's exec channel.
pub(super) fn session(
    root: &Path,
    name: &str,
    builtin: Builtin,
    stdin: bool,
) -> anyhow::Result<Session> {
    let (_, _, socket) = super::exec::channel(root, name)?;
    refuse_pod_member(root, name)?;
    open(&socket, builtin, stdin)
}

fn refuse_pod_member(root: &Path, name: &str) -> anyhow::Result<()> {
    let c = hx_engine::container::find(root, name)?;
    if c.is_pod_member() {
        anyhow::bail!(
            "container {}: cp, export, commit and snapshots of a pod member are not supported yet",
            c.name
        );
    }
    Ok(())
}

/// A builtin session on a running container, or on a stopped one's offline VM (booted for
/// it and ended when the returned guard drops), as docker's cp/export/commit work on both.
pub(super) fn session_any(
    root: &Path,
    name: &str,
    builtin: Builtin,
    stdin: bool,
) -> anyhow::Result<(Session, Option<OfflineVm>)> {
    let c = hx_engine::container::find(root, name)?;
    if c.status == hx_engine::container::Status::Running {
        return Ok((session(root, name, builtin, stdin)?, None));
    }
    refuse_pod_member(root, name)?;
    let vm = hx_engine::offline::open(root, name)?;
    let s = open(vm.exec_socket(), builtin, stdin)?;
    Ok((s, Some(vm)))
}

fn open(socket: &Path, builtin: Builtin, stdin: bool) -> anyhow::Result<Session> {
    Session::open(
        socket,
        &ExecRequest {
            args: Vec::new(),
            env: Vec::new(),
            user: String::new(),
            cwd: String::new(),
            tty: None,
            stdin,
            builtin: Some(builtin),
            member: None,
            container: None,
            capabilities: None,
            no_new_privileges: None,
            seccomp: None,
        },
    )
}

pub(super) fn finish(end: End, name: &str) -> anyhow::Result<()> {
    match end {
        End::Status(pv_init::status::Status::Exited { code: 0 }) => Ok(()),
        End::Status(pv_init::status::Status::InitError { message, .. }) => {
            bail!("{}", hx_engine::sanitize::line(&message))
        }
        End::Status(other) => bail!("container {name}: copy ended with {other:?}"),
        End::Lost | End::Detached(_) => bail!("container {name} stopped during the copy"),
    }
}

fn from_container(root: &Path, name: &str, path: String, dest: &str) -> anyhow::Result<()> {
    let (s, _vm) = session_any(root, name, Builtin::TarFrom { path }, false)?;
    if dest == "-" {
        let end = s.run(&mut std::io::stdout(), &mut std::io::sink(), |_| true)?;
        return finish(end, name);
    }
    let (reader, mut writer) = std::io::pipe().context("pipe")?;
    let dest = Path::new(dest).to_path_buf();
    let unpacking = std::thread::spawn(move || pv_init::copy::unpack(reader, &dest));
    let end = s.run(&mut writer, &mut std::io::sink(), |_| true);
    drop(writer);
    let unpacked = unpacking
        .join()
        .map_err(|_| anyhow::anyhow!("unpacking panicked"))?;
    finish(end?, name)?;
    let skipped = unpacked?;
    if skipped > 0 {
        errln!("hx: {skipped} special files (devices, fifos, hard links) were not copied");
    }
    Ok(())
}

/// hx's stdin for the guest, within its credit.
struct ToGuest(hx_engine::exec_channel::client::Control);

impl Write for ToGuest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.stdin(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn into_container(root: &Path, source: &str, name: &str, path: String) -> anyhow::Result<()> {
    if source != "-" && std::fs::symlink_metadata(source).is_err() {
        bail!("could not find the file {source}");
    }
    let (s, _vm) = session_any(root, name, Builtin::TarInto { path }, true)?;
    let control = s.control();
    let source = source.to_string();
    let sending = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut out = ToGuest(control.clone());
        if source == "-" {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                let n = stdin.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
        } else {
            pv_init::copy::pack(&source, &mut out)?;
        }
        control.close_stdin()
    });
    let end = s.run(&mut std::io::sink(), &mut std::io::sink(), |_| true)?;
    // The guest's verdict first: a refused destination ends the stream early.
    finish(end, name)?;
    sending
        .join()
        .map_err(|_| anyhow::anyhow!("packing panicked"))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::container_path;

    #[test]
    fn container_paths_follow_dockers_rule() {
        assert_eq!(container_path("web:/etc/x"), Some(("web", "/etc/x".into())));
        assert_eq!(container_path("web:etc"), Some(("web", "/etc".into())));
        assert_eq!(container_path("./web:x"), None);
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path("a/b:c"), None);
        assert_eq!(container_path("plain"), None);
    }
}
