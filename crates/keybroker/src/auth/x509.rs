//! X.509 client certificates: IGTF end-entity certificates (e.g. RCAuth.eu's) and RFC 3820
//! proxy certificates of them, verified against a CA directory in the
//! `/etc/grid-security/certificates` convention.
//!
//! The directory holds `<hash>.0` PEM files (and `*.pem`, for hand-made test directories),
//! `<hash>.r0` CRLs as written by fetch-crl, and the IGTF namespace constraints of each CA,
//! `<hash>.namespaces` and `<hash>.signing_policy` (see [`super::namespaces`]); `.info` and
//! `.crl_url` files are ignored.
//!
//! Namespaces: with ~90 IGTF CAs trusted, any of them could issue a certificate with the DN
//! of a user another CA certified, and grants name DNs. So, as Globus GSI, canl, VOMS and
//! gridsite do, every non-proxy certificate of a verified chain (the end entity, and each
//! intermediate CA) must have a subject its issuer's policy file permits: `.namespaces` if the
//! CA has one, else `.signing_policy`. Under [`NamespaceMode::Require`] (the default) a CA
//! with neither file signs nothing; [`NamespaceMode::IfPresent`] trusts such a CA for every
//! subject; [`NamespaceMode::Off`] trusts every CA for every subject. A policy file that does
//! not parse makes that CA's certificates fail closed. RFC 3820 proxies are signed by the end
//! entity, not a CA, and are not namespace-checked: OpenSSL's proxy rules already tie their
//! subjects to the end entity's.
//!
//! Chain building and signature/time/proxy-rule checks are OpenSSL's (`X509StoreContext` with
//! `ALLOW_PROXY_CERTS`). Revocation is checked here, after OpenSSL accepted the chain: every
//! non-proxy certificate whose issuer has a CRL in the directory is looked up in it. This is
//! done by hand because OpenSSL's `CRL_CHECK` demands a CRL for every issuer, proxies' issuers
//! (end-entity certificates) included, and because the `openssl` crate cannot add CRLs to a
//! store. A CRL that fails its signature check or has expired makes that CA's certificates
//! fail closed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use layercrypt_ocicrypt::keywrap::pkcs7::name_to_grid_string;
use openssl::asn1::Asn1Time;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{CrlStatus, X509Crl, X509StoreContext, X509};

use super::namespaces::{self, CaNamespace, NamespaceMode};
use super::{AuthError, Identity, Method};

/// Longest chain a client may present.
const MAX_CHAIN: usize = 10;
/// Largest certificate accepted, bytes.
const MAX_CERT_DER: usize = 64 * 1024;
/// DER of the id-pe-proxyCertInfo OID, 1.3.6.1.5.5.7.1.14 (RFC 3820).
const OID_PROXY_CERT_INFO: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x0E];

/// What is known about one issuer's revocation list.
enum CrlState {
    /// A CRL whose signature verified against the CA.
    Usable(X509Crl),
    /// A CRL file exists but cannot be trusted (bad signature, unparsable, no matching CA):
    /// this issuer's certificates are refused.
    Broken(String),
}

/// What is known about one CA's namespace constraints.
enum NamespaceState {
    /// Its `.namespaces` or `.signing_policy` file.
    Policy(CaNamespace),
    /// A policy file exists but does not parse or cannot be read: the CA signs nothing.
    Broken(String),
    /// Neither file exists.
    Missing,
}

/// Verifies client certificate chains against a grid CA directory.
pub struct CertVerifier {
    store: X509Store,
    /// CRLs by the DER of their issuer name.
    crls: HashMap<Vec<u8>, CrlState>,
    /// Namespace constraints by the DER of the CA's subject name (empty when `Off`).
    namespaces: HashMap<Vec<u8>, NamespaceState>,
    mode: NamespaceMode,
    dir: PathBuf,
    ca_count: usize,
}

impl std::fmt::Debug for CertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertVerifier")
            .field("ca_count", &self.ca_count)
            .field("crl_count", &self.crls.len())
            .field("namespaces", &self.mode)
            .finish()
    }
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

fn config_error(reason: impl Into<String>) -> AuthError {
    AuthError::Unavailable(reason.into())
}

/// `12345678.0`, `12345678.1`, …: a hashed CA file.
fn is_hashed_cert(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_digit()))
}

/// `12345678.r0`, …: a hashed CRL file.
fn is_hashed_crl(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        ext.len() > 1 && ext.starts_with('r') && ext[1..].bytes().all(|b| b.is_ascii_digit())
    })
}

impl CertVerifier {
    /// [`CertVerifier::from_ca_dir_with`] with the default [`NamespaceMode::Require`].
    pub fn from_ca_dir(dir: &Path) -> Result<Self, AuthError> {
        Self::from_ca_dir_with(dir, NamespaceMode::default())
    }

