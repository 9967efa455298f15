//! Recipients as the user names them: `jwe:PUB`, `x509:CERT` (or `pkcs7:CERT`),
//! `provider:NAME[:PARAM]`, `group:NAME`.

use std::path::{Path, PathBuf};

use layercrypt_group::payload::GroupName;
use layercrypt_group::wrap::{group_param, is_group_recipient};
use layercrypt_ocicrypt::keys::{jwk_thumbprint, load_certificates, load_public_key, Certificate};
use layercrypt_ocicrypt::keywrap::RecipientInfo;
use layercrypt_ocicrypt::spec::PROVIDER_LAYERCRYPT;
use layercrypt_ocicrypt::{EncryptConfig, ProviderRecipient};

use crate::error::{Error, Result};

/// One recipient as given on the command line, parsed but not yet loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientSpec {
    /// A JWE public key file (SPKI PEM/DER or JWK).
    Jwe(PathBuf),
    /// An X.509 certificate file (PEM or DER; a PEM bundle adds every certificate).
    X509(PathBuf),
    /// An ocicrypt key provider.
    Provider {
        /// Provider name.
        name: String,
        /// Optional parameter.
        param: Option<String>,
    },
    /// A broker group.
    Group(String),
}

impl std::str::FromStr for RecipientSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Recipient {
            spec: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected SCHEME:VALUE with SCHEME one of jwe, x509 (or pkcs7), provider, group")
        })?;
        if rest.is_empty() {
            return Err(bad("nothing after the scheme"));
        }
        Ok(match scheme {
            "jwe" => RecipientSpec::Jwe(rest.into()),
            "x509" | "pkcs7" => RecipientSpec::X509(rest.into()),
            "provider" => {
                let (name, param) = match rest.split_once(':') {
                    Some((n, p)) => (n.to_owned(), Some(p.to_owned())),
                    None => (rest.to_owned(), None),
                };
                RecipientSpec::Provider { name, param }
            }
            "group" => RecipientSpec::Group(rest.to_owned()),
            _ => return Err(bad("unknown scheme; use jwe:, x509:, provider: or group:")),
        })
    }
}

impl std::fmt::Display for RecipientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecipientSpec::Jwe(p) => write!(f, "jwe:{}", p.display()),
            RecipientSpec::X509(p) => write!(f, "x509:{}", p.display()),
            RecipientSpec::Provider {
                name,
                param: Some(p),
            } => write!(f, "provider:{name}:{p}"),
            RecipientSpec::Provider { name, param: None } => write!(f, "provider:{name}"),
            RecipientSpec::Group(g) => write!(f, "group:{g}"),
        }
    }
}

fn with_spec(spec: &RecipientSpec) -> impl Fn(layercrypt_ocicrypt::Error) -> Error + '_ {
    move |e| Error::Recipient {
        spec: spec.to_string(),
        reason: e.to_string(),
    }
}

