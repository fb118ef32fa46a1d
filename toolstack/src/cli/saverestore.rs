//! `hx domain save [-c] [-p] [-D] DOMAIN FILE [CONFIG]` and `hx domain restore [-p] [-e] [-d]
//! [-F] [-c] [CONFIG] FILE`: xl's save and restore (docker owns `hx save`), in xl's own file
//! format (xen_bindings::savefile), so `xl restore` reads hx's files and hx reads xl's.
//!
//! Kill safety: both start a detached guard (`hx __xl-guard`) on a pipe first and confirm to it
//! at the end; an unconfirmed guard (hx failed or died) undoes what was left half-way. A save
//! writes the file unnamed (O_TMPFILE) and links it into place only once libxl's stream is
//! complete, before the domain is destroyed; its guard resumes the domain if it is left
//! suspended. A restore marks its domain (xenstore `hx/restoring`, written by libxl with the
//! domain) with its guard's pid, start time and a random token; the guard destroys whatever
//! domain carries its mark, and every restore first destroys marked domains whose guard is gone
//! (killed too), so not even a lost guard leaves a half-restored domain for long.
//!
//! hx containers are refused: their monitor, console log, exec channel and record are tied to
//! the running domain. `hx checkpoint create` saves one (docs/checkpoint.md).
use super::domain;
use super::xl_create::{self, Recreate};
use hx_engine::HxError;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use xen_bindings::savefile;
use xen_bindings::xlcfg::{XlDomain, MAX_CONFIG_BYTES};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Save a domain's memory and state to FILE, in xl's format (xl save)
    Save(SaveArgs),
    /// Restore a domain from a save file of hx's or xl's (xl restore)
    // -V is xl's VNC viewer flag here, not --version.
    #[command(disable_version_flag = true)]
    Restore(RestoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Checkpoint: leave the domain running after saving
    #[arg(short = 'c')]
    pub checkpoint: bool,
    /// Leave the domain paused after saving
    #[arg(short = 'p')]
    pub paused: bool,
    /// Keep the domain id in the saved config (restored with the same id)
    #[arg(short = 'D')]
    pub preserve_domid: bool,
    /// The domain (name or id)
    pub domain: String,
    /// The save file
    pub file: String,
    /// An xl.cfg file to store instead of the domain's own config
    pub config: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Leave the domain paused after restoring it
    #[arg(short = 'p')]
    pub paused: bool,
    /// No monitor: on_poweroff/on_reboot/on_crash are not carried out
    #[arg(short = 'e')]
    pub no_monitor: bool,
    /// Print the config as JSON to stderr
    #[arg(short = 'd')]
    pub debug: bool,
    /// Stay in the foreground as the domain's monitor
    #[arg(short = 'F')]
    pub foreground: bool,
    /// Attach to the domain's console once restored
    #[arg(short = 'c')]
    pub console: bool,
    /// Start a VNC viewer on the domain's VNC server once restored (hx vncviewer)
    #[arg(short = 'V', long = "vncviewer")]
    pub vncviewer: bool,
    /// As -V, passing the domain's VNC password on the viewer's standard input
    #[arg(short = 'A', long = "vncviewer-autopass")]
    pub autopass: bool,
    /// [CONFIG] FILE: an xl.cfg file to use instead of the saved config, then the save file
    #[arg(num_args = 1..=2, required = true, value_name = "[CONFIG] FILE")]
    pub files: Vec<String>,
}

/// `hx __xl-guard save DOMID` / `hx __xl-guard restore TOKEN`: unless the save or restore
/// confirms on stdin, resumes the domain a save left suspended / destroys the domain a restore
/// marked with TOKEN.
#[derive(clap::Args, Debug)]
pub struct GuardArgs {
    #[arg(value_parser = ["save", "restore"])]
    pub op: String,
    /// The domain id (save) or the restore's token
    pub what: String,
}

/// How long a save's guard waits for a domain that is still being asked to suspend.
const SAVE_GUARD_SECS: u64 = 60;

/// The xenstore node (under the domain's path) that marks a domain being restored.
const RESTORING_NODE: &str = "hx/restoring";
const CONFIRM: &[u8] = b"ok\n";

pub async fn run(_g: &super::Globals, c: Command) -> anyhow::Result<i32> {
    let r = match c {
        Command::Save(a) => save(a).await,
        Command::Restore(a) => restore(a).await,
    };
    // xl's exit codes: 1 for any failure; 2 (usage), 3 (not a dom0) and 5 (refused) as hx's.
    r.map_err(|e| match super::exit_code_for(&e) {
        2 | 3 | 5 => e,
        _ => super::Fixed::wrap(1, e),
    })
}

