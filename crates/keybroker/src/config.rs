//! The broker's one typed configuration: a TOML file, then environment variables and flags
//! (applied by the binary), then [`Config::validate`]. Secrets appear only as file paths; the
//! start-up dump ([`Config::redacted`]) hides the rest.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use layercrypt_proto::url::{normalize_broker_url, BrokerUrl};
use serde::{Deserialize, Serialize};

pub use crate::api::MetricsExposure;
pub use crate::auth::namespaces::NamespaceMode;
pub use crate::auth::oidc::{ANY_CLIENT, DEFAULT_ALLOWED_CLIENTS};

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// Default issuer: EGI Check-in production.
pub const DEFAULT_ISSUER: &str = "https://aai.egi.eu/auth/realms/egi";
/// Data directory of a broker run as root.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/layercrypt-broker";

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this config.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What (TOML parser message: key names and positions, no values of secrets since
        /// secrets are not in the file).
        message: String,
    },
    /// A setting is invalid or settings contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Key store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One file in the data directory.
    #[default]
    Embedded,
    /// HashiCorp Vault / OpenBao KV v2.
    Vault,
}

/// Where group membership (entitlements) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipSource {
    /// Claims of the access token, else UserInfo (works with public clients such as oidc-agent).
    #[default]
    Userinfo,
    /// Token introspection with a confidential client (`client_id`, `client_secret_file`).
    Introspection,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address (`127.0.0.1:8443`).
    pub listen: SocketAddr,
    /// The URL clients use and payloads name (`broker` field); default `https://<listen>`
    /// (`http://<listen>` without TLS).
    pub public_url: Option<String>,
    /// Data directory of the embedded store.
    pub data_dir: PathBuf,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// Development mode (flag only: never read from a file).
    #[serde(skip)]
    pub dev: bool,
    /// TLS.
    pub tls: TlsConfig,
    /// Admins.
    pub admin: AdminConfig,
    /// Token validation.
    pub oidc: OidcSettings,
    /// Key store.
    pub store: StoreSettings,
    /// Limits.
    pub limits: Limits,
    /// Audit log.
    pub audit: AuditSettings,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
}

/// Metrics settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Who may read `GET /metrics`: `loopback` (default: peers on 127.0.0.0/8 or ::1 only),
    /// `public` (anyone who reaches the listener) or `off` (404 for everyone).
    pub expose: MetricsExposure,
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Trusted CAs for client certificate authentication (e.g. `/etc/grid-security/certificates`).
    pub client_ca_dir: Option<PathBuf>,
    /// IGTF namespace constraints of the CAs in `client_ca_dir` (`<hash>.namespaces`,
    /// `<hash>.signing_policy`): `require` (default), `if-present` or `off`.
    pub namespaces: NamespaceMode,
    /// Seconds between reloads of `client_ca_dir` (CRLs from fetch-crl, CA and policy
    /// updates); default 600, 0 never reloads.
    pub ca_reload_secs: Option<u64>,
}

/// Admin settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Callers whose token carries this entitlement are admins.
    pub entitlement: Option<String>,
    /// File holding the bootstrap admin token.
    pub token_file: Option<PathBuf>,
}

/// Token validation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// Issuer URL.
    pub issuer: String,
    /// Required `aud` (Check-in tokens have none unless exchanged for an audience). Unset,
    /// a token without `aud` is accepted, but an `aud` that is present must still name this
    /// broker: `audience`, `client_id`, or (with neither) the public URL.
    pub audience: Option<String>,
    /// Clients (`azp`, else `client_id`) whose tokens are accepted; `["*"]` accepts any.
    /// Default: the CLI's device-flow client and oidc-agent ([`DEFAULT_ALLOWED_CLIENTS`]).
    pub allowed_clients: Vec<String>,
    /// Membership source.
    pub membership: MembershipSource,
    /// Introspection client id.
    pub client_id: Option<String>,
    /// File holding the introspection client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Longest reuse of a verified token's identity and its UserInfo/introspection
    /// entitlements, seconds (never past the token's `exp`). Entitlements carried in the
    /// token itself last until its `exp` whatever this says.
    pub cache_ttl_secs: u64,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            issuer: DEFAULT_ISSUER.into(),
            audience: None,
            allowed_clients: DEFAULT_ALLOWED_CLIENTS.map(String::from).to_vec(),
            membership: MembershipSource::Userinfo,
            client_id: None,
            client_secret_file: None,
            cache_ttl_secs: 300,
        }
    }
}

