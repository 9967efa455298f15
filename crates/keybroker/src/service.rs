//! The broker core, independent of HTTP: authentication, unwrap (grant evaluation, age
//! decryption, audit) and the admin operations.

use std::io::Read as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ipnet::IpNet;
use layercrypt_proto::payload::{GroupName, GroupPayload};
use layercrypt_proto::url::{normalize_broker_url, same_broker};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::agekey::GroupIdentity;
use crate::auth::{AuthError, Identity, Method, Token, TokenVerifier};
use crate::denials::{Denials, Refusal};
use crate::error::BrokerError;
use crate::keycache::IdentityCache;
use crate::model::{
    AdminAction, AuditEvent, AuditKind, AuditQuery, Credential, Decision, Grant, Group, Principal,
};
use crate::policy::{self, Evaluation};
use crate::recipients::RecipientCache;
use crate::store::{KeyStore, NewKey};

/// Largest private options released (the JSON of a layer's key, nonce and digest is far
/// smaller).
pub const MAX_OPTSDATA_LEN: usize = 64 * 1024;
/// Largest `layer_digest` accepted in an unwrap request.
pub const MAX_DIGEST_LEN: usize = 256;
/// Largest `image` accepted in an unwrap request.
pub const MAX_IMAGE_LEN: usize = 2048;
/// Largest value of a grant's principal.
pub const MAX_PRINCIPAL_LEN: usize = 1024;
/// Most networks of one grant.
pub const MAX_NETWORKS: usize = 64;
/// Default and largest number of audit events returned by one query.
pub const DEFAULT_AUDIT_LIMIT: usize = 1000;
/// Largest audit query limit.
pub const MAX_AUDIT_LIMIT: usize = 10_000;

/// Verifies a TLS client certificate chain (DER, leaf first).
pub type CertVerifyFn = dyn Fn(&[Vec<u8>]) -> Result<Identity, AuthError> + Send + Sync;

/// Settings of the core.
pub struct BrokerSettings {
    /// This broker's public URL: the `broker` field of payloads it accepts (compared in the
    /// normal form of `layercrypt_proto::url`).
    pub public_url: String,
    /// Callers whose entitlements contain this value are admins.
    pub admin_entitlement: Option<String>,
    /// The bootstrap admin token.
    pub admin_token: Option<Token>,
    /// Window over which refusals before authentication are summarised per client network
    /// (the first of a window is recorded in full).
    pub unauthenticated_window: Duration,
    /// How long a group's recipient (or its absence) is served from memory.
    pub recipient_cache_ttl: Duration,
}

/// Default of [`BrokerSettings::unauthenticated_window`].
pub const DEFAULT_UNAUTHENTICATED_WINDOW: Duration = Duration::from_secs(60);
/// Default of [`BrokerSettings::recipient_cache_ttl`].
pub const DEFAULT_RECIPIENT_CACHE_TTL: Duration = Duration::from_secs(10);

impl BrokerSettings {
    /// Settings with the defaults for everything but the URL, the admin entitlement and the
    /// bootstrap token.
    pub fn new(
        public_url: impl Into<String>,
        admin_entitlement: Option<String>,
        admin_token: Option<Token>,
    ) -> BrokerSettings {
        BrokerSettings {
            public_url: public_url.into(),
            admin_entitlement,
            admin_token,
            unauthenticated_window: DEFAULT_UNAUTHENTICATED_WINDOW,
            recipient_cache_ttl: DEFAULT_RECIPIENT_CACHE_TTL,
        }
    }
}

/// Who performs an admin action, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The admin.
    pub identity: &'a Identity,
    /// The client address.
    pub client: Option<IpAddr>,
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("public_url", &self.public_url)
            .field("admin_entitlement", &self.admin_entitlement)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("unauthenticated_window", &self.unauthenticated_window)
            .field("recipient_cache_ttl", &self.recipient_cache_ttl)
            .finish()
    }
}

/// A layer's private options released by [`Broker::unwrap`]; zeroized on drop, no Debug.
pub struct Optsdata(Zeroizing<Vec<u8>>);

impl Optsdata {
    /// The bytes (grep for `expose_secret` to find every use).
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

/// An unwrap request as it arrived (the API layer only parsed the JSON).
#[derive(Debug, Clone, Default)]
pub struct UnwrapRequest {
    /// Standard base64 of the layercrypt provider payload.
    pub payload: String,
    /// The layer digest the caller names (audit only).
    pub layer_digest: Option<String>,
    /// The image the caller names (audit only).
    pub image: Option<String>,
}

/// The public key of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    /// The group.
    pub group: GroupName,
    /// Current key version.
    pub version: u32,
    /// Its age recipient.
    pub recipient: String,
    /// This broker's public URL.
    pub broker: String,
}

