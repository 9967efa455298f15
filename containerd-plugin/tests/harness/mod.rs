//! Harness of the containerd end-to-end test: a real Debian containerd 1.6 and
//! docker-registry on 127.0.0.1 / unix sockets under a temp dir, a tonic CRI client, and
//! OCI images built, encrypted and pushed in-process.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::print_stdout
)]

pub mod broker;
pub mod containerd;
pub mod cri;
pub mod image;
pub mod registry;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The path of an installed program, or a panic with the install hint.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not installed; this test needs Debian's containerd 1.6 setup: \
         apt-get install -y containerd runc docker-registry busybox-static protobuf-compiler \
         (missing package: {package})"
    );
}

/// Sends SIGTERM to `pid` and waits up to `grace` for `child` to exit, then SIGKILL.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
