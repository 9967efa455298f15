//! The layercrypt key broker: holds group keys (age X25519) and releases a layer's private
//! options to callers whose identity (EGI Check-in token or IGTF certificate) matches a grant.
//!
//! - [`model`]: groups, key versions, grants, audit events.
//! - [`store`]: the [`store::KeyStore`] trait; `embedded` (default) and `vault` (OpenBao/Vault).
//! - [`auth`]: identities from OIDC access tokens and from X.509 client certificates.
//! - [`denials`]: refusals before authentication, recorded in aggregate.
//! - [`policy`]: grant evaluation; [`service`]: the core ([`service::Broker`]), independent of HTTP.
//! - [`api`]: the HTTP API (`docs/broker-api.md`); [`server`]: TLS listener and wiring from
//!   [`config::Config`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod agekey;
pub mod api;
pub mod auth;
pub mod config;
pub mod denials;
pub mod error;
mod keycache;
pub mod model;
pub mod policy;
mod recipients;
pub mod server;
pub mod service;
pub mod store;

pub use error::BrokerError;
