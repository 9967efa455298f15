//! The ocicrypt key-provider protocol, client side (cmd invocation).
//!
//! A key provider is an external program (or gRPC service) that wraps and unwraps the private
//! options; its opaque output is stored in `org.opencontainers.image.enc.keys.provider.<name>`.
//! Configuration comes from the JSON file named by `OCICRYPT_KEYPROVIDER_CONFIG`:
//! `{"key-providers":{"<name>":{"cmd":{"path":"…","args":["…"]}}}}`.
//!
//! Unlike Go ocicrypt, which sends every decryption parameter (including the user's other
//! private keys) to every provider, we send a provider only its own parameters.
//! gRPC providers are recognised in the configuration but not implemented here: they are
//! reported as an error naming the provider.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KeyWrapper, RecipientInfo};
use crate::config::{DecryptConfig, EncryptConfig};
use crate::error::{Error, Result};
use crate::secret::SecretBytes;
use crate::spec::ANNOTATION_KEYS_PROVIDER_PREFIX;

/// Environment variable naming the key-provider configuration file.
pub const ENV_KEYPROVIDER_CONFIG: &str = "OCICRYPT_KEYPROVIDER_CONFIG";
/// Operation name for wrapping.
pub const OP_KEYWRAP: &str = "keywrap";
/// Operation name for unwrapping.
pub const OP_KEYUNWRAP: &str = "keyunwrap";
/// Parameter ocicrypt sends when `provider:<name>` has no parameter.
pub const PARAM_ENABLED: &[u8] = b"Enabled";
/// Largest reply we read from a provider.
const MAX_REPLY: usize = 1024 * 1024;
/// Largest configuration file we read.
const MAX_CONFIG: u64 = 1024 * 1024;

/// How a provider is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run a program: request on stdin, reply on stdout.
    Cmd {
        /// Program path.
        path: PathBuf,
        /// Arguments.
        args: Vec<String>,
    },
    /// A gRPC endpoint (`host:port`); not supported by this client.
    Grpc(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(rename = "key-providers", default)]
    key_providers: BTreeMap<String, ProviderEntry>,
}

#[derive(Deserialize)]
struct ProviderEntry {
    cmd: Option<CmdEntry>,
    grpc: Option<String>,
}

#[derive(Deserialize)]
struct CmdEntry {
    path: PathBuf,
    #[serde(default)]
    args: Vec<String>,
}

/// Parses a key-provider configuration file's content.
pub fn parse_config(json: &[u8], source: &Path) -> Result<BTreeMap<String, Invocation>> {
    let err = |reason: String| Error::KeyFile {
        path: source.to_owned(),
        reason,
    };
    let file: ConfigFile =
        serde_json::from_slice(json).map_err(|e| err(format!("not a key-provider config: {e}")))?;
    file.key_providers
        .into_iter()
        .map(|(name, entry)| {
            if name.is_empty() || name.contains([',', '/']) {
                return Err(err(format!("invalid provider name {name:?}")));
            }
            let inv = match (entry.cmd, entry.grpc) {
                (Some(c), _) => Invocation::Cmd {
                    path: c.path,
                    args: c.args,
                },
                (None, Some(g)) => Invocation::Grpc(g),
                (None, None) => {
                    return Err(err(format!(
                        "provider {name}: needs \"cmd\": {{\"path\": …}} or \"grpc\""
                    )))
                }
            };
            Ok((name, inv))
        })
        .collect()
}