/// A grant as an admin submits it (no id, no creation time), validated by
/// [`Broker::add_grant`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// Entitlement value or prefix.
    pub entitlement: Option<String>,
    /// Match entitlements by prefix.
    pub prefix: Option<bool>,
    /// Subject.
    pub subject: Option<String>,
    /// Certificate DN.
    pub dn: Option<String>,
    /// CIDR networks.
    #[serde(default)]
    pub networks: Vec<String>,
    /// RFC 3339 expiry.
    pub expires: Option<String>,
}

/// The broker core.
pub struct Broker {
    store: Arc<dyn KeyStore>,
    tokens: Arc<dyn TokenVerifier>,
    certs: Option<Arc<CertVerifyFn>>,
    settings: BrokerSettings,
    admin_token_digest: Option<[u8; 32]>,
    identities: IdentityCache,
    denials: Denials,
    recipients: RecipientCache,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Broker {
    /// A broker over `store`, verifying tokens with `tokens` and certificate chains with
    /// `certs` (None: certificates are not accepted).
    pub fn new(
        store: Arc<dyn KeyStore>,
        tokens: Arc<dyn TokenVerifier>,
        certs: Option<Arc<CertVerifyFn>>,
        mut settings: BrokerSettings,
    ) -> Broker {
        // The one normal form (`layercrypt_proto::url`), which the CLI also writes into
        // payloads: a `public_url` of `HTTPS://Broker.Example.org:443/` is the same broker as
        // `https://broker.example.org`.
        if let Ok(url) = normalize_broker_url(&settings.public_url) {
            settings.public_url = url;
        }
        let admin_token_digest = settings
            .admin_token
            .as_ref()
            .map(|t| digest(t.expose_secret()));
        let denials = Denials::new(settings.unauthenticated_window);
        let recipients = RecipientCache::new(settings.recipient_cache_ttl);
        Broker {
            store,
            tokens,
            certs,
            settings,
            admin_token_digest,
            identities: IdentityCache::default(),
            denials,
            recipients,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// Authenticates a bearer token: the bootstrap admin token (compared in constant time),
    /// else an OIDC access token.
    pub async fn authenticate_bearer(&self, token: &Token) -> Result<Identity, AuthError> {
        if let Some(expected) = &self.admin_token_digest {
            // Both sides hashed first so that the comparison does not depend on lengths either.
            if bool::from(digest(token.expose_secret()).ct_eq(expected)) {
                return Ok(Identity {
                    method: Method::BootstrapAdmin,
                    subject: None,
                    dn: None,
                    entitlements: vec![],
                    expires_at: None,
                });
            }
        }
        self.tokens.verify(token).await
    }

    /// Authenticates a TLS client certificate chain (DER, leaf first).
    pub async fn authenticate_certificate(
        &self,
        chain: Arc<Vec<Vec<u8>>>,
    ) -> Result<Identity, AuthError> {
        let Some(verify) = self.certs.clone() else {
            return Err(AuthError::Invalid(
                "certificate authentication is not configured".into(),
            ));
        };
        // Signature checks of the chain are CPU work.
        tokio::task::spawn_blocking(move || verify(&chain))
            .await
            .map_err(|e| {
                AuthError::Unavailable(format!("certificate verification task failed: {e}"))
            })?
    }

    /// True if `identity` is an admin.
    pub fn is_admin(&self, identity: &Identity) -> bool {
        match identity.method {
            Method::BootstrapAdmin => true,
            Method::Token => self
                .settings
                .admin_entitlement
                .as_ref()
                .is_some_and(|a| identity.entitlements.iter().any(|e| e == a)),
            Method::Certificate => false,
        }
    }

    /// True if the store and the token issuer are usable.
    pub async fn ready(&self) -> (Result<(), BrokerError>, bool) {
        let (store, tokens) = tokio::join!(self.store.ready(), self.tokens.ready());
        (store.map_err(BrokerError::from), tokens)
    }

    /// Records that a request to `route` was refused before an identity was known (no or
    /// invalid credential). The first refusal from a client network in a window is written
    /// in full before this returns; the others are counted and summarised when the window
    /// closes ([`Broker::flush_denials`]), so a flood costs one record per client and window.
    pub async fn audit_unauthenticated(&self, client: Option<IpAddr>, route: &str, reason: &str) {
        let reason = format!("unauthenticated ({route}): {reason}");
        let outcome = self.denials.note(client, Refusal::Failed, &reason);
        if let Some(summary) = outcome.closed {
            self.write_summaries(vec![summary]).await;
        }
        if outcome.record_in_full {
            let event = AuditEvent {
                client: client.map(|c| c.to_canonical().to_string()),
                ..AuditEvent::new(
                    AuditKind::Unauthenticated,
                    OffsetDateTime::now_utc(),
                    reason,
                )
            };
            if let Err(e) = self.store.append_audit(&event).await {
                tracing::error!(error = %e, "audit write failed");
            }
        }
    }

    /// Counts a request the per-address limit refused before authentication (429).
    pub async fn audit_limited(&self, client: Option<IpAddr>) {
        if let Some(summary) = self.denials.note(client, Refusal::Limited, "").closed {
            self.write_summaries(vec![summary]).await;
        }
    }

    /// Writes the summaries of closed windows (of every window if `all`, at shutdown);
    /// returns how many were written. Summaries whose write fails are kept for the next
    /// flush.
    pub async fn flush_denials(&self, all: bool) -> usize {
        let due = self.denials.take_due(all);
        self.write_summaries(due).await
    }

    async fn write_summaries(&self, events: Vec<AuditEvent>) -> usize {
        let mut written = 0;
        let mut events = events.into_iter();
        for event in events.by_ref() {
            if let Err(e) = self.store.append_audit(&event).await {
                tracing::error!(error = %e, "audit write of a refusal summary failed; kept for the next flush");
                let mut rest = vec![event];
                rest.extend(events);
                self.denials.restore(rest);
                break;
            }
            written += 1;
        }
        written
    }

    /// Flushes summaries of closed windows every window, until the broker is dropped.
    pub fn spawn_denial_flusher(self: &Arc<Self>) {
        let broker = Arc::downgrade(self);
        let period = self.denials.window();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                broker.flush_denials(false).await;
            }
        });
    }

