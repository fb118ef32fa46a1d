//! What the shell completes for container, image, volume and network arguments (clap_complete's
//! dynamic completion: the shell asks `hx` itself at each TAB, so names are the store's now).
use clap_complete::engine::CompletionCandidate;
use std::path::PathBuf;

/// The store the command line would use: `--root` cannot be seen from here, HX_ROOT can.
fn root() -> Option<PathBuf> {
    match std::env::var_os("HX_ROOT").filter(|r| !r.is_empty()) {
        Some(r) => Some(PathBuf::from(r)),
        None => super::default_root().ok(),
    }
}

pub fn containers() -> Vec<CompletionCandidate> {
    let Some(root) = root() else {
        return Vec::new();
    };
    let mut list = hx_engine::container::list(&root).unwrap_or_default();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list.into_iter()
        .map(|c| CompletionCandidate::new(c.name).help(Some(c.image.into())))
        .collect()
}

pub fn images() -> Vec<CompletionCandidate> {
    let Some(store) = root().and_then(|r| hx_images::Store::open(&r).ok()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = store
        .images()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|i| i.names)
        .filter_map(|n| hx_images::Reference::parse(&n).ok())
        .map(|r| r.familiar())
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

pub fn volumes() -> Vec<CompletionCandidate> {
    let Some(root) = root() else {
        return Vec::new();
    };
    let mut names: Vec<String> = hx_engine::volume::list(&root)
        .into_iter()
        .map(|v| v.name)
        .collect();
    names.sort();
    names.into_iter().map(CompletionCandidate::new).collect()
}

pub fn networks() -> Vec<CompletionCandidate> {
    let Some(root) = root() else {
        return Vec::new();
    };
    let mut names: Vec<String> = vec!["bridge".into(), "none".into()];
    names.extend(
        hx_engine::network::user_net::list(&root)
            .into_iter()
            .map(|n| n.name),
    );
    names.into_iter().map(CompletionCandidate::new).collect()
}