/// An xl.cfg file (bounded as hx create reads it), parsed, and its text (for the monitor).
fn read_xl_config(file: &str) -> anyhow::Result<(XlDomain, Vec<u8>)> {
    let mut data = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut data))
        .map_err(|e| anyhow::anyhow!("Failed to read config file: {file}: {e}"))?;
    Ok((XlDomain::parse(file, &data)?, data))
}

async fn save(args: SaveArgs) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let domid = domain::resolve(&ctx, &args.domain)?;
    domain::refuse_dom0(domid, "save")?;
    if let Some(id) = xen_bindings::Xenstore::open()
        .ok()
        .and_then(|xs| domain::hx_container(&xs, domid))
    {
        return Err(HxError::Refused(format!(
            "{}: domain {domid} runs hx container {}: containers cannot be saved this way (their \
             monitor, logs and channels end with the domain): hx checkpoint create saves one",
            args.domain,
            &id[..12]
        ))
        .into());
    }
    let mut cfg = match &args.config {
        Some(f) => read_xl_config(f)?.0.to_libxl()?,
        None => {
            let mut cfg = ctx.retrieve_config(domid).await?;
            cfg.set_requested_domid(if args.preserve_domid { domid } else { 0 });
            cfg
        }
    };
    let json = ctx.config_json(&mut cfg)?;
    let header = savefile::header_bytes(&json)?;
    let out = SaveFile::create(&args.file)?;
    let guard = Guard::spawn("save", &domid.to_string())?;
    (&out.file)
        .write_all(&header)
        .map_err(|e| anyhow::anyhow!("{}: writing the header: {e}", args.file))?;
    errln!(
        "Saving to {} new xl format (info 0x{:x}/0x0/{})",
        args.file,
        savefile::FLAG_JSON | savefile::FLAG_STREAM_V2,
        header.len() - savefile::HEADER_LEN
    );
    let fd = OwnedFd::from(out.file.try_clone()?);
    let saved = match ctx.suspend(domid, fd).await {
        Ok(()) => out.link(&args.file),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = saved {
        errln!("Failed to save domain, resuming domain");
        let _ = ctx.resume(domid).await;
        guard.confirm()?;
        return Err(e);
    }
    if args.paused || args.checkpoint {
        if args.paused {
            ctx.pause(domid).await?;
        }
        ctx.resume(domid).await?;
    } else {
        ctx.destroy(domid).await?;
    }
    guard.confirm()?;
    Ok(0)
}

/// The save file while libxl writes it: unnamed until `link`, so a failed or killed save leaves
/// no partial file behind (a named temporary file where the filesystem has no O_TMPFILE).
struct SaveFile {
    file: std::fs::File,
    temp: Option<std::path::PathBuf>,
}