    /// Asks the store to reopen its audit log (SIGHUP, after logrotate moved it).
    pub async fn reopen_audit(&self) -> Result<(), BrokerError> {
        Ok(self.store.reopen_audit().await?)
    }

    /// Releases the private options of a layer to `identity` if a grant of the payload's group
    /// admits it. Every allow and every deny is audited with the detail; the error returned
    /// carries none.
    pub async fn unwrap(
        &self,
        identity: &Identity,
        client: Option<IpAddr>,
        request: &UnwrapRequest,
    ) -> Result<Optsdata, BrokerError> {
        let mut event = AuditEvent {
            subject: identity.subject.clone(),
            dn: identity.dn.clone(),
            layer_digest: request.layer_digest.clone(),
            image: request.image.clone(),
            client: client.map(|c| c.to_string()),
            ..AuditEvent::new(AuditKind::Unwrap, OffsetDateTime::now_utc(), String::new())
        };
        let outcome = self
            .unwrap_inner(identity, client, request, &mut event)
            .await;
        event.decision = if outcome.is_ok() {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let audited = self.store.append_audit(&event).await;
        match (outcome, audited) {
            (Ok(opts), Ok(())) => {
                // debug, not info: the audit log is the record of every decision, and a log
                // line per release would double the per-request cost at load.
                tracing::debug!(group = ?event.group, version = ?event.key_version, "unwrap allowed");
                Ok(opts)
            }
            // No release without an audit record.
            (Ok(_), Err(e)) => Err(BrokerError::Unavailable(format!("audit write failed: {e}"))),
            (Err(err), audited) => {
                if let Err(e) = audited {
                    tracing::error!(error = %e, "audit write failed");
                }
                tracing::debug!(group = ?event.group, reason = %event.reason, "unwrap denied");
                Err(err)
            }
        }
    }

    async fn unwrap_inner(
        &self,
        identity: &Identity,
        client: Option<IpAddr>,
        request: &UnwrapRequest,
        event: &mut AuditEvent,
    ) -> Result<Optsdata, BrokerError> {
        fn deny<T>(
            event: &mut AuditEvent,
            err: BrokerError,
            reason: String,
        ) -> Result<T, BrokerError> {
            event.reason = reason;
            Err(err)
        }
        if request
            .layer_digest
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DIGEST_LEN)
        {
            event.layer_digest = None;
            return deny(
                event,
                bad(format!("layer_digest is longer than {MAX_DIGEST_LEN}")),
                "layer_digest too long".into(),
            );
        }
        if request
            .image
            .as_ref()
            .is_some_and(|d| d.len() > MAX_IMAGE_LEN)
        {
            event.image = None;
            return deny(
                event,
                bad(format!("image is longer than {MAX_IMAGE_LEN}")),
                "image too long".into(),
            );
        }
        let Ok(bytes) = STANDARD.decode(request.payload.as_bytes()) else {
            return deny(
                event,
                bad("payload is not standard base64".into()),
                "payload is not base64".into(),
            );
        };
        let payload = match GroupPayload::parse(&bytes) {
            Ok(p) => p,
            Err(e) => return deny(event, bad(e.to_string()), format!("payload rejected: {e}")),
        };
        event.group = Some(payload.group.to_string());
        event.key_version = Some(payload.version);
        if !same_broker(&payload.broker, &self.settings.public_url) {
            let reason = format!(
                "payload names broker {}, this broker is {}",
                payload.broker, self.settings.public_url
            );
            return deny(event, BrokerError::Forbidden, reason);
        }
        let group = match self.store.group(&payload.group).await {
            Ok(Some(g)) => g,
            Ok(None) => {
                // Only admins may learn which groups exist.
                let err = if self.is_admin(identity) {
                    BrokerError::NotFound(format!("group {} does not exist", payload.group))
                } else {
                    BrokerError::Forbidden
                };
                return deny(event, err, "group does not exist".into());
            }
            Err(e) => return deny(event, e.into(), "key store unavailable".into()),
        };
        let grant_reason =
            match policy::evaluate(&group.grants, identity, client, OffsetDateTime::now_utc()) {
                Evaluation::Allow { reason, .. } => reason,
                Evaluation::Deny { reason } => return deny(event, BrokerError::Forbidden, reason),
            };
        // The public half, for the key derivation and the cache key; the group publishes it.
        let Some(recipient) = group
            .versions
            .iter()
            .find(|v| v.version == payload.version)
            .map(|v| v.recipient.as_str())
        else {
            let reason = format!(
                "{grant_reason}, but key version {} does not exist",
                payload.version
            );
            return deny(event, BrokerError::Forbidden, reason);
        };
        let identity = match self
            .identities
            .get(payload.group.as_str(), payload.version, recipient)
        {
            Some(identity) => identity,
            None => match self.load_identity(&payload, recipient).await {
                Ok(identity) => identity,
                Err((err, why)) => return deny(event, err, format!("{grant_reason}, but {why}")),
            },
        };
        // Inline: one X25519 and a few hundred bytes of ChaCha20-Poly1305 cost tens of µs,
        // less than handing the work to another thread and back.
        match decrypt_with(&identity, &payload.age_ciphertext) {
            Ok(opts) => {
                event.reason = grant_reason;
                Ok(opts)
            }
            Err(why) => {
                let reason = format!("{grant_reason}, but {why}");
                deny(event, BrokerError::Forbidden, reason)
            }
        }
    }

