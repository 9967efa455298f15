//! The real key broker (`target/debug/layercrypt-broker serve`, not `--dev`) trusting the
//! OIDC stand-in for EGI Check-in (`tests/oidc/server.mjs`), both on 127.0.0.1, plus the
//! admin calls and token minting the tests need.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use layercrypt_group::client::{BrokerClient, NewGrant, Principal};
use layercrypt_group::token::AccessToken;
use serde_json::{json, Value};

use super::{free_port, stop_child, wait_for};

/// The workspace root (containerd-plugin/..).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The OIDC stand-in: `node tests/oidc/server.mjs --port 0`.
pub struct Oidc {
    child: Child,
    pub issuer: String,
    /// `http://127.0.0.1:PORT` (the test-only routes live here).
    pub base: String,
}

impl Oidc {
    pub fn start(dir: &Path) -> Oidc {
        let oidc_dir = workspace().join("tests/oidc");
        assert!(
            oidc_dir.join("node_modules/oidc-provider").is_dir(),
            "run `cd tests/oidc && npm ci --prefer-offline` first (scripts/test.sh does)"
        );
        // Up to 3 attempts: on a loaded machine (parallel tests, builds) a start can stall.
        let mut started = None;
        for attempt in 0..3 {
            let log_file = dir.join(format!("oidc-{attempt}.log"));
            let log = std::fs::File::create(&log_file).unwrap();
            let mut child = Command::new("node")
                .arg("server.mjs")
                .args(["--port", "0"])
                .current_dir(&oidc_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("start node tests/oidc/server.mjs (apt-get install nodejs npm)");
            let mut out = BufReader::new(child.stdout.take().unwrap());
            // A stalled start must fail the attempt, never hang the suite: kill the stand-in
            // if it has not said READY within 30 s.
            let (ready, waiting) = std::sync::mpsc::channel::<()>();
            let pid = child.id().to_string();
            std::thread::spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    waiting.recv_timeout(Duration::from_secs(30))
                {
                    let _ = Command::new("kill").args(["-9", &pid]).status();
                }
            });
            let mut issuer = String::new();
            for _ in 0..200 {
                let mut line = String::new();
                if out.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(i) = line.trim().strip_prefix("READY ") {
                    issuer = i.to_owned();
                    break;
                }
            }
            let _ = ready.send(());
            if !issuer.is_empty() {
                started = Some((child, out, issuer));
                break;
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "OIDC stand-in attempt {attempt} did not print READY: {}",
                std::fs::read_to_string(&log_file).unwrap_or_default()
            );
        }
        let (child, mut out, issuer) =
            started.unwrap_or_else(|| panic!("the OIDC stand-in did not start in 3 attempts"));
        // Keep reading stdout so the stand-in never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let base = issuer
            .split("/auth/")
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        Oidc {
            child,
            issuer,
            base,
        }
    }

    /// A Check-in-like access token for `sub` (entitlements via UserInfo, not in the token).
    pub fn mint(&self, sub: &str, entitlements: &[&str]) -> String {
        let v: Value = reqwest::blocking::Client::new()
            .post(format!("{}/test/mint", self.base))
            .json(&json!({"sub": sub, "entitlements": entitlements}))
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(3));
    }
}

/// The broker binary next to our own binaries; built with cargo if missing.
pub fn broker_binary(any_bin: &Path) -> PathBuf {
    let bin = any_bin.parent().unwrap().join("layercrypt-broker");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "layercrypt-broker"])
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(st.success(), "cargo build -p layercrypt-broker failed");
    }
    bin
}

/// `layercrypt-broker serve` on 127.0.0.1 (plain HTTP on loopback), embedded store in a temp
/// dir, tokens checked against the stand-in issuer, a bootstrap admin token.
pub struct Broker {
    child: Option<Child>,
    pub url: String,
    admin: String,
}

impl Broker {
    pub fn start(dir: &Path, bin: &Path, issuer: &str) -> Broker {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let data = dir.join("broker-data");
        std::fs::create_dir_all(&data).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        // At least 32 bytes, file 0600: the broker refuses anything weaker.
        let admin = format!("admin-{:040}", port as u64 * 7919 + 123_456_789);
        let admin_file = dir.join("broker-admin-token");
        std::fs::write(&admin_file, &admin).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let log = std::fs::File::create(dir.join("broker.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--public-url", &url])
            .args(["--issuer", issuer])
            .arg("--data-dir")
            .arg(&data)
            .arg("--admin-token-file")
            .arg(&admin_file)
            .env_remove("LAYERCRYPT_BROKER_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start layercrypt-broker");
        let b = Broker {
            child: Some(child),
            url,
            admin,
        };
        let health = format!("{}/healthz", b.url);
        let log_file = dir.join("broker.log");
        let mut b = b;
        wait_for("the broker", Duration::from_secs(30), || {
            if let Some(Ok(Some(st))) = b.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "layercrypt-broker exited ({st}):\n{}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
            }
            reqwest::blocking::get(&health)
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        b
    }

    fn admin_client(&self) -> BrokerClient {
        BrokerClient::new(&self.url)
            .unwrap()
            .with_token(AccessToken::new(self.admin.clone()).unwrap())
    }

    /// Creates `group` and grants it to everyone with `entitlement`.
    pub fn group(&self, group: &str, entitlement: &str) {
        let admin = self.admin_client();
        let g = group.parse().unwrap();
        admin.create_group(&g).unwrap();
        admin
            .add_grant(
                &g,
                &NewGrant {
                    principal: Principal::Entitlement {
                        value: entitlement.into(),
                        prefix: false,
                    },
                    networks: vec![],
                    expires: None,
                },
            )
            .unwrap();
    }

    /// Stops the broker (for the "unreachable" case).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(5));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
