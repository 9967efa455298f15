//! The error type of this crate.
//!
//! Messages name the broker or issuer and say what to do. They never contain tokens, device
//! codes, keys or response bodies (only the broker's `message` field, which the contract
//! defines as safe text, bounded).

use std::path::PathBuf;

use crate::payload::PayloadError;

/// What to do when the broker refused the token (401).
pub const ADVICE_LOGIN: &str = "your token was refused: run `layercrypt login`";
/// Advice when the broker refused a client certificate (401 without a token).
pub const ADVICE_CERTIFICATE: &str = "your client certificate was not accepted";
/// What to do when the broker refused access (403).
pub const ADVICE_ASK_ADMIN: &str = "ask the group admin";

/// Errors of group recipients, the broker client and the token sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The payload is malformed.
    #[error(transparent)]
    Payload(#[from] PayloadError),

    /// 401 from the broker.
    #[error("broker {broker}: {ADVICE_LOGIN} (or give a fresh one with --token-file or OIDC_ACCESS_TOKEN)")]
    Unauthenticated {
        /// Broker base URL.
        broker: String,
    },

    /// 401 from the broker to a caller that presented a client certificate and no token.
    #[error("broker {broker}: {ADVICE_CERTIFICATE} (expired, revoked, from a CA the broker does not trust, or outside that CA's namespace, or the broker does not ask for certificates); give another certificate, or use a token")]
    CertificateRefused {
        /// Broker base URL.
        broker: String,
    },

    /// 403 from the broker on an unwrap.
    #[error("broker {broker}: not a member of group {group} (or access from this network is not granted); {ADVICE_ASK_ADMIN}")]
    NotMember {
        /// Broker base URL.
        broker: String,
        /// The group.
        group: String,
    },

    /// 403 from the broker on an admin route.
    #[error("broker {broker}: forbidden: your token is not a broker administrator's (give --admin-token-file for the bootstrap admin)")]
    NotAdmin {
        /// Broker base URL.
        broker: String,
    },

    /// 503 from the broker, or it could not be reached.
    #[error("broker {broker} unavailable, try again ({reason})")]
    Unavailable {
        /// Broker base URL.
        broker: String,
        /// What happened (no body).
        reason: String,
    },

    /// The broker's TLS certificate does not verify against the trusted CAs: a trust
    /// problem, which trying again does not fix.
    #[error("broker {broker}: its TLS certificate is not trusted ({reason}); give the CA that issued it with --broker-ca FILE (or broker_ca in config.toml; on grid hosts /etc/grid-security/certificates is used when it exists). Trying again will not help")]
    BrokerNotTrusted {
        /// Broker base URL.
        broker: String,
        /// What the TLS library said about the certificate.
        reason: String,
    },

    /// 404 from the broker.
    #[error("broker {broker}: {what} not found")]
    NotFound {
        /// Broker base URL.
        broker: String,
        /// What was asked for.
        what: String,
    },

    /// Any other unexpected answer.
    #[error("broker {broker}: HTTP {status} {code}: {message}")]
    Status {
        /// Broker base URL.
        broker: String,
        /// HTTP status.
        status: u16,
        /// The contract's error code, if any.
        code: String,
        /// The contract's safe message, bounded.
        message: String,
    },

    /// The broker's answer does not follow the contract.
    #[error("broker {broker}: unexpected answer: {reason}")]
    Protocol {
        /// Broker base URL.
        broker: String,
        /// What is wrong.
        reason: String,
    },

    /// A payload names a broker that is not allowed here. The message must not talk the user
    /// into trusting it: an image is attacker-controlled, and naming a broker the attacker runs
    /// is how one would collect the user's tokens.
    #[error("the layer names key broker {broker}, which is not a broker you chose (yours: {allowed}); your token is only sent to the broker you configured. An image that names an unexpected broker may be an attempt to collect tokens: check where the image came from")]
    BrokerNotAllowed {
        /// The broker in the payload.
        broker: String,
        /// The allowed brokers, comma-separated, or "none configured".
        allowed: String,
    },

    /// A group recipient but no broker.
    #[error("no key broker is configured: give --broker URL, set LAYERCRYPT_BROKER, or put broker = \"https://…\" in {config}")]
    NoBroker {
        /// The user config file path.
        config: String,
    },

    /// Group recipients that cannot be used together or at all.
    #[error("recipient {recipient}: {reason}")]
    Recipient {
        /// As given.
        recipient: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// age encryption or decryption failed.
    #[error("age: {0}")]
    Age(String),

    /// No token, or a token source failed.
    #[error("access token: {0}")]
    Token(String),

    /// The device login or a token refresh failed.
    #[error("login at {issuer}: {reason}")]
    Login {
        /// The issuer.
        issuer: String,
        /// What happened and what to do.
        reason: String,
    },

    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A plain `http://` broker that is not on this machine: the token and the released
    /// layer keys would cross the network in clear.
    #[error("refusing plain http:// to key broker {broker}, which is not on this machine: your token and the layer keys would cross the network in clear; use its https:// URL (or pass --insecure for a test setup)")]
    CleartextBroker {
        /// The broker URL.
        broker: String,
    },

    /// A broker URL that is not one.
    #[error(transparent)]
    BrokerUrl(#[from] layercrypt_proto::UrlError),

    /// A value given by the user is unusable.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// True for the broker's "who are you" and "not you" refusals (401 and 403).
    pub fn is_access_refused(&self) -> bool {
        matches!(
            self,
            Error::Unauthenticated { .. }
                | Error::CertificateRefused { .. }
                | Error::NotMember { .. }
                | Error::NotAdmin { .. }
        )
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