    /// Loads the CA certificates (`*.0`…`*.9`, `*.pem`), CRLs (`*.r0`…) and, unless `mode`
    /// is `Off`, each CA's `<hash>.namespaces` / `<hash>.signing_policy` in `dir`.
    /// Errors (as [`AuthError::Unavailable`], a configuration problem) if the directory
    /// cannot be read or holds no CA certificate. A policy file that does not parse is not
    /// an error here: it is logged, and that CA's certificates are refused.
    pub fn from_ca_dir_with(dir: &Path, mode: NamespaceMode) -> Result<Self, AuthError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            config_error(format!("cannot read CA directory {}: {e}", dir.display()))
        })?;
        let mut cas: Vec<X509> = Vec::new();
        let mut crl_files = Vec::new();
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if is_hashed_crl(name) {
                crl_files.push(path);
                continue;
            }
            if !(is_hashed_cert(name) || name.ends_with(".pem")) || !path.is_file() {
                continue;
            }
            let pem = std::fs::read(&path)
                .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
            match X509::stack_from_pem(&pem) {
                Ok(certs) if !certs.is_empty() => {
                    for cert in certs {
                        // `<hash>.0` is usually a symlink to `<alias>.pem`: keep one copy.
                        let der = cert.to_der().map_err(|e| config_error(e.to_string()))?;
                        let known = cas.iter().any(|c| c.to_der().is_ok_and(|d| d == der));
                        if !known {
                            cas.push(cert);
                        }
                    }
                }
                _ => tracing::warn!(file = %path.display(), "not a PEM certificate file; skipped"),
            }
        }
        if cas.is_empty() {
            return Err(config_error(format!(
                "no CA certificates in {}",
                dir.display()
            )));
        }
        let mut builder =
            X509StoreBuilder::new().map_err(|e| config_error(format!("X509 store: {e}")))?;
        for ca in &cas {
            builder
                .add_cert(ca.clone())
                .map_err(|e| config_error(format!("adding CA to store: {e}")))?;
        }
        builder
            // Not X509_STRICT: it demands an authorityKeyIdentifier, which proxies made by
            // grid tools usually lack.
            .set_flags(X509VerifyFlags::ALLOW_PROXY_CERTS)
            .map_err(|e| config_error(format!("X509 store flags: {e}")))?;
        let store = builder.build();

        let mut crls = HashMap::new();
        for path in crl_files {
            let bytes = std::fs::read(&path)
                .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
            let crl = match X509Crl::from_pem(&bytes).or_else(|_| X509Crl::from_der(&bytes)) {
                Ok(crl) => crl,
                Err(_) => {
                    // Without the issuer name we cannot tell whose CRL it was; the CRL of
                    // that CA is then simply missing (like a CA without a CRL).
                    tracing::warn!(file = %path.display(), "unparsable CRL ignored");
                    continue;
                }
            };
            let issuer_der = crl
                .issuer_name()
                .to_der()
                .map_err(|e| config_error(e.to_string()))?;
            let issuer_text = name_to_grid_string(crl.issuer_name());
            let ca = cas.iter().find(|c| {
                c.subject_name().to_der().is_ok_and(|d| d == issuer_der)
                    && c.public_key()
                        .is_ok_and(|k| crl.verify(&k).unwrap_or(false))
            });
            let state = match ca {
                Some(_) => CrlState::Usable(crl),
                None => {
                    tracing::warn!(file = %path.display(), issuer = %issuer_text,
                        "CRL signature does not verify against any CA; that CA's certificates will be refused");
                    CrlState::Broken(format!(
                        "CRL of {issuer_text} in {} does not verify",
                        path.display()
                    ))
                }
            };
            crls.insert(issuer_der, state);
        }
        let namespaces = load_namespaces(dir, &cas, mode)?;
        tracing::info!(dir = %dir.display(), cas = cas.len(), crls = crls.len(),
            namespace_files = namespaces.values().filter(|s| matches!(s, NamespaceState::Policy(_))).count(),
            namespaces = %mode, "CA directory loaded");
        Ok(Self {
            store,
            crls,
            namespaces,
            mode,
            dir: dir.to_owned(),
            ca_count: cas.len(),
        })
    }

    /// Number of distinct CA certificates loaded.
    pub fn ca_count(&self) -> usize {
        self.ca_count
    }

    /// Verifies a client's chain (leaf first, DER, as TLS presents it). The leaf may be an
    /// RFC 3820 proxy (of a proxy…) of an end-entity certificate; the identity is the
    /// end-entity subject in `/DC=…/CN=…` form, valid until the earliest `notAfter` in the
    /// verified chain.
    pub fn verify_chain(&self, chain_der: &[Vec<u8>]) -> Result<Identity, AuthError> {
        let Some((leaf_der, rest_der)) = chain_der.split_first() else {
            return Err(invalid("no client certificate"));
        };
        if chain_der.len() > MAX_CHAIN {
            return Err(invalid(format!("client chain longer than {MAX_CHAIN}")));
        }
        if chain_der.iter().any(|c| c.len() > MAX_CERT_DER) {
            return Err(invalid("client certificate too large"));
        }
        let leaf =
            X509::from_der(leaf_der).map_err(|_| invalid("client certificate is not DER X.509"))?;
        let mut untrusted = Stack::new().map_err(|e| invalid(format!("openssl: {e}")))?;
        for der in rest_der {
            let cert =
                X509::from_der(der).map_err(|_| invalid("a chain certificate is not DER X.509"))?;
            untrusted
                .push(cert)
                .map_err(|e| invalid(format!("openssl: {e}")))?;
        }
        let mut ctx = X509StoreContext::new().map_err(|e| invalid(format!("openssl: {e}")))?;
        let outcome = ctx
            .init(&self.store, &leaf, &untrusted, |c| {
                let ok = c.verify_cert()?;
                let chain: Vec<X509> = c
                    .chain()
                    .map(|s| s.iter().map(|x| x.to_owned()).collect())
                    .unwrap_or_default();
                Ok((ok, c.error(), c.error_depth(), chain))
            })
            .map_err(|e| invalid(format!("chain verification failed: {e}")))?;
        let (ok, error, depth, chain) = outcome;
        if !ok {
            return Err(invalid(format!(
                "certificate chain refused at depth {depth}: {}",
                error.error_string()
            )));
        }
        if chain.is_empty() {
            return Err(invalid("OpenSSL returned no verified chain"));
        }

        // The end entity is the first certificate (from the leaf) that is not a proxy.
        let ee_index = chain
            .iter()
            .position(|c| !is_proxy(c))
            .ok_or_else(|| invalid("chain holds only proxy certificates"))?;
        if ee_index + 1 >= chain.len() {
            // The EE would be the trust anchor itself: a self-signed "user" certificate that
            // someone put into the CA directory.
            return Err(invalid("end-entity certificate is itself a trust anchor"));
        }
        self.check_revocation(&chain[ee_index..])?;
        self.check_namespaces(&chain[ee_index..])?;

        let ee = &chain[ee_index];
        let mut expires_at = i64::MAX;
        for cert in &chain {
            expires_at = expires_at.min(unix_time(cert.not_after())?);
        }
        Ok(Identity {
            method: Method::Certificate,
            subject: None,
            dn: Some(name_to_grid_string(ee.subject_name())),
            entitlements: Vec::new(),
            expires_at: Some(expires_at),
        })
    }

    /// Checks each certificate from the end entity up (proxies excluded) against its
    /// issuer's CRL, when the directory has one.
    fn check_revocation(&self, chain: &[X509]) -> Result<(), AuthError> {
        let now = Asn1Time::days_from_now(0).map_err(|e| invalid(format!("openssl: {e}")))?;
        for pair in chain.windows(2) {
            let (cert, issuer) = (&pair[0], &pair[1]);
            let issuer_der = issuer
                .subject_name()
                .to_der()
                .map_err(|e| invalid(format!("openssl: {e}")))?;
            match self.crls.get(&issuer_der) {
                None => {}
                Some(CrlState::Broken(reason)) => return Err(invalid(reason.clone())),
                Some(CrlState::Usable(crl)) => {
                    let issuer_text = name_to_grid_string(issuer.subject_name());
                    if crl.next_update().is_some_and(|next| *next < *now) {
                        return Err(invalid(format!("CRL of {issuer_text} has expired")));
                    }
                    // RemoveFromCrl only occurs in delta CRLs: not revoked.
                    if let CrlStatus::Revoked(_) = crl.get_by_cert(cert) {
                        return Err(invalid(format!(
                            "certificate {} revoked by {issuer_text}",
                            name_to_grid_string(cert.subject_name())
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks each certificate from the end entity up (proxies excluded) against its issuer's
    /// namespace constraints.
    fn check_namespaces(&self, chain: &[X509]) -> Result<(), AuthError> {
        if self.mode == NamespaceMode::Off {
            return Ok(());
        }
        for pair in chain.windows(2) {
            let (cert, issuer) = (&pair[0], &pair[1]);
            let issuer_der = issuer
                .subject_name()
                .to_der()
                .map_err(|e| invalid(format!("openssl: {e}")))?;
            let subject = name_to_grid_string(cert.subject_name());
            let issuer_dn = name_to_grid_string(issuer.subject_name());
            match self.namespaces.get(&issuer_der) {
                Some(NamespaceState::Policy(ns)) => {
                    ns.policy.check(&issuer_dn, &subject).map_err(|why| {
                        invalid(format!(
                            "{subject} is outside the namespace of its issuer {issuer_dn} ({}: {why})",
                            ns.file.display()
                        ))
                    })?;
                }
                Some(NamespaceState::Broken(reason)) => {
                    return Err(invalid(format!(
                        "{subject} refused: the namespace policy of its issuer {issuer_dn} is unusable: {reason}"
                    )));
                }
                Some(NamespaceState::Missing) | None if self.mode == NamespaceMode::IfPresent => {}
                Some(NamespaceState::Missing) | None => {
                    // None: an intermediate the client sent that is not in the directory.
                    let hash = format!("{:08x}", issuer.subject_name_hash());
                    return Err(invalid(format!(
                        "{subject} refused: its issuer {issuer_dn} has neither {} nor {hash}.{} \
                         (tls.namespaces = \"require\": such a CA signs nothing; the IGTF CA \
                         distribution, e.g. ca-policy-egi-core, installs them)",
                        self.dir
                            .join(format!("{hash}.{}", namespaces::NAMESPACES_SUFFIX))
                            .display(),
                        namespaces::SIGNING_POLICY_SUFFIX,
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Each CA's namespace constraints (nothing when `mode` is `Off`), with the start-up warnings.
fn load_namespaces(
    dir: &Path,
    cas: &[X509],
    mode: NamespaceMode,
) -> Result<HashMap<Vec<u8>, NamespaceState>, AuthError> {
    let mut states = HashMap::new();
    if mode == NamespaceMode::Off {
        tracing::warn!(dir = %dir.display(),
            "tls.namespaces = \"off\": IGTF namespaces are not enforced, every CA in the directory is trusted for every subject DN");
        return Ok(states);
    }
    let mut missing = Vec::new();
    for ca in cas {
        let der = ca
            .subject_name()
            .to_der()
            .map_err(|e| config_error(e.to_string()))?;
        if states.contains_key(&der) {
            continue;
        }
        let hash = format!("{:08x}", ca.subject_name_hash());
        let state = match namespaces::load_for_hash(dir, &hash) {
            Ok(Some(ns)) => NamespaceState::Policy(ns),
            Ok(None) => {
                missing.push(format!(
                    "{} ({hash})",
                    name_to_grid_string(ca.subject_name())
                ));
                NamespaceState::Missing
            }
            Err(e) => {
                let reason = error_chain(&e);
                tracing::error!(error = %reason, ca = %name_to_grid_string(ca.subject_name()),
                    "namespace policy file unusable; this CA's certificates will be refused");
                NamespaceState::Broken(reason)
            }
        };
        states.insert(der, state);
    }
    if !missing.is_empty() {
        let cas = missing.join(", ");
        match mode {
            NamespaceMode::IfPresent => tracing::warn!(%cas,
                "CAs without a .namespaces or .signing_policy file are trusted for every subject DN (tls.namespaces = \"if-present\")"),
            _ => tracing::warn!(%cas,
                "CAs without a .namespaces or .signing_policy file sign nothing (tls.namespaces = \"require\"); the IGTF CA distribution installs these files"),
        }
    }
    Ok(states)
}

/// `e` and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn unix_time(t: &openssl::asn1::Asn1TimeRef) -> Result<i64, AuthError> {
    let epoch = Asn1Time::from_unix(0).map_err(|e| invalid(format!("openssl: {e}")))?;
    let diff = epoch
        .diff(t)
        .map_err(|e| invalid(format!("certificate time unreadable: {e}")))?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// True if `cert` carries the RFC 3820 proxyCertInfo extension.
fn is_proxy(cert: &X509) -> bool {
    let Ok(der) = cert.to_der() else {
        return false;
    };
    extension_oids(&der).is_some_and(|oids| oids.contains(&OID_PROXY_CERT_INFO))
}

/// One DER TLV: (tag, content, rest). Definite lengths only (DER).
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The extension OIDs (DER content bytes) of a certificate, or None if it does not parse.
fn extension_oids(cert_der: &[u8]) -> Option<Vec<&[u8]>> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xA3; // [3] EXPLICIT, constructed
    const OID: u8 = 0x06;
    let (tag, cert, _) = tlv(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut oids = Vec::new();
    while !tbs.is_empty() {
        let (tag, content, rest) = tlv(tbs)?;
        tbs = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (tag, mut exts, _) = tlv(content)?;
        if tag != SEQUENCE {
            return None;
        }
        while !exts.is_empty() {
            let (tag, ext, rest) = tlv(exts)?;
            exts = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, _) = tlv(ext)?;
            if tag != OID {
                return None;
            }
            oids.push(oid);
        }
    }
    Some(oids)
}

#[cfg(test)]
mod tests;
