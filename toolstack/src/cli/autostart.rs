//! `hx autostart`: after a host boot, starts the containers whose restart policy asks for it
//! (`always`; `unless-stopped` unless stopped by hand; `on-failure` whose last run failed) and
//! gives each its supervisor, as dockerd does when it starts. `--install-unit` writes the
//! systemd unit that runs it at boot.
use hx_engine::container::Status;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the systemd unit that runs `hx autostart` at boot (and enable it when systemd runs)
    #[arg(long)]
    pub install_unit: bool,
    /// Where --install-unit writes the unit
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/systemd/system",
        requires = "install_unit"
    )]
    pub unit_dir: PathBuf,
}

pub const UNIT_NAME: &str = "hx-autostart.service";

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    if args.install_unit {
        return install_unit(g, &args.unit_dir);
    }
    let candidates: Vec<_> = {
        let _lock = hx_images::Store::open(&g.root)?.lock()?;
        // Marks the containers whose VMs the reboot ended as exited, with their outcome.
        hx_engine::runtime::reconcile(&g.root)?
    };
    let mut code = 0;
    for c in candidates {
        let wanted = matches!(c.status, Status::Exited | Status::Created)
            && c.restart_policy.starts_at_boot(&c);
        if !wanted {
            continue;
        }
        match super::start::start_detached(g, &c.id, Default::default()).await {
            Ok(()) => outln!("{}", c.name),
            Err(e) => {
                errln!("hx: {}: {}", c.name, super::one_line(&e));
                code = super::exit_code_for(&e);
            }
        }
    }
    Ok(code)
}

fn install_unit(g: &super::Globals, dir: &Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("finding the hx binary")?;
    let text = unit_text(&exe, &g.root);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(UNIT_NAME);
    hx_images::store::write_atomic(&path, text.as_bytes())?;
    outln!("{}", path.display());
    let systemd_runs = Path::new("/run/systemd/system").is_dir();
    if systemd_runs && dir == Path::new("/etc/systemd/system") {
        for args in [&["daemon-reload"][..], &["enable", UNIT_NAME][..]] {
            let st = std::process::Command::new("systemctl")
                .args(args)
                .status()
                .context("running systemctl")?;
            if !st.success() {
                anyhow::bail!("systemctl {} failed ({st})", args.join(" "));
            }
        }
    }
    Ok(0)
}

/// The unit: once at boot, after the network and (on a dom0) Xen's daemons.
fn unit_text(exe: &Path, root: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=hx: start the containers whose restart policy asks for it\n\
         Wants=network-online.target\n\
         After=network-online.target xen.service xenstored.service xenconsoled.service proc-xen.mount\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={} --root {} autostart\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        systemd_quote(&exe.to_string_lossy()),
        systemd_quote(&root.to_string_lossy()),
    )
}

/// One word of an ExecStart line, quoted when it needs to be.
fn systemd_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_this_hx_on_this_store() {
        let t = unit_text(Path::new("/usr/local/bin/hx"), Path::new("/var/lib/hx"));
        assert!(t.contains("ExecStart=/usr/local/bin/hx --root /var/lib/hx autostart\n"));
        assert!(t.contains("WantedBy=multi-user.target"));
        let odd = unit_text(Path::new("/opt/my hx/hx"), Path::new("/srv/a%b$c"));
        assert!(odd.contains(r#"ExecStart="/opt/my hx/hx" --root "/srv/a%%b$$c" autostart"#));
    }
}
