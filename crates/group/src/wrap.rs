//! [`GroupKeyWrapper`]: the `layercrypt` key provider built in. Wrapping encrypts the layer's
//! private options to the group's age X25519 recipient (fetched from the broker); unwrapping
//! asks the broker named in the payload, if it is allowed here, to release them.
//!
//! ocicrypt writes one item per scheme per `encrypt` call, and the payload names one group, so
//! one `encrypt` call takes one group. More groups are added afterwards with
//! `layercrypt rewrap --add-recipient group:OTHER`, which appends a second item to the
//! annotation (as ocicrypt does when it adds recipients to an encrypted layer).

use std::io::Write as _;
use std::sync::Arc;

use layercrypt_ocicrypt::keywrap::{KeyWrapper, RecipientInfo};
use layercrypt_ocicrypt::spec::{
    ANNOTATION_KEYS_PROVIDER_PREFIX, MAX_PRIVATE_OPTS_LEN, PROVIDER_LAYERCRYPT,
};
use layercrypt_ocicrypt::{DecryptConfig, EncryptConfig, SecretBytes};
use tracing::{info, warn};

use crate::client::{normalize_broker_url, BrokerApi, UnwrapRequest};
use crate::error::{Error, Result};
use crate::payload::{GroupName, GroupPayload};

/// Prefix of the provider parameter that names a group: `provider:layercrypt:group:NAME`,
/// which the CLI writes for `--recipient group:NAME`.
pub const GROUP_PARAM_PREFIX: &str = "group:";

/// The key-provider parameter for a group recipient.
pub fn group_param(group: &GroupName) -> Vec<u8> {
    format!("{GROUP_PARAM_PREFIX}{group}").into_bytes()
}

/// The group key wrapper. See the module documentation.
pub struct GroupKeyWrapper {
    annotation_key: String,
    api: Arc<dyn BrokerApi>,
    broker: Option<String>,
    allowed: Vec<String>,
    image: Option<String>,
}

impl std::fmt::Debug for GroupKeyWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupKeyWrapper")
            .field("broker", &self.broker)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// The group error inside ocicrypt's error, typed: the CLI and the node classify it by kind.
fn to_format_error(e: Error) -> layercrypt_ocicrypt::Error {
    layercrypt_ocicrypt::Error::Wrapper {
        name: PROVIDER_LAYERCRYPT.into(),
        source: Box::new(e),
    }
}

impl GroupKeyWrapper {
    /// A wrapper over `api` with no broker: it can list recipients, but wrapping fails with
    /// [`Error::NoBroker`] and unwrapping refuses every broker until one is allowed.
    pub fn new(api: Arc<dyn BrokerApi>) -> Self {
        Self {
            annotation_key: format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{PROVIDER_LAYERCRYPT}"),
            api,
            broker: None,
            allowed: Vec::new(),
            image: None,
        }
    }

    /// The configured broker: group recipients are fetched from it, and payloads naming it
    /// may be unwrapped.
    pub fn with_broker(mut self, url: &str) -> Result<Self> {
        let url = normalize_broker_url(url)?;
        self = self.allow_broker(&url)?;
        self.broker = Some(url);
        Ok(self)
    }

    /// Allows unwrapping payloads that name `url` (a worker node passes its own list).
    pub fn allow_broker(mut self, url: &str) -> Result<Self> {
        let url = normalize_broker_url(url)?;
        if !self.allowed.contains(&url) {
            self.allowed.push(url);
        }
        Ok(self)
    }

