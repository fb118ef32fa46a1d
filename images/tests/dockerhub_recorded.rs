//! Docker Hub's shapes, from recorded responses: OCI indexes with attestation entries, Docker
//! manifest lists, schema2 manifests, and the platform choice made from them.
use hx_images::manifest::{Manifest, PlatformSpec};

fn index(name: &str) -> hx_images::manifest::ImageIndex {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    match Manifest::parse("docker.io/library/busybox:latest", "", &bytes).unwrap() {
        Manifest::Index(i) => i,
        Manifest::Image(_) => panic!("{name} is an index"),
    }
}

#[test]
fn oci_index_with_attestations_picks_linux_amd64() {
    let i = index("dockerhub-busybox-index.json");
    let d = PlatformSpec::host().select("busybox", &i).unwrap();
    assert_eq!(
        d.digest.as_str(),
        "sha256:1cfa4e2b09e127b9c4ed43578d3f3c18e7d44ea47b9ea98475c0cbe9086525f8"
    );
    let arm = PlatformSpec::parse("linux/arm/v7")
        .unwrap()
        .select("busybox", &i)
        .unwrap();
    assert!(arm.digest.as_str().starts_with("sha256:0d4b"));
    let arm64 = PlatformSpec::parse("linux/arm64")
        .unwrap()
        .select("busybox", &i)
        .unwrap();
    assert!(
        arm64.digest.as_str().starts_with("sha256:9f8e"),
        "no variant asked: any variant matches"
    );
    let err = PlatformSpec::parse("linux/riscv64")
        .unwrap()
        .select("busybox", &i)
        .unwrap_err();
    assert_eq!(err.exit_code(), 19);
    let msg = err.to_string();
    assert!(
        msg.contains("linux/amd64, linux/arm/v7, linux/arm64/v8"),
        "attestations are not platforms: {msg}"
    );
}

#[test]
fn docker_manifest_list_skips_windows() {
    let i = index("dockerhub-docker-manifest-list.json");
    assert!(PlatformSpec::host()
        .select("x", &i)
        .unwrap()
        .digest
        .as_str()
        .starts_with("sha256:3b9a"));
    assert!(PlatformSpec::parse("windows/amd64")
        .unwrap()
        .select("x", &i)
        .unwrap()
        .digest
        .as_str()
        .starts_with("sha256:5d1c"));
}

#[test]
fn schema2_manifest_and_unknown_types() {
    let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
      "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1457,"digest":"sha256:c6348fa86ba0fb2108c9334f5fe913ddc6d853313e655891f133a0127c30099f"},
      "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2228436,"digest":"sha256:b05093807bb0294152bb9cf86d64da722732dddaf7f8882fa1f120477dbc4db3"}]}"#;
    assert!(matches!(
        Manifest::parse("x", "", m).unwrap(),
        Manifest::Image(_)
    ));
    let v1 = br#"{"schemaVersion":1,"name":"library/busybox","tag":"latest","fsLayers":[]}"#;
    assert_eq!(
        Manifest::parse(
            "x",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            v1
        )
        .unwrap_err()
        .exit_code(),
        18
    );
    let helm =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart.v1+json","layers":[]}"#;
    assert_eq!(Manifest::parse("x", "", helm).unwrap_err().exit_code(), 18);
    let zstd = String::from_utf8_lossy(m).replace("diff.tar.gzip", "diff.tar.zstd");
    assert_eq!(
        Manifest::parse("x", "", zstd.as_bytes())
            .unwrap_err()
            .exit_code(),
        18
    );
}
