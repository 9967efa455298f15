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
//! fail closed. CRLs and namespace files are found by comparing names as OpenSSL does
//! (`X509_NAME_cmp`, its canonical form: string types converted, ASCII case and whitespace
//! folded), never by their DER: a CRL whose issuer is a UTF8String where the CA's subject is
//! a PrintableString is the CA's CRL, as `openssl verify -crl_check` says.
//!
//! Proxies: an RFC 3820 proxy counts as its end entity only if its policy language gives it
//! the end entity's rights: id-ppl-inheritAll, or the Globus *limited proxy* language. By grid
//! convention (Globus GSI, gLite/VOMS, dCache, StoRM) a limited proxy may not start jobs but
//! may access data; releasing a layer key is data access, so limited proxies are accepted.
//! id-ppl-independent proxies (no rights of the end entity), unknown policy languages and
//! pre-RFC Globus proxies (GT2 `CN=proxy` without extension, GT3 draft proxyCertInfo
//! 1.3.6.1.4.1.3536.1.222) are refused with their reason. Proxy detection and the DN form
//! are the format crate's ([`layercrypt_ocicrypt::keys::grid`]), the same code `inspect` uses.
//!
//! Purpose: the end entity and every proxy of the chain must be fit for TLS client
//! authentication: no extendedKeyUsage, or one listing clientAuth or anyExtendedKeyUsage.
//! A server-only certificate (extendedKeyUsage serverAuth) is refused; grid host
//! certificates used by robots carry serverAuth and clientAuth and are accepted.

use std::path::{Path, PathBuf};

use layercrypt_ocicrypt::keys::grid::{self, ClientAuth, ProxyKind, ProxyPolicy};
use openssl::asn1::Asn1Time;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{CrlStatus, X509Crl, X509Name, X509NameRef, X509StoreContext, X509};

use super::namespaces::{self, CaNamespace, NamespaceMode};
use super::{AuthError, Identity, Method};

/// Longest chain a client may present.
const MAX_CHAIN: usize = 10;
/// Largest certificate accepted, bytes.
const MAX_CERT_DER: usize = 64 * 1024;

/// What is known about one issuer's revocation list.
enum CrlState {
    /// A CRL whose signature verified against the CA.
    Usable(X509Crl),
    /// A CRL file exists but cannot be trusted (its signature verifies against no CA of its
    /// issuer's name): this issuer's certificates are refused.
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

/// Entries found by an X.509 name compared as OpenSSL compares names (its canonical form),
/// not by DER bytes. A linear scan: a CA directory holds about a hundred CAs.
struct ByName<T>(Vec<(X509Name, T)>);

impl<T> ByName<T> {
    fn new() -> Self {
        ByName(Vec::new())
    }

    fn push(&mut self, name: &X509NameRef, value: T) -> Result<(), AuthError> {
        let name = name
            .to_owned()
            .map_err(|e| config_error(format!("copying a name: {e}")))?;
        self.0.push((name, value));
        Ok(())
    }

