//! Test certificates made with the `openssl` crate: a CA (written to a CA directory as
//! `<hash>.0` with its namespace in `<hash>.signing_policy`, the /etc/grid-security/certificates
//! convention), an RCAuth-like end entity, an RFC 3820 proxy of it, a server certificate for
//! 127.0.0.1.

use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Extension, X509Name, X509NameBuilder, X509};

/// A certificate and its key.
pub struct Issued {
    /// Certificate.
    pub cert: X509,
    /// Private key.
    pub key: PKey<Private>,
}

impl Issued {
    /// PEM of the certificate.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("pem")
    }

    /// PEM of the key (PKCS#8).
    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().expect("pem")
    }
}

/// What to issue.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A CA.
    Ca,
    /// A user end-entity certificate.
    EndEntity,
    /// An RFC 3820 proxy.
    Proxy,
    /// A TLS server certificate for 127.0.0.1.
    Server,
}

/// An X.509 name from `(field, value)` pairs.
pub fn name(parts: &[(&str, &str)]) -> X509Name {
    let mut b = X509NameBuilder::new().expect("name");
    for (k, v) in parts {
        b.append_entry_by_text(k, v).expect("entry");
    }
    b.build()
}

/// Issues a certificate (self-signed when `issuer` is None), valid from a day ago for 30 days.
pub fn issue(subject: &X509Name, kind: Kind, serial: u32, issuer: Option<&Issued>) -> Issued {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_serial_number(
        &Asn1Integer::from_bn(&BigNum::from_u32(serial).expect("bn")).expect("int"),
    )
    .expect("serial");
    b.set_subject_name(subject).expect("subject");
    b.set_issuer_name(issuer.map_or(subject, |i| i.cert.subject_name()))
        .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    // An hour back, so that a clock stepping back a little cannot make it "not yet valid".
    b.set_not_before(&Asn1Time::from_unix(now_minus_an_hour()).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("t"))
        .expect("na");
    let signer_cert = issuer.map(|i| i.cert.as_ref());
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
        Kind::EndEntity | Kind::Server => {
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
            if matches!(kind, Kind::Server) {
                let san = SubjectAlternativeName::new()
                    .ip("127.0.0.1")
                    .dns("localhost")
                    .build(&b.x509v3_context(signer_cert, None))
                    .expect("san");
                b.append_extension(san).expect("ext");
                b.append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku"))
                    .expect("ext");
            } else {
                b.append_extension(ExtendedKeyUsage::new().client_auth().build().expect("eku"))
                    .expect("ext");
            }
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
            // ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { id-ppl-inheritAll } }
            let value: &[u8] = &[
                0x30, 0x0C, 0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01,
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
    b.sign(issuer.map_or(&key, |i| &i.key), MessageDigest::sha256())
        .expect("sign");
    Issued {
        cert: b.build(),
        key,
    }
}

/// An RFC 3820 proxy of `ee`: its subject plus `CN=<serial>`, signed by `ee`.
pub fn proxy_of(ee: &Issued, serial: u32) -> Issued {
    let mut b = X509NameBuilder::new().expect("name");
    for e in ee.cert.subject_name().entries() {
        b.append_entry_by_nid(e.object().nid(), &e.data().to_string().expect("utf8"))
            .expect("entry");
    }
    b.append_entry_by_text("CN", &serial.to_string())
        .expect("cn");
    issue(&b.build(), Kind::Proxy, serial, Some(ee))
}

/// A name in the grid `/K=V/…` form (the broker's; enough for the plain names made here).
pub fn grid_dn(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            format!(
                "/{}={}",
                e.object().nid().short_name().expect("short name"),
                e.data().to_string().expect("utf8")
            )
        })
        .collect()
}

/// Writes `ca` into `dir` as `<subject hash>.0`, and `<subject hash>.signing_policy` (a Globus
/// EACL as the IGTF distribution ships) letting it sign the subjects matching `namespace`
/// (globs: `*` any run of characters, `?` one): the broker enforces namespaces by default.
pub fn install_ca(dir: &Path, ca: &Issued, namespace: &[&str]) {
    std::fs::create_dir_all(dir).expect("ca dir");
    let hash = ca.cert.subject_name_hash();
    std::fs::write(dir.join(format!("{hash:08x}.0")), ca.cert_pem()).expect("ca file");
    let subjects: Vec<String> = namespace.iter().map(|g| format!("\"{g}\"")).collect();
    std::fs::write(
        dir.join(format!("{hash:08x}.signing_policy")),
        format!(
            "# EACL of {}\n access_id_CA   X509    '{}'\n pos_rights     globus  CA:sign\n cond_subjects  globus  '{}'\n",
            grid_dn(ca.cert.subject_name()),
            grid_dn(ca.cert.subject_name()),
            subjects.join(" ")
        ),
    )
    .expect("signing policy");
}

/// `POST path` over TLS presenting `chain` (leaf first) with `key`, through OpenSSL: rustls
/// (reqwest's TLS) refuses to load a proxy certificate (critical proxyCertInfo extension).
/// The server certificate is not checked: these cases are about the client's. Returns the
/// status, the raw header block and the body as JSON (Null if none).
pub fn tls_post(
    addr: &str,
    chain: &[&Issued],
    key: &Issued,
    path: &str,
    body: &[u8],
) -> (u16, String, serde_json::Value) {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use std::io::{Read as _, Write as _};
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("connector");
    b.set_verify(SslVerifyMode::NONE);
    if let Some((leaf, rest)) = chain.split_first() {
        b.set_certificate(&leaf.cert).expect("certificate");
        for c in rest {
            b.add_extra_chain_cert(c.cert.clone()).expect("chain");
        }
        b.set_private_key(&key.key).expect("key");
    }
    let connector = b.build();
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let mut tls = connector
        .configure()
        .expect("configure")
        .verify_hostname(false)
        .connect("127.0.0.1", tcp)
        .expect("TLS handshake");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).expect("write");
    tls.write_all(body).expect("write");
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    // Read until the server closes (it may skip close_notify: take what arrived).
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The Unix time an hour ago (the notBefore of test certificates).
fn now_minus_an_hour() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(i64::MAX) - 3600
}
