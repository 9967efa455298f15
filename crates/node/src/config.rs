//! The node configuration file, `/etc/layercrypt/node.toml` by default.
//!
//! It says which key brokers this node trusts, how the node authenticates to them, and for how
//! long unwrapped layer keys may be kept in memory. A node that decrypts only with local keys
//! (`--decryption-keys-path`) needs no file at all.
//!
//! ```toml
//! # Base URLs of the brokers this node may ask (the group payload names its broker; any
//! # other broker is refused).
//! brokers = ["https://keys.example.org"]
//! # ca_file = "/etc/layercrypt/broker-ca.pem"   # extra CAs for the brokers' TLS (optional)
//!
//! [credential]                     # exactly one kind; secrets are always file paths
//! kind = "token-file"              # a bearer token kept fresh by something else
//! token_file = "/etc/layercrypt/token"
//! # kind = "refresh-token"; refresh_token_file = "…"; client_id = "…"; issuer = "https://…"
//! # kind = "client-credentials"; client_id = "…"; client_secret_file = "…"; issuer = "https://…"
//! # kind = "tls-client-cert"; cert_file = "…"; key_file = "…"
//!
//! [timeouts]
//! connect_secs = 5
//! request_secs = 20
//!
//! [key_cache]                      # in memory only, never on disk
//! ttl_secs = 300
//! max_entries = 64
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layercrypt_proto::url::{BrokerUrl, UrlError};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Default location of the node configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/layercrypt/node.toml";

/// Largest configuration file read.
const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// The node configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Base URLs of the brokers this node trusts.
    #[serde(default)]
    pub brokers: Vec<String>,
    /// Extra CA certificates (PEM) that the brokers' TLS server certificates may chain to
    /// (for a broker with a certificate from a private or IGTF CA); the system roots stay.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How the node authenticates to the brokers.
    #[serde(default)]
    pub credential: Option<Credential>,
    /// Network timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The in-memory key cache.
    #[serde(default)]
    pub key_cache: KeyCacheConfig,
}

/// The node's credential towards the brokers. Secrets are file paths, never inline values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Credential {
    /// A bearer token in a file, refreshed by something else (re-read on every use).
    TokenFile {
        /// The token file.
        token_file: PathBuf,
    },
    /// An OAuth 2 refresh token exchanged at the issuer for access tokens.
    RefreshToken {
        /// File holding the refresh token.
        refresh_token_file: PathBuf,
        /// OAuth client ID.
        client_id: String,
        /// Issuer base URL (its token endpoint is discovered).
        issuer: String,
    },
    /// OAuth 2 client credentials (a service account for the node).
    ClientCredentials {
        /// OAuth client ID.
        client_id: String,
        /// File holding the client secret.
        client_secret_file: PathBuf,
        /// Issuer base URL.
        issuer: String,
    },
    /// Mutual TLS with a client certificate.
    TlsClientCert {
        /// Certificate (chain) file, PEM.
        cert_file: PathBuf,
        /// Private key file, PEM.
        key_file: PathBuf,
    },
}

impl Credential {
    /// The kind, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::TokenFile { .. } => "token-file",
            Credential::RefreshToken { .. } => "refresh-token",
            Credential::ClientCredentials { .. } => "client-credentials",
            Credential::TlsClientCert { .. } => "tls-client-cert",
        }
    }

    fn files(&self) -> Vec<(&'static str, &Path)> {
        match self {
            Credential::TokenFile { token_file } => vec![("token_file", token_file)],
            Credential::RefreshToken {
                refresh_token_file, ..
            } => vec![("refresh_token_file", refresh_token_file)],
            Credential::ClientCredentials {
                client_secret_file, ..
            } => vec![("client_secret_file", client_secret_file)],
            Credential::TlsClientCert {
                cert_file,
                key_file,
            } => vec![("cert_file", cert_file), ("key_file", key_file)],
        }
    }
}

/// Network timeouts towards brokers and issuers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP + TLS connect timeout, seconds.
    pub connect_secs: u64,
    /// Whole-request timeout, seconds.
    pub request_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_secs: 5,
            request_secs: 20,
        }
    }
}

