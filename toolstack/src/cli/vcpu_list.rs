//! `hx vcpu-list [DOMAIN...]`: every vCPU, its CPU, state, time and affinity, as `xl vcpu-list`.
use super::domain;
use xen_bindings::VcpuInfo;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domains (name, id or hx container); all when none
    pub domains: Vec<String>,
}

pub const HEADER: &str =
    "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)\n";

/// One line as xl prints it; affinities over the host's `nr_cpus` CPUs.
pub fn row(name: &str, domid: u32, v: &VcpuInfo, nr_cpus: u32) -> String {
    let mut s = format!("{name:<32} {domid:>5} {:>5}", v.vcpu);
    if v.online {
        let r = if v.running { 'r' } else { '-' };
        let b = if v.blocked { 'b' } else { '-' };
        s.push_str(&format!("{:>5} {r:>3}{b}- ", v.cpu));
    } else {
        s.push_str(&format!("{:>5} {:>3}{}p ", '-', '-', '-'));
    }
    // xl divides a float (single precision) by 1e9.
    let secs = (v.time_ns as f32) as f64 / 1e9;
    s.push_str(&format!("{secs:9.1}  "));
    s.push_str(&v.hard.format(nr_cpus));
    s.push_str(" / ");
    s.push_str(&v.soft.format(nr_cpus));
    s.push('\n');
    s
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let nr_cpus = ctx.host_cpus()?;
    let ids: Vec<u32> = if args.domains.is_empty() {
        ctx.list()?.iter().map(|d| d.domid).collect()
    } else {
        args.domains
            .iter()
            .map(|d| domain::resolve(&ctx, d))
            .collect::<anyhow::Result<_>>()?
    };
    let mut out = String::from(HEADER);
    for id in ids {
        let Ok(vcpus) = ctx.vcpus(id) else { continue };
        let name = ctx.info(id).ok().and_then(|d| d.name);
        for v in &vcpus {
            out.push_str(&row(name.as_deref().unwrap_or("(null)"), id, v, nr_cpus));
        }
    }
    domain::print(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_bindings::CpuSet;

    #[test]
    fn rows_line_up_with_xl() {
        assert_eq!(
            HEADER,
            format!(
                "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}\n",
                "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
            )
        );
        let v = VcpuInfo {
            vcpu: 0,
            cpu: 1,
            online: true,
            blocked: true,
            running: false,
            time_ns: 12_345_000_000,
            hard: CpuSet([0, 1].into()),
            soft: CpuSet([1].into()),
        };
        assert_eq!(
            row("Domain-0", 0, &v, 2),
            format!(
                "{:<32}     0     0    1   -b-      12.3  all / 1\n",
                "Domain-0"
            )
        );
        let off = VcpuInfo { online: false, ..v };
        assert!(row("d", 3, &off, 2).contains("    -   --p      12.3  all / 1"));
    }
}
