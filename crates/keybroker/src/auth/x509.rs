//! X.509 client certificates: IGTF end-entity certificates (e.g. RCAuth.eu's) and RFC 3820
//! proxy certificates of them, verified against a CA directory in the
//! `/etc/grid-security/certificates` convention.
//!
//! The directory holds `<hash>.0` PEM files (and `*.pem`, for hand-made test directories),
//! `<hash>.r0` CRLs as written by fetch-crl, and `.signing_policy`/`.namespaces`/`.info`
//! files, which are ignored here: IGTF namespace constraints (which DNs a CA may sign) are
//! not enforced yet, so every CA in the directory is trusted for every subject.
//!
//! Chain building and signature/time/proxy-rule checks are OpenSSL's (`X509StoreContext` with
//! `ALLOW_PROXY_CERTS`). Revocation is checked here, after OpenSSL accepted the chain: every
//! non-proxy certificate whose issuer has a CRL in the directory is looked up in it. This is
//! done by hand because OpenSSL's `CRL_CHECK` demands a CRL for every issuer, proxies' issuers
//! (end-entity certificates) included, and because the `openssl` crate cannot add CRLs to a
//! store. A CRL that fails its signature check or has expired makes that CA's certificates
//! fail closed.

use std::collections::HashMap;
use std::path::Path;

use layercrypt_ocicrypt::keywrap::pkcs7::name_to_grid_string;
use openssl::asn1::Asn1Time;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{CrlStatus, X509Crl, X509StoreContext, X509};

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

/// Verifies client certificate chains against a grid CA directory.
pub struct CertVerifier {
    store: X509Store,
    /// CRLs by the DER of their issuer name.
    crls: HashMap<Vec<u8>, CrlState>,
    ca_count: usize,
}

impl std::fmt::Debug for CertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertVerifier")
            .field("ca_count", &self.ca_count)
            .field("crl_count", &self.crls.len())
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
    /// Loads the CA certificates (`*.0`…`*.9`, `*.pem`) and CRLs (`*.r0`…) in `dir`.
    /// Errors (as [`AuthError::Unavailable`], a configuration problem) if the directory
    /// cannot be read or holds no CA certificate.
    pub fn from_ca_dir(dir: &Path) -> Result<Self, AuthError> {
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
        tracing::info!(dir = %dir.display(), cas = cas.len(), crls = crls.len(), "CA directory loaded");
        Ok(Self {
            store,
            crls,
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

    fn pki() -> Pki {
        let ca = rcauth_ca();
        let ee = issue(&name(EE_DN), Kind::EndEntity, 2, Some(&ca), (-1, 11));
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = ca.cert.subject_name_hash();
        std::fs::write(
            dir.path().join(format!("{hash:08x}.0")),
            ca.cert.to_pem().expect("pem"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join(format!("{hash:08x}.signing_policy")),
            "junk",
        )
        .expect("write");
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
    fn crl_revokes_ee_and_its_proxies() {
        let p = pki();
        let other = issue(
            &name(&[("DC", "eu"), ("CN", "Other")]),
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
