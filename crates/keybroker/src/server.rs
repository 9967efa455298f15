//! Wiring and serving: builds the store, the verifiers and the router from a [`Config`], and
//! serves HTTP/1.1 over TLS (OpenSSL, optional client certificates, RFC 3820 proxies passed on
//! to the certificate verifier) or, on loopback or with `--insecure-http`, plain HTTP.
//! Graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use crate::api::{self, ApiOptions, AppState, PeerCertificates};
use crate::auth::cadir::{CaDirectory, DEFAULT_RELOAD};
use crate::auth::dev::DevIssuer;
use crate::auth::oidc::{
    ClientPolicy, MembershipSource as OidcMembership, OidcConfig, OidcVerifier,
};
use crate::auth::{AuthError, Token, TokenVerifier};
use crate::config::{Backend, Config, ConfigError, MembershipSource};
use crate::service::{Broker, BrokerSettings, CertVerifyFn};
use crate::store::embedded::{AuditRotation, EmbeddedStore};
use crate::store::vault::{VaultAuth, VaultConfig, VaultStore};
use crate::store::{KeyStore, StoreError};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key store cannot be opened.
    #[error("cannot open the key store")]
    Store(#[source] StoreError),
    /// The certificate verifier cannot be built.
    #[error("cannot load the client CA directory")]
    Certificates(#[source] AuthError),
    /// A secret file cannot be used.
    #[error("secret file {path}: {message}")]
    Secret {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (never its content).
        message: String,
    },
    /// TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Socket I/O.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Shortest bootstrap admin token accepted, in bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// A broker ready to serve.
pub struct App {
    router: Router,
    state: AppState,
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    dev_admin_token: Option<Token>,
    public_url: String,
    // The --dev store lives in a temporary directory removed when the app ends.
    _dev_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads a secret file: trimmed, non-empty; the content never appears in errors.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, ServerError> {
    let secret = |message: String| ServerError::Secret {
        path: path.to_owned(),
        message,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| secret(e.to_string()))?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(path = %path.display(), "secret file is readable by group or others");
        }
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(secret("is empty".into()));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Reads the bootstrap admin token file, refusing one that group or others can access or
/// that is shorter than [`MIN_ADMIN_TOKEN_LEN`] bytes: the token is the broker's most
/// powerful secret and guessing it must be hopeless.
pub fn read_admin_token_file(path: &Path) -> Result<Token, ServerError> {
    const HOWTO: &str = "make one with: umask 077; openssl rand -base64 32 > FILE";
    let refuse = |message: String| ServerError::Secret {
        path: path.to_owned(),
        message,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| refuse(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(refuse(format!(
                "mode {:o} lets group or others read the admin token; chmod 600 it, or {HOWTO}",
                mode & 0o777
            )));
        }
    }
    let token = read_secret_file(path)?;
    if token.len() < MIN_ADMIN_TOKEN_LEN {
        return Err(refuse(format!(
            "the admin token is {} bytes, shorter than {MIN_ADMIN_TOKEN_LEN}; {HOWTO}",
            token.len()
        )));
    }
    Ok(Token::from(token))
}

/// The settings of the OIDC verifier; `public_url` names this broker in `aud` when neither
/// `oidc.audience` nor `oidc.client_id` is configured.
fn oidc_config(config: &Config, public_url: &str) -> Result<OidcConfig, ServerError> {
    let membership = match (
        config.oidc.membership,
        &config.oidc.client_id,
        &config.oidc.client_secret_file,
    ) {
        (MembershipSource::Introspection, Some(client_id), Some(file)) => {
            OidcMembership::Introspection {
                client_id: client_id.clone(),
                client_secret: read_secret_file(file)?,
            }
        }
        _ => OidcMembership::TokenOrUserinfo,
    };
    let mut oidc = OidcConfig::new(config.oidc.issuer.clone());
    oidc.audience = config.oidc.audience.clone();
    oidc.audience_names = match (&config.oidc.audience, &config.oidc.client_id) {
        (None, None) => vec![public_url.to_owned()],
        (_, client_id) => client_id.iter().cloned().collect(),
    };
    oidc.allowed_clients = ClientPolicy::from_list(&config.oidc.allowed_clients);
    oidc.membership = membership;
    oidc.cache_ttl_secs = config.oidc.cache_ttl_secs;
    Ok(oidc)
}

/// The settings of the Vault store, in one place (see [`oidc_config`]).
fn vault_config(config: &Config) -> Result<VaultConfig, ServerError> {
    let v = &config.store.vault;
    let auth = match (&v.token_file, &v.role_id, &v.secret_id_file) {
        (Some(file), None, None) => VaultAuth::Token(read_secret_file(file)?),
        (None, Some(role_id), Some(file)) => VaultAuth::AppRole {
            role_id: role_id.clone(),
            secret_id: read_secret_file(file)?,
            mount: crate::store::vault::DEFAULT_APPROLE_MOUNT.to_owned(),
        },
        _ => {
            return Err(ConfigError::Invalid(
                "vault login: either token_file, or role_id with secret_id_file".into(),
            )
            .into())
        }
    };
    Ok(VaultConfig {
        address: v
            .address
            .clone()
            .ok_or_else(|| ConfigError::Invalid("store.vault.address is required".into()))?,
        mount: v.mount.clone(),
        prefix: v.prefix.clone(),
        auth,
        ca_file: v.ca_file.clone(),
        audit_retention_days: config.audit.retention_days,
    })
}

fn random_token() -> Token {
    let bytes: [u8; 32] = rand::random();
    Token::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    let io = |source| ServerError::Io {
        context: format!("cannot create data directory {}", dir.display()),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Makes the broker process non-dumpable (`PR_SET_DUMPABLE` 0): no core dump on a crash, and
/// no `ptrace` or `/proc/PID/mem` for other processes of the same user. The process holds the
/// master key, tokens and unsealed group keys (docs/threat-model.md), so a core file in
/// `/var/lib/systemd/coredump` would be as sensitive as the store. Returns whether it worked.
pub fn harden_process() -> bool {
    use rustix::process::{set_dumpable_behavior, DumpableBehavior};
    match set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot make the process non-dumpable; core dumps would hold keys");
            false
        }
    }
}

impl App {
    /// Validates `config` and builds everything; binds the listener.
    pub async fn build(config: &Config) -> Result<App, ServerError> {
        config.validate()?;
        // Bound first: with port 0 the public URL (the `broker` of new payloads) needs the
        // port the kernel picked.
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Io {
                    context: format!("cannot listen on {}", config.listen),
                    source,
                })?;
        let bound = listener.local_addr().map_err(|source| ServerError::Io {
            context: format!("cannot read the address bound for {}", config.listen),
            source,
        })?;
        let public_url = config.public_url_for(bound);
        let mut dev_dir = None;
        let mut dev_issuer = None;
        let store: Arc<dyn KeyStore> = if config.dev {
            let mut builder = tempfile::Builder::new();
            builder.prefix("layercrypt-broker-dev-");
            // tempfile creates directories with 0o777 minus the umask (0o755 usually); the
            // embedded store refuses a data directory that group or others can enter.
            #[cfg(unix)]
            builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
            let dir = builder.tempdir().map_err(|source| ServerError::Io {
                context: "cannot create the --dev data directory".into(),
                source,
            })?;
            let store = EmbeddedStore::open(dir.path())
                .await
                .map_err(ServerError::Store)?;
            dev_dir = Some(dir);
            Arc::new(store)
        } else {
            match config.store.backend {
                Backend::Embedded => {
                    create_private_dir(&config.data_dir)?;
                    let rotation = AuditRotation {
                        max_bytes: config.audit.max_file_bytes,
                        keep: config.audit.keep_files,
                    };
                    Arc::new(
                        EmbeddedStore::open_with(&config.data_dir, rotation)
                            .await
                            .map_err(ServerError::Store)?,
                    )
                }
                Backend::Vault => Arc::new(
                    VaultStore::connect(vault_config(config)?)
                        .await
                        .map_err(ServerError::Store)?,
                ),
            }
        };
        let tokens: Arc<dyn TokenVerifier> = if config.dev {
            let issuer = Arc::new(DevIssuer::with_issuer(format!("{public_url}/dev")));
            dev_issuer = Some(issuer.clone());
            issuer
        } else {
            Arc::new(
                OidcVerifier::try_new(oidc_config(config, &public_url)?)
                    .map_err(|e| ConfigError::Invalid(format!("OIDC issuer: {e}")))?,
            )
        };
        let certs: Option<Arc<CertVerifyFn>> = match &config.tls.client_ca_dir {
            Some(dir) => {
                let cas = Arc::new(
                    CaDirectory::load(dir, config.tls.namespaces)
                        .map_err(ServerError::Certificates)?,
                );
                let period = config
                    .tls
                    .ca_reload_secs
                    .map_or(DEFAULT_RELOAD, Duration::from_secs);
                if !period.is_zero() {
                    cas.spawn_reloader(period);
                }
                Some(Arc::new(move |chain: &[Vec<u8>]| cas.verify_chain(chain)))
            }
            None => None,
        };
        let (admin_token, dev_admin_token) = if config.dev {
            let token = random_token();
            (Some(token.clone()), Some(token))
        } else {
            (
                config
                    .admin
                    .token_file
                    .as_deref()
                    .map(read_admin_token_file)
                    .transpose()?,
                None,
            )
        };
        if admin_token.is_none() && config.admin.entitlement.is_none() {
            tracing::warn!(
                "no admin.entitlement and no admin.token_file: nobody can administer this broker"
            );
        }
        let broker_url = public_url.clone();
        let broker = Broker::new(
            store,
            tokens,
            certs,
            BrokerSettings {
                unauthenticated_window: Duration::from_secs(
                    config.audit.unauthenticated_window_secs,
                ),
                recipient_cache_ttl: Duration::from_secs(config.store.recipient_cache_secs),
                ..BrokerSettings::new(public_url, config.admin.entitlement.clone(), admin_token)
            },
        );
        let options = ApiOptions {
            rate_per_minute: config.limits.rate_per_minute,
            rate_burst: config.limits.rate_burst,
            ip_rate_per_minute: config.limits.ip_rate_per_minute,
            ip_rate_burst: config.limits.ip_rate_burst,
            auth_fail_per_minute: config.limits.auth_fail_per_minute,
            auth_fail_burst: config.limits.auth_fail_burst,
            request_timeout: Duration::from_secs(config.limits.request_timeout_secs),
            dev_issuer,
            metrics: config.metrics.expose,
        };
        let state = AppState::new(broker, options);
        state.shared_broker().spawn_denial_flusher();
        let router = api::router(state.clone());
        let tls = if config.has_tls() {
            Some(tls_acceptor(config)?)
        } else {
            None
        };
        Ok(App {
            router,
            state,
            listener,
            tls,
            dev_admin_token,
            public_url: broker_url,
            _dev_dir: dev_dir,
        })
    }

    /// The URL this broker puts in payloads and accepts in them.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|source| ServerError::Io {
                context: "listener has no local address".into(),
                source,
            })
    }

    /// The throw-away data directory of `--dev` mode (removed when the app is dropped).
    pub fn dev_data_dir(&self) -> Option<&Path> {
        self._dev_dir.as_ref().map(tempfile::TempDir::path)
    }

    /// The development token issuer's URL (`--dev` only).
    pub fn dev_issuer_url(&self) -> Option<String> {
        self._dev_dir
            .as_ref()
            .map(|_| format!("{}/dev", self.public_url))
    }

    /// The generated bootstrap admin token of `--dev` mode (for the binary to print).
    pub fn dev_admin_token(&self) -> Option<&Token> {
        self.dev_admin_token.as_ref()
    }

    /// Serves until SIGTERM or SIGINT, then drains open connections and writes the pending
    /// summaries of refusals. SIGHUP reopens the audit log (logrotate).
    pub async fn serve(self) -> Result<(), ServerError> {
        let addr = self.local_addr()?;
        let broker = self.state.shared_broker();
        spawn_sighup_reopen(Arc::downgrade(&broker));
        let served = match self.tls {
            None => {
                tracing::info!(%addr, "serving plain HTTP");
                let service = self
                    .router
                    .into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(self.listener, service)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
                    .map_err(|source| ServerError::Io {
                        context: "server failed".into(),
                        source,
                    })
            }
            Some(acceptor) => {
                tracing::info!(%addr, "serving HTTPS");
                serve_tls(self.listener, Arc::new(acceptor), self.router).await
            }
        };
        let written = broker.flush_denials(true).await;
        tracing::info!(written, "refusal summaries written at shutdown");
        served
    }
}

