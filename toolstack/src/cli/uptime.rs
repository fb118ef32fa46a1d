//! `hx uptime [-s] [DOMAIN...]`: how long domains have run, as `xl uptime` prints it.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Short form: " HH:MM:SS up H:MM, NAME (ID)" per domain, no header
    #[arg(short)]
    pub short: bool,
    /// Domains (name, id or hx container); all when none
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::candidates::containers))]
    pub domains: Vec<String>,
}

/// xl's uptime text: `[D day(s), ]HH:MM:SS`, the seconds left out in the short form.
pub fn uptime_text(secs: u64, short: bool) -> String {
    let (day, rest) = (secs / 86400, secs % 86400);
    let (hour, min, sec) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let days = match day {
        0 => String::new(),
        1 => "1 day, ".to_string(),
        d => format!("{d} days, "),
    };
    if short {
        format!("{days}{hour:2}:{min:02}")
    } else {
        format!("{days}{hour:2}:{min:02}:{sec:02}")
    }
}

pub fn row(name: &str, domid: u32, secs: u64, short: bool, now_hms: &str) -> String {
    if short {
        format!(
            " {now_hms} up {}, {name} ({domid})\n",
            uptime_text(secs, true)
        )
    } else {
        format!("{name:<33} {domid:>4} {}\n", uptime_text(secs, false))
    }
}

fn now_hms(now: i64) -> String {
    // SAFETY: localtime_r fills the struct we pass.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

fn dom0_uptime() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/uptime")?;
    let whole = s.split(['.', ' ']).next().unwrap_or("");
    Ok(whole.parse()?)
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let ids: Vec<u32> = if args.domains.is_empty() {
        ctx.list()?.iter().map(|d| d.domid).collect()
    } else {
        args.domains
            .iter()
            .map(|d| domain::resolve(&ctx, d))
            .collect::<anyhow::Result<_>>()?
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let hms = now_hms(now as i64);
    let mut out = String::new();
    if !args.short {
        out.push_str(&format!("{:<33} {:>4} {}\n", "Name", "ID", "Uptime"));
    }
    for id in ids {
        let secs = if id == 0 {
            dom0_uptime()?
        } else {
            match ctx.start_time(id) {
                Some(t) => now.saturating_sub(t),
                None => continue,
            }
        };
        let name = ctx.info(id).ok().and_then(|d| d.name);
        out.push_str(&row(
            name.as_deref().unwrap_or("(null)"),
            id,
            secs,
            args.short,
            &hms,
        ));
    }
    domain::print(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_xl() {
        assert_eq!(uptime_text(5, false), " 0:00:05");
        assert_eq!(uptime_text(3 * 3600 + 62, false), " 3:01:02");
        assert_eq!(uptime_text(86400 + 36000, false), "1 day, 10:00:00");
        assert_eq!(uptime_text(3 * 86400 + 60, true), "3 days,  0:01");
        assert_eq!(
            row("Domain-0", 0, 65, false, ""),
            format!("{:<33}    0  0:01:05\n", "Domain-0")
        );
        assert_eq!(
            row("web", 7, 65, true, "12:00:00"),
            " 12:00:00 up  0:01, web (7)\n"
        );
    }
}
