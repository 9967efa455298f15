//! Chains built in-process with the `openssl` crate: a CA, an RCAuth-like end entity, an
//! RFC 3820 proxy of it (proxyCertInfo via the config-string API), an untrusted CA, an
//! expired certificate, a CRL.
use super::*;
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Type};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{
    X509CrlBuilder, X509Extension, X509Name, X509NameBuilder, X509NameRef, X509RevokedBuilder,
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
    /// An end entity with extendedKeyUsage (serverAuth, clientAuth).
    EndEntityEku {
        server: bool,
        client: bool,
    },
    /// An id-ppl-inheritAll RFC 3820 proxy.
    Proxy,
    /// A proxy with this proxyCertInfo extension OID and policy language.
    ProxyWith {
        extension: &'static str,
        language: &'static str,
    },
}

const PROXY_CERT_INFO: &str = "1.3.6.1.5.5.7.1.14";
const DRAFT_PROXY_CERT_INFO: &str = "1.3.6.1.4.1.3536.1.222";
const INHERIT_ALL: &str = "1.3.6.1.5.5.7.21.1";
const INDEPENDENT: &str = "1.3.6.1.5.5.7.21.2";
const LIMITED: &str = "1.3.6.1.4.1.3536.1.1.1.9";

/// A critical proxyCertInfo-shaped extension: SEQUENCE { SEQUENCE { language } }.
fn proxy_extension(extension: &str, language: &str) -> X509Extension {
    let lang = Asn1Object::from_str(language)
        .expect("oid")
        .as_slice()
        .to_vec();
    let mut policy = vec![0x06, lang.len() as u8];
    policy.extend_from_slice(&lang);
    let mut inner = vec![0x30, policy.len() as u8];
    inner.extend_from_slice(&policy);
    let mut value = vec![0x30, inner.len() as u8];
    value.extend_from_slice(&inner);
    X509Extension::new_from_der(
        &Asn1Object::from_str(extension).expect("oid"),
        true,
        &Asn1OctetString::new_from_bytes(&value).expect("octets"),
    )
    .expect("proxyCertInfo")
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
    // An hour back: a clock that steps back a little between issuing and verifying (as VM
    // clocks do) must not make a fresh certificate "not yet valid".
    b.set_not_before(&Asn1Time::from_unix(now + days.0 * 86_400 - 3600).expect("t"))
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
        Kind::EndEntity | Kind::EndEntityEku { .. } => {
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
            if let Kind::EndEntityEku { server, client } = kind {
                let mut eku = ExtendedKeyUsage::new();
                if server {
                    eku.server_auth();
                }
                if client {
                    eku.client_auth();
                }
                b.append_extension(eku.build().expect("eku")).expect("ext");
            }
        }
        Kind::Proxy | Kind::ProxyWith { .. } => {
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_encipherment()
                    .build()
                    .expect("ku"),
            )
            .expect("ext");
            let (extension, language) = match kind {
                Kind::ProxyWith {
                    extension,
                    language,
                } => (extension, language),
                _ => (PROXY_CERT_INFO, INHERIT_ALL),
            };
            b.append_extension(proxy_extension(extension, language))
                .expect("ext");
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
    proxy_of_kind(ee, serial, Kind::Proxy)
}