/// Reopens the audit log on every SIGHUP, while the broker lives.
fn spawn_sighup_reopen(broker: std::sync::Weak<Broker>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot listen for SIGHUP"),
        };
        while hup.recv().await.is_some() {
            let Some(broker) = broker.upgrade() else {
                return;
            };
            match broker.reopen_audit().await {
                Ok(()) => tracing::info!("SIGHUP: audit log reopened"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: cannot reopen the audit log"),
            }
        }
    });
}

fn tls_acceptor(config: &Config) -> Result<SslAcceptor, ServerError> {
    let tls = |e: openssl::error::ErrorStack| ServerError::Tls(e.to_string());
    let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) else {
        return Err(ServerError::Tls(
            "cert_file and key_file are required".into(),
        ));
    };
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(tls)?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    builder.check_private_key().map_err(tls)?;
    if config.tls.client_ca_dir.is_some() {
        // Request a client certificate but do not require one, and accept any chain here:
        // the handshake proves possession of the leaf's key; the chain itself (IGTF CAs, RFC
        // 3820 proxies) is verified by the certificate verifier on each request, where a
        // failure is a uniform 401 and an audit record rather than a TLS alert.
        builder.set_verify_callback(SslVerifyMode::PEER, |_preverified, _ctx| true);
    }
    Ok(builder.build())
}

