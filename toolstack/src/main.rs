//! hx: run OCI images as Xen (or QEMU) micro-VMs.
//! The command line only: what hx does is the hx-engine crate (toolstack/engine).
#[macro_use]
extern crate hx_engine;
mod cli;

use hx_engine::{backend, output};

use clap::{CommandFactory, Parser};
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = backend::xen::hotplug::from_argv0() {
        return ExitCode::from(code as u8);
    }
    // A shell asking for completions (`COMPLETE=bash hx -- WORDS…`): answered, then exit.
    clap_complete::CompleteEnv::with_factory(cli::Cli::command)
        .bin("hx")
        .complete();
    let argv: Vec<String> = std::env::args().collect();
    if let Some(at) = cli::xl_create::detect(&argv) {
        return xl_create(&argv, at);
    }
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    cli::init_tracing(args.verbose + args.verbose_long);
    let globals = match cli::Globals::from_cli(&args) {
        Ok(g) => g,
        Err(e) => return report(e),
    };
    finish(runtime().block_on(cli::dispatch(&globals, args.command)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn finish(result: anyhow::Result<i32>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => report(e),
    }
}

/// `hx create FILE.cfg ...` (xl's create, told from docker's by `xl_create::detect`).
fn xl_create(argv: &[String], at: usize) -> ExitCode {
    let words = std::iter::once("hx create".to_string()).chain(argv[at + 1..].iter().cloned());
    let args = match cli::xl_create::Args::try_parse_from(words) {
        Ok(a) => a,
        Err(e) => {
            if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) {
                e.exit();
            }
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let verbose = argv[1..at].iter().filter(|w| w.starts_with("-v")).count() as u8;
    cli::init_tracing(verbose);
    finish(runtime().block_on(cli::xl_create::run(args)))
}

/// clap's message as is; the exit code is docker's 125 for `run` and `create` (a bad flag there
/// is "the tool failed", like any other hx failure of those commands), clap's 2 elsewhere.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        e.exit();
    }
    let _ = e.print();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::command_of(&cli::Cli::command(), &argv).as_deref() {
        Some("run" | "create") => 125,
        _ => e.exit_code(),
    };
    ExitCode::from(code as u8)
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
