//! `hx completion SHELL`: the script that registers hx's completion with the shell. The shell
//! then asks hx itself (`COMPLETE=SHELL hx -- WORDS…`, clap_complete's dynamic completion) at
//! each TAB: container, image and volume names come from the store as it is then.
use clap_complete::env::Shells;
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let name = args.shell.to_string();
    let shells = Shells::builtins();
    let shell = shells
        .completer(&name)
        .ok_or_else(|| anyhow::anyhow!("no completion for {name}"))?;
    // The shell calls this binary back: its absolute path, so that a shell whose PATH finds
    // another hx still completes with this one.
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "hx".into());
    let mut out = Vec::new();
    shell.write_registration("COMPLETE", "hx", "hx", &me, &mut out)?;
    hx_engine::output::write_out(format_args!("{}", String::from_utf8_lossy(&out)));
    Ok(0)
}
