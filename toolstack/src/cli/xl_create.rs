//! `hx create FILE.cfg [-p] [-c] [-V|-A] [-q] [-n] [-d] [-F] [-e] [-i] [KEY=VALUE...]`: any domain
//! described in xl.cfg syntax, as `xl create` makes it. libxlutil parses the file
//! (xen_bindings::xlcfg), libxl creates the domain, and `hx __xl-monitor` (detached, like xl's
//! daemon; in the foreground with -F, none with -e) carries out on_poweroff/on_reboot/on_crash
//! for it. -n prints the libxl config as JSON (like `xl create -n`) and creates nothing.
//! `hx create IMAGE` (docker's create) is the same command word: the xl form is chosen when the
//! first argument is a config file (`detect`).
use super::domain;
use std::io::{Read, Write};
use std::path::Path;
use xen_bindings::xlcfg::{with_extra_lines, ShutdownAction, XlDomain, MAX_CONFIG_BYTES};
use xen_bindings::{DomainEvent, ShutdownReason};

#[derive(clap::Parser, Debug)]
#[command(
    name = "hx create",
    about = "Create a domain from an xl.cfg file (xl create)"
)]
pub struct Args {
    /// Leave the domain paused after creating it
    #[arg(short = 'p')]
    pub paused: bool,
    /// Attach to the domain's console after creating it
    #[arg(short = 'c')]
    pub console: bool,
    /// Quiet: no "Parsing config from" line
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Dry run: print the libxl config as JSON and create nothing
    #[arg(short = 'n', long = "dryrun")]
    pub dryrun: bool,
    /// Print the libxl config as JSON to stderr before creating
    #[arg(short = 'd')]
    pub debug: bool,
    /// Stay in the foreground, carrying out on_poweroff/on_reboot/on_crash until the domain is gone
    #[arg(short = 'F')]
    pub foreground: bool,
    /// No monitor: create the domain and return (on_reboot etc. are not carried out)
    #[arg(short = 'e')]
    pub no_monitor: bool,
    /// Ignore xl.conf's global vCPU affinity masks (hx applies none; accepted for xl's scripts)
    #[arg(short = 'i')]
    pub ignore_masks: bool,
    /// Start a VNC viewer on the domain's VNC server once it is created (hx vncviewer)
    #[arg(short = 'V', long = "vncviewer")]
    pub vncviewer: bool,
    /// As -V, passing the domain's VNC password on the viewer's standard input
    #[arg(short = 'A', long = "vncviewer-autopass")]
    pub autopass: bool,
    /// The config file (also the first argument)
    #[arg(short = 'f', long = "defconfig", value_name = "FILE")]
    pub defconfig: Option<String>,
    /// The config file, then KEY=VALUE settings appended to it as lines
    #[arg(value_name = "FILE.cfg | KEY=VALUE")]
    pub rest: Vec<String>,
}

/// xl's short options without a value, which may precede the file.
const XL_FLAGS: &[u8] = b"pcqndFeiVA";

/// Whether `hx ... create ARGS` is xl's create: its first argument after xl's own flags names a
/// config file (`*.cfg`, or an existing file given as a path), or `-f`/`--defconfig` is used.
/// Returns the index of the `create` word.
pub fn detect(argv: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--root" => i += 2,
            w if w.starts_with("--root=") || w == "--verbose" => i += 1,
            w if w.starts_with("-v") && w[1..].bytes().all(|b| b == b'v') => i += 1,
            _ => break,
        }
    }
    if argv.get(i).map(String::as_str) != Some("create") {
        return None;
    }
    for a in &argv[i + 1..] {
        if a == "-f" || a.starts_with("--defconfig") || a.starts_with("-f") && a.len() > 2 {
            return Some(i);
        }
        if a.len() > 1 && a.starts_with('-') && a[1..].bytes().all(|b| XL_FLAGS.contains(&b)) {
            continue;
        }
        if ["--quiet", "--dryrun", "--vncviewer", "--vncviewer-autopass"].contains(&a.as_str()) {
            continue;
        }
        let path = Path::new(a);
        let is_cfg = !a.starts_with('-')
            && !a.contains('=')
            && (a.ends_with(".cfg") || (a.contains('/') && path.is_file()));
        return is_cfg.then_some(i);
    }
    None
}

/// The config file (`-f`'s, else the first argument without `=`) and the KEY=VALUE settings,
/// as xl sorts the arguments of `create` and `cpupool-create`.
pub(super) fn sort_config_args(
    defconfig: Option<String>,
    rest: &[String],
) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let mut file = defconfig;
    let mut extra = Vec::new();
    for a in rest {
        if a.contains('=') {
            extra.push(a.clone());
        } else if file.is_none() {
            file = Some(a.clone());
        } else {
            return Err(super::Fixed::wrap(
                2,
                anyhow::anyhow!("{a:?}: one config file only; settings are KEY=VALUE"),
            ));
        }
    }
    Ok((file, extra))
}

