#!/usr/bin/env python3
"""Write a deterministic OCI image layout holding the plaintext test images.

Usage: build-plain.py OUT_DIR

Only the standard library is used (plus the `zstd` CLI for the zstd layer). Every input is
fixed (tar mtimes/owners/modes, gzip mtime 0, seeded pseudo-random bytes from SHA-256 in
counter mode), so running it again gives the same blobs and digests (for the same zlib and
zstd versions).

JSON is written the way Go's encoding/json writes the image-spec structs: compact, fields in
struct order (manifest: schemaVersion, mediaType, config, layers; descriptor: mediaType,
digest, size, annotations).
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def seeded_bytes(seed: str, n: int) -> bytes:
    """n pseudo-random bytes: SHA-256(seed || counter) blocks, stable across Python versions."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def make_tar(files) -> bytes:
    """files: list of (path, bytes or None for a directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files:
            ti = tarfile.TarInfo(path)
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.mode = 0o644
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def zst(data: bytes, tmpdir: str) -> bytes:
    # From a file (not stdin) so the frame header records the content size; level fixed.
    src = os.path.join(tmpdir, "layer.tar")
    with open(src, "wb") as f:
        f.write(data)
    out = subprocess.run(
        ["zstd", "-q", "-3", "--no-progress", "-c", src], check=True, capture_output=True
    ).stdout
    os.unlink(src)
    return out


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Layout:
    def __init__(self, root: str):
        self.root = root
        self.index = []
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def blob(self, data: bytes) -> str:
        d = sha(data)
        p = os.path.join(self.root, "blobs", "sha256", d.split(":", 1)[1])
        with open(p, "wb") as f:
            f.write(data)
        return d

    def desc(self, media_type: str, data: bytes) -> dict:
        return {"mediaType": media_type, "digest": self.blob(data), "size": len(data)}

    def image(self, tag: str, layers):
        """layers: list of (media_type, uncompressed tar, blob bytes, created_by)."""
        config = {
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(tar) for _, tar, _, _ in layers]},
            "history": [{"created": CREATED, "created_by": cb} for _, _, _, cb in layers],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": self.desc(MT_CONFIG, dumps(config)),
            "layers": [self.desc(mt, blob) for mt, _, blob, _ in layers],
        }
        md = self.desc(MT_MANIFEST, dumps(manifest))
        md["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.index.append(md)

    def finish(self):
        # c/image writes this file as a literal with a space after the colon; do the same.
        with open(os.path.join(self.root, "oci-layout"), "wb") as f:
            f.write(b'{"imageLayoutVersion": "1.0.0"}')
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(dumps({"schemaVersion": 2, "manifests": self.index}))


def main():
    root = sys.argv[1]
    tmpdir = os.path.join(root, ".tmp")
    os.makedirs(tmpdir, exist_ok=True)
    lay = Layout(root)

    small = b"layercrypt test vector: small layer.\n" * 5 + b"(" + b"x" * 16 + b")\n"
    # ~200 B file in a tar of its own: 3 x 512 B headers/blocks + 2 x 512 B end-of-archive.
    tar_small = make_tar([("etc/", None), ("etc/small.txt", small)])
    tar_big = make_tar([("opt/", None), ("opt/random.bin", seeded_bytes("layercrypt-big", 30 * 1024))])
    tar_third = make_tar([("srv/", None), ("srv/third.bin", seeded_bytes("layercrypt-third", 12 * 1024))])
    tar_zstd = make_tar(
        [("usr/", None), ("usr/zstd.txt", small), ("usr/random.bin", seeded_bytes("layercrypt-zstd", 20 * 1024))]
    )

    lay.image("gzip", [
        (MT_GZIP, tar_small, gz(tar_small), "ADD small.txt /etc/"),
        (MT_GZIP, tar_big, gz(tar_big), "ADD random.bin /opt/"),
    ])
    lay.image("tar", [
        (MT_TAR, tar_small, tar_small, "ADD small.txt /etc/"),
        (MT_TAR, tar_big, tar_big, "ADD random.bin /opt/"),
    ])
    lay.image("zstd", [
        (MT_ZSTD, tar_zstd, zst(tar_zstd, tmpdir), "ADD zstd.txt random.bin /usr/"),
    ])
    lay.image("three", [
        (MT_GZIP, tar_small, gz(tar_small), "ADD small.txt /etc/"),
        (MT_GZIP, tar_big, gz(tar_big), "ADD random.bin /opt/"),
        (MT_GZIP, tar_third, gz(tar_third), "ADD third.bin /srv/"),
    ])
    lay.finish()
    os.rmdir(tmpdir)


if __name__ == "__main__":
    main()
