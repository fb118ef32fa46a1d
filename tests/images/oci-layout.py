#!/usr/bin/env python3
"""Writes a one-layer OCI image layout from a rootfs tarball (for test images)."""
import argparse, gzip, hashlib, json, os, shutil, sys

p = argparse.ArgumentParser()
p.add_argument("rootfs_tar")
p.add_argument("out")
p.add_argument("--cmd", nargs=argparse.REMAINDER, default=[])
p.add_argument("--expose", action="append", default=[])
p.add_argument("--env", action="append", default=[])
p.add_argument("--volume", action="append", default=[])
p.add_argument("--stop-signal")
# One --entrypoint per word: --entrypoint docker-entrypoint.sh (an exec-form ENTRYPOINT).
p.add_argument("--entrypoint", action="append", default=[])
p.add_argument("--user")
p.add_argument("--workdir")
# A full reference ("hx-compat/redis:test") names the image for `hx load`; a bare tag does not.
p.add_argument("--ref-name", default="latest")
# --cmd takes the rest of the line: parse the options given before it first.
argv = sys.argv[1:]
cmd = []
if "--cmd" in argv:
    i = argv.index("--cmd")
    rest = argv[i + 1:]
    argv = argv[:i]
    # Options after the command words.
    while rest and not rest[0].startswith("--"):
        cmd.append(rest.pop(0))
    argv += rest
a = p.parse_args(argv)

def blob(data: bytes) -> str:
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(a.out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return d

shutil.rmtree(a.out, ignore_errors=True)
os.makedirs(os.path.join(a.out, "blobs", "sha256"))
raw = open(a.rootfs_tar, "rb").read()
diff_id = hashlib.sha256(raw).hexdigest()
layer = gzip.compress(raw, compresslevel=1, mtime=0)
layer_digest = blob(layer)
config = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": a.env, "Cmd": cmd},
    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
}
if a.expose:
    config["config"]["ExposedPorts"] = {e: {} for e in a.expose}
if a.volume:
    config["config"]["Volumes"] = {v: {} for v in a.volume}
if a.entrypoint:
    config["config"]["Entrypoint"] = a.entrypoint
if a.user:
    config["config"]["User"] = a.user
if a.workdir:
    config["config"]["WorkingDir"] = a.workdir
if a.stop_signal:
    config["config"]["StopSignal"] = a.stop_signal
cfg = json.dumps(config).encode()
cfg_digest = blob(cfg)
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{cfg_digest}", "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{layer_digest}", "size": len(layer)}],
}).encode()
m_digest = blob(manifest)
with open(os.path.join(a.out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{m_digest}", "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": a.ref_name}}]}, f)
with open(os.path.join(a.out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(a.out)