/// `hx create`'s config file and settings: a file is required.
fn split(args: &Args) -> anyhow::Result<(String, Vec<String>)> {
    let (file, extra) = sort_config_args(args.defconfig.clone(), &args.rest)?;
    let file = file.ok_or_else(|| {
        super::Fixed::wrap(
            2,
            anyhow::anyhow!("no config file given (hx create FILE.cfg)"),
        )
    })?;
    Ok((file, extra))
}

/// A config file, read whole up to one byte past xlcfg's bound (which the parser refuses).
pub(super) fn read_config(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("Failed to read config file: {file}: {e}"))?
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow::anyhow!("Failed to read config file: {file}: {e}"))?;
    Ok(data)
}

/// xl's exit codes: 1 for any failure to create (2 for usage, 3 outside a dom0, as hx's others).
pub async fn run(args: Args) -> anyhow::Result<i32> {
    create(args).await.map_err(|e| {
        let code = super::exit_code_for(&e);
        if code == 2 || code == 3 {
            e
        } else {
            super::Fixed::wrap(1, e)
        }
    })
}

async fn create(args: Args) -> anyhow::Result<i32> {
    let (file, extra) = split(&args)?;
    let data = with_extra_lines(&read_config(&file)?, &extra)?;
    if !args.quiet {
        errln!("Parsing config from {file}");
    }
    let d = XlDomain::parse(&file, &data)?;
    let ctx = domain::open()?;
    if args.dryrun || args.debug {
        let json = ctx.config_json(&mut d.to_libxl()?)?;
        if args.dryrun {
            domain::print(&json)?;
            return Ok(0);
        }
        errln!("{}", json.trim_end());
    }
    if ctx.domid_by_name(&d.name).is_ok() {
        return Err(
            hx_engine::HxError::Refused(format!("domain {:?} already exists", d.name)).into(),
        );
    }
    let domid = ctx.create_xl(&d).await?;
    let recreate = Recreate::Xl(Box::new(d));
    let detached = !args.foreground && !args.no_monitor;
    if detached {
        if let Err(e) = spawn_monitor(domid, &file, &data, false) {
            let _ = ctx.destroy(domid).await;
            return Err(e.context("starting the domain's monitor (hx __xl-monitor)"));
        }
    }
    if !args.paused {
        if let Err(e) = ctx.unpause(domid).await {
            let _ = ctx.destroy(domid).await;
            return Err(e.into());
        }
    }
    if args.vncviewer || args.autopass {
        // As xl's viewer child: its failure is the viewer's, not the domain's.
        if let Err(e) = super::vncviewer::spawn(domid, args.autopass) {
            errln!("hx: {e}");
        }
    }
    if args.console {
        return Err(ctx.console_exec(domid).into());
    }
    // -e wins over -F, as in xl (no monitor at all).
    if args.foreground && !args.no_monitor {
        return watch(&ctx, &recreate, domid).await;
    }
    Ok(0)
}

/// How the monitor makes a domain again (on_reboot = "restart"): from its xl.cfg model, or from
/// libxl's JSON of its config (a restored domain's, from the save file).
pub enum Recreate {
    Xl(Box<XlDomain>),
    Json(String),
}

impl Recreate {
    /// Reads what `spawn_monitor` passed: the config text, xl.cfg or JSON.
    pub fn parse(
        ctx: &xen_bindings::Context,
        source: &str,
        data: &[u8],
        json: bool,
    ) -> anyhow::Result<Self> {
        if json {
            let text = std::str::from_utf8(data)?.to_string();
            ctx.config_from_json(&text)?;
            return Ok(Recreate::Json(text));
        }
        Ok(Recreate::Xl(Box::new(XlDomain::parse(source, data)?)))
    }

    /// on_poweroff, on_reboot, on_crash (libxl's default, destroy, where a JSON config has none).
    pub fn actions(&self, ctx: &xen_bindings::Context) -> anyhow::Result<[ShutdownAction; 3]> {
        Ok(match self {
            Recreate::Xl(d) => d.restarts_on(),
            Recreate::Json(j) => ctx
                .config_from_json(j)?
                .actions()
                .map(|a| a.unwrap_or(ShutdownAction::Destroy)),
        })
    }

    async fn create(&self, ctx: &xen_bindings::Context) -> anyhow::Result<u32> {
        Ok(match self {
            Recreate::Xl(d) => ctx.create_xl(d).await?,
            Recreate::Json(j) => ctx.create_config(ctx.config_from_json(j)?).await?,
        })
    }
}

/// Starts `hx __xl-monitor DOMID SOURCE [--json]` in its own session, the config text on its
/// stdin.
pub fn spawn_monitor(domid: u32, source: &str, data: &[u8], json: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__xl-monitor").arg(domid.to_string()).arg(source);
    if json {
        cmd.arg("--json");
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    hx_engine::process::detach(&mut cmd, Vec::new());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(data)?;
    drop(stdin);
    // Not waited for: it lives as long as the domain (reaped by init once we exit).
    std::mem::forget(child);
    Ok(())
}

/// `hx __xl-monitor DOMID SOURCE`: xl's daemon for one domain from `hx create`.
#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    pub domid: u32,
    /// The config's file name (messages only); the config text comes on stdin
    pub source: String,
    /// The config is libxl's JSON (a restored domain's), not xl.cfg text
    #[arg(long)]
    pub json: bool,
}