    /// Reads, unseals and parses a group key version the cache does not hold, and keeps it.
    async fn load_identity(
        &self,
        payload: &GroupPayload,
        recipient: &str,
    ) -> Result<Arc<GroupIdentity>, (BrokerError, String)> {
        let secret = match self.store.identity(&payload.group, payload.version).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err((
                    BrokerError::Forbidden,
                    format!("key version {} does not exist", payload.version),
                ))
            }
            Err(e) => return Err((e.into(), "the key store is unavailable".into())),
        };
        let identity = GroupIdentity::new(&secret, recipient).ok_or_else(|| {
            (
                BrokerError::Internal(format!(
                    "the stored key of group {} version {} does not parse",
                    payload.group, payload.version
                )),
                "the stored key does not parse as an age X25519 identity and recipient".into(),
            )
        })?;
        let identity = Arc::new(identity);
        self.identities.insert(
            payload.group.as_str(),
            payload.version,
            recipient,
            identity.clone(),
        );
        Ok(identity)
    }

    /// The current public key of a group (no authentication: it is needed to encrypt).
    /// Served from a short-lived cache ([`crate::recipients`]).
    pub async fn recipient(&self, name: &GroupName) -> Result<Recipient, BrokerError> {
        let answer = match self.recipients.get(name.as_str()) {
            Ok(answer) => answer,
            Err(ticket) => {
                let answer = match self.store.group(name).await? {
                    None => None,
                    Some(group) => {
                        let current = group.current().ok_or_else(|| {
                            BrokerError::Internal(format!(
                                "group {name} has no current key version"
                            ))
                        })?;
                        Some(Recipient {
                            group: group.name.clone(),
                            version: current.version,
                            recipient: current.recipient.clone(),
                            broker: self.settings.public_url.clone(),
                        })
                    }
                };
                self.recipients.put(name.as_str(), answer.clone(), ticket);
                answer
            }
        };
        answer.ok_or_else(|| not_found(name))
    }

    /// Store reads made by [`Broker::recipient`] so far (cache misses).
    pub fn recipient_reads(&self) -> u64 {
        self.recipients.misses()
    }

    /// Writes an admin action's record; the action is answered only once it is durable.
    async fn audit_admin(
        &self,
        actor: Actor<'_>,
        action: AdminAction,
        group: &GroupName,
        reason: String,
        change: impl FnOnce(&mut AuditEvent),
    ) -> Result<(), BrokerError> {
        let id = actor.identity;
        let mut event = AuditEvent {
            subject: id.subject.clone(),
            dn: id.dn.clone(),
            group: Some(group.to_string()),
            client: actor.client.map(|c| c.to_canonical().to_string()),
            decision: Decision::Allow,
            action: Some(action),
            credential: Some(match id.method {
                Method::Token => Credential::Token,
                Method::Certificate => Credential::Certificate,
                Method::BootstrapAdmin => Credential::BootstrapToken,
            }),
            ..AuditEvent::new(AuditKind::Admin, OffsetDateTime::now_utc(), reason)
        };
        change(&mut event);
        self.store.append_audit(&event).await.map_err(|e| {
            BrokerError::Unavailable(format!(
                "audit write of admin action {action:?} failed: {e}"
            ))
        })
    }

    /// Records that an authenticated caller who is not an admin tried an admin route.
    pub async fn audit_admin_refused(
        &self,
        identity: &Identity,
        client: Option<IpAddr>,
        route: &str,
    ) {
        let event = AuditEvent {
            subject: identity.subject.clone(),
            dn: identity.dn.clone(),
            client: client.map(|c| c.to_canonical().to_string()),
            ..AuditEvent::new(
                AuditKind::Admin,
                OffsetDateTime::now_utc(),
                format!("not an admin: {route}"),
            )
        };
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(error = %e, "audit write failed");
        }
    }

    /// Creates a group with a fresh key (version 1). Audited; if the record cannot be
    /// written the group is deleted again and the error returned.
    pub async fn create_group(
        &self,
        actor: Actor<'_>,
        name: &GroupName,
    ) -> Result<Group, BrokerError> {
        let key = generate_key().await?;
        let group = self.store.create_group(name, key).await?;
        self.recipients.forget(name.as_str());
        let recipient = group
            .current()
            .map(|v| v.recipient.clone())
            .unwrap_or_default();
        let audited = self
            .audit_admin(
                actor,
                AdminAction::CreateGroup,
                name,
                format!("created with key version 1 (recipient {recipient})"),
                |e| e.key_version = Some(1),
            )
            .await;
        if let Err(e) = audited {
            if let Err(undo) = self.store.delete_group(name).await {
                tracing::error!(group = %name, error = %undo, "group created but neither audited nor deleted again");
            }
            self.recipients.forget(name.as_str());
            return Err(e);
        }
        tracing::info!(group = %name, "group created");
        Ok(group)
    }

    /// All groups.
    pub async fn groups(&self) -> Result<Vec<Group>, BrokerError> {
        Ok(self.store.groups().await?)
    }

    /// One group.
    pub async fn group(&self, name: &GroupName) -> Result<Group, BrokerError> {
        self.existing(name).await
    }

    /// Deletes a group and its keys. Audited (the record lists what went with it); if the
    /// record cannot be written the deletion stands and the error is returned.
    pub async fn delete_group(
        &self,
        actor: Actor<'_>,
        name: &GroupName,
    ) -> Result<(), BrokerError> {
        let before = self.existing(name).await?;
        if !self.store.delete_group(name).await? {
            return Err(not_found(name));
        }
        self.identities.forget_group(name.as_str());
        self.recipients.forget(name.as_str());
        tracing::info!(group = %name, "group deleted");
        let grants: Vec<&str> = before.grants.iter().map(|g| g.id.as_str()).collect();
        self.audit_admin(
            actor,
            AdminAction::DeleteGroup,
            name,
            format!(
                "deleted with key versions 1-{} and grants [{}]",
                before.current_version,
                grants.join(", ")
            ),
            |_| {},
        )
        .await
    }

    /// Validates and adds a grant. Audited; if the record cannot be written the grant is
    /// removed again and the error returned: no grant without its record.
    pub async fn add_grant(
        &self,
        actor: Actor<'_>,
        name: &GroupName,
        new: NewGrant,
    ) -> Result<Grant, BrokerError> {
        let now = OffsetDateTime::now_utc();
        let grant = validate_grant(new, now, new_grant_id())?;
        // Fail early with 404 rather than relying on every store's error kind.
        self.existing(name).await?;
        let group = self.store.add_grant(name, grant.clone()).await?;
        let grant = group
            .grants
            .into_iter()
            .find(|g| g.id == grant.id)
            .unwrap_or(grant);
        let audited = self
            .audit_admin(
                actor,
                AdminAction::AddGrant,
                name,
                format!("added grant {}", grant.id),
                |e| e.grant = Some(grant.clone()),
            )
            .await;
        if let Err(e) = audited {
            if let Err(undo) = self.store.remove_grant(name, &grant.id).await {
                tracing::error!(group = %name, grant = %grant.id, error = %undo, "grant added but neither audited nor removed again");
            }
            return Err(e);
        }
        tracing::info!(group = %name, grant = %grant.id, "grant added");
        Ok(grant)
    }

    /// Removes a grant. Audited with the grant as it was; if the record cannot be written
    /// the removal stands and the error is returned.
    pub async fn remove_grant(
        &self,
        actor: Actor<'_>,
        name: &GroupName,
        grant_id: &str,
    ) -> Result<(), BrokerError> {
        let before = self.existing(name).await?;
        if !self.store.remove_grant(name, grant_id).await? {
            return Err(BrokerError::NotFound(format!(
                "grant {grant_id} does not exist"
            )));
        }
        tracing::info!(group = %name, grant = %grant_id, "grant removed");
        let removed = before.grants.into_iter().find(|g| g.id == grant_id);
        self.audit_admin(
            actor,
            AdminAction::RemoveGrant,
            name,
            format!("revoked grant {grant_id}"),
            |e| e.grant = removed,
        )
        .await
    }

    /// Adds a key version, which becomes current; older versions still decrypt. Audited;
    /// if the record cannot be written the rotation stands and the error is returned.
    pub async fn rotate(&self, actor: Actor<'_>, name: &GroupName) -> Result<Group, BrokerError> {
        let before = self.existing(name).await?;
        let key = generate_key().await?;
        let group = self.store.rotate(name, key).await?;
        self.recipients.forget(name.as_str());
        tracing::info!(group = %name, version = group.current_version, "group key rotated");
        let recipient = group
            .current()
            .map(|v| v.recipient.clone())
            .unwrap_or_default();
        let version = group.current_version;
        self.audit_admin(
            actor,
            AdminAction::Rotate,
            name,
            format!(
                "rotated from key version {} to {version} (recipient {recipient})",
                before.current_version
            ),
            |e| e.key_version = Some(version),
        )
        .await?;
        Ok(group)
    }

    /// Reads the audit log (newest last).
    pub async fn audit(&self, mut query: AuditQuery) -> Result<Vec<AuditEvent>, BrokerError> {
        let limit = query.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
        if limit == 0 || limit > MAX_AUDIT_LIMIT {
            return Err(bad(format!("limit must be 1-{MAX_AUDIT_LIMIT}")));
        }
        query.limit = Some(limit);
        Ok(self.store.audit(&query).await?)
    }

    async fn existing(&self, name: &GroupName) -> Result<Group, BrokerError> {
        self.store.group(name).await?.ok_or_else(|| not_found(name))
    }
}