    /// Every entry whose name equals `name`.
    fn get<'a>(&'a self, name: &'a X509NameRef) -> impl Iterator<Item = &'a T> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// OpenSSL's name equality (`X509_NAME_cmp`: canonical encodings). A name OpenSSL cannot
/// canonicalise equals nothing.
fn same_name(a: &X509NameRef, b: &X509NameRef) -> bool {
    a.try_cmp(b).is_ok_and(|o| o == std::cmp::Ordering::Equal)
}

/// Verifies client certificate chains against a grid CA directory.
pub struct CertVerifier {
    store: X509Store,
    /// CRLs by their issuer name.
    crls: ByName<CrlState>,
    /// Namespace constraints by the CA's subject name (empty when `Off`).
    namespaces: ByName<NamespaceState>,
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

/// The grid DN of a name, for messages.
fn shown(name: &X509NameRef) -> String {
    grid::grid_dn_display(name)
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

        let crls = load_crls(dir, &cas, crl_files)?;
        let namespaces = load_namespaces(dir, &cas, mode)?;
        tracing::info!(dir = %dir.display(), cas = cas.len(), crls = crls.len(),
            namespace_files = namespaces.0.iter().filter(|(_, s)| matches!(s, NamespaceState::Policy(_))).count(),
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
    /// end-entity subject in the `/DC=…/CN=…` form of [`grid::grid_dn`], valid until the
    /// earliest `notAfter` in the verified chain.
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
        let mut presented = vec![leaf.clone()];
        let mut untrusted = Stack::new().map_err(|e| invalid(format!("openssl: {e}")))?;
        for der in rest_der {
            let cert =
                X509::from_der(der).map_err(|_| invalid("a chain certificate is not DER X.509"))?;
            presented.push(cert.clone());
            untrusted
                .push(cert)
                .map_err(|e| invalid(format!("openssl: {e}")))?;
        }
        // Before OpenSSL, whose refusal of these would not say why.
        refuse_legacy_proxies(&presented)?;
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

        // The end entity is the first certificate (from the leaf) that is not a proxy; each
        // proxy before it must carry the end entity's rights.
        let mut ee_index = None;
        for (i, cert) in chain.iter().enumerate() {
            match grid::proxy_kind(cert) {
                ProxyKind::NotProxy => {
                    ee_index = Some(i);
                    break;
                }
                kind => check_proxy(cert, &kind)?,
            }
        }
        let ee_index = ee_index.ok_or_else(|| invalid("chain holds only proxy certificates"))?;
        if ee_index + 1 >= chain.len() {
            // The EE would be the trust anchor itself: a self-signed "user" certificate that
            // someone put into the CA directory.
            return Err(invalid("end-entity certificate is itself a trust anchor"));
        }
        for cert in &chain[..=ee_index] {
            check_client_purpose(cert)?;
        }
        self.check_revocation(&chain[ee_index..])?;
        self.check_namespaces(&chain[ee_index..])?;

        let ee = &chain[ee_index];
        let dn = grid::grid_dn(ee.subject_name())
            .map_err(|e| invalid(format!("end-entity subject DN unreadable: {e}")))?;
        let mut expires_at = i64::MAX;
        for cert in &chain {
            expires_at = expires_at.min(unix_time(cert.not_after())?);
        }
        Ok(Identity {
            method: Method::Certificate,
            subject: None,
            dn: Some(dn),
            entitlements: Vec::new(),
            expires_at: Some(expires_at),
        })
    }

    /// Checks each certificate from the end entity up (proxies excluded) against its
    /// issuer's CRLs, when the directory has any.
    fn check_revocation(&self, chain: &[X509]) -> Result<(), AuthError> {
        let now = Asn1Time::days_from_now(0).map_err(|e| invalid(format!("openssl: {e}")))?;
        for pair in chain.windows(2) {
            let (cert, issuer) = (&pair[0], &pair[1]);
            for state in self.crls.get(issuer.subject_name()) {
                match state {
                    CrlState::Broken(reason) => return Err(invalid(reason.clone())),
                    CrlState::Usable(crl) => {
                        let issuer_text = shown(issuer.subject_name());
                        if crl.next_update().is_some_and(|next| *next < *now) {
                            return Err(invalid(format!("CRL of {issuer_text} has expired")));
                        }
                        // RemoveFromCrl only occurs in delta CRLs: not revoked.
                        if let CrlStatus::Revoked(_) = crl.get_by_cert(cert) {
                            return Err(invalid(format!(
                                "certificate {} revoked by {issuer_text}",
                                shown(cert.subject_name())
                            )));
                        }
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
            let subject = grid::grid_dn(cert.subject_name())
                .map_err(|e| invalid(format!("subject DN unreadable: {e}")))?;
            let issuer_dn = shown(issuer.subject_name());
            // A CA's own state; with several CAs of one name (a key rollover) the first.
            match self.namespaces.get(issuer.subject_name()).next() {
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

/// Refuses pre-RFC 3820 Globus proxies and unparsable proxy extensions among the presented
/// certificates. OpenSSL refuses their chains too (their issuer is no CA), with a reason
/// that does not say why.
fn refuse_legacy_proxies(presented: &[X509]) -> Result<(), AuthError> {
    for cert in presented {
        let subject = shown(cert.subject_name());
        match grid::proxy_kind(cert) {
            ProxyKind::DraftGsi3 => {
                return Err(invalid(format!(
                "{subject} is a pre-RFC 3820 (GSI-3 draft, proxyCertInfo 1.3.6.1.4.1.3536.1.222) \
                     proxy; only RFC 3820 proxies are accepted (voms-proxy-init -rfc, \
                     grid-proxy-init -rfc; the default of current tools)"
            )))
            }
            ProxyKind::Malformed => {
                return Err(invalid(format!(
                    "{subject}: its proxyCertInfo or extensions do not parse"
                )))
            }
            ProxyKind::NotProxy => {
                // Globus Toolkit 2 proxies: no extension, subject = issuer + CN=proxy or
                // CN=limited proxy.
                let issuer = shown(cert.issuer_name());
                if subject == format!("{issuer}/CN=proxy")
                    || subject == format!("{issuer}/CN=limited proxy")
                {
                    return Err(invalid(format!(
                        "{subject} is a legacy (Globus Toolkit 2) proxy; only RFC 3820 proxies \
                         are accepted (voms-proxy-init -rfc, grid-proxy-init -rfc)"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A proxy of the verified chain must carry the rights of the certificate it was made from:
/// id-ppl-inheritAll, or a Globus limited proxy (data access, see the module docs).
fn check_proxy(cert: &X509, kind: &ProxyKind) -> Result<(), AuthError> {
    let subject = shown(cert.subject_name());
    match kind {
        ProxyKind::Rfc3820(ProxyPolicy::InheritAll | ProxyPolicy::Limited) => Ok(()),
        ProxyKind::Rfc3820(ProxyPolicy::Independent) => Err(invalid(format!(
            "proxy {subject} is an independent proxy (id-ppl-independent): it has none of the \
             rights of the certificate it was made from; use an inheritAll proxy"
        ))),
        ProxyKind::Rfc3820(policy) => Err(invalid(format!(
            "proxy {subject} has a proxy policy this broker does not understand ({policy}); only \
             inheritAll and limited proxies are accepted"
        ))),
        _ => Err(invalid(format!(
            "{subject} is not an RFC 3820 proxy certificate the broker accepts"
        ))),
    }
}

/// The end entity and its proxies must be fit for TLS client authentication.
fn check_client_purpose(cert: &X509) -> Result<(), AuthError> {
    match grid::client_auth(cert) {
        ClientAuth::NoExtendedKeyUsage | ClientAuth::Permitted => Ok(()),
        ClientAuth::NotPermitted(usages) => Err(invalid(format!(
            "certificate {} is not for TLS clients: its extendedKeyUsage lists {} but not \
             clientAuth",
            shown(cert.subject_name()),
            usages.join(", ")
        ))),
        _ => Err(invalid(format!(
            "certificate {}: its extendedKeyUsage does not parse",
            shown(cert.subject_name())
        ))),
    }
}

/// Reads the CRL files and assigns each to the CAs of its issuer name (OpenSSL's name
/// comparison) whose key verifies it; logs which CAs have a usable CRL, which have none,
/// and which CRL files are broken or belong to no CA.
fn load_crls(
    dir: &Path,
    cas: &[X509],
    crl_files: Vec<PathBuf>,
) -> Result<ByName<CrlState>, AuthError> {
    let mut crls = ByName::new();
    let mut usable: Vec<String> = Vec::new();
    for path in crl_files {
        let bytes = std::fs::read(&path)
            .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
        let crl = match X509Crl::from_pem(&bytes).or_else(|_| X509Crl::from_der(&bytes)) {
            Ok(crl) => crl,
            Err(_) => {
                // Without the issuer name we cannot tell whose CRL it was; the CRL of
                // that CA is then simply missing (like a CA without a CRL).
                tracing::warn!(file = %path.display(),
                    "unparsable CRL ignored; its CA is treated as having no CRL");
                continue;
            }
        };
        let issuer_text = shown(crl.issuer_name());
        let named: Vec<&X509> = cas
            .iter()
            .filter(|c| same_name(c.subject_name(), crl.issuer_name()))
            .collect();
        if named.is_empty() {
            tracing::warn!(file = %path.display(), issuer = %issuer_text,
                "CRL matches no CA in the directory; ignored");
            continue;
        }
        let signer = named.iter().find(|c| {
            c.public_key()
                .is_ok_and(|k| crl.verify(&k).unwrap_or(false))
        });
        let issuer = crl
            .issuer_name()
            .to_owned()
            .map_err(|e| config_error(format!("copying a name: {e}")))?;
        let state = match signer {
            Some(ca) => {
                usable.push(format!("{} ({})", shown(ca.subject_name()), path.display()));
                CrlState::Usable(crl)
            }
            None => {
                tracing::warn!(file = %path.display(), issuer = %issuer_text,
                    "CRL signature does not verify against the CA of its issuer name; that CA's certificates will be refused");
                CrlState::Broken(format!(
                    "CRL of {issuer_text} in {} does not verify",
                    path.display()
                ))
            }
        };
        crls.push(&issuer, state)?;
    }
    let without: Vec<String> = cas
        .iter()
        .filter(|c| crls.get(c.subject_name()).next().is_none())
        .map(|c| shown(c.subject_name()))
        .collect();
    tracing::info!(dir = %dir.display(), count = usable.len(), cas = %usable.join("; "),
        "CAs with a usable CRL");
    if !without.is_empty() {
        tracing::info!(dir = %dir.display(), count = without.len(), cas = %without.join("; "),
            "CAs without a CRL (their certificates are not checked for revocation)");
    }
    Ok(crls)
}

/// Each CA's namespace constraints (nothing when `mode` is `Off`), with the start-up warnings.
fn load_namespaces(
    dir: &Path,
    cas: &[X509],
    mode: NamespaceMode,
) -> Result<ByName<NamespaceState>, AuthError> {
    let mut states = ByName::new();
    if mode == NamespaceMode::Off {
        tracing::warn!(dir = %dir.display(),
            "tls.namespaces = \"off\": IGTF namespaces are not enforced, every CA in the directory is trusted for every subject DN");
        return Ok(states);
    }
    let mut missing = Vec::new();
    for ca in cas {
        if states.get(ca.subject_name()).next().is_some() {
            continue;
        }
        let hash = format!("{:08x}", ca.subject_name_hash());
        let state = match namespaces::load_for_hash(dir, &hash) {
            Ok(Some(ns)) => NamespaceState::Policy(ns),
            Ok(None) => {
                missing.push(format!("{} ({hash})", shown(ca.subject_name())));
                NamespaceState::Missing
            }
            Err(e) => {
                let reason = error_chain(&e);
                tracing::error!(error = %reason, ca = %shown(ca.subject_name()),
                    "namespace policy file unusable; this CA's certificates will be refused");
                NamespaceState::Broken(reason)
            }
        };
        states.push(ca.subject_name(), state)?;
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

#[cfg(test)]
mod tests;