    /// The image being decrypted, sent to the broker for its audit log.
    pub fn with_image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }

    /// The brokers unwrapping may talk to.
    pub fn allowed_brokers(&self) -> &[String] {
        &self.allowed
    }

    /// The one group of `ec`, if any.
    fn group_of(ec: &EncryptConfig) -> Result<Option<GroupName>> {
        let mut groups: Vec<GroupName> = Vec::new();
        for p in ec
            .providers
            .iter()
            .filter(|p| p.name == PROVIDER_LAYERCRYPT)
        {
            let param = p.param.as_deref().unwrap_or_default();
            let name = std::str::from_utf8(param)
                .ok()
                .and_then(|s| s.strip_prefix(GROUP_PARAM_PREFIX))
                .ok_or_else(|| Error::Recipient {
                    recipient: format!("provider:{PROVIDER_LAYERCRYPT}"),
                    reason: "the layercrypt provider needs a group: use --recipient group:NAME"
                        .into(),
                })?;
            let group: GroupName = name.parse()?;
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        match groups.len() {
            0 => Ok(None),
            1 => Ok(groups.pop()),
            _ => Err(Error::Recipient {
                recipient: groups
                    .iter()
                    .map(|g| format!("group:{g}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: format!(
                    "one group per encryption: encrypt for group:{} and then add the others with \
                     `layercrypt rewrap --add-recipient group:{}`",
                    groups[0], groups[1]
                ),
            }),
        }
    }

    fn wrap_group(&self, group: &GroupName, opts: &SecretBytes) -> Result<Vec<u8>> {
        let broker = self.broker.as_deref().ok_or_else(|| Error::NoBroker {
            config: crate::config::UserConfig::default_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "~/.config/layercrypt/config.toml".into()),
        })?;
        let r = self.api.recipient(broker, group)?;
        let recipient: age::x25519::Recipient =
            r.recipient.parse().map_err(|e: &str| Error::Protocol {
                broker: broker.to_owned(),
                reason: format!(
                    "the recipient of group {group} is not an age X25519 recipient ({e})"
                ),
            })?;
        let payload_broker = normalize_broker_url(&r.broker).map_err(|_| Error::Protocol {
            broker: broker.to_owned(),
            reason: "the recipient answer names no valid broker URL".into(),
        })?;
        if payload_broker != broker {
            warn!(configured = broker, announced = %payload_broker,
                "the broker announces another public URL; members will be sent there");
        }
        let age_ciphertext = age_encrypt(&recipient, opts)?;
        info!(%group, version = r.version, broker = %payload_broker, "layer key wrapped for group");
        Ok(GroupPayload {
            broker: payload_broker,
            group: group.clone(),
            version: r.version,
            age_ciphertext,
        }
        .to_bytes())
    }

    fn unwrap_item(&self, item: &[u8], layer_digest: Option<&str>) -> Result<SecretBytes> {
        let payload = GroupPayload::parse(item)?;
        let broker = normalize_broker_url(&payload.broker)?;
        if !self.allowed.contains(&broker) {
            return Err(Error::BrokerNotAllowed {
                broker,
                allowed: if self.allowed.is_empty() {
                    "none configured".into()
                } else {
                    self.allowed.join(", ")
                },
            });
        }
        let opts = self.api.unwrap(
            &broker,
            &UnwrapRequest {
                payload: item,
                group: &payload.group,
                layer_digest,
                image: self.image.as_deref(),
            },
        )?;
        if opts.is_empty() || opts.len() > MAX_PRIVATE_OPTS_LEN {
            return Err(Error::Protocol {
                broker,
                reason: format!("released options of {} bytes", opts.len()),
            });
        }
        info!(group = %payload.group, version = payload.version, %broker, "layer key released by the broker");
        Ok(opts)
    }
}

/// Encrypts `plain` to one X25519 recipient, binary age format.
pub fn age_encrypt(recipient: &age::x25519::Recipient, plain: &SecretBytes) -> Result<Vec<u8>> {
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| Error::Age(e.to_string()))?;
    let mut out = Vec::new();
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| Error::Age(e.to_string()))?;
    w.write_all(plain.expose_secret())
        .map_err(|e| Error::Age(e.to_string()))?;
    w.finish().map_err(|e| Error::Age(e.to_string()))?;
    Ok(out)
}

/// What `inspect` shows for a payload.
pub fn describe(payload: &GroupPayload) -> RecipientInfo {
    RecipientInfo::Provider {
        name: PROVIDER_LAYERCRYPT.into(),
        detail: Some(format!(
            "group {} (key version {}) at {}",
            payload.group, payload.version, payload.broker
        )),
    }
}

