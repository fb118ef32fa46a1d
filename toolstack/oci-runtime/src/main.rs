//! hx-runtime: the OCI runtime front end (runc's command-line contract) over hx-engine.
//! The command line only: what it does is hx_engine::oci.
#[macro_use]
extern crate hx_engine;
mod cli;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use hx_engine::oci;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = hx_engine::backend::xen::hotplug::from_argv0() {
        return ExitCode::from(code as u8);
    }
    let args = match Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            if e.use_stderr() {
                let text = e.render().to_string();
                log_error(&log_of_argv(), text.lines().next().unwrap_or("usage error"));
            }
            return ExitCode::from(code as u8);
        }
    };
    init_tracing(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let log = (args.log.clone(), args.log_format);
    match runtime.block_on(dispatch(args)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = format!("{e:#}");
            errln!("{msg}");
            log_error(&log, &msg);
            ExitCode::from(1)
        }
    }
}

async fn dispatch(args: Cli) -> anyhow::Result<i32> {
    let root = args.root.clone();
    let itself = itself(&args)?;
    match args.command {
        Command::Create(c) => {
            let mut keeper = itself;
            keeper.arg("__keeper").arg(&c.id);
            blocking(move || {
                oci::create(oci::CreateOptions {
                    root: &root,
                    id: &c.id,
                    bundle: &c.bundle,
                    pid_file: c.pid_file.as_deref(),
                    console: c
                        .console_socket
                        .as_deref()
                        .map(oci::console::ConsoleTo::Socket),
                    keeper,
                    // dockerd mounts the root itself: its layers are not known here.
                    rootfs_chain: None,
                    host_group: true,
                })
            })
            .await?;
        }
        Command::Start { id } => blocking(move || oci::start(&root, &id)).await?,
        Command::State { id } => {
            let s = blocking(move || oci::state(&root, &id)).await?;
            outln!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Kill { id, signal, all: _ } => {
            let sig = hx_engine::lifecycle::parse_signal(&signal)?;
            blocking(move || oci::kill(&root, &id, sig)).await?
        }
        Command::Delete { id, force } => blocking(move || oci::delete(&root, &id, force)).await?,
        Command::Ps { id, format, .. } => {
            let pids = blocking(move || oci::pids(&root, &id)).await?;
            match format.as_str() {
                "json" => outln!("{}", serde_json::to_string(&pids)?),
                "table" => {
                    outln!("PID");
                    for p in pids {
                        outln!("{p}");
                    }
                }
                f => anyhow::bail!("invalid format option {f:?}: table or json"),
            }
        }
        Command::Exec(e) => {
            let keeper = itself;
            return blocking(move || {
                oci::exec::exec(oci::exec::ExecOptions {
                    root: &root,
                    id: &e.id,
                    process: &e.process,
                    console_socket: e.console_socket.as_deref(),
                    detach: e.detach,
                    pid_file: e.pid_file.as_deref(),
                    keeper,
                })
            })
            .await;
        }
        Command::ExecKeeper { id, request } => return oci::exec::keep(&root, &id, &request).await,
        Command::Pause { id } => blocking(move || oci::pause(&root, &id, true)).await?,
        Command::Resume { id } => blocking(move || oci::pause(&root, &id, false)).await?,
        Command::Update(u) => {
            let l = update_limits(&u)?;
            blocking(move || oci::update(&root, &u.id, &l)).await?
        }
        Command::Features => outln!("{}", serde_json::to_string_pretty(&oci::features())?),
        Command::Keeper { id } => return oci::keeper::keep(&root, &id).await,
        Command::LogRelay {
            dir,
            max_size,
            max_file,
        } => hx_engine::log_relay::run(&dir, max_size, max_file)?,
        Command::XenMonitor { dir } => return hx_engine::backend::xen::monitor::run(dir).await,
    }
    Ok(0)
}

/// runc update's input: the resources document (a file or stdin, bounded) with the flags
/// over it.
fn update_limits(u: &cli::UpdateArgs) -> anyhow::Result<hx_engine::limits::Limits> {
    use std::io::Read;
    let mut doc = match &u.resources {
        None => serde_json::json!({}),
        Some(p) => {
            let mut bytes = Vec::new();
            let most = oci::MAX_RESOURCES_JSON + 1;
            if p.as_os_str() == "-" {
                std::io::stdin().take(most).read_to_end(&mut bytes)?;
            } else {
                std::fs::File::open(p)
                    .map_err(|e| anyhow::anyhow!("--resources {}: {e}", p.display()))?
                    .take(most)
                    .read_to_end(&mut bytes)?;
            }
            // Checked as a whole (size, types) before the flags go over it.
            oci::parse_resources(&bytes)?;
            serde_json::from_slice(&bytes)?
        }
    };
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("resources: not a JSON object"))?;
    let mut set = |section: &str, key: &str, v: serde_json::Value| {
        let s = obj.entry(section).or_insert_with(|| serde_json::json!({}));
        if !s.is_object() {
            *s = serde_json::json!({});
        }
        s[key] = v;
    };
    if let Some(m) = u.memory {
        set("memory", "limit", m.into());
    }
    if let Some(q) = u.cpu_quota {
        set("cpu", "quota", q.into());
    }
    if let Some(p) = u.cpu_period {
        set("cpu", "period", p.into());
    }
    if let Some(sh) = u.cpu_share {
        set("cpu", "shares", sh.into());
    }
    oci::parse_resources(&serde_json::to_vec(&doc)?)
}