fn proxy_of_kind(ee: &Issued, serial: u32, kind: Kind) -> Issued {
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
    issue(&name(&borrowed), kind, serial, Some(ee), (0, 1))
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
        grid::grid_dn_display(ca.subject_name()),
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

fn is_proxy(cert: &X509) -> bool {
    !matches!(grid::proxy_kind(cert), ProxyKind::NotProxy)
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
    write_crl_as(
        p,
        p.ca.cert.subject_name(),
        revoked,
        signer,
        next_update_days,
    );
}

/// A CRL that names `issuer` (the CA's name, perhaps encoded differently) as its issuer.
fn write_crl_as(
    p: &Pki,
    issuer: &X509NameRef,
    revoked: &[&X509],
    signer: &Issued,
    next_update_days: i64,
) {
    let mut b = X509CrlBuilder::new().expect("crl");
    b.set_issuer_name(issuer).expect("issuer");
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
            && r.contains(&grid::grid_dn_display(p.ca.cert.subject_name()))
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

    let v = CertVerifier::from_ca_dir_with(p.dir.path(), NamespaceMode::IfPresent).expect("load");
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

/// A name whose attribute values all have the ASN.1 string type `ty`.
fn typed_name(parts: &[(&str, &str)], ty: Asn1Type) -> X509Name {
    let mut b = X509NameBuilder::new().expect("name");
    for (k, v) in parts {
        b.append_entry_by_text_with_type(k, v, ty).expect("entry");
    }
    b.build()
}

#[test]
fn crl_is_matched_to_its_ca_as_openssl_compares_names_not_by_der() {
    let parts = [
        ("DC", "eu"),
        ("DC", "rcauth"),
        ("O", "Certification Authorities"),
        (
            "CN",
            "Research and Collaboration Authentication Pilot G1 CA",
        ),
    ];
    let ca = issue(
        &typed_name(&parts, Asn1Type::PRINTABLESTRING),
        Kind::Ca,
        1,
        None,
        (-1, 365),
    );
    let ee = issue(&name(EE_DN), Kind::EndEntity, 2, Some(&ca), (-1, 11));
    let dir = tempfile::tempdir().expect("tempdir");
    install(dir.path(), &ca.cert);
    write_policy(
        dir.path(),
        &ca.cert,
        "signing_policy",
        &signing_policy(&ca.cert, &[RCAUTH_NAMESPACE]),
    );
    let p = Pki { dir, ca, ee };
    // The CRL names its issuer with UTF8Strings, the CA certificate with PrintableStrings.
    let crl_issuer = typed_name(&parts, Asn1Type::UTF8STRING);
    assert_ne!(
        crl_issuer.to_der().expect("der"),
        p.ca.cert.subject_name().to_der().expect("der")
    );
    let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
    v.verify_chain(&der(&[&p.ee.cert])).expect("no CRL yet");
    write_crl_as(&p, &crl_issuer, &[&p.ee.cert], &p.ca, 7);
    let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
    let r = reason(v.verify_chain(&der(&[&p.ee.cert])));
    assert!(r.contains("revoked") && r.contains(EE_GRID), "{r}");
    let proxy = proxy_of(&p.ee, 12);
    assert!(reason(v.verify_chain(&der(&[&proxy.cert, &p.ee.cert]))).contains("revoked"));
    // An expired CRL in the other encoding fails that CA closed, too.
    write_crl_as(&p, &crl_issuer, &[], &p.ca, -1);
    let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
    assert!(reason(v.verify_chain(&der(&[&p.ee.cert]))).contains("expired"));
}

#[test]
fn proxy_policy_languages() {
    let p = pki();
    let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
    let with = |serial, extension, language| {
        proxy_of_kind(
            &p.ee,
            serial,
            Kind::ProxyWith {
                extension,
                language,
            },
        )
    };

    let inherit = with(200, PROXY_CERT_INFO, INHERIT_ALL);
    let id = v
        .verify_chain(&der(&[&inherit.cert, &p.ee.cert]))
        .expect("inheritAll");
    assert_eq!(id.dn.as_deref(), Some(EE_GRID));

    // Limited proxies: data access, accepted (see the module docs), and proxies of them.
    let limited = with(201, PROXY_CERT_INFO, LIMITED);
    let id = v
        .verify_chain(&der(&[&limited.cert, &p.ee.cert]))
        .expect("limited");
    assert_eq!(id.dn.as_deref(), Some(EE_GRID));
    let limited2 = proxy_of_kind(
        &limited,
        2011,
        Kind::ProxyWith {
            extension: PROXY_CERT_INFO,
            language: LIMITED,
        },
    );
    v.verify_chain(&der(&[&limited2.cert, &limited.cert, &p.ee.cert]))
        .expect("limited proxy of a limited proxy");

    let independent = with(202, PROXY_CERT_INFO, INDEPENDENT);
    let r = reason(v.verify_chain(&der(&[&independent.cert, &p.ee.cert])));
    assert!(
        r.contains("independent proxy") && r.contains(EE_GRID),
        "{r}"
    );
    // An inheritAll proxy of an independent one inherits nothing either.
    let below = proxy_of(&independent, 203);
    let r = reason(v.verify_chain(&der(&[&below.cert, &independent.cert, &p.ee.cert])));
    assert!(r.contains("independent proxy"), "{r}");

    let unknown = with(204, PROXY_CERT_INFO, "1.3.6.1.4.1.99999.1");
    let r = reason(v.verify_chain(&der(&[&unknown.cert, &p.ee.cert])));
    assert!(
        r.contains("does not understand") && r.contains("1.3.6.1.4.1.99999.1"),
        "{r}"
    );

    // Pre-RFC proxies: the GSI-3 draft extension, and Globus Toolkit 2's CN=proxy.
    let draft = with(205, DRAFT_PROXY_CERT_INFO, INHERIT_ALL);
    let r = reason(v.verify_chain(&der(&[&draft.cert, &p.ee.cert])));
    assert!(r.contains("GSI-3") && r.contains("RFC 3820"), "{r}");
    let gt2 = issue(
        &name(&[EE_DN, &[("CN", "proxy")]].concat()),
        Kind::EndEntity,
        206,
        Some(&p.ee),
        (0, 1),
    );
    let r = reason(v.verify_chain(&der(&[&gt2.cert, &p.ee.cert])));
    assert!(r.contains("Globus Toolkit 2"), "{r}");
}

#[test]
fn end_entity_must_be_fit_for_tls_clients() {
    let p = pki();
    let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
    let host = |serial, server, client| {
        issue(
            &name(&[
                ("DC", "eu"),
                ("DC", "rcauth"),
                ("DC", "rcauth-clients"),
                ("CN", "host.example.org"),
            ]),
            Kind::EndEntityEku { server, client },
            serial,
            Some(&p.ca),
            (-1, 5),
        )
    };
    let server_only = host(300, true, false);
    let r = reason(v.verify_chain(&der(&[&server_only.cert])));
    assert!(
        r.contains("not for TLS clients")
            && r.contains("serverAuth")
            && r.contains("/CN=host.example.org"),
        "{r}"
    );
    // Its proxies inherit the purpose.
    let proxy = proxy_of(&server_only, 301);
    let r = reason(v.verify_chain(&der(&[&proxy.cert, &server_only.cert])));
    assert!(r.contains("not for TLS clients"), "{r}");
    // A grid host certificate used by a robot: serverAuth and clientAuth.
    let both = host(302, true, true);
    v.verify_chain(&der(&[&both.cert])).expect("both");
    let proxy = proxy_of(&both, 303);
    v.verify_chain(&der(&[&proxy.cert, &both.cert]))
        .expect("proxy of a host certificate");
    v.verify_chain(&der(&[&host(304, false, true).cert]))
        .expect("clientAuth only");
    // No extendedKeyUsage at all (the usual user certificate).
    v.verify_chain(&der(&[&p.ee.cert])).expect("no EKU");
}

#[test]
fn a_slash_inside_a_value_does_not_give_another_users_dn() {
    let p = pki();
    let v = CertVerifier::from_ca_dir(p.dir.path()).expect("load");
    // One O value "EGI Foundation/CN=Jane Doe …" and no CN: inside the RCAuth namespace.
    let forged = ee(
        &[
            ("DC", "eu"),
            ("DC", "rcauth"),
            ("DC", "rcauth-clients"),
            ("O", "EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-"),
        ],
        400,
        &p.ca,
    );
    let id = v
        .verify_chain(&der(&[&forged.cert]))
        .expect("a valid certificate");
    assert_ne!(id.dn.as_deref(), Some(EE_GRID));
    assert_eq!(
        id.dn.as_deref(),
        Some(
            "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation\\x2FCN=Jane Doe 7ewsApjEZsBcCLz-"
        )
    );
    let real = v.verify_chain(&der(&[&p.ee.cert])).expect("Jane");
    assert_eq!(real.dn.as_deref(), Some(EE_GRID));
}