/// Key store settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Backend.
    pub backend: Backend,
    /// Vault settings (backend `vault`).
    pub vault: VaultSettings,
    /// Seconds a group's public recipient (or its absence) is served from memory; a change
    /// made through another broker sharing the store shows after at most this long. 0 turns
    /// the cache off.
    pub recipient_cache_secs: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            backend: Backend::default(),
            vault: VaultSettings::default(),
            recipient_cache_secs: 10,
        }
    }
}

/// Vault / OpenBao settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    /// Base URL.
    pub address: Option<String>,
    /// KV v2 mount.
    pub mount: String,
    /// Path prefix under the mount.
    pub prefix: String,
    /// File holding a Vault token.
    pub token_file: Option<PathBuf>,
    /// AppRole role id (with `secret_id_file`).
    pub role_id: Option<String>,
    /// File holding the AppRole secret id.
    pub secret_id_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) for Vault's TLS.
    pub ca_file: Option<PathBuf>,
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            address: None,
            mount: "secret".into(),
            prefix: "layercrypt".into(),
            token_file: None,
            role_id: None,
            secret_id_file: None,
            ca_file: None,
        }
    }
}

/// Limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sustained requests per minute per caller.
    pub rate_per_minute: u32,
    /// Burst per caller.
    pub rate_burst: u32,
    /// Sustained requests per minute per client network (IPv4 address or IPv6 /64), counted
    /// before authentication on every route.
    pub ip_rate_per_minute: u32,
    /// Burst per client network.
    pub ip_rate_burst: u32,
    /// Sustained failed authentications (bad or missing credential, wrong admin token) per
    /// minute per client network; beyond, requests are refused (429) before authentication.
    pub auth_fail_per_minute: u32,
    /// Burst of failed authentications per client network.
    pub auth_fail_burst: u32,
    /// Whole-request timeout, seconds.
    pub request_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_minute: 600,
            rate_burst: 60,
            ip_rate_per_minute: crate::api::DEFAULT_IP_RATE_PER_MINUTE,
            ip_rate_burst: crate::api::DEFAULT_IP_RATE_BURST,
            auth_fail_per_minute: crate::api::DEFAULT_AUTH_FAIL_PER_MINUTE,
            auth_fail_burst: crate::api::DEFAULT_AUTH_FAIL_BURST,
            request_timeout_secs: 30,
        }
    }
}

/// Audit log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Seconds over which refusals before authentication are summarised per client network:
    /// the first of a window is recorded in full, the rest as one summary record.
    pub unauthenticated_window_secs: u64,
    /// Embedded store: `audit.log` is rotated (to `audit.log.1`, …) before it grows past
    /// this many bytes.
    pub max_file_bytes: u64,
    /// Embedded store: rotated files kept (`audit.log.1` … `audit.log.N`); older ones are
    /// deleted.
    pub keep_files: u32,
    /// Vault store: audit records older than this many days are deleted (daily); 0 keeps
    /// them for ever.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            unauthenticated_window_secs: 60,
            max_file_bytes: crate::store::embedded::DEFAULT_AUDIT_MAX_BYTES,
            keep_files: crate::store::embedded::DEFAULT_AUDIT_KEEP,
            retention_days: crate::store::vault::DEFAULT_AUDIT_RETENTION_DAYS,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            public_url: None,
            data_dir: default_data_dir(),
            insecure_http: false,
            dev: false,
            tls: TlsConfig::default(),
            admin: AdminConfig::default(),
            oidc: OidcSettings::default(),
            store: StoreSettings::default(),
            limits: Limits::default(),
            audit: AuditSettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

