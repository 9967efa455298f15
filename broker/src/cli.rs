//! Command line of `layercrypt-broker`. Every setting of the TOML file can be overridden by a
//! flag or its environment variable (flag > environment > file > default).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use layercrypt_keybroker::config::{
    Backend, Config, MembershipSource, MetricsExposure, NamespaceMode,
};

/// The layercrypt key broker.
#[derive(Debug, Parser)]
#[command(name = "layercrypt-broker", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the broker API.
    Serve(ServeArgs),
    /// Validate the configuration and print it (redacted), then exit.
    CheckConfig(ServeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreArg {
    Embedded,
    Vault,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MembershipArg {
    Userinfo,
    Introspection,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MetricsArg {
    Loopback,
    Public,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NamespacesArg {
    Require,
    IfPresent,
    Off,
}

/// Settings (see docs: config reference).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "LAYERCRYPT_BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Development mode: loopback only, throw-away store, built-in token issuer, generated
    /// admin token. UNSAFE for production.
    #[arg(long)]
    pub dev: bool,
    /// Listen address.
    #[arg(long, env = "LAYERCRYPT_BROKER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Public URL (the `broker` field of payloads).
    #[arg(long, env = "LAYERCRYPT_BROKER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Data directory of the embedded store.
    #[arg(long, env = "LAYERCRYPT_BROKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    #[arg(long, env = "LAYERCRYPT_BROKER_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "LAYERCRYPT_BROKER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "LAYERCRYPT_BROKER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA directory for client certificate authentication.
    #[arg(long, env = "LAYERCRYPT_BROKER_CLIENT_CA_DIR")]
    pub client_ca_dir: Option<PathBuf>,
    /// IGTF namespace constraints of the client CAs (`<hash>.namespaces`/`.signing_policy`).
    #[arg(long, value_enum, env = "LAYERCRYPT_BROKER_NAMESPACES")]
    pub namespaces: Option<NamespacesArg>,
    /// Entitlement that makes a caller an admin.
    #[arg(long, env = "LAYERCRYPT_BROKER_ADMIN_ENTITLEMENT")]
    pub admin_entitlement: Option<String>,
    /// File holding the bootstrap admin token.
    #[arg(long, env = "LAYERCRYPT_BROKER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// OIDC issuer.
    #[arg(long, env = "LAYERCRYPT_BROKER_ISSUER")]
    pub issuer: Option<String>,
    /// Required token audience.
    #[arg(long, env = "LAYERCRYPT_BROKER_AUDIENCE")]
    pub audience: Option<String>,
    /// Clients (azp/client_id) whose tokens are accepted, comma-separated; `*` for any.
    #[arg(long, env = "LAYERCRYPT_BROKER_ALLOWED_CLIENTS", value_delimiter = ',')]
    pub allowed_clients: Option<Vec<String>>,
    /// Where entitlements come from.
    #[arg(long, value_enum, env = "LAYERCRYPT_BROKER_MEMBERSHIP")]
    pub membership: Option<MembershipArg>,
    /// Introspection client id.
    #[arg(long, env = "LAYERCRYPT_BROKER_CLIENT_ID")]
    pub client_id: Option<String>,
    /// File holding the introspection client secret.
    #[arg(long, env = "LAYERCRYPT_BROKER_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Longest reuse of a verified token's identity and UserInfo/introspection entitlements, seconds.
    #[arg(long, env = "LAYERCRYPT_BROKER_CACHE_TTL")]
    pub cache_ttl: Option<u64>,
    /// Who may read /metrics.
    #[arg(long, value_enum, env = "LAYERCRYPT_BROKER_METRICS")]
    pub metrics: Option<MetricsArg>,
    /// Key store backend.
    #[arg(long, value_enum, env = "LAYERCRYPT_BROKER_STORE")]
    pub store: Option<StoreArg>,
    /// Vault/OpenBao address.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_ADDR")]
    pub vault_addr: Option<String>,
    /// Vault KV v2 mount.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_MOUNT")]
    pub vault_mount: Option<String>,
    /// Path prefix under the mount.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_PREFIX")]
    pub vault_prefix: Option<String>,
    /// File holding a Vault token.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// AppRole role id.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_ROLE_ID")]
    pub vault_role_id: Option<String>,
    /// File holding the AppRole secret id.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_SECRET_ID_FILE")]
    pub vault_secret_id_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) for Vault's TLS.
    #[arg(long, env = "LAYERCRYPT_BROKER_VAULT_CA_FILE")]
    pub vault_ca_file: Option<PathBuf>,
    /// Sustained requests per minute per caller.
    #[arg(long, env = "LAYERCRYPT_BROKER_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Burst per caller.
    #[arg(long, env = "LAYERCRYPT_BROKER_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Sustained requests per minute per client network (IPv4 address, IPv6 /64), before
    /// authentication.
    #[arg(long, env = "LAYERCRYPT_BROKER_IP_RATE_LIMIT")]
    pub ip_rate_limit: Option<u32>,
    /// Burst per client network.
    #[arg(long, env = "LAYERCRYPT_BROKER_IP_RATE_BURST")]
    pub ip_rate_burst: Option<u32>,
    /// Whole-request timeout, seconds.
    #[arg(long, env = "LAYERCRYPT_BROKER_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *target = v;
    }
}

fn set_some<T>(target: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *target = value;
    }
}

