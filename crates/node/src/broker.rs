//! The node's way to the key brokers: a [`GroupKeyWrapper`] that may talk only to the brokers
//! of the node config (whatever a layer's annotation names), authenticated with the node's
//! credential, plus the cause of the last refusal so that the decoder and the key provider can
//! say in one line what went wrong and what to do.
//!
//! Credentials ([`Credential`]):
//! - `token-file`: the first line of the file, read afresh by every process (oidc-agent or a
//!   timer keeps it fresh);
//! - `refresh-token`: exchanged at the issuer's token endpoint (discovery) when a process first
//!   needs a token; if the issuer rotates the refresh token, the new one replaces the file
//!   (atomic rename, mode 0600);
//! - `client-credentials`: the OAuth client credentials grant at the issuer;
//! - `tls-client-cert`: the certificate (host, robot or RFC 3820 proxy) is presented in the TLS
//!   handshake and no bearer token is sent.
//!
//! Access tokens and released layer keys live in memory only. containerd starts one decoder
//! per layer, so the access token lives as long as that process (seconds); nothing is
//! written to disk but a rotated refresh token.

use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use layercrypt_group::client::{BrokerApi, BrokerTls, GroupRecipient, HttpBrokers, UnwrapRequest};
use layercrypt_group::payload::{GroupName, GroupPayload};
use layercrypt_group::token::{read_token_file, unix_now, AccessToken, StoredTokens};
use layercrypt_group::wrap::GroupKeyWrapper;
use layercrypt_ocicrypt::SecretBytes;
use tracing::debug;
use zeroize::Zeroizing;

use crate::config::{Credential, NodeConfig};
use crate::error::{Error, Result};

/// Largest credential file read (certificates with chains, secrets, tokens).
const MAX_CREDENTIAL_LEN: u64 = 256 * 1024;

/// Why the last broker request failed, classified for the one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 403 on unwrap: the node's identity is not in the group.
    NotMember {
        /// Broker base URL.
        broker: String,
        /// The group.
        group: String,
    },
    /// 401: the token (or certificate) was refused.
    Refused {
        /// Broker base URL.
        broker: String,
    },
    /// No connection, no answer in time, or 503.
    Unreachable {
        /// Broker base URL.
        broker: String,
        /// What happened.
        reason: String,
    },
    /// The node could not get an access token (token file, issuer).
    Credential(String),
    /// Anything else, as the broker client says it.
    Other(String),
}

fn classify(e: &layercrypt_group::Error) -> Failure {
    use layercrypt_group::Error as G;
    match e {
        G::NotMember { broker, group } => Failure::NotMember {
            broker: broker.clone(),
            group: group.clone(),
        },
        G::Unauthenticated { broker } | G::CertificateRefused { broker } => Failure::Refused {
            broker: broker.clone(),
        },
        G::Unavailable { broker, reason } => Failure::Unreachable {
            broker: broker.clone(),
            reason: reason.clone(),
        },
        G::Token(_) | G::Login { .. } | G::File { .. } => Failure::Credential(e.to_string()),
        other => Failure::Other(other.to_string()),
    }
}

/// A [`BrokerApi`] that remembers why the last call failed. (The layer digest for the
/// broker's audit log comes with each unwrap: `KeyWrapper::unwrap_for_layer`.)
struct Recording {
    inner: HttpBrokers,
    last: Arc<Mutex<Option<Failure>>>,
}

impl Recording {
    fn record<T>(&self, r: layercrypt_group::Result<T>) -> layercrypt_group::Result<T> {
        if let Err(e) = &r {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(classify(e));
            }
        }
        r
    }
}

impl BrokerApi for Recording {
    fn recipient(
        &self,
        broker: &str,
        group: &GroupName,
    ) -> layercrypt_group::Result<GroupRecipient> {
        self.record(self.inner.recipient(broker, group))
    }

    fn unwrap(
        &self,
        broker: &str,
        request: &UnwrapRequest<'_>,
    ) -> layercrypt_group::Result<SecretBytes> {
        self.record(self.inner.unwrap(broker, request))
    }
}

/// The node's group wrapper and what it learnt.
pub struct NodeGroup {
    /// The wrapper: unwraps through the node's brokers; wraps at the first one.
    pub wrapper: GroupKeyWrapper,
    /// Why the last broker call failed.
    pub status: GroupStatus,
}