/// This runtime again, with the same root and log: the keepers.
fn itself(args: &Cli) -> anyhow::Result<std::process::Command> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--root").arg(&args.root);
    if let Some(l) = &args.log {
        cmd.arg("--log").arg(l);
    }
    cmd.arg("--log-format").arg(match args.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    });
    Ok(cmd)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Warnings (and with --debug, more) to the log file (JSON lines with `--log-format json`:
/// containerd decodes it line by line), else to stderr — but never to the keeper's stderr,
/// which is the workload's.
fn init_tracing(args: &Cli) {
    let level = if args.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::new(level);
    let keeper = matches!(
        args.command,
        Command::Keeper { .. } | Command::ExecKeeper { .. }
    );
    match (&args.log, args.log_format) {
        (Some(path), LogFormat::Text) => {
            let path = path.clone();
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(move || -> Box<dyn Write> {
                    match std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                    {
                        Ok(f) => Box::new(hx_engine::output::Sanitizing(f)),
                        Err(_) => Box::new(std::io::sink()),
                    }
                })
                .try_init();
        }
        (Some(path), LogFormat::Json) => {
            let path = path.clone();
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .with_level(false)
                .with_writer(move || JsonLine {
                    path: path.clone(),
                    text: Vec::new(),
                })
                .try_init();
        }
        (None, _) if !keeper => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_target(false)
                .with_writer(|| hx_engine::output::Sanitizing(std::io::stderr()))
                .try_init();
        }
        _ => {}
    }
}

/// One tracing event as a JSON log line (written when the event is done), level "warning":
/// below error, which only `log_error` writes.
struct JsonLine {
    path: std::path::PathBuf,
    text: Vec<u8>,
}

impl Write for JsonLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for JsonLine {
    fn drop(&mut self) {
        let msg = String::from_utf8_lossy(&self.text);
        let msg = msg.trim();
        if msg.is_empty() {
            return;
        }
        let time = hx_engine::container::now_rfc3339();
        let line =
            serde_json::json!({"level": "warning", "msg": msg, "time": time}).to_string() + "\n";
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// `--log` and `--log-format` of a command line clap refused: the caller still reads the
/// reason from the log.
fn log_of_argv() -> (Option<std::path::PathBuf>, LogFormat) {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        let eq = format!("{name}=");
        argv.iter().enumerate().rev().find_map(|(i, a)| {
            a.strip_prefix(&eq)
                .map(str::to_string)
                .or_else(|| (a == name).then(|| argv.get(i + 1).cloned()).flatten())
        })
    };
    let format = match value("--log-format").as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    (value("--log").map(Into::into), format)
}

/// The error, as runc logs it: a JSON line `{"level":"error","msg":...,"time":...}` (what
/// containerd's shim reports as the reason), or a logrus-style text line.
fn log_error(log: &(Option<std::path::PathBuf>, LogFormat), msg: &str) {
    let Some(path) = &log.0 else { return };
    let time = hx_engine::container::now_rfc3339();
    let line = match log.1 {
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string() + "\n"
        }
        LogFormat::Text => format!(
            "time={time:?} level=error msg={:?}\n",
            hx_engine::sanitize::line(msg).to_string()
        ),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}
