//! The spec's hooks, run like runc runs them: the hook's path with its args (args[0] is
//! argv[0]) and only its env, the container's state JSON on stdin, killed at its timeout.
use anyhow::{bail, Context};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A hook without a timeout still does not hold the runtime forever.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// What of a failed hook's stderr goes into the error.
const STDERR_MAX: usize = 1024;

pub fn run_all(stage: &str, hooks: &[Hook], state: &serde_json::Value) -> anyhow::Result<()> {
    for h in hooks {
        run(h, state).with_context(|| format!("{stage} hook {}", h.path().display()))?;
    }
    Ok(())
}

fn run(h: &Hook, state: &serde_json::Value) -> anyhow::Result<()> {
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    let tmp_err = tempfile::tempfile()?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(tmp_err.try_clone()?);
    let mut child = cmd.spawn().context("starting it")?;
    let input = serde_json::to_vec(state)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE).
        let _ = stdin.write_all(&input);
    }
    let limit = h
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Duration::from_secs(t as u64).min(MAX_TIMEOUT))
        .unwrap_or(MAX_TIMEOUT);
    let status = match crate::process::wait_child(&mut child, limit)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} s", limit.as_secs());
        }
    };
    if !status.success() {
        use std::io::{Read, Seek};
        let mut err = tmp_err;
        let mut text = Vec::new();
        err.seek(std::io::SeekFrom::Start(0))?;
        err.take(STDERR_MAX as u64).read_to_end(&mut text)?;
        bail!(
            "failed ({status}): {}",
            crate::sanitize::line(String::from_utf8_lossy(&text).trim())
        );
    }
    Ok(())
}
