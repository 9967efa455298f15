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

/// What an audit record is about. Records written before kinds existed have no `kind` field
/// and read as [`AuditKind::Unwrap`]: every record of that format came from `POST /v1/unwrap`
/// (unauthenticated attempts included, their reason starting with `unauthenticated:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An unwrap by an authenticated caller: a release or a denial.
    #[default]
    Unwrap,
    /// A request refused before an identity was known (no or invalid credential, or the
    /// per-address limit), on any route; repeated ones are summarised (`count`, `until`).
    Unauthenticated,
    /// An admin action (`action`).
    Admin,
}

impl AuditKind {
    /// Every kind, for help texts and error messages.
    pub const ALL: [AuditKind; 3] = [
        AuditKind::Unwrap,
        AuditKind::Unauthenticated,
        AuditKind::Admin,
    ];

    /// The name on the wire (`unwrap`, `unauthenticated`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Unwrap => "unwrap",
            AuditKind::Unauthenticated => "unauthenticated",
            AuditKind::Admin => "admin",
        }
    }
}

impl std::str::FromStr for AuditKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| "kind must be one of unwrap, unauthenticated, admin".to_owned())
    }
}

/// An admin action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    /// A group was created (`key_version` 1).
    CreateGroup,
    /// A group and all its keys were deleted.
    DeleteGroup,
    /// A grant was added (`grant`).
    AddGrant,
    /// A grant was revoked (`grant` as it was).
    RemoveGrant,
    /// A new key version became current (`key_version`).
    Rotate,
}

/// The credential an actor used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// An OIDC access token (`subject`).
    Token,
    /// A TLS client certificate (`dn`).
    Certificate,
    /// The bootstrap admin token (no subject or DN).
    BootstrapToken,
}

/// One audit record: every release and every denial, every admin action, and (summarised
/// when they repeat) requests refused before authentication.
///
/// Formats are promises: fields added after the first release are optional, so records of
/// older brokers (`tests/data/audit-v1.jsonl`) still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (for a summary: the first event it stands for).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What the record is about.
    #[serde(default)]
    pub kind: AuditKind,
    /// Token subject, if the caller used a token.
    pub subject: Option<String>,
    /// Certificate DN, if the caller used a certificate.
    pub dn: Option<String>,
    /// Group asked for (if the payload could be read), or the admin action's group.
    pub group: Option<String>,
    /// Key version asked for; for `create_group` and `rotate`, the new current version.
    pub key_version: Option<u32>,
    /// Layer digest the caller named.
    pub layer_digest: Option<String>,
    /// Image the caller named.
    pub image: Option<String>,
    /// Client address.
    pub client: Option<String>,
    /// The decision (admin actions: `allow`, they are written once done).
    pub decision: Decision,
    /// Why (the detail the caller is not told): e.g. "no grant matches", "token expired",
    /// "grant g-… matched entitlement …"; for admin actions, what changed.
    pub reason: String,
    /// The admin action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<AdminAction>,
    /// The credential of the actor (admin actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// The grant added or revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// A summary: how many refusals this one record stands for (`time` to `until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// A summary: the last refusal it stands for.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<OffsetDateTime>,
}

impl AuditEvent {
    /// A record of `kind` at `time` with nothing else set (decision `deny`).
    pub fn new(kind: AuditKind, time: OffsetDateTime, reason: impl Into<String>) -> AuditEvent {
        AuditEvent {
            time,
            kind,
            subject: None,
            dn: None,
            group: None,
            key_version: None,
            layer_digest: None,
            image: None,
            client: None,
            decision: Decision::Deny,
            reason: reason.into(),
            action: None,
            credential: None,
            grant: None,
            count: None,
            until: None,
        }
    }
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
    /// Only this kind.
    #[serde(default)]
    pub kind: Option<AuditKind>,
}