/// `/var/lib/layercrypt-broker` for root, else `$XDG_DATA_HOME/layercrypt-broker` (or
/// `~/.local/share/layercrypt-broker`).
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from(SYSTEM_DATA_DIR);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    base.map_or_else(
        || PathBuf::from(SYSTEM_DATA_DIR),
        |b| b.join("layercrypt-broker"),
    )
}

#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // The owner of /proc/self is the process's user (no unsafe getuid call needed).
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

impl Config {
    /// Parses TOML (`path` only names the source in errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }

    /// Reads a TOML file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// True if TLS is configured.
    pub fn has_tls(&self) -> bool {
        self.tls.cert_file.is_some()
    }

    /// The public URL: configured, else `https://<listen>` (`http://` without TLS).
    pub fn public_url(&self) -> String {
        self.public_url_for(self.listen)
    }

    /// [`Config::public_url`] once the listener is bound to `bound`: with `--listen …:0`
    /// the kernel picks the port, and payloads must name that port, not 0.
    pub fn public_url_for(&self, bound: std::net::SocketAddr) -> String {
        match &self.public_url {
            // Validated by `validate`; the normal form is what clients write into payloads.
            Some(u) => {
                normalize_broker_url(u).unwrap_or_else(|_| u.trim_end_matches('/').to_owned())
            }
            None => format!(
                "{}://{}",
                if self.has_tls() { "https" } else { "http" },
                if self.listen.port() == 0 {
                    bound
                } else {
                    self.listen
                }
            ),
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let loopback = self.listen.ip().is_loopback();
        if self.dev && !loopback {
            return Err(ConfigError::Invalid(format!(
                "--dev listens on loopback only, not {}: it issues tokens to anyone who asks",
                self.listen
            )));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("tls.cert_file and tls.key_file go together");
        }
        if !self.has_tls() && !loopback && !self.insecure_http {
            return Err(ConfigError::Invalid(format!(
                "refusing plain HTTP on non-loopback address {}: configure tls.cert_file/key_file, or pass \
                 --insecure-http if a TLS-terminating proxy is in front",
                self.listen
            )));
        }
        if self.tls.client_ca_dir.is_some() && !self.has_tls() {
            return invalid("tls.client_ca_dir (certificate authentication) needs TLS");
        }
        if let Some(u) = &self.public_url {
            if u.len() > 2048 {
                return invalid("public_url must be an http(s) URL");
            }
            BrokerUrl::parse(u).map_err(|e| ConfigError::Invalid(format!("public_url: {e}")))?;
        }
        if !self.dev {
            if !(self.oidc.issuer.starts_with("https://")
                || self.oidc.issuer.starts_with("http://"))
            {
                return invalid("oidc.issuer must be an http(s) URL");
            }
            let clients = &self.oidc.allowed_clients;
            if clients.is_empty() {
                return invalid("oidc.allowed_clients is empty: no token would be accepted (use [\"*\"] for any client)");
            }
            if clients.iter().any(|c| c.trim().is_empty() || c.trim() != c) {
                return invalid("oidc.allowed_clients: client ids must be non-empty, without surrounding spaces");
            }
            if clients.len() > 1 && clients.iter().any(|c| c == ANY_CLIENT) {
                return invalid("oidc.allowed_clients: \"*\" (any client) stands alone");
            }
            if self.oidc.audience.as_deref().is_some_and(str::is_empty) {
                return invalid("oidc.audience must not be empty");
            }
            if self.oidc.membership == MembershipSource::Introspection
                && (self.oidc.client_id.is_none() || self.oidc.client_secret_file.is_none())
            {
                return invalid("oidc.membership = \"introspection\" needs oidc.client_id and oidc.client_secret_file");
            }
            if self.store.backend == Backend::Vault {
                let v = &self.store.vault;
                if v.address.is_none() {
                    return invalid("store.backend = \"vault\" needs store.vault.address");
                }
                match (&v.token_file, &v.role_id, &v.secret_id_file) {
                    (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                    _ => return invalid("vault login: either store.vault.token_file, or role_id with secret_id_file"),
                }
            }
        }
        if self.admin.entitlement.as_deref().is_some_and(str::is_empty) {
            return invalid("admin.entitlement must not be empty");
        }
        let l = &self.limits;
        if [
            l.rate_per_minute,
            l.rate_burst,
            l.ip_rate_per_minute,
            l.ip_rate_burst,
            l.auth_fail_per_minute,
            l.auth_fail_burst,
        ]
        .contains(&0)
        {
            return invalid("limits.*_per_minute and limits.*_burst must be at least 1");
        }
        if self.audit.unauthenticated_window_secs == 0 {
            return invalid("audit.unauthenticated_window_secs must be at least 1");
        }
        if self.audit.max_file_bytes < 1024 * 1024 {
            return invalid("audit.max_file_bytes must be at least 1048576 (1 MiB)");
        }
        if self.audit.keep_files == 0 {
            return invalid(
                "audit.keep_files must be at least 1: rotation must not delete the only copy",
            );
        }
        if self.limits.request_timeout_secs == 0 {
            return invalid("limits.request_timeout_secs must be at least 1");
        }
        Ok(())
    }

    /// The configuration as TOML for the start-up log. Secrets are file paths and are shown;
    /// the AppRole role id is redacted.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        if shown.store.vault.role_id.is_some() {
            shown.store.vault.role_id = Some("<redacted>".into());
        }
        let mut text =
            toml::to_string(&shown).unwrap_or_else(|e| format!("# config not printable: {e}\n"));
        if self.dev {
            text.insert_str(0, "# --dev\n");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_toml(s, Path::new("test.toml"))
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::default();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.oidc.issuer, DEFAULT_ISSUER);
        assert_eq!(c.public_url(), "http://127.0.0.1:8443");
        c.validate().expect("defaults validate");
    }