/// A handle on the last failure of a [`NodeGroup`]'s broker calls (it outlives the wrapper,
/// which the decoder hands to the ocicrypt layer).
#[derive(Clone, Default)]
pub struct GroupStatus {
    last: Arc<Mutex<Option<Failure>>>,
    credential: Option<String>,
}

impl GroupStatus {
    /// The last failure, if any.
    pub fn last_failure(&self) -> Option<Failure> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// What to do about a refused credential, by kind.
    fn renew_hint(&self) -> &str {
        self.credential
            .as_deref()
            .unwrap_or("check the node credential")
    }
}

fn read_secret_file(what: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let err = |reason: String| {
        Error::Group(format!(
            "node credential {what} {}: {reason}",
            path.display()
        ))
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(MAX_CREDENTIAL_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    if buf.len() as u64 > MAX_CREDENTIAL_LEN {
        return Err(err(format!("larger than {MAX_CREDENTIAL_LEN} bytes")));
    }
    Ok(buf)
}

fn first_line(buf: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(
        String::from_utf8_lossy(buf)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    )
}

/// Writes a rotated refresh token back: new file (0600) beside it, then rename.
fn replace_refresh_token(path: &Path, token: &str) -> layercrypt_group::Result<()> {
    let line = zeroize::Zeroizing::new(format!("{token}\n"));
    layercrypt_ocicrypt::secretfile::write_secret_atomic(path, line.as_bytes()).map_err(|e| {
        layercrypt_group::Error::File {
            path: path.to_owned(),
            reason: format!("saving the rotated refresh token: {e}"),
        }
    })
}

/// The token source of a credential (none for a client certificate).
fn token_provider(credential: &Credential) -> Option<layercrypt_group::client::TokenProvider> {
    match credential.clone() {
        Credential::TokenFile { token_file } => {
            Some(Box::new(move || read_token_file(&token_file)))
        }
        Credential::RefreshToken {
            refresh_token_file,
            client_id,
            issuer,
        } => Some(Box::new(move || {
            let buf = read_secret_file("refresh_token_file", &refresh_token_file)
                .map_err(|e| layercrypt_group::Error::Token(e.to_string()))?;
            let old = first_line(&buf);
            if old.is_empty() {
                return Err(layercrypt_group::Error::Token(format!(
                    "{}: no refresh token in its first line",
                    refresh_token_file.display()
                )));
            }
            let stored = StoredTokens {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                access_token: String::new(),
                refresh_token: Some(old.to_string()),
                expires_at: 0,
            };
            let fresh = layercrypt_group::login::refresh(&stored, unix_now()).map_err(|e| {
                // The login crate's advice is for a user at a terminal; a node's fix is a
                // new refresh token in the configured file.
                layercrypt_group::Error::Token(format!(
                    "{e} (node credential refresh_token_file {}: put a new refresh token for this node there)",
                    refresh_token_file.display()
                ))
            })?;
            if let Some(new) = fresh
                .refresh_token
                .as_deref()
                .filter(|n| *n != old.as_str())
            {
                debug!("the issuer rotated the refresh token; saving the new one");
                replace_refresh_token(&refresh_token_file, new)?;
            }
            AccessToken::new(fresh.access_token.clone())
        })),
        Credential::ClientCredentials {
            client_id,
            client_secret_file,
            issuer,
        } => Some(Box::new(move || {
            let buf = read_secret_file("client_secret_file", &client_secret_file)
                .map_err(|e| layercrypt_group::Error::Token(e.to_string()))?;
            let secret = first_line(&buf);
            let t = layercrypt_group::login::client_credentials(
                &issuer,
                &client_id,
                &secret,
                None,
                unix_now(),
            )?;
            AccessToken::new(t.access_token.clone())
        })),
        Credential::TlsClientCert { .. } => None,
    }
}

fn renew_hint(credential: &Credential) -> String {
    match credential {
        Credential::TokenFile { token_file } => format!(
            "renew the token in {} (oidc-agent or the timer that refreshes it) and check that the broker accepts its issuer",
            token_file.display()
        ),
        Credential::RefreshToken {
            refresh_token_file, ..
        } => format!(
            "the access token from the refresh token in {} was refused: check the broker's issuer, or issue a new refresh token",
            refresh_token_file.display()
        ),
        Credential::ClientCredentials { client_id, .. } => format!(
            "the token of client {client_id} was refused: check that the broker accepts this issuer"
        ),
        Credential::TlsClientCert { cert_file, .. } => format!(
            "the broker did not accept the certificate {} (expired, CA not trusted by the broker, subject outside the CA's IGTF namespace, or no certificate asked for: the broker needs TLS with client_ca_dir; its audit log has the reason)",
            cert_file.display()
        ),
    }
}

/// The group wrapper of this node, or `None` when the node config lists no brokers.
pub fn node_group(node: &NodeConfig) -> Result<Option<NodeGroup>> {
    let Some(credential) = &node.credential else {
        return Ok(None);
    };
    if node.brokers.is_empty() {
        return Ok(None);
    }
    let mut tls = BrokerTls::default();
    // The grid convention: the IGTF CAs that issue sites' host certificates.
    let grid = std::path::Path::new(layercrypt_group::client::GRID_CA_DIR);
    if grid.is_dir() {
        tls = tls
            .with_ca_dir(grid)
            .map_err(|e| Error::Group(format!("{}: {e}", grid.display())))?;
    }
    if let Some(ca) = &node.ca_file {
        let pem = read_secret_file("ca_file", ca)?;
        tls = tls
            .with_root_certificates(&pem)
            .map_err(|e| Error::Group(format!("node config ca_file {}: {e}", ca.display())))?;
    }
    let inner = match token_provider(credential) {
        Some(tokens) => HttpBrokers::new(tokens),
        None => {
            let Credential::TlsClientCert {
                cert_file,
                key_file,
            } = credential
            else {
                unreachable!("only the certificate has no token source")
            };
            let mut pem = read_secret_file("key_file", key_file)?;
            if cert_file != key_file {
                pem.extend_from_slice(b"\n");
                pem.extend_from_slice(&read_secret_file("cert_file", cert_file)?);
            }
            tls = tls.with_client_certificate(&pem).map_err(|e| {
                Error::Group(format!(
                    "node credential {} / {}: {e}",
                    cert_file.display(),
                    key_file.display()
                ))
            })?;
            HttpBrokers::certificate_only(tls.clone())
        }
    }
    .with_tls(tls)
    .with_timeout(node.timeouts.request());
    let last = Arc::new(Mutex::new(None));
    let api = Recording {
        inner,
        last: last.clone(),
    };
    let mut wrapper = GroupKeyWrapper::new(Arc::new(api));
    // Wrapping (the key provider's keywrap) uses the first broker; unwrapping may use any.
    wrapper = wrapper
        .with_broker(&node.brokers[0])
        .map_err(|e| Error::Group(e.to_string()))?;
    for b in &node.brokers[1..] {
        wrapper = wrapper
            .allow_broker(b)
            .map_err(|e| Error::Group(e.to_string()))?;
    }
    Ok(Some(NodeGroup {
        wrapper,
        status: GroupStatus {
            last,
            credential: Some(renew_hint(credential)),
        },
    }))
}

/// The one-line cause for a group layer this node could not open: the broker is not
/// allowed, the node has no broker credential, or why the broker refused.
pub fn group_failure(
    node: &NodeConfig,
    node_file: Option<&Path>,
    payload: &GroupPayload,
    status: Option<&GroupStatus>,
) -> String {
    let g = payload.group.as_str();
    let b = layercrypt_proto::text::escape(&payload.broker);
    let file = node_file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.to_owned());
    if node.brokers.is_empty() || node.credential.is_none() {
        return format!(
            "encrypted for layercrypt group {g} at broker {b}, but this node has no broker credential: list the broker under `brokers` and set a [credential] in {file} (docs/worker-node.md §5)"
        );
    }
    if !node.broker_allowed(&payload.broker) {
        return format!(
            "encrypted for layercrypt group {g} at broker {b}, which is not in this node's allowed brokers ({}); add it to `brokers` in {file} only if you trust it",
            node.brokers.join(", ")
        );
    }
    match status.and_then(GroupStatus::last_failure) {
        Some(Failure::NotMember { broker, group }) => format!(
            "this node is not a member of group {group} at broker {broker} (HTTP 403): ask the group admin to grant the node's identity (`layercrypt group grant {group} …`)"
        ),
        Some(Failure::Refused { broker }) => format!(
            "broker {broker} refused this node's credential for group {g} (HTTP 401): {}",
            status.map(GroupStatus::renew_hint).unwrap_or_default()
        ),
        Some(Failure::Unreachable { broker, reason }) => format!(
            "broker {broker} unreachable for group {g} ({reason}): check the network from this node to the broker, the URL in {file}, and [timeouts]"
        ),
        Some(Failure::Credential(reason)) => format!(
            "cannot get a token for broker {b} (group {g}): {reason}; fix the [credential] in {file}"
        ),
        Some(Failure::Other(reason)) => format!("group {g} at broker {b}: {reason}"),
        None => format!("group {g} at broker {b}: the group key could not be unwrapped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(broker: &str) -> GroupPayload {
        GroupPayload::parse(
            format!(
                r#"{{"v":1,"broker":"{broker}","group":"vo.example.org","version":1,"age":"YWdl"}}"#
            )
            .as_bytes(),
        )
        .expect("payload")
    }

    #[test]
    fn messages_say_what_to_do() {
        let dir = tempfile::tempdir().expect("tmp");
        let tok = dir.path().join("token");
        std::fs::write(&tok, "t\n").expect("write");
        let node = NodeConfig {
            brokers: vec!["https://keys.example.org".into()],
            credential: Some(Credential::TokenFile {
                token_file: tok.clone(),
            }),
            ..Default::default()
        };
        let f = Some(Path::new("/etc/layercrypt/node.toml"));
        let m = group_failure(
            &NodeConfig::default(),
            f,
            &payload("https://keys.example.org"),
            None,
        );
        assert!(m.contains("no broker credential"), "{m}");
        let m = group_failure(&node, f, &payload("https://evil.example.org"), None);
        assert!(
            m.contains("not in this node's allowed brokers (https://keys.example.org)"),
            "{m}"
        );
        let group = node_group(&node).expect("ok").expect("some");
        let st = group.status.clone();
        let p = payload("https://keys.example.org/");
        for (failure, expect) in [
            (
                Failure::NotMember {
                    broker: "https://keys.example.org".into(),
                    group: "vo.example.org".into(),
                },
                "not a member of group vo.example.org",
            ),
            (
                Failure::Refused {
                    broker: "https://keys.example.org".into(),
                },
                "(HTTP 401): renew the token in",
            ),
            (
                Failure::Unreachable {
                    broker: "https://keys.example.org".into(),
                    reason: "cannot connect".into(),
                },
                "unreachable for group vo.example.org (cannot connect)",
            ),
        ] {
            *st.last.lock().expect("lock") = Some(failure);
            let m = group_failure(&node, f, &p, Some(&st));
            assert!(m.contains(expect), "{m}");
            assert!(!m.contains('\n'));
        }
    }

    #[test]
    fn unreachable_broker_is_recorded() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        drop(l);
        let dir = tempfile::tempdir().expect("tmp");
        let tok = dir.path().join("token");
        std::fs::write(&tok, "t\n").expect("write");
        let node = NodeConfig {
            brokers: vec![url.clone()],
            credential: Some(Credential::TokenFile { token_file: tok }),
            ..Default::default()
        };
        let g = node_group(&node).expect("ok").expect("some");
        let item = format!(
            r#"{{"v":1,"broker":"{url}","group":"vo.example.org","version":1,"age":"YWdl"}}"#
        );
        use layercrypt_ocicrypt::keywrap::KeyWrapper as _;
        let r = g
            .wrapper
            .unwrap(
                &layercrypt_ocicrypt::DecryptConfig::default(),
                item.as_bytes(),
            )
            .expect("mine");
        assert!(r.is_err());
        assert!(
            matches!(g.status.last_failure(), Some(Failure::Unreachable { .. })),
            "{:?}",
            g.status.last_failure()
        );
        let m = group_failure(&node, None, &payload(&url), Some(&g.status));
        assert!(m.contains("unreachable"), "{m}");
    }

    #[test]
    fn certificate_credential_loads_or_says_why() {
        let dir = tempfile::tempdir().expect("tmp");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &cert,
            include_bytes!("../../ocicrypt/tests/data/pkcs7/cert.pem"),
        )
        .expect("w");
        std::fs::write(
            &key,
            include_bytes!("../../ocicrypt/tests/data/pkcs7/key.pem"),
        )
        .expect("w");
        let mut node = NodeConfig {
            brokers: vec!["https://keys.example.org".into()],
            credential: Some(Credential::TlsClientCert {
                cert_file: cert.clone(),
                key_file: key.clone(),
            }),
            ..Default::default()
        };
        assert!(node_group(&node).expect("ok").is_some());
        node.credential = Some(Credential::TlsClientCert {
            cert_file: cert.clone(),
            key_file: cert.clone(),
        });
        let err = node_group(&node).err().expect("no key").to_string();
        assert!(err.contains("client certificate"), "{err}");
    }
}
