//! `hx vcpu-pin DOMAIN VCPU|all HARD [SOFT]`: set vCPU affinity, as `xl vcpu-pin`. CPU lists in
//! xl's syntax (`0-3,^2`, `all`); `-` leaves that affinity as it is.
use super::domain;
use xen_bindings::CpuSet;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name, id or hx container)
    pub domain: String,
    /// vCPU number, or `all`
    pub vcpu: String,
    /// Hard affinity: CPUs the vCPU may run on (`-`: unchanged)
    pub hard: String,
    /// Soft affinity: CPUs it prefers (`-` or absent: unchanged)
    pub soft: Option<String>,
}

/// The vCPU argument: a number, or `all` (None).
pub fn parse_vcpu(s: &str) -> anyhow::Result<Option<u32>> {
    if s == "all" {
        return Ok(None);
    }
    s.parse::<u32>()
        .map(Some)
        .map_err(|_| super::Fixed::wrap(1, anyhow::anyhow!("Invalid argument {s} as VCPU")))
}

fn cpus(s: Option<&str>, host: u32) -> anyhow::Result<Option<CpuSet>> {
    match s {
        None | Some("-") => Ok(None),
        Some(t) => Ok(Some(
            CpuSet::parse(t, host).map_err(|e| super::Fixed::wrap(1, e.into()))?,
        )),
    }
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let vcpu = parse_vcpu(&args.vcpu)?;
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    let host = ctx.host_cpus()?;
    let hard = cpus(Some(&args.hard), host)?;
    let soft = cpus(args.soft.as_deref(), host)?;
    ctx.set_vcpu_affinity(id, vcpu, hard.as_ref(), soft.as_ref())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_argument() {
        assert_eq!(parse_vcpu("all").unwrap(), None);
        assert_eq!(parse_vcpu("3").unwrap(), Some(3));
        for bad in ["", "-1", "x", "1-2"] {
            assert!(parse_vcpu(bad).is_err(), "{bad}");
        }
        assert_eq!(cpus(Some("-"), 4).unwrap(), None);
        assert_eq!(cpus(Some("1"), 4).unwrap(), Some(CpuSet([1].into())));
        assert!(cpus(Some("9-1"), 4).is_err());
    }
}
