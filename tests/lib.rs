//! Test harness: runs the real `layercrypt` binary, Go ocicrypt through Debian's skopeo, and
//! a real registry (Debian's `docker-registry`) on 127.0.0.1. Nothing here is mocked; a tool
//! that is missing fails the test with a message saying how to install it
//! (`scripts/test.sh` installs everything).
#![forbid(unsafe_code)]
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod harness;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Interop vectors made by skopeo (see tests/data/README.md).
pub fn vectors() -> PathBuf {
    root().join("tests/data/vectors")
}

/// A test key or certificate file from the vectors.
pub fn key(name: &str) -> String {
    vectors().join("keys").join(name).display().to_string()
}

/// The `layercrypt` binary under test: `$LAYERCRYPT_BIN`, else `target/debug/layercrypt`.
pub fn layercrypt_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LAYERCRYPT_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let p = target.join("debug/layercrypt");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p layercrypt-cli` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Fails with an install hint if `tool` is not on PATH.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run scripts/test.sh, which installs it with apt-get"
    );
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the command succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code`.
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs the layercrypt binary with `args` (no terminal, so no progress bars or prompts).
/// HOME points at an empty directory so that no user configuration or grid key is picked up.
pub fn layercrypt<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let home = tempfile::tempdir().unwrap();
    layercrypt_env(args, &[("HOME", home.path().as_os_str())])
}

/// Runs the layercrypt binary with `args` and extra environment variables.
pub fn layercrypt_env<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &std::ffi::OsStr)],
) -> Run {
    let mut cmd = Command::new(layercrypt_bin());
    cmd.args(args)
        .env_remove("OCICRYPT_KEYPROVIDER_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run layercrypt"))
}

/// Runs skopeo (Go ocicrypt) with `args`.
pub fn skopeo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    require("skopeo");
    let out = Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    Run::from(out)
}

/// `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest bytes of `tag` in an OCI layout (following index.json, one level).
pub fn manifest_bytes(layout: &Path, tag: &str) -> Vec<u8> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("json");
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()));
    blob(layout, entry["digest"].as_str().expect("digest"))
}

/// A blob of an OCI layout.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob")
}

/// The layers of a manifest.
pub fn layers(manifest: &[u8]) -> Vec<serde_json::Value> {
    let m: serde_json::Value = serde_json::from_slice(manifest).expect("manifest json");
    m["layers"].as_array().expect("layers").clone()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, storage in a temp dir; killed
/// on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Storage root (to tamper with blobs).
    pub storage: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until `/v2/` answers.
    pub fn start() -> Self {
        require("docker-registry");
        let storage = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            addr,
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {}",
                reg.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// The stored data file of a blob.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the manifest of `tag` in an OCI layout by `f(manifest)`, writing the new blob and
/// pointing index.json at it (what an attacker with write access to a registry can do).
pub fn rewrite_manifest(layout: &Path, tag: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes(layout, tag)).unwrap();
    f(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = sha256(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &bytes).unwrap();
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    for e in index["manifests"].as_array_mut().unwrap() {
        if e["annotations"]["org.opencontainers.image.ref.name"] == tag {
            e["digest"] = digest.clone().into();
            e["size"] = bytes.len().into();
        }
    }
    std::fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Changes the bytes of layer `idx` of `tag`. With `fix_digests` the manifest is rewritten
/// to the new digest and size, so only the ocicrypt HMAC can notice.
pub fn tamper_layer(
    layout: &Path,
    tag: &str,
    idx: usize,
    fix_digests: bool,
    f: impl FnOnce(&mut Vec<u8>),
) -> String {
    let manifest = manifest_bytes(layout, tag);
    let old = layers(&manifest)[idx]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut data = blob(layout, &old);
    f(&mut data);
    if fix_digests {
        let digest = sha256(&data);
        std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &data).unwrap();
        rewrite_manifest(layout, tag, |m| {
            m["layers"][idx]["digest"] = digest.clone().into();
            m["layers"][idx]["size"] = data.len().into();
        });
        digest
    } else {
        std::fs::write(layout.join("blobs/sha256").join(&old[7..]), &data).unwrap();
        old
    }
}
