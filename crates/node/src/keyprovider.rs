//! The ocicrypt key-provider protocol, server side, for `layercrypt-keyprovider` (cmd mode):
//! CRI-O, podman, skopeo and buildah reach layercrypt groups through it. The group work is
//! done by the node's [`NodeGroup`] (see [`crate::broker`]).
//!
//! Request (stdin, one JSON object; Go marshals `[]byte` as standard base64):
//!
//! ```json
//! {"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"layercrypt":["<b64 group:NAME>"]},"DecryptConfig":{…}},"optsdata":"<b64>"},"keyunwrapparams":{…}}
//! {"op":"keyunwrap","keywrapparams":{…},"keyunwrapparams":{"dc":{"Parameters":{…}},"annotation":"<b64>"}}
//! ```
//!
//! Reply (stdout): `{"keywrapresults":{"annotation":"<b64>"}}` or
//! `{"keyunwrapresults":{"optsdata":"<b64>"}}`; failure = non-zero exit with the reason on
//! stderr (ocicrypt then moves on to the next key or scheme).
//!
//! Go ocicrypt sends **every** parameter of the operation to every provider, including the
//! user's other private keys (`privkeys`) and passwords. We deserialize only the `layercrypt`
//! parameter; serde skips the rest without keeping it, and nothing of the request is logged.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use layercrypt_group::payload::{GroupName, GroupPayload};
use layercrypt_group::wrap::group_param;
use layercrypt_ocicrypt::keywrap::KeyWrapper as _;
use layercrypt_ocicrypt::spec::PROVIDER_LAYERCRYPT;
use layercrypt_ocicrypt::{DecryptConfig, EncryptConfig, ProviderRecipient, SecretBytes};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::broker::{group_failure, Failure, NodeGroup};
use crate::config::NodeConfig;
use crate::error::{Error, Result};

/// Largest request read from stdin (the private options are < 1 KiB; other parameters may
/// carry the user's key files).
pub const MAX_REQUEST_LEN: u64 = 4 * 1024 * 1024;

/// A parsed request: only what layercrypt needs.
pub enum Request {
    /// Wrap `optsdata` for the groups named in the parameters.
    Wrap {
        /// The groups (`group:NAME` parameters).
        groups: Vec<GroupName>,
        /// The private options in the clear.
        optsdata: SecretBytes,
    },
    /// Unwrap a group payload.
    Unwrap {
        /// The annotation bytes layercrypt wrote at wrap time, parsed.
        payload: GroupPayload,
        /// The same bytes as received (sent to the broker unchanged).
        raw: Vec<u8>,
    },
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Wrap { groups, .. } => f
                .debug_struct("Wrap")
                .field("groups", groups)
                .finish_non_exhaustive(),
            Request::Unwrap { payload, .. } => f
                .debug_struct("Unwrap")
                .field("broker", &payload.broker)
                .field("group", &payload.group)
                .field("version", &payload.version)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Deserialize)]
struct RequestJson {
    op: String,
    #[serde(default)]
    keywrapparams: Option<WrapParamsJson>,
    #[serde(default)]
    keyunwrapparams: Option<UnwrapParamsJson>,
}

#[derive(Deserialize)]
struct WrapParamsJson {
    #[serde(default)]
    ec: Option<ParamsHolder>,
    #[serde(default)]
    optsdata: Option<String>,
}

impl Drop for WrapParamsJson {
    fn drop(&mut self) {
        if let Some(s) = &mut self.optsdata {
            s.zeroize();
        }
    }
}

#[derive(Deserialize)]
struct UnwrapParamsJson {
    #[serde(default)]
    annotation: Option<String>,
}

#[derive(Deserialize)]
struct ParamsHolder {
    #[serde(rename = "Parameters", default)]
    parameters: Option<OurParams>,
}

/// Only our own parameter; every other one is skipped by serde.
#[derive(Deserialize)]
struct OurParams {
    #[serde(rename = "layercrypt", default)]
    layercrypt: Option<Vec<String>>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::KeyProvider(reason.into())
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(s)
        .map_err(|_| bad(format!("{field} is not base64")))
}

