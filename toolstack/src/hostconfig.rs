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
        assert!(parse("[xen]\ntype = \"hvm\"\n")
            .unwrap_err()
            .to_string()
            .contains("hvm"));
    }
}
