//! What the broker stores: groups with versioned keys and grants, and audit events.

use ipnet::IpNet;
use layercrypt_proto::payload::GroupName;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Public part of one key version of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// Version number, from 1.
    pub version: u32,
    /// The age X25519 recipient (`age1…`).
    pub recipient: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

/// Who a grant admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    /// An entitlement (`eduperson_entitlement` / `entitlements` value), exact or as a prefix.
    Entitlement {
        /// The value, e.g. `urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu`.
        entitlement: String,
        /// Match every value starting with `entitlement`.
        #[serde(default)]
        prefix: bool,
    },
    /// A subject (`voperson_id`, else `sub`).
    Subject {
        /// The subject.
        subject: String,
    },
    /// A certificate subject DN in the `/DC=…/CN=…` form.
    Dn {
        /// The DN.
        dn: String,
    },
}

/// A grant of access to a group's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Stable id, `g-<random>`.
    pub id: String,
    /// Who.
    #[serde(flatten)]
    pub principal: Principal,
    /// Only from these client networks (empty = anywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<IpNet>,
    /// Not after this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

/// A group: its key versions and grants. Private keys are not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The name.
    pub name: GroupName,
    /// The version that encrypts.
    pub current_version: u32,
    /// Every version (older ones still decrypt).
    pub versions: Vec<KeyVersion>,
    /// Grants.
    pub grants: Vec<Grant>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

impl Group {
    /// The current key version.
    pub fn current(&self) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|v| v.version == self.current_version)
    }
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The key was released.
    Allow,
    /// It was not.
    Deny,
}

/// One audit record: every release and every denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Token subject, if the caller used a token.
    pub subject: Option<String>,
    /// Certificate DN, if the caller used a certificate.
    pub dn: Option<String>,
    /// Group asked for (if the payload could be read).
    pub group: Option<String>,
    /// Key version asked for.
    pub key_version: Option<u32>,
    /// Layer digest the caller named.
    pub layer_digest: Option<String>,
    /// Image the caller named.
    pub image: Option<String>,
    /// Client address.
    pub client: Option<String>,
    /// The decision.
    pub decision: Decision,
    /// Why (the detail the caller is not told): e.g. "no grant matches", "token expired",
    /// "grant g-… matched entitlement …".
    pub reason: String,
}

/// A query of the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this group.
    pub group: Option<String>,
    /// Only this subject or DN.
    pub subject: Option<String>,
    /// Only events at or after this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// At most this many (the newest), default 1000.
    pub limit: Option<usize>,
}