impl Timeouts {
    /// The connect timeout.
    pub fn connect(&self) -> Duration {
        Duration::from_secs(self.connect_secs)
    }

    /// The request timeout.
    pub fn request(&self) -> Duration {
        Duration::from_secs(self.request_secs)
    }
}

/// The in-memory cache of unwrapped layer keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyCacheConfig {
    /// How long an entry lives, seconds; 0 disables the cache.
    pub ttl_secs: u64,
    /// Most entries kept.
    pub max_entries: usize,
}

impl Default for KeyCacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 300,
            max_entries: 64,
        }
    }
}

impl NodeConfig {
    /// Parses and validates a configuration file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |reason: String| Error::Config {
            path: path.to_owned(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut text = String::new();
        file.take(MAX_CONFIG_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_CONFIG_LEN {
            return Err(err(format!("larger than {MAX_CONFIG_LEN} bytes")));
        }
        Self::parse(&text, path)
    }

    /// Loads `path` if given (it must exist), else [`DEFAULT_CONFIG_PATH`] if it exists, else
    /// the empty configuration (local keys only). Returns the file used.
    pub fn load_or_default(path: Option<&Path>) -> Result<(Self, Option<PathBuf>)> {
        match path {
            Some(p) => Ok((Self::load(p)?, Some(p.to_owned()))),
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                if p.exists() {
                    Ok((Self::load(p)?, Some(p.to_owned())))
                } else {
                    Ok((Self::default(), None))
                }
            }
        }
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |reason: String| Error::Config {
            path: path.to_owned(),
            reason,
        };
        for b in &self.brokers {
            check_base_url(b).map_err(|r| err(format!("brokers: {b:?}: {r}")))?;
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_absolute() || !ca.is_file() {
                return Err(err(format!(
                    "ca_file: {} is not a readable file given by an absolute path",
                    ca.display()
                )));
            }
        }
        if let Some(c) = &self.credential {
            if self.brokers.is_empty() {
                return Err(err("a credential is set but no brokers are listed".into()));
            }
            match c {
                Credential::RefreshToken {
                    client_id, issuer, ..
                }
                | Credential::ClientCredentials {
                    client_id, issuer, ..
                } => {
                    if client_id.trim().is_empty() {
                        return Err(err(format!("credential ({}): empty client_id", c.kind())));
                    }
                    check_base_url(issuer)
                        .map_err(|r| err(format!("credential issuer {issuer:?}: {r}")))?;
                }
                _ => {}
            }
            for (field, file) in c.files() {
                if !file.is_absolute() {
                    return Err(err(format!("credential {field}: use an absolute path")));
                }
                if !file.is_file() {
                    return Err(err(format!(
                        "credential {field}: {} is not a readable file",
                        file.display()
                    )));
                }
            }
        } else if !self.brokers.is_empty() {
            return Err(err(
                "brokers are listed but there is no [credential] to authenticate with".into(),
            ));
        }
        for (name, v) in [
            ("connect_secs", self.timeouts.connect_secs),
            ("request_secs", self.timeouts.request_secs),
        ] {
            if !(1..=600).contains(&v) {
                return Err(err(format!("timeouts.{name} must be 1..=600")));
            }
        }
        if self.key_cache.ttl_secs > 86_400 {
            return Err(err(
                "key_cache.ttl_secs must be at most 86400 (a day)".into()
            ));
        }
        if !(1..=4096).contains(&self.key_cache.max_entries) {
            return Err(err("key_cache.max_entries must be 1..=4096".into()));
        }
        Ok(())
    }

    /// True if `url` is one of the trusted brokers (compared without a trailing `/`).
    pub fn broker_allowed(&self, url: &str) -> bool {
        let url = url.trim_end_matches('/');
        self.brokers.iter().any(|b| b.trim_end_matches('/') == url)
    }

