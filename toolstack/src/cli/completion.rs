//! `hx completion SHELL`: shell completion scripts generated from the clap definition.
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

pub fn run(args: Args, mut cmd: clap::Command) -> anyhow::Result<i32> {
    clap_complete::generate(args.shell, &mut cmd, "hx", &mut std::io::stdout());
    Ok(0)
}
