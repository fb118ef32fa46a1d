//! hx: run OCI images as Xen (or QEMU) micro-VMs.
#[macro_use]
mod output;
mod assets;
mod backend;
mod cli;
mod container;
mod exec_channel;
mod hostconfig;
mod logfile;
mod network;
mod runtime;
mod sanitize;
mod short_path;
mod volume;

/// Errors of the toolstack itself; exit codes in docs/cli.md.
#[derive(Debug, thiserror::Error)]
pub enum HxError {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("container {0} is running: stop it first or use -f")]
    Running(String),
    #[error("container {0} is being created by a live hx run: wait for it, or kill that hx run")]
    Creating(String),
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    #[error("not a Xen dom0: {0}")]
    NotDom0(String),
    #[error("no such domain: {0}")]
    NoSuchDomain(String),
    #[error("refused: {0}")]
    Refused(String),
}

impl HxError {
    pub fn exit_code(&self) -> i32 {
        match self {
            HxError::NoSuchContainer(_) => 1,
            HxError::Running(_) | HxError::Creating(_) => 1,
            HxError::NameInUse(_) => 125,
            HxError::NoSuchDomain(_) => 1,
            HxError::NotDom0(_) => 3,
            HxError::Refused(_) => 5,
        }
    }
}

use clap::{CommandFactory, Parser};
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = backend::xen_hotplug::from_argv0() {
        return ExitCode::from(code as u8);
    }
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose + args.verbose_long);
    let globals = match cli::Globals::from_cli(&args) {
        Ok(g) => g,
        Err(e) => return report(e),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(cli::dispatch(&globals, args.command, cli::Cli::command));
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => report(e),
    }
}

fn report(e: anyhow::Error) -> ExitCode {
    // A `writeln!(stdout)?` that failed because the reader left: die of SIGPIPE like `ls`.
    let broken_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe && output::stdout_closed() {
        output::die_of_sigpipe();
    }
    errln!("hx: {}", cli::one_line(&e));
    ExitCode::from(cli::exit_code_for(&e) as u8)
}