/// Parses a request.
pub fn parse_request(bytes: &[u8]) -> Result<Request> {
    if bytes.len() as u64 > MAX_REQUEST_LEN {
        return Err(bad(format!("request larger than {MAX_REQUEST_LEN} bytes")));
    }
    let req: RequestJson = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "not a key-provider request ({})",
            e.classify_name()
        ))
    })?;
    match req.op.as_str() {
        "keywrap" => {
            let params = req
                .keywrapparams
                .as_ref()
                .ok_or_else(|| bad("keywrap without keywrapparams"))?;
            let values = params
                .ec
                .as_ref()
                .and_then(|ec| ec.parameters.as_ref())
                .and_then(|p| p.layercrypt.as_ref())
                .ok_or_else(|| {
                    bad(format!(
                        "no {PROVIDER_LAYERCRYPT} parameter: use --encryption-key provider:{PROVIDER_LAYERCRYPT}:group:NAME"
                    ))
                })?;
            let mut groups = Vec::new();
            for v in values {
                let raw = Zeroizing::new(b64("parameter", v)?);
                let text = std::str::from_utf8(&raw).map_err(|_| bad("parameter is not UTF-8"))?;
                let name = text.strip_prefix("group:").ok_or_else(|| {
                    bad(format!(
                        "parameter must be group:NAME (--encryption-key provider:{PROVIDER_LAYERCRYPT}:group:NAME)"
                    ))
                })?;
                groups.push(GroupName::try_from(name.to_owned()).map_err(|e| bad(e.to_string()))?);
            }
            let optsdata = params
                .optsdata
                .as_deref()
                .ok_or_else(|| bad("keywrap without optsdata"))?;
            let optsdata = SecretBytes::new(b64("optsdata", optsdata)?);
            Ok(Request::Wrap { groups, optsdata })
        }
        "keyunwrap" => {
            let annotation = req
                .keyunwrapparams
                .as_ref()
                .and_then(|p| p.annotation.as_deref())
                .ok_or_else(|| bad("keyunwrap without annotation"))?;
            let bytes = b64("annotation", annotation)?;
            let payload = GroupPayload::parse(&bytes).map_err(|e| bad(e.to_string()))?;
            Ok(Request::Unwrap {
                payload,
                raw: bytes,
            })
        }
        other => Err(bad(format!(
            "unknown op {:?}; expected keywrap or keyunwrap",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// What serves group wraps and unwraps.
pub trait GroupBackend {
    /// Wraps the private options for `groups`; returns the annotation bytes.
    fn wrap(&self, groups: &[GroupName], optsdata: &SecretBytes) -> Result<Vec<u8>>;
    /// Unwraps a group payload (`raw` as received, `payload` parsed) into the private options.
    fn unwrap(&self, payload: &GroupPayload, raw: &[u8]) -> Result<SecretBytes>;
}

/// The backend of a node without brokers: refuses with a clear message.
#[derive(Debug, Default)]
pub struct NoBroker;

/// The message of [`NoBroker`].
pub const NO_BROKER: &str = "this node has no broker credential: list the broker under `brokers` and set a [credential] in the node config (docs/worker-node.md §5)";

impl GroupBackend for NoBroker {
    fn wrap(&self, _groups: &[GroupName], _optsdata: &SecretBytes) -> Result<Vec<u8>> {
        Err(bad(NO_BROKER))
    }

    fn unwrap(&self, _payload: &GroupPayload, _raw: &[u8]) -> Result<SecretBytes> {
        Err(bad(NO_BROKER))
    }
}

/// The real backend: the node's [`NodeGroup`] (allowed brokers = the node config's list;
/// wrapping at its first broker).
pub struct BrokerBackend<'a> {
    /// The node's group wrapper.
    pub group: NodeGroup,
    /// The node config, for messages.
    pub node: &'a NodeConfig,
    /// Its file, for messages.
    pub node_file: Option<&'a std::path::Path>,
}

impl GroupBackend for BrokerBackend<'_> {
    fn wrap(&self, groups: &[GroupName], optsdata: &SecretBytes) -> Result<Vec<u8>> {
        let ec = EncryptConfig {
            providers: groups
                .iter()
                .map(|g| ProviderRecipient {
                    name: PROVIDER_LAYERCRYPT.into(),
                    param: Some(group_param(g)),
                })
                .collect(),
            ..Default::default()
        };
        match self.group.wrapper.wrap(&ec, optsdata) {
            Ok(Some(item)) => Ok(item),
            Ok(None) => Err(bad("no group to wrap for")),
            Err(e) => Err(bad(match self.group.status.last_failure() {
                Some(Failure::Unreachable { broker, reason }) => format!(
                    "broker {broker} unreachable ({reason}): check the network and the node config's `brokers`"
                ),
                _ => e.chain_text(),
            })),
        }
    }

    fn unwrap(&self, payload: &GroupPayload, raw: &[u8]) -> Result<SecretBytes> {
        match self.group.wrapper.unwrap(&DecryptConfig::default(), raw) {
            Some(Ok(opts)) => Ok(opts),
            _ => Err(bad(group_failure(
                self.node,
                self.node_file,
                payload,
                Some(&self.group.status),
            ))),
        }
    }
}

/// Serves one request: returns the reply JSON.
pub fn serve(
    request: &Request,
    node: &NodeConfig,
    backend: &dyn GroupBackend,
) -> Result<Zeroizing<Vec<u8>>> {
    match request {
        Request::Wrap { groups, optsdata } => {
            let annotation = backend.wrap(groups, optsdata)?;
            let mut reply = BTreeMap::new();
            reply.insert("annotation", STANDARD.encode(annotation));
            let json = serde_json::json!({ "keywrapresults": reply });
            Ok(Zeroizing::new(json.to_string().into_bytes()))
        }
        Request::Unwrap { payload, raw } => {
            if !node.broker_allowed(&payload.broker) {
                return Err(bad(format!(
                    "group {} is served by broker {}, which is not in this node's allowed brokers (node config `brokers`); add it only if you trust it",
                    payload.group.as_str(),
                    layercrypt_proto::text::escape(&payload.broker)
                )));
            }
            let opts = backend.unwrap(payload, raw)?;
            let mut encoded = Zeroizing::new(STANDARD.encode(opts.expose_secret()));
            let out = format!(
                r#"{{"keyunwrapresults":{{"optsdata":"{}"}}}}"#,
                encoded.as_str()
            );
            encoded.zeroize();
            Ok(Zeroizing::new(out.into_bytes()))
        }
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected JSON structure",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    const PAYLOAD: &[u8] =
        br#"{"v":1,"broker":"https://keys.example.org","group":"vo.example.org","version":2,"age":"YWdl"}"#;

    struct Fake;
    impl GroupBackend for Fake {
        fn wrap(&self, groups: &[GroupName], _o: &SecretBytes) -> Result<Vec<u8>> {
            Ok(groups[0].as_str().as_bytes().to_vec())
        }
        fn unwrap(&self, _p: &GroupPayload, _raw: &[u8]) -> Result<SecretBytes> {
            Ok(SecretBytes::from_slice(b"{\"symkey\":\"x\"}"))
        }
    }

    fn node(brokers: &[&str]) -> NodeConfig {
        NodeConfig {
            brokers: brokers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn unwrap_ignores_other_parameters_and_checks_the_broker() {
        // The shape Go ocicrypt sends, with the user's private key among the parameters.
        let req = format!(
            r#"{{"op":"keyunwrap","keywrapparams":{{"ec":null,"optsdata":null}},"keyunwrapparams":{{"dc":{{"Parameters":{{"privkeys":["{}"],"privkeys-passwords":[""],"layercrypt":["RW5hYmxlZA=="]}}}},"annotation":"{}"}}}}"#,
            enc(b"-----BEGIN PRIVATE KEY-----"),
            enc(PAYLOAD)
        );
        let r = parse_request(req.as_bytes()).expect("parse");
        assert!(!format!("{r:?}").contains("PRIVATE"));
        let err = serve(&r, &node(&[]), &Fake).expect_err("untrusted broker");
        assert!(err
            .to_string()
            .contains("not in this node's allowed brokers"));
        let out = serve(&r, &node(&["https://keys.example.org/"]), &Fake).expect("serve");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v["keyunwrapresults"]["optsdata"],
            enc(b"{\"symkey\":\"x\"}")
        );
        let err = serve(&r, &node(&["https://keys.example.org"]), &NoBroker).expect_err("nb");
        assert_eq!(err.to_string(), NO_BROKER);
    }

    #[test]
    fn wrap_takes_group_parameters() {
        let req = format!(
            r#"{{"op":"keywrap","keywrapparams":{{"ec":{{"Parameters":{{"layercrypt":["{}"],"pubkeys":["eA=="]}},"DecryptConfig":{{"Parameters":{{}}}}}},"optsdata":"{}"}},"keyunwrapparams":{{"dc":null,"annotation":null}}}}"#,
            enc(b"group:vo.example.org"),
            enc(b"{}")
        );
        let r = parse_request(req.as_bytes()).expect("parse");
        let out = serve(&r, &node(&[]), &Fake).expect("wrap");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["keywrapresults"]["annotation"], enc(b"vo.example.org"));
        assert!(serve(&r, &node(&[]), &NoBroker).is_err());
    }

    #[test]
    fn rejects_bad_requests() {
        let bad = [
            "".to_string(),
            "{}".into(),
            r#"{"op":"other"}"#.into(),
            r#"{"op":"keyunwrap","keyunwrapparams":{"annotation":"!!"}}"#.into(),
            format!(r#"{{"op":"keyunwrap","keyunwrapparams":{{"annotation":"{}"}}}}"#, enc(b"{}")),
            format!(
                r#"{{"op":"keywrap","keywrapparams":{{"ec":{{"Parameters":{{"layercrypt":["{}"]}}}},"optsdata":"e30="}}}}"#,
                enc(b"vo.example.org")
            ),
            r#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"other":["eA=="]}},"optsdata":"e30="}}"#.into(),
        ];
        for b in bad {
            assert!(parse_request(b.as_bytes()).is_err(), "accepted {b}");
        }
    }
}