    /// A one-line summary for logs: no secrets (secrets are only file paths anyway, and those
    /// are not shown either).
    pub fn summary(&self) -> String {
        format!(
            "brokers={:?} credential={} timeouts={}s/{}s key_cache={}s/{}",
            self.brokers,
            self.credential.as_ref().map_or("none", Credential::kind),
            self.timeouts.connect_secs,
            self.timeouts.request_secs,
            self.key_cache.ttl_secs,
            self.key_cache.max_entries
        )
    }
}

/// `https://host[:port][/path]`; plain `http://` only for loopback hosts (tests, a local
/// broker behind a TLS-terminating proxy on the same node). No user info, query or fragment.
/// The same check and normal form as the CLI and the broker (`layercrypt_proto::url`).
fn check_base_url(url: &str) -> std::result::Result<(), String> {
    let parsed = BrokerUrl::parse(url).map_err(|e| match e {
        UrlError::Shape { what, .. } => what.to_owned(),
        UrlError::Scheme { .. } => "use https:// (http:// only on this machine)".to_owned(),
        other => other.to_string(),
    })?;
    if parsed.is_cleartext_off_loopback() {
        return Err("plain http is allowed only for localhost/127.0.0.1/[::1]".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig> {
        NodeConfig::parse(text, Path::new("node.toml"))
    }

    #[test]
    fn empty_file_is_local_keys_only() {
        let c = parse("").expect("empty");
        assert_eq!(c, NodeConfig::default());
        assert!(!c.broker_allowed("https://x"));
    }

    #[test]
    fn every_credential_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("secret");
        std::fs::write(&f, "x").expect("write");
        let f = f.display();
        let kinds = [
            format!("kind = \"token-file\"\ntoken_file = \"{f}\""),
            format!("kind = \"refresh-token\"\nrefresh_token_file = \"{f}\"\nclient_id = \"node\"\nissuer = \"https://iam.example.org\""),
            format!("kind = \"client-credentials\"\nclient_secret_file = \"{f}\"\nclient_id = \"node\"\nissuer = \"https://iam.example.org/realms/x\""),
            format!("kind = \"tls-client-cert\"\ncert_file = \"{f}\"\nkey_file = \"{f}\""),
        ];
        for k in kinds {
            let text = format!(
                "brokers = [\"https://keys.example.org/\", \"http://127.0.0.1:8443\"]\n[credential]\n{k}\n[timeouts]\nconnect_secs = 2\n[key_cache]\nttl_secs = 0\n"
            );
            let c = parse(&text).unwrap_or_else(|e| panic!("{k}: {e}"));
            assert!(c.broker_allowed("https://keys.example.org"));
            assert!(!c.broker_allowed("https://evil.example.org"));
            assert_eq!(c.timeouts.connect_secs, 2);
            assert_eq!(c.timeouts.request_secs, 20);
            assert!(!c.summary().contains(&f.to_string()));
        }
    }

    #[test]
    fn rejects_mistakes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("secret");
        std::fs::write(&f, "x").expect("write");
        let f = f.display();
        let bad = [
            "unknown = 1".to_string(),
            "brokers = [\"https://a\"]".into(), // no credential
            format!("[credential]\nkind = \"token-file\"\ntoken_file = \"{f}\""), // no brokers
            format!("brokers = [\"http://keys.example.org\"]\n[credential]\nkind = \"token-file\"\ntoken_file = \"{f}\""),
            format!("brokers = [\"https://a\"]\n[credential]\nkind = \"token-file\"\ntoken_file = \"{f}\"\nextra = 1"),
            "brokers = [\"https://a\"]\n[credential]\nkind = \"token-file\"\ntoken_file = \"/nonexistent/t\"".into(),
            format!("brokers = [\"https://a\"]\n[credential]\nkind = \"password\"\nfile = \"{f}\""),
            format!("brokers = [\"https://a?x\"]\n[credential]\nkind = \"token-file\"\ntoken_file = \"{f}\""),
            "[timeouts]\nconnect_secs = 0".into(),
            "[key_cache]\nmax_entries = 100000".into(),
            "[key_cache]\nttl = 5".into(),
        ];
        for text in bad {
            assert!(parse(&text).is_err(), "accepted: {text}");
        }
    }
}