impl SaveFile {
    fn create(path: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = std::path::Path::new(path);
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let fail = |e: std::io::Error| anyhow::anyhow!("Failed to open {path} for writing: {e}");
        match std::fs::OpenOptions::new()
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
        {
            Ok(file) => Ok(SaveFile { file, temp: None }),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                let temp = dir.join(format!(
                    ".{}.hx-partial-{}",
                    p.file_name().unwrap_or_default().to_string_lossy(),
                    std::process::id()
                ));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&temp)
                    .map_err(fail)?;
                Ok(SaveFile {
                    file,
                    temp: Some(temp),
                })
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Gives the complete file its name (replacing an older file, as xl does).
    fn link(mut self, path: &str) -> anyhow::Result<()> {
        self.file
            .sync_all()
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        let fail = |e: std::io::Error| anyhow::anyhow!("{path}: naming the save file: {e}");
        if let Some(temp) = self.temp.take() {
            return std::fs::rename(&temp, path).map_err(fail);
        }
        let staged = format!("{path}.hx-new-{}", std::process::id());
        let src = std::ffi::CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
        let dst = std::ffi::CString::new(staged.clone())?;
        // SAFETY: two C strings; links the open unnamed file at `staged`.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                src.as_ptr(),
                libc::AT_FDCWD,
                dst.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        std::fs::rename(&staged, path).map_err(|e| {
            let _ = std::fs::remove_file(&staged);
            fail(e)
        })
    }
}

impl Drop for SaveFile {
    fn drop(&mut self) {
        if let Some(t) = &self.temp {
            let _ = std::fs::remove_file(t);
        }
    }
}

async fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let (config_file, file) = match args.files.as_slice() {
        [f] => (None, f.as_str()),
        [c, f] => (Some(c.as_str()), f.as_str()),
        _ => unreachable!("clap allows one or two"),
    };
    let ctx = domain::open()?;
    sweep_abandoned_restores(&ctx).await;
    let mut f = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("Can't open restore file: {file}: {e}"))?;
    // Read unbuffered: libxl reads its stream from this fd, right after the header.
    let header = savefile::read_header(&mut f).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    errln!("Loading new save file {file}");
    let (mut cfg, source, text, json) = match config_file {
        Some(c) => {
            let (d, text) = read_xl_config(c)?;
            (d.to_libxl()?, c.to_string(), text, false)
        }
        None => {
            let j = header.config_json.ok_or_else(|| {
                anyhow::anyhow!("{file}: Config file not specified and none in save file")
            })?;
            let cfg = ctx
                .config_from_json(&j)
                .map_err(|e| anyhow::anyhow!("{file}: the saved config: {e}"))?;
            (cfg, "<saved>".to_string(), j.into_bytes(), true)
        }
    };
    errln!("Parsing config from {source}");
    if cfg.xsdata().iter().any(|(k, _)| k == "hx/id") {
        return Err(HxError::Refused(format!(
            "{file}: the saved domain was an hx container (hx/id in its config): containers are \
             not restored"
        ))
        .into());
    }
    let name = cfg
        .name()
        .ok_or_else(|| anyhow::anyhow!("{file}: the saved config names no domain"))?;
    if ctx.domid_by_name(&name).is_ok() {
        return Err(HxError::Refused(format!("domain {name:?} already exists")).into());
    }
    if args.debug {
        errln!("{}", ctx.config_json(&mut cfg)?.trim_end());
    }
    let guard = Guard::spawn("restore", &random_token()?)?;
    cfg.set_xsdata(RESTORING_NODE, &guard.mark()?)?;
    let domid = ctx.create_restore(cfg, OwnedFd::from(f)).await?;
    // Until the guard is told, any failure (or hx's death) ends with the domain destroyed.
    if !args.no_monitor && !args.foreground {
        xl_create::spawn_monitor(domid, &source, &text, json)
            .map_err(|e| e.context("starting the domain's monitor (hx __xl-monitor)"))?;
    }
    if !args.paused {
        ctx.unpause(domid).await?;
    }
    guard.confirm()?;
    if let Ok(xs) = xen_bindings::Xenstore::open() {
        let _ = xs.rm(&format!("/local/domain/{domid}/{RESTORING_NODE}"));
    }
    if args.vncviewer || args.autopass {
        if let Err(e) = super::vncviewer::spawn(domid, args.autopass) {
            errln!("hx: {e}");
        }
    }
    if args.console {
        return Err(ctx.console_exec(domid).into());
    }
    if args.foreground && !args.no_monitor {
        let recreate = Recreate::parse(&ctx, &source, &text, json)?;
        return xl_create::watch(&ctx, &recreate, domid).await;
    }
    Ok(0)
}

fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The parent's end of a restore guard: dropping it unconfirmed (an error, or hx dying) makes
/// the guard destroy the marked domain.
struct Guard {
    child: std::process::Child,
    token: String,
}

/// A restore's mark: `PID:START:TOKEN` of its guard.
fn restore_mark(guard: hx_engine::process::Tracked, token: &str) -> String {
    format!("{}:{}:{token}", guard.pid, guard.start)
}