/// Reads the configuration named by `OCICRYPT_KEYPROVIDER_CONFIG`; no variable = no providers.
pub fn load_config_from_env() -> Result<BTreeMap<String, Invocation>> {
    let Some(path) = std::env::var_os(ENV_KEYPROVIDER_CONFIG) else {
        return Ok(BTreeMap::new());
    };
    let path = PathBuf::from(path);
    let meta = std::fs::metadata(&path).map_err(|e| Error::KeyFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if meta.len() > MAX_CONFIG {
        return Err(Error::KeyFile {
            path,
            reason: "larger than 1 MiB".into(),
        });
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::KeyFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    parse_config(&bytes, &path)
}

/// Base64 bytes, as Go marshals `[]byte`.
mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Go's `map[string][][]byte`.
type Params = BTreeMap<String, Vec<String>>;

#[derive(Serialize)]
struct ParamsWrapper {
    #[serde(rename = "Parameters")]
    parameters: Params,
}

#[derive(Serialize)]
struct EncryptConfigJson {
    #[serde(rename = "Parameters")]
    parameters: Params,
    #[serde(rename = "DecryptConfig")]
    decrypt_config: ParamsWrapper,
}

#[derive(Serialize)]
struct KeyWrapParams {
    ec: Option<EncryptConfigJson>,
    #[serde(with = "b64")]
    optsdata: Option<Vec<u8>>,
}

#[derive(Serialize)]
struct KeyUnwrapParams {
    dc: Option<ParamsWrapper>,
    #[serde(with = "b64")]
    annotation: Option<Vec<u8>>,
}

/// The request ocicrypt sends to a provider (same JSON over cmd and gRPC).
#[derive(Serialize)]
struct Request {
    op: &'static str,
    keywrapparams: KeyWrapParams,
    keyunwrapparams: KeyUnwrapParams,
}

#[derive(Deserialize)]
struct WrapResults {
    #[serde(with = "b64", default)]
    annotation: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct UnwrapResults {
    #[serde(with = "b64", default)]
    optsdata: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Reply {
    keywrapresults: Option<WrapResults>,
    keyunwrapresults: Option<UnwrapResults>,
}

/// A key provider as a [`KeyWrapper`].
#[derive(Debug, Clone)]
pub struct KeyProviderKeyWrapper {
    name: String,
    annotation_key: String,
    invocation: Invocation,
    timeout: Duration,
}

impl KeyProviderKeyWrapper {
    /// A provider called `name`, invoked as `invocation`.
    pub fn new(name: &str, invocation: Invocation) -> Self {
        Self {
            name: name.to_owned(),
            annotation_key: format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{name}"),
            invocation,
            timeout: Duration::from_secs(120),
        }
    }

    /// Changes how long one call may take (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn params(&self, values: &[Vec<u8>]) -> Params {
        let mut p = Params::new();
        p.insert(
            self.name.clone(),
            values.iter().map(|v| STANDARD.encode(v)).collect(),
        );
        p
    }

    fn call(&self, request: &Request) -> Result<Reply> {
        let err = |reason: String| Error::KeyProvider {
            name: self.name.clone(),
            reason,
        };
        let (path, args) = match &self.invocation {
            Invocation::Cmd { path, args } => (path, args),
            Invocation::Grpc(addr) => {
                return Err(err(format!(
                    "gRPC key providers ({addr}) are not supported; configure it with \"cmd\""
                )))
            }
        };
        // The request carries the private options in the clear when wrapping.
        let body = Zeroizing::new(
            serde_json::to_vec(request).map_err(|e| err(format!("encoding request: {e}")))?,
        );
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", path.display())))?;
        let mut stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
        let mut stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
        let mut stderr = child.stderr.take().ok_or_else(|| err("no stderr".into()))?;
        let writer = std::thread::spawn(move || {
            let r = stdin.write_all(&body);
            drop(stdin);
            r
        });
        let out_reader = std::thread::spawn(move || {
            let mut buf = Zeroizing::new(Vec::new());
            let r = (&mut stdout)
                .take(MAX_REPLY as u64 + 1)
                .read_to_end(&mut buf);
            r.map(|_| buf)
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(err(format!(
                        "no answer within {} s",
                        self.timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(err(format!("waiting for the provider: {e}"))),
            }
        };
        let _ = writer.join();
        let out = out_reader
            .join()
            .map_err(|_| err("reader thread failed".into()))?
            .map_err(|e| err(format!("reading its reply: {e}")))?;
        let stderr_text = err_reader.join().unwrap_or_default();
        if !status.success() {
            let msg = String::from_utf8_lossy(&stderr_text);
            let msg: String = msg.trim().chars().take(500).collect();
            return Err(err(format!("exited with {status}: {msg}")));
        }
        if out.len() > MAX_REPLY {
            return Err(err("reply larger than 1 MiB".into()));
        }
        serde_json::from_slice(&out).map_err(|_| err("reply is not the key-provider JSON".into()))
    }
}

impl KeyWrapper for KeyProviderKeyWrapper {
    fn annotation_key(&self) -> &str {
        &self.annotation_key
    }

    fn wrap(&self, ec: &EncryptConfig, opts: &SecretBytes) -> Result<Option<Vec<u8>>> {
        let values: Vec<Vec<u8>> = ec
            .providers
            .iter()
            .filter(|p| p.name == self.name)
            .map(|p| p.param.clone().unwrap_or_else(|| PARAM_ENABLED.to_vec()))
            .collect();
        if values.is_empty() {
            return Ok(None);
        }
        let request = Request {
            op: OP_KEYWRAP,
            keywrapparams: KeyWrapParams {
                ec: Some(EncryptConfigJson {
                    parameters: self.params(&values),
                    decrypt_config: ParamsWrapper {
                        parameters: Params::new(),
                    },
                }),
                optsdata: Some(opts.expose_secret().to_vec()),
            },
            keyunwrapparams: KeyUnwrapParams {
                dc: None,
                annotation: None,
            },
        };
        let reply = self.call(&request);
        if let Some(d) = request.keywrapparams.optsdata {
            drop(Zeroizing::new(d));
        }
        let annotation = reply?
            .keywrapresults
            .and_then(|r| r.annotation)
            .ok_or_else(|| Error::KeyProvider {
                name: self.name.clone(),
                reason: "reply has no keywrapresults.annotation".into(),
            })?;
        if annotation.is_empty() {
            return Err(Error::KeyProvider {
                name: self.name.clone(),
                reason: "empty annotation".into(),
            });
        }
        Ok(Some(annotation))
    }

    fn has_possible_keys(&self, _dc: &DecryptConfig) -> bool {
        // As in ocicrypt: a configured provider is always asked.
        true
    }

    fn unwrap(&self, dc: &DecryptConfig, item: &[u8]) -> Option<Result<SecretBytes>> {
        let values = dc
            .provider_params
            .get(&self.name)
            .cloned()
            .unwrap_or_default();
        let request = Request {
            op: OP_KEYUNWRAP,
            keywrapparams: KeyWrapParams {
                ec: None,
                optsdata: None,
            },
            keyunwrapparams: KeyUnwrapParams {
                dc: Some(ParamsWrapper {
                    parameters: self.params(&values),
                }),
                annotation: Some(item.to_vec()),
            },
        };
        let reply = match self.call(&request) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        match reply.keyunwrapresults.and_then(|r| r.optsdata) {
            Some(d) if !d.is_empty() => Some(Ok(SecretBytes::new(d))),
            _ => Some(Err(Error::KeyProvider {
                name: self.name.clone(),
                reason: "reply has no keyunwrapresults.optsdata".into(),
            })),
        }
    }

    fn recipients(&self, _item: &[u8]) -> Result<Vec<RecipientInfo>> {
        Ok(vec![RecipientInfo::Provider {
            name: self.name.clone(),
            detail: None,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderRecipient;

    #[test]
    fn parses_config_and_rejects_the_broken_doc_example() {
        let good = br#"{"key-providers":{"kp":{"cmd":{"path":"/bin/kp","args":["-x"]}},"g":{"grpc":"127.0.0.1:1"}}}"#;
        let c = parse_config(good, Path::new("c.json")).expect("parse");
        assert_eq!(
            c["kp"],
            Invocation::Cmd {
                path: "/bin/kp".into(),
                args: vec!["-x".into()]
            }
        );
        assert_eq!(c["g"], Invocation::Grpc("127.0.0.1:1".into()));
        let doc_example = br#"{"key-providers":{"kp":{"path":"/bin/kp","args":[]}}}"#;
        assert!(parse_config(doc_example, Path::new("c.json")).is_err());
    }

    #[test]
    fn request_json_matches_go() {
        let w = KeyProviderKeyWrapper::new("testkp", Invocation::Grpc(String::new()));
        let req = Request {
            op: OP_KEYUNWRAP,
            keywrapparams: KeyWrapParams {
                ec: None,
                optsdata: None,
            },
            keyunwrapparams: KeyUnwrapParams {
                dc: Some(ParamsWrapper {
                    parameters: w.params(&[b"unwrap-param-1".to_vec()]),
                }),
                annotation: Some(b"abc".to_vec()),
            },
        };
        assert_eq!(
            serde_json::to_string(&req).expect("json"),
            r#"{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{"testkp":["dW53cmFwLXBhcmFtLTE="]}},"annotation":"YWJj"}}"#
        );
    }

    /// A real provider program: a shell script that wraps by base64-encoding the request's
    /// optsdata into the annotation (a toy, but it exercises the whole cmd protocol).
    #[test]
    fn cmd_provider_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let script = dir.path().join("kp.py");
        std::fs::write(
            &script,
            "#!/usr/bin/env python3\nimport json,sys\nr=json.load(sys.stdin)\n\
             if r['op']=='keywrap':\n  print(json.dumps({'keywrapresults':{'annotation':r['keywrapparams']['optsdata']}}))\n\
             else:\n  assert 'privkeys' not in r['keyunwrapparams']['dc']['Parameters']\n  print(json.dumps({'keyunwrapresults':{'optsdata':r['keyunwrapparams']['annotation']}}))\n",
        )
        .expect("write");
        let w = KeyProviderKeyWrapper::new(
            "toy",
            Invocation::Cmd {
                path: "python3".into(),
                args: vec![script.display().to_string()],
            },
        );
        let ec = EncryptConfig {
            providers: vec![ProviderRecipient {
                name: "toy".into(),
                param: None,
            }],
            ..Default::default()
        };
        let opts = SecretBytes::from_slice(b"{\"symkey\":\"x\"}");
        let item = w.wrap(&ec, &opts).expect("wrap").expect("some");
        let back = w
            .unwrap(&DecryptConfig::default(), &item)
            .expect("some")
            .expect("ok");
        assert_eq!(back.expose_secret(), opts.expose_secret());
        assert!(w
            .wrap(&EncryptConfig::default(), &opts)
            .expect("ok")
            .is_none());
    }

    #[test]
    fn failing_provider_reports_stderr() {
        let w = KeyProviderKeyWrapper::new(
            "bad",
            Invocation::Cmd {
                path: "sh".into(),
                args: vec![
                    "-c".into(),
                    "echo 'not a member of group x' >&2; exit 3".into(),
                ],
            },
        );
        let e = w
            .unwrap(&DecryptConfig::default(), b"x")
            .expect("some")
            .expect_err("fails");
        assert!(e.to_string().contains("not a member of group x"), "{e}");
        let missing = KeyProviderKeyWrapper::new(
            "missing",
            Invocation::Cmd {
                path: "/nonexistent/kp".into(),
                args: vec![],
            },
        );
        assert!(missing
            .unwrap(&DecryptConfig::default(), b"x")
            .expect("some")
            .is_err());
    }

    #[test]
    fn hung_provider_times_out() {
        let w = KeyProviderKeyWrapper::new(
            "slow",
            Invocation::Cmd {
                path: "sleep".into(),
                args: vec!["30".into()],
            },
        )
        .with_timeout(Duration::from_millis(300));
        let e = w
            .unwrap(&DecryptConfig::default(), b"x")
            .expect("some")
            .expect_err("timeout");
        assert!(e.to_string().contains("no answer"), "{e}");
    }
}