fn certificates(spec: &RecipientSpec, path: &Path) -> Result<Vec<Certificate>> {
    let certs = load_certificates(path).map_err(with_spec(spec))?;
    if certs.is_empty() {
        return Err(Error::Recipient {
            spec: spec.to_string(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn group_name(spec: &RecipientSpec, g: &str) -> Result<GroupName> {
    g.parse().map_err(
        |e: layercrypt_group::payload::PayloadError| Error::Recipient {
            spec: spec.to_string(),
            reason: e.to_string(),
        },
    )
}

/// Loads every recipient into an [`EncryptConfig`]. Fails on the first unusable one, naming it.
pub fn encrypt_config(specs: &[RecipientSpec]) -> Result<EncryptConfig> {
    let mut ec = EncryptConfig::default();
    for spec in specs {
        match spec {
            RecipientSpec::Jwe(path) => {
                ec.jwe.push(load_public_key(path).map_err(with_spec(spec))?)
            }
            RecipientSpec::X509(path) => ec.pkcs7.extend(certificates(spec, path)?),
            RecipientSpec::Provider { name, param } => ec.providers.push(ProviderRecipient {
                name: name.clone(),
                param: param.as_ref().map(|p| p.as_bytes().to_vec()),
            }),
            RecipientSpec::Group(g) => ec.providers.push(ProviderRecipient {
                name: PROVIDER_LAYERCRYPT.into(),
                param: Some(group_param(&group_name(spec, g)?)),
            }),
        }
    }
    if ec.is_empty() {
        return Err(Error::Recipient {
            spec: String::new(),
            reason: "give at least one --recipient".into(),
        });
    }
    Ok(ec)
}

/// A predicate that matches the layer recipients named by `specs` (for `--remove-recipient`):
/// JWE keys by RFC 7638 thumbprint (the `kid` layercrypt writes), certificates by issuer and
/// serial, providers by name, groups by the group named in the layercrypt payload.
pub fn removal_matcher(specs: &[RecipientSpec]) -> Result<impl Fn(&RecipientInfo) -> bool> {
    let mut thumbprints = Vec::new();
    let mut issuer_serials = Vec::new();
    let mut providers = Vec::new();
    let mut groups = Vec::new();
    for spec in specs {
        match spec {
            RecipientSpec::Jwe(path) => {
                let key = load_public_key(path).map_err(with_spec(spec))?;
                thumbprints.push(jwk_thumbprint(key.pkey()).map_err(with_spec(spec))?);
            }
            RecipientSpec::X509(path) => {
                for c in certificates(spec, path)? {
                    let s = c.summary();
                    issuer_serials.push((s.issuer, s.serial));
                }
            }
            RecipientSpec::Provider { name, .. } => providers.push(name.clone()),
            RecipientSpec::Group(g) => groups.push(group_name(spec, g)?),
        }
    }
    Ok(move |r: &RecipientInfo| match r {
        RecipientInfo::Jwe {
            thumbprint: Some(t),
            ..
        } => thumbprints.contains(t),
        RecipientInfo::Pkcs7 { issuer, serial } => issuer_serials
            .iter()
            .any(|(i, s)| i == issuer && s == serial),
        RecipientInfo::Provider { name, .. } if providers.contains(name) => true,
        r @ RecipientInfo::Provider { .. } => groups.iter().any(|g| is_group_recipient(r, g)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            "jwe:a.pem".parse::<RecipientSpec>().ok(),
            Some(RecipientSpec::Jwe("a.pem".into()))
        );
        assert_eq!(
            "pkcs7:c.pem".parse::<RecipientSpec>().ok(),
            Some(RecipientSpec::X509("c.pem".into()))
        );
        assert_eq!(
            "provider:kp:x:y".parse::<RecipientSpec>().ok(),
            Some(RecipientSpec::Provider {
                name: "kp".into(),
                param: Some("x:y".into())
            })
        );
        assert!("a.pem".parse::<RecipientSpec>().is_err());
        assert!("pgp:me".parse::<RecipientSpec>().is_err());
        assert!("jwe:".parse::<RecipientSpec>().is_err());
        assert_eq!(
            "group:vo.example.org".parse::<RecipientSpec>().ok(),
            Some(RecipientSpec::Group("vo.example.org".into()))
        );
    }

    #[test]
    fn group_recipients() {
        let ec = encrypt_config(&[RecipientSpec::Group("vo.example.org".into())]).expect("config");
        assert_eq!(
            ec.providers,
            vec![ProviderRecipient {
                name: "layercrypt".into(),
                param: Some(b"group:vo.example.org".to_vec())
            }]
        );
        assert!(encrypt_config(&[RecipientSpec::Group("a/b".into())]).is_err());
        let m = removal_matcher(&[RecipientSpec::Group("vo.example.org".into())]).expect("matcher");
        let info = |d: &str| RecipientInfo::Provider {
            name: "layercrypt".into(),
            detail: Some(d.into()),
        };
        assert!(m(&info(
            "group vo.example.org (key version 2) at https://b"
        )));
        assert!(!m(&info(
            "group vo.example.org.x (key version 2) at https://b"
        )));
        assert!(!m(&RecipientInfo::Provider {
            name: "other".into(),
            detail: None
        }));
    }
}