/// What a shutdown asks for, by the config's on_poweroff/on_reboot/on_crash.
pub fn action_for(actions: [ShutdownAction; 3], reason: ShutdownReason) -> Option<ShutdownAction> {
    match reason {
        ShutdownReason::Poweroff => Some(actions[0]),
        ShutdownReason::Reboot => Some(actions[1]),
        ShutdownReason::Crash => Some(actions[2]),
        ShutdownReason::Watchdog => Some(ShutdownAction::Destroy),
        // A suspended domain waits for its resume (or `hx destroy`).
        _ => None,
    }
}

/// Most restarts in a minute before the monitor gives up (xl's "restarting too fast").
const MAX_RESTARTS_PER_MINUTE: usize = 5;

pub async fn monitor(args: MonitorArgs) -> anyhow::Result<i32> {
    let mut data = Vec::new();
    std::io::stdin()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut data)?;
    let ctx = domain::open()?;
    let recreate = Recreate::parse(&ctx, &args.source, &data, args.json)?;
    watch(&ctx, &recreate, args.domid).await
}

/// xl's monitor loop: waits for the domain's shutdown and carries out its action, making the
/// domain again for the restarting ones; returns once the domain is gone for good.
pub async fn watch(
    ctx: &xen_bindings::Context,
    recreate: &Recreate,
    domid: u32,
) -> anyhow::Result<i32> {
    let actions = recreate.actions(ctx)?;
    let mut domid = domid;
    let mut restarts: Vec<std::time::Instant> = Vec::new();
    loop {
        let mut events = ctx.watch_domain(domid)?;
        let reason = match events.next().await {
            Some(DomainEvent::Shutdown { reason, .. }) => Some(reason),
            Some(DomainEvent::Death { .. }) | None => None,
        };
        drop(events);
        if reason == Some(ShutdownReason::Suspend) {
            // Saved (`hx domain save`, `xl save`): destroyed once the stream is written, or
            // resumed (-c, -p, a failed save); keep watching the latter.
            if wait_out_suspend(ctx, domid).await {
                continue;
            }
            return Ok(0);
        }
        let Some(action) = reason.and_then(|r| action_for(actions, r)) else {
            return Ok(0);
        };
        if !action.destroys() {
            return Ok(0);
        }
        ctx.destroy(domid).await?;
        if !action.restarts() {
            return Ok(0);
        }
        restarts.retain(|t| t.elapsed().as_secs() < 60);
        if restarts.len() >= MAX_RESTARTS_PER_MINUTE {
            return Ok(1);
        }
        restarts.push(std::time::Instant::now());
        domid = recreate.create(ctx).await?;
        ctx.unpause(domid).await?;
    }
}

/// A suspended domain: true once it runs again (resumed), false once it is gone.
async fn wait_out_suspend(ctx: &xen_bindings::Context, domid: u32) -> bool {
    loop {
        match ctx.info(domid) {
            Ok(i) if i.shutdown && !i.dying => {}
            Ok(i) if !i.shutdown => return true,
            _ => return false,
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        std::iter::once("hx")
            .chain(s.split_whitespace())
            .map(String::from)
            .collect()
    }

    #[test]
    fn xl_form_is_told_from_docker_form() {
        assert_eq!(detect(&argv("create web.cfg")), Some(1));
        assert_eq!(detect(&argv("create -p web.cfg memory=64")), Some(1));
        assert_eq!(detect(&argv("create -pc web.cfg")), Some(1));
        assert_eq!(detect(&argv("--root /x -vv create -f web")), Some(4));
        assert_eq!(detect(&argv("create busybox")), None);
        assert_eq!(detect(&argv("create --name web.cfg busybox")), None);
        assert_eq!(detect(&argv("create -p 80:80 busybox")), None);
        assert_eq!(detect(&argv("run web.cfg")), None);
        assert_eq!(detect(&argv("create")), None);
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().to_string_lossy().to_string();
        assert_eq!(detect(&argv(&format!("create {p}"))), Some(1));
    }

    #[test]
    fn arguments_split_like_xl() {
        use clap::Parser;
        let a = Args::try_parse_from(["hx create", "-p", "a.cfg", "memory=64", "name=x"]).unwrap();
        assert!(a.paused);
        let (f, e) = split(&a).unwrap();
        assert_eq!((f.as_str(), e.len()), ("a.cfg", 2));
        let a = Args::try_parse_from(["hx create", "a.cfg", "b.cfg"]).unwrap();
        assert!(split(&a).is_err());
        let a = Args::try_parse_from(["hx create", "memory=64"]).unwrap();
        assert!(split(&a).is_err());
    }
}