impl ServeArgs {
    /// The file (if any) with flags and environment applied, validated.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref()).context("loading the configuration")?;
        c.dev = self.dev;
        c.insecure_http |= self.insecure_http;
        set(&mut c.listen, self.listen);
        set_some(&mut c.public_url, self.public_url);
        set(&mut c.data_dir, self.data_dir);
        set_some(&mut c.tls.cert_file, self.tls_cert);
        set_some(&mut c.tls.key_file, self.tls_key);
        set_some(&mut c.tls.client_ca_dir, self.client_ca_dir);
        set(
            &mut c.tls.namespaces,
            self.namespaces.map(|n| match n {
                NamespacesArg::Require => NamespaceMode::Require,
                NamespacesArg::IfPresent => NamespaceMode::IfPresent,
                NamespacesArg::Off => NamespaceMode::Off,
            }),
        );
        set_some(&mut c.admin.entitlement, self.admin_entitlement);
        set_some(&mut c.admin.token_file, self.admin_token_file);
        set(&mut c.oidc.issuer, self.issuer);
        set_some(&mut c.oidc.audience, self.audience);
        set(
            &mut c.oidc.membership,
            self.membership.map(|m| match m {
                MembershipArg::Userinfo => MembershipSource::Userinfo,
                MembershipArg::Introspection => MembershipSource::Introspection,
            }),
        );
        set_some(&mut c.oidc.client_id, self.client_id);
        set_some(&mut c.oidc.client_secret_file, self.client_secret_file);
        set(&mut c.oidc.cache_ttl_secs, self.cache_ttl);
        set(&mut c.oidc.allowed_clients, self.allowed_clients);
        set(
            &mut c.metrics.expose,
            self.metrics.map(|m| match m {
                MetricsArg::Loopback => MetricsExposure::Loopback,
                MetricsArg::Public => MetricsExposure::Public,
                MetricsArg::Off => MetricsExposure::Off,
            }),
        );
        set(
            &mut c.store.backend,
            self.store.map(|s| match s {
                StoreArg::Embedded => Backend::Embedded,
                StoreArg::Vault => Backend::Vault,
            }),
        );
        set_some(&mut c.store.vault.address, self.vault_addr);
        set(&mut c.store.vault.mount, self.vault_mount);
        set(&mut c.store.vault.prefix, self.vault_prefix);
        set_some(&mut c.store.vault.token_file, self.vault_token_file);
        set_some(&mut c.store.vault.role_id, self.vault_role_id);
        set_some(&mut c.store.vault.secret_id_file, self.vault_secret_id_file);
        set_some(&mut c.store.vault.ca_file, self.vault_ca_file);
        set(&mut c.limits.rate_per_minute, self.rate_limit);
        set(&mut c.limits.rate_burst, self.rate_burst);
        set(&mut c.limits.ip_rate_per_minute, self.ip_rate_limit);
        set(&mut c.limits.ip_rate_burst, self.ip_rate_burst);
        set(&mut c.limits.request_timeout_secs, self.request_timeout);
        c.validate()?;
        Ok(c)
    }
}
