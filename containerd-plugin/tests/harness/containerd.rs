//! containerd 1.6 (Debian 12) with a private root, state and socket under a temp dir, the
//! overlayfs snapshotter, the CRI plugin with `key_model = "node"`, and our decoder under the
//! two imgcrypt processor IDs (`.tar` also accepts `tar+zstd+encrypted`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{require_program, stop_child, wait_for};

pub struct Containerd {
    child: Child,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub ctr: PathBuf,
}

const MT: &str = "application/vnd.oci.image.layer.v1";

pub fn config(
    dir: &Path,
    decoder: &Path,
    keys: &Path,
    registry_host: &str,
    node_config: Option<&Path>,
) -> String {
    let d = dir.display();
    let dec = decoder.display();
    let k = match node_config {
        Some(n) => format!("{}\", \"--config\", \"{}", keys.display(), n.display()),
        None => keys.display().to_string(),
    };
    format!(
        r#"version = 2
root = "{d}/run/root"
state = "{d}/run/state"
[grpc]
  address = "{d}/run/containerd.sock"
[debug]
  level = "info"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/run/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    sandbox_image = "{registry_host}/none/pause:latest"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".image_decryption]
      key_model = "node"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{d}/certs.d"
[stream_processors]
  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar.gzip"]
    accepts = ["{MT}.tar+gzip+encrypted"]
    returns = "{MT}.tar+gzip"
    path = "{dec}"
    args = ["--decryption-keys-path", "{k}"]
  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar"]
    accepts = ["{MT}.tar+encrypted", "{MT}.tar+zstd+encrypted"]
    returns = "{MT}.tar"
    path = "{dec}"
    args = ["--decryption-keys-path", "{k}"]
"#
    )
}

impl Containerd {
    pub fn start(dir: &Path, decoder: &Path, keys: &Path, registry_host: &str) -> Containerd {
        Self::start_with(dir, decoder, keys, registry_host, None)
    }

    /// As [`Containerd::start`], the decoder also getting `--config NODE_CONFIG`.
    pub fn start_with(
        dir: &Path,
        decoder: &Path,
        keys: &Path,
        registry_host: &str,
        node_config: Option<&Path>,
    ) -> Containerd {
        Self::start_from(None, dir, decoder, keys, registry_host, node_config)
    }

    /// As [`Containerd::start_with`], with `containerd`, `ctr` and the runc shim from `bins`
    /// (another containerd release, e.g. Debian 13's 1.7 from `containerd-trixie.sh`) instead
    /// of the system's.
    pub fn start_from(
        bins: Option<&Path>,
        dir: &Path,
        decoder: &Path,
        keys: &Path,
        registry_host: &str,
        node_config: Option<&Path>,
    ) -> Containerd {
        let (bin, ctr) = match bins {
            Some(b) => (b.join("containerd"), b.join("ctr")),
            None => (
                require_program("containerd", "containerd"),
                require_program("ctr", "containerd"),
            ),
        };
        require_program("runc", "runc");
        for sub in ["run/opt", "cni/bin", "cni/net.d"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let hosts = dir.join("certs.d").join(registry_host);
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{registry_host}\"\n[host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .unwrap();
        let config_file = dir.join("config.toml");
        std::fs::write(
            &config_file,
            config(dir, decoder, keys, registry_host, node_config),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        // containerd passes every fd it inherited without CLOEXEC on to the stream processor
        // (Go does). Rust opens its own fds with CLOEXEC, but the test process may have
        // inherited some (cargo's jobserver pipes, a shell's fds), and closing them in Rust
        // needs `pre_exec` (unsafe, forbidden here). So bash closes 3..255 and execs
        // containerd; the decoder's fd-3 check then sees only what containerd gives it.
        let child = Command::new("/bin/bash")
            .arg("-c")
            .arg(r#"for fd in $(seq 3 255); do eval "exec $fd>&-" 2>/dev/null; done; exec "$0" "$@""#)
            .arg(&bin)
            .arg("--config")
            .arg(&config_file)
            .current_dir(dir)
            // containerd finds its shim (`containerd-shim-runc-v2`) on PATH.
            .env(
                "PATH",
                match bins {
                    Some(b) => format!(
                        "{}:{}",
                        b.display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                    None => std::env::var("PATH").unwrap_or_default(),
                },
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let socket = dir.join("run/containerd.sock");
        let c = Containerd {
            child,
            dir: dir.to_owned(),
            root: dir.join("run/root"),
            socket,
            ctr,
        };
        wait_for("the containerd socket", Duration::from_secs(30), || {
            c.socket.exists()
        });
        c
    }

    /// Runs `ctr -a SOCKET -n k8s.io ARGS…`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new(&self.ctr)
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// The content of `relpath` in any overlayfs snapshot (the unpacked layers).
    pub fn find_in_snapshots(&self, relpath: &str) -> Option<Vec<u8>> {
        let snaps = self
            .root
            .join("io.containerd.snapshotter.v1.overlayfs/snapshots");
        for e in std::fs::read_dir(snaps).ok()?.flatten() {
            let p = e.path().join("fs").join(relpath);
            if let Ok(b) = std::fs::read(&p) {
                return Some(b);
            }
        }
        None
    }

    /// The decoder invocations' tail of containerd's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
        // Unmount whatever is left under our dir (overlay mounts of a killed containerd).
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}