/// The peer chain as DER, leaf first (OpenSSL's server-side chain excludes the leaf).
fn peer_chain(ssl: &openssl::ssl::SslRef) -> Vec<Vec<u8>> {
    let mut chain = Vec::new();
    if let Some(leaf) = ssl.peer_certificate() {
        if let Ok(der) = leaf.to_der() {
            chain.push(der);
        }
        if let Some(rest) = ssl.peer_cert_chain() {
            chain.extend(rest.iter().filter_map(|c| c.to_der().ok()));
        }
    }
    chain
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    router: Router,
) -> Result<(), ServerError> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let ssl = match Ssl::new(acceptor.context()) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "TLS session setup failed"),
            };
            let mut stream = match tokio_openssl::SslStream::new(ssl, tcp) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "TLS session setup failed"),
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).accept()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            }
            let chain = peer_chain(stream.ssl());
            let peer_certs = (!chain.is_empty()).then(|| PeerCertificates(Arc::new(chain)));
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    if let Some(certs) = &peer_certs {
                        req.extensions_mut().insert(certs.clone());
                    }
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harden_process_disables_core_dumps() {
        assert!(harden_process());
        assert_eq!(
            rustix::process::dumpable_behavior().expect("prctl"),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }

    /// The broker names itself in `aud` by its audience or client id, else its public URL;
    /// `["*"]` admits any client.
    #[test]
    fn oidc_config_names_the_broker() {
        let url = "https://broker.example.org";
        let mut c = Config::default();
        let o = oidc_config(&c, url).expect("config");
        assert_eq!((o.audience, o.audience_names), (None, vec![url.to_owned()]));
        assert_eq!(o.allowed_clients, ClientPolicy::default());
        c.oidc.client_id = Some("layercrypt-broker".into());
        let o = oidc_config(&c, url).expect("config");
        assert_eq!(o.audience_names, ["layercrypt-broker"]);
        c.oidc.audience = Some("broker-aud".into());
        c.oidc.allowed_clients = vec!["*".into()];
        let o = oidc_config(&c, url).expect("config");
        assert_eq!(o.audience.as_deref(), Some("broker-aud"));
        assert_eq!(o.audience_names, ["layercrypt-broker"]);
        assert_eq!(o.allowed_clients, ClientPolicy::Any);
        c.oidc.client_id = None;
        let o = oidc_config(&c, url).expect("config");
        assert!(o.audience_names.is_empty(), "the audience alone names it");
    }

    /// Regression (issue 8 item 3): a one-character admin token in a world-readable file was
    /// accepted with a warning. Now refused at start, with how to make a good one.
    #[test]
    fn weak_or_exposed_admin_token_files_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, content: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let good = "q7Yc0l4n2m1VbXk8Zr9sTt3uWw6yHh5jAa1Bb2Cc3Dd=";
        let message = |path: &Path| {
            read_admin_token_file(path)
                .err()
                .map(|e| e.to_string())
                .expect("refused")
        };
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let m = message(&write("exposed", good, mode));
            assert!(m.contains("chmod 600"), "{m}");
            assert!(
                m.contains("umask 077; openssl rand -base64 32 > FILE"),
                "{m}"
            );
        }
        let m = message(&write("short", "x\n", 0o600));
        assert!(m.contains("shorter than 32"), "{m}");
        assert!(m.contains("openssl rand -base64 32"), "{m}");
        assert!(!m.contains("x\n"), "content not shown");
        let m = message(&write("short31", &"a".repeat(31), 0o600));
        assert!(m.contains("31 bytes"), "{m}");
        let token = read_admin_token_file(&write("ok", &format!("{good}\n"), 0o600)).expect("ok");
        assert_eq!(token.expose_secret(), good);
        assert!(read_admin_token_file(&write("ok32", &"a".repeat(32), 0o400)).is_ok());
    }

    /// Regression: `--dev` failed at start-up because its temporary data directory was
    /// created 0o755 and the embedded store refuses that.
    #[tokio::test]
    async fn dev_mode_starts_with_its_private_temporary_store() {
        let config = Config {
            dev: true,
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..Config::default()
        };
        let app = App::build(&config).await.expect("--dev starts");
        assert!(app.dev_admin_token().is_some());
        let addr = app.local_addr().expect("addr");
        assert!(addr.ip().is_loopback());
        // Port 0 asked the kernel for a port: payloads name that one.
        assert_ne!(addr.port(), 0);
        assert_eq!(app.public_url(), format!("http://{addr}"));
        // What --dev prints is what it uses, not the configuration's data_dir and issuer.
        let dir = app.dev_data_dir().expect("a throw-away store");
        assert!(dir.is_dir() && dir != config.data_dir);
        assert_eq!(app.dev_issuer_url(), Some(format!("http://{addr}/dev")));
    }
}
