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
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub qemu: QemuConfig,
}

/// `[qemu]`: `warm = false` boots every container cold (backend/warm.rs).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuConfig {
    pub warm: Option<bool>,
}

/// Bounds on what an image may make hx read and write (docs/images.md, "Limits"); byte sizes
/// as "4m", "16g" or a number of bytes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_header_bytes: Option<String>,
    pub max_layer_bytes: Option<String>,
    pub max_image_bytes: Option<String>,
    pub max_layer_entries: Option<u64>,
    pub max_manifest_bytes: Option<String>,
    pub max_index_depth: Option<u32>,
}

impl LimitsConfig {
    pub fn images(&self) -> anyhow::Result<hx_images::Limits> {
        let mut l = hx_images::Limits::default();
        let bytes = |key: &str, v: &Option<String>, slot: &mut u64| -> anyhow::Result<()> {
            if let Some(s) = v {
                *slot = parse_bytes(s).ok_or_else(|| anyhow::anyhow!("[limits] {key} {s:?}: a size such as 4m, 16g or a number of bytes (at least 1k)"))?;
            }
            Ok(())
        };
        bytes(
            "max_header_bytes",
            &self.max_header_bytes,
            &mut l.max_header_bytes,
        )?;
        bytes(
            "max_layer_bytes",
            &self.max_layer_bytes,
            &mut l.max_layer_bytes,
        )?;
        bytes(
            "max_image_bytes",
            &self.max_image_bytes,
            &mut l.max_image_bytes,
        )?;
        bytes(
            "max_manifest_bytes",
            &self.max_manifest_bytes,
            &mut l.max_manifest_bytes,
        )?;
        if let Some(n) = self.max_layer_entries {
            anyhow::ensure!(n >= 1, "[limits] max_layer_entries {n}: at least 1");
            l.max_layer_entries = n;
        }
        if let Some(n) = self.max_index_depth {
            anyhow::ensure!(
                (1..=16).contains(&n),
                "[limits] max_index_depth {n}: 1..=16"
            );
            l.max_index_depth = n;
        }
        Ok(l)
    }
}

/// `4m`, `16g`, `512k` or a number of bytes; at least 1 KiB.
fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(1 << shift)
        .filter(|n| *n >= 1024)
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
            l.max_size = crate::logfile::parse_size(s)
                .map_err(|e| anyhow::anyhow!("[log] max_size: {e}"))?;
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
    /// Who attaches disk files for blkback: "hx" (hx's own helper, backend/xen/hotplug.rs,
    /// default) or "block" (libxl's script).
    pub hotplug: Option<String>,
    /// Warm start from a pool of pre-booted, paused domains (backend/xen/warm.rs); off unless
    /// true: the pool keeps its domains' memory.
    pub warm: Option<bool>,
    /// Domains kept per shape when `warm` is on (1 to 8, default 1).
    pub warm_pool: Option<u32>,
}

pub fn path(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HX_CONFIG") {
        return Some(PathBuf::from(p));
    }
    [
        root.join("config.toml"),
        PathBuf::from("/etc/hx/config.toml"),
    ]
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
    c.limits.images()?;
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
        let c =
            parse("[xen]\ntype = \"pv\"\nkernel = \"/boot/hyper\"\nhotplug = \"hx\"\n").unwrap();
        assert_eq!(c.xen.hotplug.as_deref(), Some("hx"));
        assert!(parse("[xen]\nhotplug = \"udev\"\n").is_err());
        assert_eq!(c.xen.domain_type.as_deref(), Some("pv"));
        assert_eq!(c.xen.kernel.as_deref(), Some(Path::new("/boot/hyper")));
        assert!(parse("").unwrap().xen.domain_type.is_none());
        assert!(parse("[xen]\ntyp = \"pv\"\n")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        let l = parse("[log]\nmax_size = \"1m\"\nmax_file = 3\n")
            .unwrap()
            .log
            .limits()
            .unwrap();
        assert_eq!((l.max_size, l.max_file), (1 << 20, 3));
        assert_eq!(
            parse("").unwrap().log.limits().unwrap(),
            crate::logfile::OUTPUT
        );
        assert!(parse("[log]\nmax_size = \"1\"\n").is_err());
        assert_eq!(
            parse("[qemu]\nwarm = false\n").unwrap().qemu.warm,
            Some(false)
        );
        assert_eq!(parse("").unwrap().qemu.warm, None);
        assert!(parse("[qemu]\nwarm = \"no\"\n").is_err());
        assert!(parse("[qemu]\nwarmth = true\n").is_err());
        let x = parse("[xen]\nwarm = true\nwarm_pool = 2\n").unwrap().xen;
        assert_eq!((x.warm, x.warm_pool), (Some(true), Some(2)));
        assert!(parse("[xen]\nwarm_pool = -1\n").is_err());
        assert!(parse("[log]\nmax_file = 0\n").is_err());
        let l = parse("[limits]\nmax_header_bytes = \"64k\"\nmax_image_bytes = \"2g\"\nmax_layer_entries = 10\nmax_index_depth = 1\n")
            .unwrap()
            .limits
            .images()
            .unwrap();
        assert_eq!(
            (
                l.max_header_bytes,
                l.max_image_bytes,
                l.max_layer_entries,
                l.max_index_depth
            ),
            (64 << 10, 2 << 30, 10, 1)
        );
        assert_eq!(
            l.max_layer_bytes,
            hx_images::Limits::default().max_layer_bytes
        );
        assert_eq!(
            parse("").unwrap().limits.images().unwrap(),
            hx_images::Limits::default()
        );
        assert!(parse("[limits]\nmax_layer_bytes = \"lots\"\n").is_err());
        assert!(parse("[limits]\nmax_layer_bytes = \"1\"\n").is_err());
        assert!(parse("[limits]\nmax_index_depth = 0\n").is_err());
        assert!(parse("[limits]\nmax_blobs = 3\n").is_err());
        assert!(parse("[xen]\ntype = \"hvm\"\n")
            .unwrap_err()
            .to_string()
            .contains("hvm"));
    }
}
