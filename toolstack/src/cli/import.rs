//! `hx import`: a tarball or directory of files becomes a one-layer image (like docker import).
use hx_images::Store;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A tarball (plain or gzip) or a directory holding the root filesystem
    pub source: PathBuf,
    /// Name for the image, e.g. busybox:latest
    pub name: String,
    /// Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
}

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store =
        Store::open(&g.root)?.with_limits(hx_engine::hostconfig::load(&g.root)?.limits.images()?);
    let config = apply_changes(&args.changes)?;
    let rec = tokio::task::spawn_blocking(move || {
        hx_images::load::import(&store, &args.source, &args.name, config)
    })
    .await??;
    outln!("{}", rec.id);
    Ok(0)
}

/// Turns `--change` instructions into an OCI image config `config` object.
pub fn apply_changes(changes: &[String]) -> anyhow::Result<Value> {
    let mut cfg = Map::new();
    for change in changes {
        let (instr, rest) = change
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((change.trim(), ""));
        let rest = rest.trim();
        let bad = || anyhow::anyhow!("--change {change:?}: invalid {}", instr.to_uppercase());
        match instr.to_uppercase().as_str() {
            "CMD" | "ENTRYPOINT" => {
                let v = exec_form(rest).ok_or_else(bad)?;
                cfg.insert(
                    if instr.eq_ignore_ascii_case("CMD") {
                        "Cmd"
                    } else {
                        "Entrypoint"
                    }
                    .into(),
                    json!(v),
                );
            }
            "ENV" => {
                let env = cfg
                    .entry("Env")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .unwrap();
                let pairs: Vec<String> = if rest.contains('=') {
                    rest.split_whitespace().map(str::to_string).collect()
                } else {
                    let (k, v) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
                    vec![format!("{k}={}", v.trim())]
                };
                for p in pairs {
                    let key = p.split('=').next().unwrap_or("").to_string();
                    if key.is_empty() {
                        return Err(bad());
                    }
                    env.retain(|e| e.as_str().and_then(|s| s.split('=').next()) != Some(&key));
                    env.push(json!(p));
                }
            }
            "WORKDIR" if rest.starts_with('/') => {
                cfg.insert("WorkingDir".into(), json!(rest));
            }
            "STOPSIGNAL" if !rest.is_empty() => {
                super::kill::parse_signal(rest).map_err(|_| bad())?;
                cfg.insert("StopSignal".into(), json!(rest));
            }
            "USER" if !rest.is_empty() => {
                cfg.insert("User".into(), json!(rest));
            }
            "EXPOSE" if !rest.is_empty() => {
                let ports = cfg
                    .entry("ExposedPorts")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    let (num, proto) = p.split_once('/').unwrap();
                    if num.parse::<u16>().is_err() || !["tcp", "udp"].contains(&proto) {
                        return Err(bad());
                    }
                    ports.insert(p, json!({}));
                }
            }
            "LABEL" if rest.contains('=') => {
                let labels = cfg
                    .entry("Labels")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').ok_or_else(bad)?;
                    labels.insert(k.to_string(), json!(v.trim_matches('"')));
                }
            }
            "VOLUME" if !rest.is_empty() => {
                let vols = cfg
                    .entry("Volumes")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
                // `VOLUME /a /b` or `VOLUME ["/a", "/b"]`: paths, never a shell command.
                let list = match rest.starts_with('[') {
                    true => exec_form(rest).ok_or_else(bad)?,
                    false => rest.split_whitespace().map(String::from).collect(),
                };
                for v in list {
                    vols.insert(v, json!({}));
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(Value::Object(cfg))
}

/// `["a","b"]` (exec form) or `a b` (shell form → sh -c for CMD/ENTRYPOINT like docker).
fn exec_form(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(s)
            .ok()
            .filter(|v| !v.is_empty());
    }
    if s.is_empty() {
        return None;
    }
    Some(vec!["/bin/sh".into(), "-c".into(), s.into()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_config() {
        let c = apply_changes(&[
            r#"CMD ["sh"]"#.into(),
            "ENV PATH=/bin A=1".into(),
            "ENV B two words".into(),
            "WORKDIR /srv".into(),
            "EXPOSE 80 53/udp".into(),
            "ENTRYPOINT echo hi".into(),
        ])
        .unwrap();
        assert_eq!(c["Cmd"], json!(["sh"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=1", "B=two words"]));
        assert_eq!(c["WorkingDir"], json!("/srv"));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
        assert!(apply_changes(&["FROM x".into()]).is_err());
        assert!(apply_changes(&["EXPOSE 99999".into()]).is_err());
        assert!(apply_changes(&["WORKDIR relative".into()]).is_err());
    }
}