fn bad(message: String) -> BrokerError {
    BrokerError::BadRequest(message)
}

fn not_found(name: &GroupName) -> BrokerError {
    BrokerError::NotFound(format!("group {name} does not exist"))
}

fn new_grant_id() -> String {
    let bytes: [u8; 12] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("g-{hex}")
}

async fn generate_key() -> Result<NewKey, BrokerError> {
    tokio::task::spawn_blocking(|| {
        use age::secrecy::ExposeSecret as _;
        let identity = age::x25519::Identity::generate();
        NewKey {
            recipient: identity.to_public().to_string(),
            identity: Zeroizing::new(identity.to_string().expose_secret().to_owned()),
        }
    })
    .await
    .map_err(|e| BrokerError::Internal(format!("key generation task failed: {e}")))
}

/// Decrypts the age ciphertext with the stored identity; the error says why (for the audit
/// log) and contains no key material.
#[cfg(test)]
fn decrypt(secret: &str, ciphertext: &[u8]) -> Result<Optsdata, String> {
    let identity: age::x25519::Identity = secret
        .parse()
        .map_err(|_| "the stored key does not parse as an age X25519 identity".to_owned())?;
    let recipient = identity.to_public().to_string();
    let identity = GroupIdentity::new(secret, &recipient)
        .ok_or_else(|| "the stored key does not parse as an age X25519 identity".to_owned())?;
    decrypt_with(&identity, ciphertext)
}

