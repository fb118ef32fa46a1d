//! hx's host-wide configuration file: `$HX_CONFIG`, else `<root>/config.toml`, else
//! `/etc/hx/config.toml` (the first that exists). Every key is optional; unknown keys are an
//! error so a typo does not pass silently (docs/cli.md, "Configuration file").
use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub xen: XenConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// Caps on a container's stdout.log and stderr.log (docker's json-file `max-size`/`max-file`);
/// the console and status logs have fixed, smaller caps (logfile.rs).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Bytes per file, e.g. "10m" (default), "512k".
    pub max_size: Option<String>,
    /// Files kept per stream, the current one included (default 2).
    pub max_file: Option<u32>,
}

impl LogConfig {
    pub fn limits(&self) -> anyhow::Result<crate::logfile::Limits> {
        let mut l = crate::logfile::OUTPUT;
        if let Some(s) = &self.max_size {
            l.max_size = crate::logfile::parse_size(s).map_err(|e| anyhow::anyhow!("[log] max_size: {e}"))?;
        }
        if let Some(n) = self.max_file {
            if !(1..=20).contains(&n) {
                anyhow::bail!("[log] max_file {n}: 1..=20");
            }
            l.max_file = n;
        }
        Ok(l)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XenConfig {
    /// Domain type when `hx run` has no `--type`: "pvh" (default) or "pv".
    #[serde(rename = "type")]
    pub domain_type: Option<String>,
    /// Guest kernel for Xen domains (default: the installed hyper kernel's vmlinux).
    pub kernel: Option<PathBuf>,
    /// Who attaches disk files for blkback: "hx" (hx's own helper, backend/xen_hotplug.rs,
    /// default) or "block" (libxl's script).
    pub hotplug: Option<String>,
}

pub fn path(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HX_CONFIG") {
        return Some(PathBuf::from(p));
    }
    [root.join("config.toml"), PathBuf::from("/etc/hx/config.toml")]
        .into_iter()
        .find(|p| p.is_file())
}

pub fn load(root: &Path) -> anyhow::Result<HostConfig> {
    let Some(p) = path(root) else {
        return Ok(HostConfig::default());
    };
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("config file {}", p.display()))?;
    parse(&text).with_context(|| format!("config file {}", p.display()))
}

pub fn parse(text: &str) -> anyhow::Result<HostConfig> {
    let c: HostConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    if let Some(t) = &c.xen.domain_type {
        crate::backend::XenType::parse(t)?;
    }
    c.log.limits()?;
    if let Some(h) = &c.xen.hotplug {
        if h != "block" && h != "hx" {
            anyhow::bail!("[xen] hotplug {h:?}: \"block\" or \"hx\"");
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_keys_and_rejects_others() {
        let c = parse("[xen]\ntype = \"pv\"\nkernel = \"/boot/hyper\"\nhotplug = \"hx\"\n").unwrap();
        assert_eq!(c.xen.hotplug.as_deref(), Some("hx"));
        assert!(parse("[xen]\nhotplug = \"udev\"\n").is_err());
        assert_eq!(c.xen.domain_type.as_deref(), Some("pv"));
        assert_eq!(c.xen.kernel.as_deref(), Some(Path::new("/boot/hyper")));
        assert!(parse("").unwrap().xen.domain_type.is_none());
        assert!(parse("[xen]\ntyp = \"pv\"\n")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        let l = parse("[log]\nmax_size = \"1m\"\nmax_file = 3\n").unwrap().log.limits().unwrap();
        assert_eq!((l.max_size, l.max_file), (1 << 20, 3));
        assert_eq!(parse("").unwrap().log.limits().unwrap(), crate::logfile::OUTPUT);
        assert!(parse("[log]\nmax_size = \"1\"\n").is_err());
        assert!(parse("[log]\nmax_file = 0\n").is_err());
        assert!(parse("[xen]\ntype = \"hvm\"\n")
            .unwrap_err()
            .to_string()
            .contains("hvm"));
    }
}