/// The guard a mark names, if the mark is one (strictly: two numbers and 32 hex digits).
fn parse_mark(mark: &[u8]) -> Option<hx_engine::process::Tracked> {
    let s = std::str::from_utf8(mark).ok()?;
    let mut f = s.split(':');
    let (pid, start, token) = (f.next()?, f.next()?, f.next()?);
    if f.next().is_some()
        || token.len() != 32
        || !token.bytes().all(|b| b.is_ascii_hexdigit())
        || ![pid, start]
            .iter()
            .all(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    hx_engine::process::Tracked::new(pid.parse().ok(), start.parse().ok())
}

/// Destroys the domains of restores whose guard is gone (killed with its hx).
async fn sweep_abandoned_restores(ctx: &xen_bindings::Context) {
    let Ok(xs) = xen_bindings::Xenstore::open() else {
        return;
    };
    for d in ctx.list().unwrap_or_default() {
        let node = format!("/local/domain/{}/{RESTORING_NODE}", d.domid);
        let Some(mark) = xs.read(&node).ok().flatten() else {
            continue;
        };
        if d.domid != 0 && parse_mark(&mark).is_some_and(|g| !g.is_alive()) {
            errln!(
                "destroying domain {}: a restore that did not finish",
                d.domid
            );
            let _ = ctx.destroy(d.domid).await;
        }
    }
}

impl Guard {
    fn spawn(op: &str, what: &str) -> anyhow::Result<Self> {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("__xl-guard")
            .arg(op)
            .arg(what)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        hx_engine::process::detach(&mut cmd, Vec::new());
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting the restore guard: {e}"))?;
        Ok(Guard {
            child,
            token: what.to_string(),
        })
    }

    /// The mark a restore's domain carries for this guard.
    fn mark(&self) -> anyhow::Result<String> {
        let pid = self.child.id() as i32;
        let start = hx_engine::process::start_time(pid)
            .ok_or_else(|| anyhow::anyhow!("the restore guard exited at once"))?;
        Ok(restore_mark(
            hx_engine::process::Tracked { pid, start },
            &self.token,
        ))
    }

    fn confirm(mut self) -> anyhow::Result<()> {
        let mut stdin = self.child.stdin.take().expect("piped");
        stdin.write_all(CONFIRM)?;
        drop(stdin);
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Unconfirmed: closing its stdin tells the guard to clean up; it runs on detached.
        drop(self.child.stdin.take());
    }
}

pub async fn guard(args: GuardArgs) -> anyhow::Result<i32> {
    let mut got = Vec::new();
    std::io::stdin()
        .take(CONFIRM.len() as u64 + 1)
        .read_to_end(&mut got)?;
    if got == CONFIRM {
        return Ok(0);
    }
    let ctx = domain::open()?;
    if args.op == "save" {
        let domid: u32 = args.what.parse()?;
        return resume_if_suspended(&ctx, domid).await;
    }
    let me = hx_engine::process::Tracked::current()
        .ok_or_else(|| anyhow::anyhow!("no start time for this process"))?;
    let mark = restore_mark(me, &args.what);
    let xs = xen_bindings::Xenstore::open()?;
    for d in ctx.list()? {
        let node = format!("/local/domain/{}/{RESTORING_NODE}", d.domid);
        if d.domid != 0 && xs.read(&node).ok().flatten().as_deref() == Some(mark.as_bytes()) {
            ctx.destroy(d.domid).await?;
        }
    }
    Ok(0)
}

/// After a save that did not finish: the guest may still be suspending (libxl asked it through
/// xenstore), so wait a while for it to be suspended, then resume it where it stopped.
async fn resume_if_suspended(ctx: &xen_bindings::Context, domid: u32) -> anyhow::Result<i32> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(SAVE_GUARD_SECS);
    while std::time::Instant::now() < end {
        match ctx.info(domid) {
            Err(_) => return Ok(0),
            Ok(i) if i.dying => return Ok(0),
            Ok(i) if i.shutdown => {
                if i.shutdown_reason == Some(xen_bindings::ShutdownReason::Suspend) {
                    ctx.resume(domid).await?;
                }
                return Ok(0);
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_file_appears_only_once_linked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.save");
        let p = path.to_str().unwrap();
        // Dropped before it is complete (a failed or killed save): nothing in the directory.
        let f = SaveFile::create(p).unwrap();
        (&f.file).write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Linked: the whole file under its name, replacing an older one, nothing else.
        std::fs::write(&path, b"older").unwrap();
        let f = SaveFile::create(p).unwrap();
        (&f.file).write_all(b"complete").unwrap();
        f.link(p).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"complete");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(SaveFile::create("/nonexistent-dir/x.save").is_err());
    }

    #[test]
    fn restore_marks_name_their_guard_strictly() {
        let g = hx_engine::process::Tracked::current().unwrap();
        let token = random_token().unwrap();
        let mark = restore_mark(g, &token);
        assert_eq!(parse_mark(mark.as_bytes()), Some(g));
        assert!(parse_mark(mark.as_bytes()).unwrap().is_alive());
        for bad in [
            "",
            "1:2",
            "1:2:3",
            &format!("x:2:{token}"),
            &format!("1:2:{token}:4"),
            &format!("-1:2:{token}"),
            &format!("1:99999999999999999999999:{token}"),
            &format!("1:2:{}", &token[1..]),
        ] {
            assert_eq!(parse_mark(bad.as_bytes()), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever a marker node holds: a guard or nothing, never a panic.
        #[test]
        fn any_mark_parses_or_not(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = parse_mark(&data);
        }
    }
}
