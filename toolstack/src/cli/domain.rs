//! What the xl-like admin commands share: opening libxl in a dom0, naming domains by name or id,
//! and xl's state letters.
use hx_engine::backend::xen::require_dom0;
use hx_engine::HxError;
use xen_bindings::{Context, DomainInfo, ShutdownReason, Xenstore};

/// Prints to stdout, escaped like `outln!` (domain names and the hypervisor's ring may carry a
/// guest's bytes); a closed pipe (`hx list | head`) ends the output quietly.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let safe = hx_engine::sanitize::text(text).to_cow();
    let mut out = std::io::stdout().lock();
    match out.write_all(safe.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// libxl on this dom0; "not a Xen dom0: ..." (exit 3) anywhere else.
pub fn open() -> anyhow::Result<Context> {
    require_dom0()?;
    Ok(Context::new()?)
}

/// The store `resolve` looks containers up in (set once by `dispatch`, from `--root`).
static STORE_ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub fn set_store_root(root: &std::path::Path) {
    let _ = STORE_ROOT.set(root.to_path_buf());
}

/// A domain given by id or name, as xl takes it, or by the name or id of the hx container it
/// runs.
pub fn resolve(ctx: &Context, key: &str) -> anyhow::Result<u32> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        let id: u32 = key
            .parse()
            .map_err(|_| HxError::NoSuchDomain(key.to_string()))?;
        return match ctx.info(id) {
            Ok(_) => Ok(id),
            Err(_) => Err(HxError::NoSuchDomain(key.to_string()).into()),
        };
    }
    if let Ok(id) = ctx.domid_by_name(key) {
        return Ok(id);
    }
    container_domain(key).ok_or_else(|| HxError::NoSuchDomain(key.to_string()).into())
}

/// The domain of the hx container named (or id'd) `key`, if it runs: the record's domid,
/// trusted only when that domain's `hx/id` node names the same container.
fn container_domain(key: &str) -> Option<u32> {
    let root = STORE_ROOT.get()?;
    let c = hx_engine::container::find(root, key).ok()?;
    let domid = c.domid?;
    let xs = Xenstore::open().ok()?;
    (hx_container(&xs, domid).as_deref() == Some(c.id.as_str())).then_some(domid)
}

/// Commands that would take the host down refuse Domain-0 (exit 5).
pub fn refuse_dom0(domid: u32, what: &str) -> anyhow::Result<()> {
    if domid == 0 {
        return Err(HxError::Refused(format!("{what} Domain-0")).into());
    }
    Ok(())
}

/// Resolves each of `domains`, refuses Domain-0 for `what`, and runs `act` on its id. Every
/// failure is one line on stderr and the others still run; the exit code is the last failure's
/// (0 when none failed), as xl does for several domains.
pub async fn each<F, Fut>(ctx: &Context, domains: &[String], what: &str, mut act: F) -> i32
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut code = 0;
    for d in domains {
        let r = async {
            let id = resolve(ctx, d)?;
            refuse_dom0(id, what)?;
            act(id).await
        }
        .await;
        if let Err(e) = r {
            errln!("hx: {}", super::one_line(&e));
            code = super::exit_code_for(&e);
        }
    }
    code
}

/// The hx container id of a domain hx created (its `hx/id` node), if it is one.
pub fn hx_container(xs: &Xenstore, domid: u32) -> Option<String> {
    let v = xs.read(&hx_engine::backend::xen::id_node(domid)).ok()??;
    let s = String::from_utf8(v).ok()?;
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// xl's six state letters: running, blocked, paused, shutdown, why (r/s/c/w/S), dying.
pub fn state(d: &DomainInfo) -> String {
    let why = match (d.shutdown, d.shutdown_reason) {
        (false, _) | (true, Some(ShutdownReason::Poweroff)) => '-',
        (true, Some(ShutdownReason::Reboot)) => 'r',
        (true, Some(ShutdownReason::Suspend)) => 's',
        (true, Some(ShutdownReason::Crash)) => 'c',
        (true, Some(ShutdownReason::Watchdog)) => 'w',
        (true, Some(ShutdownReason::SoftReset)) => 'S',
        (true, _) => '?',
    };
    let f = |on: bool, c: char| if on { c } else { '-' };
    [
        f(d.running, 'r'),
        f(d.blocked, 'b'),
        f(d.paused, 'p'),
        f(d.shutdown, 's'),
        why,
        f(d.dying, 'd'),
    ]
    .iter()
    .collect()
}

/// Sizes as xl takes them: a number with an optional b/k/m/g suffix, megabytes without one.
pub fn parse_size_kb(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult): (&str, f64) = match t.chars().last() {
        Some('b') => (&t[..t.len() - 1], 1.0 / 1024.0),
        Some('k') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 1024.0),
        Some('g') => (&t[..t.len() - 1], 1024.0 * 1024.0),
        Some('t') => (&t[..t.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (&t[..], 1024.0),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| anyhow::anyhow!("invalid memory size {s:?} (e.g. 256m, 1g)"))?;
    Ok((n * mult).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DomainInfo {
        DomainInfo {
            domid: 3,
            name: Some("web".into()),
            uuid: String::new(),
            running: false,
            blocked: true,
            paused: false,
            shutdown: false,
            dying: false,
            shutdown_reason: None,
            memory_kb: 131072,
            max_memory_kb: 131072,
            vcpus_online: 1,
            vcpus_max: 1,
            cpu_time_ns: 1_500_000_000,
            pvh: true,
            cpupool: 0,
            ssidref: 0,
            ssid_label: None,
        }
    }

    #[test]
    fn state_letters_match_xl() {
        assert_eq!(state(&info()), "-b----");
        let mut d = info();
        d.paused = true;
        d.blocked = false;
        assert_eq!(state(&d), "--p---");
        d.shutdown = true;
        d.shutdown_reason = Some(ShutdownReason::Crash);
        assert_eq!(state(&d), "--psc-");
        d.shutdown_reason = Some(ShutdownReason::Poweroff);
        d.dying = true;
        assert_eq!(state(&d), "--ps-d");
    }

    #[test]
    fn sizes_default_to_megabytes() {
        assert_eq!(parse_size_kb("256").unwrap(), 256 * 1024);
        assert_eq!(parse_size_kb("256m").unwrap(), 256 * 1024);
        assert_eq!(parse_size_kb("1g").unwrap(), 1024 * 1024);
        assert_eq!(parse_size_kb("512k").unwrap(), 512);
        for bad in ["", "x", "-5", "0", "1q"] {
            assert!(parse_size_kb(bad).is_err(), "{bad}");
        }
    }
}
