//! Errors of the broker service. The HTTP layer maps them to responses (`api::ApiError`);
//! denials carry no detail because the caller must not learn which check failed (the audit
//! log has it).

use crate::auth::AuthError;
use crate::store::StoreError;

/// What went wrong in a broker operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The request is malformed; the message is safe to show.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No or invalid credential.
    #[error("unauthenticated")]
    Unauthenticated,
    /// Valid credential, not allowed.
    #[error("forbidden")]
    Forbidden,
    /// Not found (only told to admins, or for public data); the message is safe to show.
    #[error("not found: {0}")]
    NotFound(String),
    /// Conflicts with the current state; the message is safe to show.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store or the identity provider is unavailable; the cause is logged, not shown.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or damaged data; the cause is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchGroup(g) => {
                BrokerError::NotFound(format!("group {g} does not exist"))
            }
            StoreError::GroupExists(g) => {
                BrokerError::Conflict(format!("group {g} already exists"))
            }
            StoreError::Unavailable(_) | StoreError::Io(_) => {
                BrokerError::Unavailable(e.to_string())
            }
            StoreError::Corrupt(_) => BrokerError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for BrokerError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(_) => BrokerError::Unauthenticated,
            AuthError::Unavailable(_) => BrokerError::Unavailable(e.to_string()),
        }
    }
}