/// True if `info` (from [`describe`]) is a recipient of `group`; for `--remove-recipient group:NAME`.
pub fn is_group_recipient(info: &RecipientInfo, group: &GroupName) -> bool {
    match info {
        RecipientInfo::Provider {
            name,
            detail: Some(d),
        } if name == PROVIDER_LAYERCRYPT => {
            d.strip_prefix("group ")
                .and_then(|rest| rest.split(' ').next())
                == Some(group.as_str())
        }
        _ => false,
    }
}

impl KeyWrapper for GroupKeyWrapper {
    fn annotation_key(&self) -> &str {
        &self.annotation_key
    }

    fn wrap(
        &self,
        ec: &EncryptConfig,
        opts: &SecretBytes,
    ) -> layercrypt_ocicrypt::Result<Option<Vec<u8>>> {
        match Self::group_of(ec) {
            Ok(None) => Ok(None),
            Ok(Some(group)) => self
                .wrap_group(&group, opts)
                .map(Some)
                .map_err(to_format_error),
            Err(e) => Err(to_format_error(e)),
        }
    }

    fn has_possible_keys(&self, _dc: &DecryptConfig) -> bool {
        // The broker decides; the token is fetched only when an item is actually unwrapped.
        true
    }

    fn unwrap(
        &self,
        dc: &DecryptConfig,
        item: &[u8],
    ) -> Option<layercrypt_ocicrypt::Result<SecretBytes>> {
        self.unwrap_for_layer(dc, item, None)
    }

    /// The digest goes to the broker, for its audit log.
    fn unwrap_for_layer(
        &self,
        _dc: &DecryptConfig,
        item: &[u8],
        layer_digest: Option<&str>,
    ) -> Option<layercrypt_ocicrypt::Result<SecretBytes>> {
        Some(
            self.unwrap_item(item, layer_digest)
                .map_err(to_format_error),
        )
    }

    fn recipients(&self, item: &[u8]) -> layercrypt_ocicrypt::Result<Vec<RecipientInfo>> {
        let payload = GroupPayload::parse(item).map_err(|e| to_format_error(e.into()))?;
        Ok(vec![describe(&payload)])
    }

