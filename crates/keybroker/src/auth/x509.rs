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
mod tests {
    //! Chains built in-process with the `openssl` crate: a CA, an RCAuth-like end entity, an
    //! RFC 3820 proxy of it (proxyCertInfo via the config-string API), an untrusted CA, an
    //! expired certificate, a CRL.
    use super::*;
    use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString};
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
    use openssl::x509::{
        X509CrlBuilder, X509Extension, X509Name, X509NameBuilder, X509RevokedBuilder,
    };

    const EE_DN: &[(&str, &str)] = &[
        ("DC", "eu"),
        ("DC", "rcauth"),
        ("DC", "rcauth-clients"),
        ("O", "EGI Foundation"),
        ("CN", "Jane Doe 7ewsApjEZsBcCLz-"),
    ];
    const EE_GRID: &str =
        "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-";

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey")
    }

    fn name(parts: &[(&str, &str)]) -> X509Name {
        let mut b = X509NameBuilder::new().expect("name");
        for (k, v) in parts {
            b.append_entry_by_text(k, v).expect("entry");
        }
        b.build()
    }

    struct Issued {
        cert: X509,
        key: PKey<Private>,
    }

    #[derive(Clone, Copy)]
    enum Kind {
        Ca,
        EndEntity,
        Proxy,
    }

    fn issue(
        subject: &X509Name,
        kind: Kind,
        serial: u32,
        issuer: Option<&Issued>,
        days: (i64, i64),
    ) -> Issued {
        let key = key();
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("v3");
        let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).expect("bn")).expect("int");
        b.set_serial_number(&serial).expect("serial");
        b.set_subject_name(subject).expect("subject");
        b.set_issuer_name(issuer.map_or(subject, |i| i.cert.subject_name()))
            .expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        let now = now_unix();
        b.set_not_before(&Asn1Time::from_unix(now + days.0 * 86_400).expect("t"))
            .expect("nb");
        b.set_not_after(&Asn1Time::from_unix(now + days.1 * 86_400).expect("t"))
            .expect("na");
        match kind {
            Kind::Ca => {
                b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                    .expect("ext");
                let ski = SubjectKeyIdentifier::new()
                    .build(&b.x509v3_context(None, None))
                    .expect("ski");
                b.append_extension(ski).expect("ext");
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .key_cert_sign()
                        .crl_sign()
                        .build()
                        .expect("ku"),
                )
                .expect("ext");
            }
            Kind::EndEntity => {
                b.append_extension(BasicConstraints::new().critical().build().expect("bc"))
                    .expect("ext");
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .digital_signature()
                        .key_encipherment()
                        .build()
                        .expect("ku"),
                )
                .expect("ext");
            }
            Kind::Proxy => {
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .digital_signature()
                        .key_encipherment()
                        .build()
                        .expect("ku"),
                )
                .expect("ext");
                // ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint omitted,
                //   proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll (1.3.6.1.5.5.7.21.1) } }
                let value: &[u8] = &[
                    0x30, 0x0C, 0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15,
                    0x01,
                ];
                let oid = Asn1Object::from_str("1.3.6.1.5.5.7.1.14").expect("oid");
                let ext = X509Extension::new_from_der(
                    &oid,
                    true,
                    &Asn1OctetString::new_from_bytes(value).expect("octets"),
                )
                .expect("proxyCertInfo");
                b.append_extension(ext).expect("ext");
            }
        }
        let signer = issuer.map_or(&key, |i| &i.key);
        b.sign(signer, MessageDigest::sha256()).expect("sign");
        Issued {
            cert: b.build(),
            key,
        }
    }

    fn now_unix() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    }

    fn proxy_of(ee: &Issued, serial: u32) -> Issued {
        let mut parts: Vec<(String, String)> = ee
            .cert
            .subject_name()
            .entries()
            .map(|e| {
                (
                    e.object().nid().short_name().expect("sn").to_owned(),
                    e.data().to_string().expect("utf8"),
                )
            })
            .collect();
        parts.push(("CN".into(), serial.to_string()));
        let borrowed: Vec<(&str, &str)> = parts
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        issue(&name(&borrowed), Kind::Proxy, serial, Some(ee), (0, 1))
    }

    struct Pki {
        dir: tempfile::TempDir,
        ca: Issued,
        ee: Issued,
    }

    fn rcauth_ca() -> Issued {
        issue(
            &name(&[
                ("DC", "eu"),
                ("DC", "rcauth"),
                ("O", "Certification Authorities"),
                (
                    "CN",
                    "Research and Collaboration Authentication Pilot G1 CA",
                ),
            ]),
            Kind::Ca,
            1,
            None,
            (-1, 365),
        )
    }

    /// The RCAuth namespace, as in the IGTF distribution's signing policy for RCAuth.
    const RCAUTH_NAMESPACE: &str = "/DC=eu/DC=rcauth/DC=rcauth-clients/*";

    /// Writes `ca` into `dir` as `<hash>.0`.
    fn install(dir: &Path, ca: &X509) {
        std::fs::write(
            dir.join(format!("{:08x}.0", ca.subject_name_hash())),
            ca.to_pem().expect("pem"),
        )
        .expect("write");
    }

    /// Writes `<hash>.<suffix>` for `ca` into `dir`.
    fn write_policy(dir: &Path, ca: &X509, suffix: &str, text: &str) {
        std::fs::write(
            dir.join(format!("{:08x}.{suffix}", ca.subject_name_hash())),
            text,
        )
        .expect("write");
    }

    /// A Globus EACL letting `ca` sign `globs`.
    fn signing_policy(ca: &X509, globs: &[&str]) -> String {
        let globs: Vec<String> = globs.iter().map(|g| format!("\"{g}\"")).collect();
        format!(
            "# EACL\n access_id_CA   X509    '{}'\n pos_rights     globus  CA:sign\n cond_subjects  globus  '{}'\n",
            name_to_grid_string(ca.subject_name()),
            globs.join(" ")
        )
    }

    /// The RCAuth-like CA, installed with a signing policy for the RCAuth namespace, and Jane.
    fn pki() -> Pki {
        let ca = rcauth_ca();
        let ee = issue(&name(EE_DN), Kind::EndEntity, 2, Some(&ca), (-1, 11));
        let dir = tempfile::tempdir().expect("tempdir");
        install(dir.path(), &ca.cert);
        write_policy(
            dir.path(),
            &ca.cert,
            "signing_policy",
            &signing_policy(&ca.cert, &[RCAUTH_NAMESPACE]),
        );
        Pki { dir, ca, ee }
    }

    fn der(certs: &[&X509]) -> Vec<Vec<u8>> {
        certs.iter().map(|c| c.to_der().expect("der")).collect()
    }

    fn reason(r: Result<Identity, AuthError>) -> String {
        match r {
            Err(AuthError::Invalid(s)) => s,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn end_entity_gives_grid_dn() {
        let p = pki();
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
        assert_eq!(v.ca_count(), 1);
        let id = v.verify_chain(&der(&[&p.ee.cert])).expect("valid EE");
        assert_eq!(id.method, Method::Certificate);
        assert_eq!(id.dn.as_deref(), Some(EE_GRID));
        assert_eq!(
            id.expires_at,
            Some(unix_time(p.ee.cert.not_after()).expect("t"))
        );
    }

    #[test]
    fn proxy_and_proxy_of_proxy_give_ee_dn() {
        let p = pki();
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
        let proxy = proxy_of(&p.ee, 1234);
        assert!(is_proxy(&proxy.cert) && !is_proxy(&p.ee.cert));
        let id = v
            .verify_chain(&der(&[&proxy.cert, &p.ee.cert]))
            .expect("proxy");
        assert_eq!(id.dn.as_deref(), Some(EE_GRID));
        // The proxy expires first (1 day vs 11).
        assert_eq!(
            id.expires_at,
            Some(unix_time(proxy.cert.not_after()).expect("t"))
        );
        let proxy2 = proxy_of(&proxy, 99);
        let id = v
            .verify_chain(&der(&[&proxy2.cert, &proxy.cert, &p.ee.cert]))
            .expect("proxy of proxy");
        assert_eq!(id.dn.as_deref(), Some(EE_GRID));
    }

    #[test]
    fn untrusted_expired_and_bad_proxies_refused() {
        let p = pki();
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");

        let rogue_ca = rcauth_ca(); // same DN, different key
        let rogue_ee = issue(&name(EE_DN), Kind::EndEntity, 2, Some(&rogue_ca), (-1, 11));
        let r = reason(v.verify_chain(&der(&[&rogue_ee.cert])));
        assert!(r.contains("depth"), "{r}");
        let rogue_proxy = proxy_of(&rogue_ee, 5);
        reason(v.verify_chain(&der(&[&rogue_proxy.cert, &rogue_ee.cert])));
        reason(v.verify_chain(&der(&[&rogue_proxy.cert, &rogue_ee.cert, &rogue_ca.cert])));

        let expired = issue(&name(EE_DN), Kind::EndEntity, 3, Some(&p.ca), (-30, -1));
        let r = reason(v.verify_chain(&der(&[&expired.cert])));
        assert!(r.contains("expired"), "{r}");
        let expired_proxy = issue(
            &name(&[EE_DN, &[("CN", "7")]].concat()),
            Kind::Proxy,
            7,
            Some(&p.ee),
            (-3, -1),
        );
        let r = reason(v.verify_chain(&der(&[&expired_proxy.cert, &p.ee.cert])));
        assert!(r.contains("expired"), "{r}");

        // A "proxy" whose subject does not extend the EE's.
        let bad = issue(
            &name(&[("CN", "someone else")]),
            Kind::Proxy,
            8,
            Some(&p.ee),
            (0, 1),
        );
        reason(v.verify_chain(&der(&[&bad.cert, &p.ee.cert])));
        // An EE signing a non-proxy certificate.
        let fake = issue(
            &name(&[("CN", "fake")]),
            Kind::EndEntity,
            9,
            Some(&p.ee),
            (0, 1),
        );
        reason(v.verify_chain(&der(&[&fake.cert, &p.ee.cert])));
        // A proxy without the EE in the chain.
        let proxy = proxy_of(&p.ee, 10);
        reason(v.verify_chain(&der(&[&proxy.cert])));
        // Garbage and empty input.
        assert!(reason(v.verify_chain(&[])).contains("no client certificate"));
        reason(v.verify_chain(&[vec![0x30, 0x03, 0x02, 0x01, 0x01]]));
        // The CA itself presented as a client certificate.
        reason(v.verify_chain(&der(&[&p.ca.cert])));
    }

    fn write_crl(p: &Pki, revoked: &[&X509], signer: &Issued, next_update_days: i64) {
        let mut b = X509CrlBuilder::new().expect("crl");
        b.set_issuer_name(p.ca.cert.subject_name()).expect("issuer");
        b.set_last_update(&Asn1Time::from_unix(now_unix() - 3600).expect("t"))
            .expect("last");
        b.set_next_update(&Asn1Time::from_unix(now_unix() + next_update_days * 86_400).expect("t"))
            .expect("next");
        for cert in revoked {
            let mut r = X509RevokedBuilder::new().expect("revoked");
            r.set_serial_number(cert.serial_number()).expect("serial");
            r.set_revocation_date(&Asn1Time::from_unix(now_unix() - 60).expect("t"))
                .expect("date");
            b.add_revoked(r.build()).expect("revoke");
        }
        // rust-openssl's CRL builder insists on an authorityKeyIdentifier:
        // SEQUENCE { [0] keyIdentifier } with the CA's subjectKeyIdentifier.
        let ski =
            p.ca.cert
                .subject_key_id()
                .expect("CA has an SKI")
                .as_slice();
        let mut aki = vec![0x30, ski.len() as u8 + 2, 0x80, ski.len() as u8];
        aki.extend_from_slice(ski);
        b.append_extension(
            X509Extension::new_from_der(
                &Asn1Object::from_str("2.5.29.35").expect("oid"),
                false,
                &Asn1OctetString::new_from_bytes(&aki).expect("octets"),
            )
            .expect("aki"),
        )
        .expect("ext");
        // … and a cRLNumber (INTEGER 1).
        b.append_extension(
            X509Extension::new_from_der(
                &Asn1Object::from_str("2.5.29.20").expect("oid"),
                false,
                &Asn1OctetString::new_from_bytes(&[0x02, 0x01, 0x01]).expect("octets"),
            )
            .expect("crl number"),
        )
        .expect("ext");
        b.sign(&signer.key, MessageDigest::sha256()).expect("sign");
        let crl = b.build().expect("build");
        let hash = p.ca.cert.subject_name_hash();
        std::fs::write(
            p.dir.path().join(format!("{hash:08x}.r0")),
            crl.to_pem().expect("pem"),
        )
        .expect("write");
    }

    #[test]
    fn ca_directory_reload_picks_up_new_crls_and_keeps_the_last_good_load() {
        use super::super::cadir::CaDirectory;
        let p = pki();
        let dir = CaDirectory::load(p.dir.path(), NamespaceMode::Require).expect("load");
        dir.verify_chain(&der(&[&p.ee.cert])).expect("accepted");
        // fetch-crl writes a CRL that revokes the EE: used after the next reload only.
        write_crl(&p, &[&p.ee.cert], &p.ca, 7);
        dir.verify_chain(&der(&[&p.ee.cert]))
            .expect("the loaded CRLs are used until a reload");
        dir.reload().expect("reload");
        assert!(reason(dir.verify_chain(&der(&[&p.ee.cert]))).contains("revoked"));
        // A reload of a broken directory (every CA file gone) fails and keeps the last load.
        for e in std::fs::read_dir(p.dir.path()).expect("dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_hashed_cert(&name) || name.ends_with(".pem") {
                std::fs::remove_file(e.path()).expect("rm");
            }
        }
        assert!(dir.reload().is_err());
        assert!(reason(dir.verify_chain(&der(&[&p.ee.cert]))).contains("revoked"));
    }

    #[test]
    fn crl_revokes_ee_and_its_proxies() {
        let p = pki();
        let other = issue(
            &name(&[
                ("DC", "eu"),
                ("DC", "rcauth"),
                ("DC", "rcauth-clients"),
                ("CN", "Other"),
            ]),
            Kind::EndEntity,
            40,
            Some(&p.ca),
            (-1, 5),
        );
        write_crl(&p, &[&p.ee.cert], &p.ca, 7);
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
        let r = reason(v.verify_chain(&der(&[&p.ee.cert])));
        assert!(r.contains("revoked"), "{r}");
        let proxy = proxy_of(&p.ee, 11);
        assert!(reason(v.verify_chain(&der(&[&proxy.cert, &p.ee.cert]))).contains("revoked"));
        v.verify_chain(&der(&[&other.cert])).expect("not revoked");
    }

    #[test]
    fn expired_or_forged_crl_fails_closed() {
        let p = pki();
        write_crl(&p, &[], &p.ca, -1);
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
        assert!(reason(v.verify_chain(&der(&[&p.ee.cert]))).contains("CRL"));

        let forger = rcauth_ca();
        write_crl(&p, &[], &forger, 7);
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
        assert!(reason(v.verify_chain(&der(&[&p.ee.cert]))).contains("does not verify"));
    }

    fn ee(subject: &[(&str, &str)], serial: u32, ca: &Issued) -> Issued {
        issue(&name(subject), Kind::EndEntity, serial, Some(ca), (-1, 5))
    }

    #[test]
    fn namespace_of_the_ca_admits_its_users_and_their_proxies_only() {
        let p = pki();
        let v = CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::Require).expect("load");
        v.verify_chain(&der(&[&p.ee.cert]))
            .expect("EE in the namespace");
        let proxy = proxy_of(&p.ee, 70);
        let id = v
            .verify_chain(&der(&[&proxy.cert, &p.ee.cert]))
            .expect("its proxy");
        assert_eq!(id.dn.as_deref(), Some(EE_GRID));

        let outsider = ee(
            &[("DC", "eu"), ("DC", "rcauth"), ("CN", "Outsider")],
            71,
            &p.ca,
        );
        let r = reason(v.verify_chain(&der(&[&outsider.cert])));
        let policy = format!("{:08x}.signing_policy", p.ca.cert.subject_name_hash());
        assert!(
            r.contains("/DC=eu/DC=rcauth/CN=Outsider is outside the namespace")
                && r.contains(&name_to_grid_string(p.ca.cert.subject_name()))
                && r.contains(&policy),
            "names subject, issuer and file: {r}"
        );
        let outsider_proxy = proxy_of(&outsider, 72);
        let r = reason(v.verify_chain(&der(&[&outsider_proxy.cert, &outsider.cert])));
        assert!(r.contains("outside the namespace"), "{r}");
        // A component that merely starts like the permitted one.
        let sibling = ee(
            &[
                ("DC", "eu"),
                ("DC", "rcauth"),
                ("DC", "rcauth-clientsx"),
                ("CN", "x"),
            ],
            73,
            &p.ca,
        );
        assert!(reason(v.verify_chain(&der(&[&sibling.cert]))).contains("outside the namespace"));
    }

    #[test]
    fn another_trusted_ca_cannot_issue_the_rcauth_users_dn() {
        let p = pki();
        let example = issue(
            &name(&[("C", "NL"), ("O", "Example"), ("CN", "Example CA")]),
            Kind::Ca,
            80,
            None,
            (-1, 365),
        );
        install(p.dir.path(), &example.cert);
        write_policy(
            p.dir.path(),
            &example.cert,
            "namespaces",
            "#NAMESPACES-VERSION: 1.0\nTO Issuer \"/C=NL/O=Example/CN=Example CA\" \\\n  PERMIT Subject \"/C=NL/O=Example/.*\"\n",
        );
        // A permissive signing policy next to it: the .namespaces file governs.
        write_policy(
            p.dir.path(),
            &example.cert,
            "signing_policy",
            &signing_policy(&example.cert, &["*"]),
        );
        let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
        assert_eq!(v.ca_count(), 2);
        let alice = ee(
            &[("C", "NL"), ("O", "Example"), ("CN", "Alice")],
            81,
            &example,
        );
        v.verify_chain(&der(&[&alice.cert]))
            .expect("its own namespace");

        let fake_jane = ee(EE_DN, 82, &example);
        let r = reason(v.verify_chain(&der(&[&fake_jane.cert])));
        let file = format!("{:08x}.namespaces", example.cert.subject_name_hash());
        assert!(
            r.contains(&format!(
                "{EE_GRID} is outside the namespace of its issuer /C=NL/O=Example/CN=Example CA"
            )) && r.contains(&file),
            "{r}"
        );
        let fake_proxy = proxy_of(&fake_jane, 83);
        reason(v.verify_chain(&der(&[&fake_proxy.cert, &fake_jane.cert])));
        let id = v.verify_chain(&der(&[&p.ee.cert])).expect("the real Jane");
        assert_eq!(id.dn.as_deref(), Some(EE_GRID));

        // Without enforcement the impersonation succeeds: why `off` is not the default.
        let off = CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::Off).expect("load");
        let id = off.verify_chain(&der(&[&fake_jane.cert])).expect("off");
        assert_eq!(id.dn.as_deref(), Some(EE_GRID));
    }

    #[test]
    fn ca_without_policy_files_signs_nothing_unless_if_present() {
        let p = pki();
        let bare = issue(
            &name(&[("C", "NL"), ("O", "Bare"), ("CN", "Bare CA")]),
            Kind::Ca,
            90,
            None,
            (-1, 365),
        );
        install(p.dir.path(), &bare.cert);
        let bob = ee(&[("C", "NL"), ("O", "Bare"), ("CN", "Bob")], 91, &bare);
        let outsider = ee(&[("DC", "eu"), ("CN", "Outsider")], 92, &p.ca);

        let v = CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::Require).expect("load");
        let r = reason(v.verify_chain(&der(&[&bob.cert])));
        let hash = format!("{:08x}", bare.cert.subject_name_hash());
        assert!(
            r.contains(&format!("{hash}.namespaces"))
                && r.contains(&format!("{hash}.signing_policy"))
                && r.contains("/C=NL/O=Bare/CN=Bare CA")
                && r.contains("IGTF"),
            "{r}"
        );
        v.verify_chain(&der(&[&p.ee.cert]))
            .expect("RCAuth unaffected");

        let v =
            CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::IfPresent).expect("load");
        let id = v
            .verify_chain(&der(&[&bob.cert]))
            .expect("if-present: no file, no constraint");
        assert_eq!(id.dn.as_deref(), Some("/C=NL/O=Bare/CN=Bob"));
        // A CA that has a file is still held to it.
        assert!(reason(v.verify_chain(&der(&[&outsider.cert]))).contains("outside the namespace"));

        let v = CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::Off).expect("load");
        v.verify_chain(&der(&[&bob.cert])).expect("off");
        v.verify_chain(&der(&[&outsider.cert]))
            .expect("off: every subject");
    }

    #[test]
    fn unparsable_policy_file_fails_that_ca_closed() {
        let p = pki();
        write_policy(
            p.dir.path(),
            &p.ca.cert,
            "signing_policy",
            "# header\njunk\n",
        );
        for mode in [NamespaceMode::Require, NamespaceMode::IfPresent] {
            let v = CertVerifier::from_ca_dir_with(p.dir.path(), mode)
                .expect("a bad policy file is not a start-up error");
            let r = reason(v.verify_chain(&der(&[&p.ee.cert])));
            let file = format!("{:08x}.signing_policy:2:", p.ca.cert.subject_name_hash());
            assert!(r.contains("unusable") && r.contains(&file), "{mode}: {r}");
        }
        let v = CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::Off).expect("load");
        v.verify_chain(&der(&[&p.ee.cert]))
            .expect("off reads no policy file");
    }

    #[test]
    fn intermediate_ca_must_be_in_its_roots_namespace() {
        let root = issue(
            &name(&[
                ("DC", "eu"),
                ("DC", "rcauth"),
                ("O", "Certification Authorities"),
                ("CN", "Root CA"),
            ]),
            Kind::Ca,
            100,
            None,
            (-1, 365),
        );
        let ica = issue(
            &name(&[
                ("DC", "eu"),
                ("DC", "rcauth"),
                ("O", "Certification Authorities"),
                ("CN", "Issuing CA"),
            ]),
            Kind::Ca,
            101,
            Some(&root),
            (-1, 365),
        );
        let jane = ee(EE_DN, 102, &ica);
        let dir = tempfile::tempdir().expect("tempdir");
        install(dir.path(), &root.cert);
        install(dir.path(), &ica.cert);
        write_policy(
            dir.path(),
            &ica.cert,
            "signing_policy",
            &signing_policy(&ica.cert, &[RCAUTH_NAMESPACE]),
        );
        write_policy(
            dir.path(),
            &root.cert,
            "signing_policy",
            &signing_policy(
                &root.cert,
                &["/DC=eu/DC=rcauth/O=Certification Authorities/*"],
            ),
        );
        let v = CertVerifier::from_ca_dir(dir.path()).expect("load");
        v.verify_chain(&der(&[&jane.cert]))
            .expect("EE, ICA and root all in namespace");
        v.verify_chain(&der(&[&jane.cert, &ica.cert]))
            .expect("ICA sent along");

        write_policy(
            dir.path(),
            &root.cert,
            "signing_policy",
            &signing_policy(&root.cert, &["/DC=eu/DC=elsewhere/*"]),
        );
        let v = CertVerifier::from_ca_dir(dir.path()).expect("load");
        let r = reason(v.verify_chain(&der(&[&jane.cert])));
        assert!(
            r.contains("CN=Issuing CA is outside the namespace of its issuer")
                && r.contains("CN=Root CA"),
            "{r}"
        );
    }

    #[test]
    fn empty_or_missing_dir_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            CertVerifier::from_ca_dir(dir.path()),
            Err(AuthError::Unavailable(_))
        ));
        assert!(CertVerifier::from_ca_dir(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn file_name_conventions() {
        assert!(is_hashed_cert("1a2b3c4d.0") && is_hashed_cert("1a2b3c4d.12"));
        assert!(!is_hashed_cert("1a2b3c4d.r0") && !is_hashed_cert("x.signing_policy"));
        assert!(is_hashed_crl("1a2b3c4d.r0") && !is_hashed_crl("1a2b3c4d.r"));
    }

    #[test]
    fn tlv_reader_refuses_truncation() {
        assert!(tlv(&[0x30]).is_none());
        assert!(tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(tlv(&[0x30, 0x81]).is_none());
        assert_eq!(
            tlv(&[0x04, 0x01, 0xAA, 0xBB]),
            Some((0x04, &[0xAA][..], &[0xBB][..]))
        );
        assert!(extension_oids(&[0x30, 0x00]).is_none());
    }
}