    #[test]
    fn public_url_is_normalised_when_loaded() {
        // Mixed case and a default port named the same broker as the CLI's normal form, yet
        // locked every member out (issue 8.6).
        let c = parse(r#"public_url = "HTTPS://Broker.Example.ORG:443/""#).expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.public_url(), "https://broker.example.org");
        let c = parse(r#"public_url = "https://user@broker.example.org""#).expect("parse");
        let e = c.validate().expect_err("credentials in the URL");
        assert!(e.to_string().contains("public_url"), "{e}");
    }

    #[test]
    fn full_file_parses_and_unknown_keys_are_refused() {
        let c = parse(
            r#"
            listen = "0.0.0.0:8443"
            public_url = "https://broker.example.org/"
            [tls]
            cert_file = "/etc/broker/cert.pem"
            key_file = "/etc/broker/key.pem"
            client_ca_dir = "/etc/grid-security/certificates"
            namespaces = "if-present"
            [admin]
            entitlement = "urn:mace:egi.eu:group:broker-admins:role=member#aai.egi.eu"
            token_file = "/etc/broker/admin-token"
            [oidc]
            audience = "layercrypt-broker"
            membership = "introspection"
            client_id = "broker"
            client_secret_file = "/etc/broker/client-secret"
            [store]
            backend = "vault"
            [store.vault]
            address = "https://vault.example.org:8200"
            role_id = "1234-role"
            secret_id_file = "/etc/broker/secret-id"
            [limits]
            rate_per_minute = 100
            ip_rate_per_minute = 1000
            auth_fail_burst = 5
            [audit]
            max_file_bytes = 10485760
            keep_files = 3
            retention_days = 90
            "#,
        )
        .expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.public_url(), "https://broker.example.org");
        assert_eq!(c.limits.rate_burst, 60, "defaults fill the rest");
        assert_eq!(c.limits.auth_fail_burst, 5);
        assert_eq!(c.audit.keep_files, 3);
        assert_eq!(c.audit.unauthenticated_window_secs, 60);
        assert_eq!(c.tls.namespaces, NamespaceMode::IfPresent);
        assert_eq!(
            Config::default().tls.namespaces,
            NamespaceMode::Require,
            "namespaces are enforced unless configured otherwise"
        );
        assert!(parse("[tls]\nnamespaces = \"ignore\"").is_err());
        let dump = c.redacted();
        assert!(!dump.contains("1234-role"), "{dump}");
        assert!(dump.contains("namespaces = \"if-present\""), "{dump}");
        assert!(dump.contains("/etc/broker/secret-id"), "{dump}");
        assert!(parse("lissen = \"127.0.0.1:1\"").is_err());
        assert!(parse("[tls]\ncert = \"x\"").is_err());
        assert!(
            parse("dev = true").is_err(),
            "dev is a flag, not a file setting"
        );
    }

    #[test]
    fn validation_refuses_unsafe_or_incomplete_settings() {
        let mut c = Config {
            listen: "0.0.0.0:8443".parse().expect("addr"),
            ..Config::default()
        };
        assert!(c.validate().is_err(), "plain HTTP on a public address");
        c.insecure_http = true;
        c.validate().expect("allowed with --insecure-http");
        c.dev = true;
        assert!(c.validate().is_err(), "--dev is loopback only");
        let mut c = Config::default();
        c.tls.cert_file = Some("c".into());
        assert!(c.validate().is_err(), "cert without key");
        let mut c = Config::default();
        c.store.backend = Backend::Vault;
        assert!(c.validate().is_err(), "vault without address");
        c.store.vault.address = Some("https://v".into());
        assert!(c.validate().is_err(), "vault without login");
        c.store.vault.token_file = Some("t".into());
        c.validate().expect("token login");
        c.store.vault.role_id = Some("r".into());
        assert!(c.validate().is_err(), "two logins");
        let mut c = Config::default();
        c.oidc.membership = MembershipSource::Introspection;
        assert!(c.validate().is_err(), "introspection without client");
        let mut c = Config::default();
        c.limits.rate_burst = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.limits.auth_fail_burst = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.audit.keep_files = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.audit.unauthenticated_window_secs = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.tls.client_ca_dir = Some("/etc/grid-security/certificates".into());
        assert!(c.validate().is_err(), "certificates need TLS");
    }

    #[test]
    fn oidc_clients_and_metrics_exposure() {
        let c = Config::default();
        assert_eq!(c.oidc.allowed_clients, ["layercrypt-cli", "oidc-agent"]);
        assert_eq!(c.metrics.expose, MetricsExposure::Loopback, "safe default");
        let c = parse("[oidc]\nallowed_clients = [\"*\"]\n[metrics]\nexpose = \"public\"")
            .expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.metrics.expose, MetricsExposure::Public);
        assert_eq!(
            parse("[metrics]\nexpose = \"off\"")
                .expect("off")
                .metrics
                .expose,
            MetricsExposure::Off
        );
        assert!(parse("[metrics]\nexpose = \"everyone\"").is_err());
        for bad in ["[]", "[\"\"]", "[\" cli\"]", "[\"*\", \"cli\"]"] {
            let c = parse(&format!("[oidc]\nallowed_clients = {bad}")).expect("parse");
            assert!(c.validate().is_err(), "{bad}");
        }
        let mut c = Config::default();
        c.oidc.audience = Some(String::new());
        assert!(c.validate().is_err(), "empty audience");
    }
}