    fn remove_recipients(
        &self,
        item: &[u8],
        remove: &dyn Fn(&RecipientInfo) -> bool,
    ) -> layercrypt_ocicrypt::Result<Option<Vec<u8>>> {
        let payload = GroupPayload::parse(item).map_err(|e| to_format_error(e.into()))?;
        Ok(if remove(&describe(&payload)) {
            None
        } else {
            Some(item.to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::Mutex;

    use age::secrecy::ExposeSecret as _;
    use layercrypt_ocicrypt::ProviderRecipient;

    use super::*;
    use crate::client::GroupRecipient;

    const BROKER: &str = "https://broker.example.org";

    /// A broker in memory with a real age identity.
    /// What the broker was asked: broker URL, image, layer digest.
    type Call = (String, Option<String>, Option<String>);

    struct TestBroker {
        identity: age::x25519::Identity,
        version: u32,
        announce: String,
        refuse: Option<u16>,
        calls: Mutex<Vec<Call>>,
    }

    impl TestBroker {
        fn new() -> Self {
            Self {
                identity: age::x25519::Identity::generate(),
                version: 2,
                announce: format!("{BROKER}/"),
                refuse: None,
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    fn age_decrypt(identity: &age::x25519::Identity, ct: &[u8]) -> Vec<u8> {
        let d = age::Decryptor::new(ct).expect("age header");
        let mut r = d
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .expect("decrypts");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        out
    }

    impl BrokerApi for TestBroker {
        fn recipient(&self, broker: &str, group: &GroupName) -> Result<GroupRecipient> {
            assert_eq!(broker, BROKER);
            Ok(GroupRecipient {
                group: group.clone(),
                version: self.version,
                recipient: self.identity.to_public().to_string(),
                broker: self.announce.clone(),
            })
        }

        fn unwrap(&self, broker: &str, request: &UnwrapRequest<'_>) -> Result<SecretBytes> {
            self.calls.lock().expect("lock").push((
                broker.to_owned(),
                request.image.map(str::to_owned),
                request.layer_digest.map(str::to_owned),
            ));
            match self.refuse {
                Some(401) => {
                    return Err(Error::Unauthenticated {
                        broker: broker.into(),
                    })
                }
                Some(_) => {
                    return Err(Error::NotMember {
                        broker: broker.into(),
                        group: request.group.to_string(),
                    })
                }
                None => {}
            }
            let p = GroupPayload::parse(request.payload)?;
            Ok(SecretBytes::new(age_decrypt(
                &self.identity,
                &p.age_ciphertext,
            )))
        }
    }

    fn ec(groups: &[&str]) -> EncryptConfig {
        EncryptConfig {
            providers: groups
                .iter()
                .map(|g| ProviderRecipient {
                    name: PROVIDER_LAYERCRYPT.into(),
                    param: Some(group_param(&g.parse().expect("name"))),
                })
                .collect(),
            ..Default::default()
        }
    }

    const OPTS: &[u8] =
        br#"{"symkey":"AAAA","digest":"sha256:00","cipheroptions":{"nonce":"AAAA"}}"#;

    #[test]
    fn wrap_then_unwrap_round_trip() {
        let broker = Arc::new(TestBroker::new());
        let w = GroupKeyWrapper::new(broker.clone())
            .with_broker(BROKER)
            .expect("url")
            .with_image("docker://r/i:1");
        let item = w
            .wrap(&ec(&["vo.example.org"]), &SecretBytes::from_slice(OPTS))
            .expect("wrap")
            .expect("an item");
        let p = GroupPayload::parse(&item).expect("payload");
        assert_eq!(p.broker, BROKER);
        assert_eq!(p.group.as_str(), "vo.example.org");
        assert_eq!(p.version, 2);
        // The wrapped options decrypt with the group's identity (binary age, not armored).
        assert!(p.age_ciphertext.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(age_decrypt(&broker.identity, &p.age_ciphertext), OPTS);
        assert!(!item.windows(OPTS.len()).any(|w| w == OPTS));

        let opts = w
            .unwrap(&DecryptConfig::default(), &item)
            .expect("mine")
            .expect("unwrap");
        assert_eq!(opts.expose_secret(), OPTS);
        // Told the layer, the broker gets its digest for the audit log.
        let opts = w
            .unwrap_for_layer(&DecryptConfig::default(), &item, Some("sha256:abcd"))
            .expect("mine")
            .expect("unwrap");
        assert_eq!(opts.expose_secret(), OPTS);
        let calls = broker.calls.lock().expect("lock");
        let image = Some("docker://r/i:1".to_owned());
        assert_eq!(
            calls.as_slice(),
            &[
                (BROKER.to_owned(), image.clone(), None),
                (BROKER.to_owned(), image, Some("sha256:abcd".to_owned()))
            ]
        );

        let rs = w.recipients(&item).expect("recipients");
        assert_eq!(
            rs,
            vec![RecipientInfo::Provider {
                name: "layercrypt".into(),
                detail: Some(format!("group vo.example.org (key version 2) at {BROKER}")),
            }]
        );
        let vo: GroupName = "vo.example.org".parse().expect("name");
        let other: GroupName = "vo.example".parse().expect("name");
        assert!(is_group_recipient(&rs[0], &vo));
        assert!(!is_group_recipient(&rs[0], &other));
        assert_eq!(
            w.remove_recipients(&item, &|r| is_group_recipient(r, &vo))
                .expect("rm"),
            None
        );
        assert_eq!(
            w.remove_recipients(&item, &|r| is_group_recipient(r, &other))
                .expect("rm"),
            Some(item.clone())
        );
        // The identity itself is only in the test broker.
        assert!(
            !String::from_utf8_lossy(&item).contains(broker.identity.to_string().expose_secret())
        );
    }

    #[test]
    fn no_group_is_not_mine_and_two_groups_are_refused() {
        let w = GroupKeyWrapper::new(Arc::new(TestBroker::new()))
            .with_broker(BROKER)
            .expect("url");
        let opts = SecretBytes::from_slice(OPTS);
        assert!(w
            .wrap(&EncryptConfig::default(), &opts)
            .expect("wrap")
            .is_none());
        let err = w
            .wrap(&ec(&["a.org", "b.org"]), &opts)
            .expect_err("two groups")
            .chain_text();
        assert!(
            err.contains("one group per encryption")
                && err.contains("rewrap --add-recipient group:b.org"),
            "{err}"
        );
        // The same group twice is one group.
        assert!(w
            .wrap(&ec(&["a.org", "a.org"]), &opts)
            .expect("wrap")
            .is_some());
        let bad = EncryptConfig {
            providers: vec![ProviderRecipient {
                name: "layercrypt".into(),
                param: None,
            }],
            ..Default::default()
        };
        assert!(w.wrap(&bad, &opts).is_err());
    }

    #[test]
    fn wrapping_needs_a_broker() {
        let w = GroupKeyWrapper::new(Arc::new(TestBroker::new()));
        let err = w
            .wrap(&ec(&["a.org"]), &SecretBytes::from_slice(OPTS))
            .expect_err("no broker")
            .chain_text();
        assert!(err.contains("no key broker is configured"), "{err}");
    }

    #[test]
    fn unwrap_only_from_allowed_brokers() {
        let broker = Arc::new(TestBroker::new());
        let item = GroupKeyWrapper::new(broker.clone())
            .with_broker(BROKER)
            .expect("url")
            .wrap(&ec(&["vo.example.org"]), &SecretBytes::from_slice(OPTS))
            .expect("wrap")
            .expect("item");
        let dc = DecryptConfig::default();

        let none = GroupKeyWrapper::new(broker.clone());
        let err = none
            .unwrap(&dc, &item)
            .expect("mine")
            .expect_err("refused")
            .chain_text();
        assert!(
            err.contains("https://broker.example.org, which is not a broker you chose (yours: none configured)"),
            "{err}"
        );
        // The image chose that broker, not the user: never advise trusting it.
        assert!(!err.contains("--broker"), "{err}");

        let other = GroupKeyWrapper::new(broker.clone())
            .with_broker("https://evil.example.org")
            .expect("url");
        let err = other
            .unwrap(&dc, &item)
            .expect("mine")
            .expect_err("refused")
            .chain_text();
        assert!(err.contains("(yours: https://evil.example.org)"), "{err}");
        assert!(
            broker.calls.lock().expect("lock").is_empty(),
            "no request to a broker that is not allowed"
        );

        // A worker node's list; trailing slashes and case do not matter.
        let worker = GroupKeyWrapper::new(broker.clone())
            .allow_broker("https://other.example.org")
            .expect("url")
            .allow_broker("HTTPS://Broker.Example.org/")
            .expect("url");
        assert!(worker.unwrap(&dc, &item).expect("mine").is_ok());

        // Malformed items are errors, not "not mine".
        assert!(worker.unwrap(&dc, b"{}").expect("mine").is_err());
    }

    #[test]
    fn refusals_keep_their_advice() {
        let mut b = TestBroker::new();
        b.refuse = Some(401);
        let b = Arc::new(b);
        let w = GroupKeyWrapper::new(b.clone())
            .with_broker(BROKER)
            .expect("url");
        let item = w
            .wrap(&ec(&["vo.example.org"]), &SecretBytes::from_slice(OPTS))
            .expect("wrap")
            .expect("item");
        let err = w
            .unwrap(&DecryptConfig::default(), &item)
            .expect("mine")
            .expect_err("401")
            .chain_text();
        assert!(err.contains(crate::error::ADVICE_LOGIN), "{err}");
    }
}