/// [`decrypt`] with a parsed group key pair ([`crate::agekey`]).
fn decrypt_with(identity: &GroupIdentity, ciphertext: &[u8]) -> Result<Optsdata, String> {
    let decryptor = age::Decryptor::new(ciphertext)
        .map_err(|e| format!("the payload is not age ciphertext ({e})"))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| format!("the payload does not decrypt with this key version ({e})"))?;
    let mut out = Zeroizing::new(Vec::new());
    let limit = u64::try_from(MAX_OPTSDATA_LEN).unwrap_or(u64::MAX) + 1;
    reader
        .by_ref()
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("the payload does not decrypt ({e})"))?;
    if out.len() > MAX_OPTSDATA_LEN {
        return Err(format!(
            "the private options are larger than {MAX_OPTSDATA_LEN} bytes"
        ));
    }
    Ok(Optsdata(out))
}

/// Validates a grant: exactly one non-empty principal, `prefix` only with an entitlement and
/// ending at a component boundary ([`policy::prefix_at_boundary`]), CIDR networks, an expiry
/// in the future.
pub fn validate_grant(
    new: NewGrant,
    now: OffsetDateTime,
    id: String,
) -> Result<Grant, BrokerError> {
    fn value(field: &str, v: String) -> Result<String, BrokerError> {
        if v.trim().is_empty() || v.len() > MAX_PRINCIPAL_LEN || v.chars().any(char::is_control) {
            return Err(bad(format!(
                "{field} must be 1-{MAX_PRINCIPAL_LEN} characters without control characters"
            )));
        }
        Ok(v)
    }
    let principal = match (new.entitlement, new.subject, new.dn) {
        (Some(e), None, None) => Principal::Entitlement {
            entitlement: value("entitlement", e)?,
            prefix: new.prefix.unwrap_or(false),
        },
        (None, Some(s), None) => Principal::Subject {
            subject: value("subject", s)?,
        },
        (None, None, Some(d)) => {
            let d = value("dn", d)?;
            if !d.starts_with('/') {
                return Err(bad("dn must be in the /DC=…/CN=… form".into()));
            }
            // A DN the one formatter can never write can match no certificate: refuse it now
            // rather than store a grant that silently never applies.
            if let Err(e) = layercrypt_ocicrypt::keys::grid::parse_grid_dn(&d) {
                return Err(bad(format!(
                    "dn can match no certificate ({e}); inside a value write / as \\x2F and + as \\x2B \
                     (copy the DN from the audit record of a refused request)"
                )));
            }
            Principal::Dn { dn: d }
        }
        _ => {
            return Err(bad(
                "a grant needs exactly one of entitlement, subject, dn".into()
            ))
        }
    };
    if new.prefix.is_some() && !matches!(principal, Principal::Entitlement { .. }) {
        return Err(bad("prefix applies only to an entitlement".into()));
    }
    if let Principal::Entitlement {
        entitlement,
        prefix: true,
    } = &principal
    {
        if !policy::prefix_at_boundary(entitlement) {
            return Err(bad(format!(
                "prefix entitlement {entitlement:?} does not end at a component boundary, so it \
                 would also cover longer names ({entitlement:?} followed by \".evil…\"): end it \
                 with ':' for every role and subgroup of the group (\"{entitlement}:\"), with \
                 ':role=' for every role of the group alone, or with '#'; or grant the exact \
                 entitlement without prefix"
            )));
        }
    }
    if new.networks.len() > MAX_NETWORKS {
        return Err(bad(format!("at most {MAX_NETWORKS} networks")));
    }
    let networks = new
        .networks
        .iter()
        .map(|n| {
            n.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
                bad(format!(
                    "network {:?} is not a CIDR block",
                    n.chars().take(64).collect::<String>()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expires = match new.expires {
        None => None,
        Some(s) => {
            let t = OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad("expires must be an RFC 3339 time".into()))?;
            if t <= now {
                return Err(bad("expires must be in the future".into()));
            }
            Some(t)
        }
    };
    Ok(Grant {
        id,
        principal,
        networks,
        expires,
        created: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-06-01 12:00 UTC)
    }

    #[test]
    fn grant_validation() {
        let ok = |g: NewGrant| validate_grant(g, now(), "g-1".into());
        let e = NewGrant {
            entitlement: Some("urn:x:".into()),
            prefix: Some(true),
            ..Default::default()
        };
        let g = ok(e.clone()).expect("valid");
        assert_eq!(
            g.principal,
            Principal::Entitlement {
                entitlement: "urn:x:".into(),
                prefix: true
            }
        );
        assert!(ok(NewGrant::default()).is_err(), "no principal");
        // DNs: what the grid formatter writes is accepted; what it never writes is refused.
        for dn in [
            "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-",
            "/DC=org/DC=terena/DC=tcs/CN=host\\x2Fgrid.example.org",
        ] {
            let dn_grant = NewGrant {
                dn: Some(dn.into()),
                ..Default::default()
            };
            ok(dn_grant).expect(dn);
        }
        let err = ok(NewGrant {
            dn: Some("/DC=org/CN=host/grid.example.org".into()),
            ..Default::default()
        })
        .expect_err("a part without =");
        assert!(
            err.to_string().contains("can match no certificate"),
            "{err}"
        );
        for bare in [
            "urn:x",
            "urn:mace:egi.eu:group:vo.example.org",
            "urn:x:vo:role",
        ] {
            let err = ok(NewGrant {
                entitlement: Some(bare.into()),
                ..e.clone()
            })
            .expect_err(bare);
            assert!(err.to_string().contains("component boundary"), "{err}");
            ok(NewGrant {
                entitlement: Some(bare.into()),
                prefix: Some(false),
                ..Default::default()
            })
            .expect("an exact grant need not end at a boundary");
        }
        for aligned in ["urn:x:vo:", "urn:x:vo:role=", "urn:x:vo:role=member#"] {
            ok(NewGrant {
                entitlement: Some(aligned.into()),
                ..e.clone()
            })
            .expect(aligned);
        }
        assert!(
            ok(NewGrant {
                subject: Some("s".into()),
                ..e.clone()
            })
            .is_err(),
            "two principals"
        );
        assert!(ok(NewGrant {
            subject: Some("s".into()),
            prefix: Some(false),
            ..Default::default()
        })
        .is_err());
        assert!(ok(NewGrant {
            subject: Some(" ".into()),
            ..Default::default()
        })
        .is_err());
        assert!(ok(NewGrant {
            dn: Some("CN=x".into()),
            ..Default::default()
        })
        .is_err());
        assert!(ok(NewGrant {
            dn: Some("/DC=eu/CN=x".into()),
            ..Default::default()
        })
        .is_ok());
        let nets = |n: &[&str]| NewGrant {
            networks: n.iter().map(|s| s.to_string()).collect(),
            ..e.clone()
        };
        let g = ok(nets(&["192.0.2.7/24", "2001:db8::/32"])).expect("valid networks");
        assert_eq!(g.networks[0].to_string(), "192.0.2.0/24");
        assert!(ok(nets(&["192.0.2.0"])).is_err(), "not CIDR");
        assert!(ok(nets(&["192.0.2.0/33"])).is_err());
        let exp = |s: &str| NewGrant {
            expires: Some(s.into()),
            ..e.clone()
        };
        assert!(ok(exp("2027-01-01T00:00:00Z")).is_ok());
        assert!(ok(exp("2026-01-01T00:00:00Z")).is_err(), "past");
        assert!(ok(exp("tomorrow")).is_err());
    }

    #[test]
    fn generated_keys_round_trip() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let key = rt.block_on(generate_key()).expect("key");
        let recipient: age::x25519::Recipient = key.recipient.parse().expect("recipient");
        let ct = age::encrypt(&recipient, b"{\"k\":1}").expect("encrypt");
        assert_eq!(
            decrypt(&key.identity, &ct)
                .expect("decrypt")
                .expose_secret(),
            b"{\"k\":1}"
        );
        let other = rt.block_on(generate_key()).expect("key");
        assert!(decrypt(&other.identity, &ct).is_err());
        assert!(decrypt(&key.identity, b"garbage").is_err());
        let big = age::encrypt(&recipient, &vec![b'x'; MAX_OPTSDATA_LEN + 1]).expect("encrypt");
        assert!(decrypt(&key.identity, &big).is_err());
        let exact = age::encrypt(&recipient, &vec![b'x'; MAX_OPTSDATA_LEN]).expect("encrypt");
        assert_eq!(
            decrypt(&key.identity, &exact)
                .expect("decrypt")
                .expose_secret()
                .len(),
            MAX_OPTSDATA_LEN
        );
    }
}
