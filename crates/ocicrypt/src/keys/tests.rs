//! Tests of key-file parsing. Every fixture is generated here with OpenSSL, except the
//! RFC 7638 example key.

use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::extension::BasicConstraints;
use openssl::x509::{X509Name, X509NameBuilder, X509};

use super::*;

const PASS: &[u8] = b"correct horse battery staple";
const WRONG: &[u8] = b"Tr0ub4dor&3";

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey")
}

fn ec_key(nid: Nid) -> PKey<Private> {
    let group = EcGroup::from_curve_name(nid).expect("group");
    PKey::from_ec_key(EcKey::generate(&group).expect("ec")).expect("pkey")
}

fn pass() -> SecretBytes {
    SecretBytes::from_slice(PASS)
}

fn name(entries: &[(&str, &str)]) -> X509Name {
    let mut b = X509NameBuilder::new().expect("name");
    for (k, v) in entries {
        b.append_entry_by_text(k, v).expect("entry");
    }
    b.build()
}

/// A certificate for `key`, issued by `issuer` (self-signed when `None`).
fn cert(
    key: &PKey<Private>,
    subject: &[(&str, &str)],
    issuer: Option<(&X509, &PKey<Private>)>,
    serial: u32,
) -> X509 {
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(serial).expect("bn");
    b.set_serial_number(&Asn1Integer::from_bn(&serial).expect("int"))
        .expect("serial");
    b.set_subject_name(&name(subject)).expect("subject");
    match issuer {
        Some((c, _)) => b.set_issuer_name(c.subject_name()).expect("issuer"),
        None => b.set_issuer_name(&name(subject)).expect("issuer"),
    }
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::from_str("20250101000000Z").expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::from_str("20350101000000Z").expect("time"))
        .expect("na");
    if issuer.is_none() {
        b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
            .expect("ext");
    }
    let signer = issuer.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).expect("sign");
    b.build()
}

fn ca() -> (X509, PKey<Private>) {
    let key = rsa_key();
    let c = cert(
        &key,
        &[
            ("DC", "eu"),
            ("DC", "rcauth"),
            ("O", "Certification Authorities"),
            ("CN", "Test CA"),
        ],
        None,
        1,
    );
    (c, key)
}

fn user_cert(key: &PKey<Private>, ca: &(X509, PKey<Private>)) -> X509 {
    cert(
        key,
        &[
            ("DC", "eu"),
            ("DC", "rcauth"),
            ("DC", "rcauth-clients"),
            ("O", "EGI Foundation"),
            ("CN", "Jane Doe 7ewsApjEZsBcCLz-"),
        ],
        Some((&ca.0, &ca.1)),
        0xbeef_cafe,
    )
}

fn parse(bytes: &[u8], pass: Option<&SecretBytes>) -> Result<Vec<KeyMaterial>> {
    parse_key_material(bytes, pass, "test-key")
}

fn only_private(items: Vec<KeyMaterial>) -> PrivateKey {
    let mut items = items.into_iter();
    match (items.next(), items.next()) {
        (Some(KeyMaterial::Private(k)), None) => k,
        other => panic!("expected one private key, got {other:?}"),
    }
}

fn only_public(items: Vec<KeyMaterial>) -> PublicKey {
    let mut items = items.into_iter();
    match (items.next(), items.next()) {
        (Some(KeyMaterial::Public(k)), None) => k,
        other => panic!("expected one public key, got {other:?}"),
    }
}

/// The error's message, checked to be a KeyFile error free of both passphrases.
fn key_file_reason(result: Result<Vec<KeyMaterial>>) -> String {
    let err = result.expect_err("must fail");
    assert!(matches!(err, Error::KeyFile { .. }), "{err:?}");
    let msg = format!("{err} {err:?}");
    for secret in [PASS, WRONG] {
        assert!(
            !msg.contains(std::str::from_utf8(secret).expect("ascii")),
            "{msg}"
        );
    }
    msg
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn unencrypted_private_keys_in_every_encoding() {
    let rsa = rsa_key();
    let ec = ec_key(Nid::X9_62_PRIME256V1);
    let r = rsa.rsa().expect("rsa");
    let e = ec.ec_key().expect("ec");
    let cases: Vec<(&str, Vec<u8>, &PKey<Private>)> = vec![
        (
            "rsa pkcs8 pem",
            rsa.private_key_to_pem_pkcs8().expect("pem"),
            &rsa,
        ),
        ("rsa pkcs1 pem", r.private_key_to_pem().expect("pem"), &rsa),
        (
            "rsa pkcs8 der",
            rsa.private_key_to_pkcs8().expect("der"),
            &rsa,
        ),
        ("rsa pkcs1 der", r.private_key_to_der().expect("der"), &rsa),
        (
            "ec pkcs8 pem",
            ec.private_key_to_pem_pkcs8().expect("pem"),
            &ec,
        ),
        ("ec sec1 pem", e.private_key_to_pem().expect("pem"), &ec),
        ("ec pkcs8 der", ec.private_key_to_pkcs8().expect("der"), &ec),
        ("ec sec1 der", e.private_key_to_der().expect("der"), &ec),
    ];
    for (what, bytes, key) in cases {
        assert!(!needs_passphrase(&bytes), "{what}");
        let k = only_private(parse(&bytes, None).unwrap_or_else(|e| panic!("{what}: {e}")));
        assert!(k.expose_secret().public_eq(key), "{what}");
        assert_eq!(k.source(), "test-key");
        // A passphrase given for an unencrypted key is not an error.
        assert!(parse(&bytes, Some(&pass())).is_ok(), "{what}");
    }
}

#[test]
fn sec1_pem_with_ec_parameters_block() {
    // What `openssl ecparam -name secp384r1 -genkey` writes: the curve OID, then the key.
    let ec = ec_key(Nid::SECP384R1);
    let mut pem =
        b"-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n".to_vec();
    pem.extend(ec.ec_key().expect("ec").private_key_to_pem().expect("pem"));
    let k = only_private(parse(&pem, None).expect("parse"));
    assert!(k.expose_secret().public_eq(&ec));
}

#[test]
fn public_keys_spki_and_pkcs1() {
    let rsa = rsa_key();
    let ec = ec_key(Nid::X9_62_PRIME256V1);
    let cases: Vec<(&str, Vec<u8>, &PKey<Private>)> = vec![
        ("rsa spki pem", rsa.public_key_to_pem().expect("pem"), &rsa),
        ("rsa spki der", rsa.public_key_to_der().expect("der"), &rsa),
        (
            "rsa pkcs1 pem",
            rsa.rsa()
                .expect("rsa")
                .public_key_to_pem_pkcs1()
                .expect("pem"),
            &rsa,
        ),
        (
            "rsa pkcs1 der",
            rsa.rsa()
                .expect("rsa")
                .public_key_to_der_pkcs1()
                .expect("der"),
            &rsa,
        ),
        ("ec spki pem", ec.public_key_to_pem().expect("pem"), &ec),
        ("ec spki der", ec.public_key_to_der().expect("der"), &ec),
    ];
    for (what, bytes, key) in cases {
        let k = only_public(parse(&bytes, None).unwrap_or_else(|e| panic!("{what}: {e}")));
        assert!(k.pkey().public_eq(key), "{what}");
        assert_eq!(k.jwk_alg(), None);
    }
}

#[test]
fn encrypted_pkcs8_pem_and_der() {
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let cipher = Cipher::aes_256_cbc();
    let cases = [
        (
            "pem",
            key.private_key_to_pem_pkcs8_passphrase(cipher, PASS)
                .expect("pem"),
        ),
        (
            "der",
            key.private_key_to_pkcs8_passphrase(cipher, PASS)
                .expect("der"),
        ),
    ];
    for (what, bytes) in cases {
        assert!(needs_passphrase(&bytes), "{what}");
        let k =
            only_private(parse(&bytes, Some(&pass())).unwrap_or_else(|e| panic!("{what}: {e}")));
        assert!(k.expose_secret().public_eq(&key), "{what}");

        let msg = key_file_reason(parse(&bytes, Some(&SecretBytes::from_slice(WRONG))));
        assert!(
            msg.contains("wrong passphrase") && msg.contains("test-key"),
            "{what}: {msg}"
        );
        let msg = key_file_reason(parse(&bytes, None));
        assert!(msg.contains("no passphrase"), "{what}: {msg}");
        // Odd passphrases fail cleanly.
        for odd in [&b""[..], b"a\0b", &[0xff; 2000][..]] {
            key_file_reason(parse(&bytes, Some(&SecretBytes::from_slice(odd))));
        }
    }
}

#[test]
fn legacy_encrypted_pem() {
    let rsa = rsa_key();
    let ec = ec_key(Nid::X9_62_PRIME256V1);
    let cases = [
        (
            "rsa",
            rsa.rsa()
                .expect("rsa")
                .private_key_to_pem_passphrase(Cipher::aes_256_cbc(), PASS)
                .expect("pem"),
            &rsa,
        ),
        (
            "ec",
            ec.ec_key()
                .expect("ec")
                .private_key_to_pem_passphrase(Cipher::des_ede3_cbc(), PASS)
                .expect("pem"),
            &ec,
        ),
    ];
    for (what, bytes, key) in cases {
        assert!(String::from_utf8_lossy(&bytes).contains("Proc-Type: 4,ENCRYPTED"));
        assert!(needs_passphrase(&bytes), "{what}");
        let k =
            only_private(parse(&bytes, Some(&pass())).unwrap_or_else(|e| panic!("{what}: {e}")));
        assert!(k.expose_secret().public_eq(key), "{what}");
        let msg = key_file_reason(parse(&bytes, Some(&SecretBytes::from_slice(WRONG))));
        assert!(msg.contains("wrong passphrase"), "{what}: {msg}");
        let msg = key_file_reason(parse(&bytes, None));
        assert!(msg.contains("no passphrase"), "{what}: {msg}");
    }
}

#[test]
fn grid_usercert_and_encrypted_userkey() {
    // ~/.globus/usercert.pem + userkey.pem, and a proxy-style file with both.
    let ca = ca();
    let key = rsa_key();
    let user = user_cert(&key, &ca);
    let dir = tempfile::tempdir().expect("tempdir");
    let userkey = key
        .rsa()
        .expect("rsa")
        .private_key_to_pem_passphrase(Cipher::aes_256_cbc(), PASS)
        .expect("pem");
    let userkey = write(&dir, "userkey.pem", &userkey);
    let mut bundle = b"subject=/DC=eu/CN=x\n".to_vec();
    bundle.extend(user.to_pem().expect("pem"));
    bundle.extend(ca.0.to_pem().expect("pem"));
    let usercert = write(&dir, "usercert.pem", &bundle);

    let k = only_private(load_key_file(&userkey, Some(&pass())).expect("key"));
    let certs = load_certificates(&usercert).expect("certs");
    assert_eq!(certs.len(), 2);
    assert!(k.matches_certificate(&certs[0]));
    assert!(!k.matches_certificate(&certs[1]));

    // Key and certificate in one PEM file.
    let mut both = key.private_key_to_pem_pkcs8().expect("pem");
    both.extend(user.to_pem().expect("pem"));
    let items = parse(&both, None).expect("parse");
    assert!(matches!(
        items.as_slice(),
        [KeyMaterial::Private(_), KeyMaterial::Certificate(_)]
    ));
    let path = write(&dir, "proxy.pem", &both);
    assert_eq!(load_certificates(&path).expect("certs").len(), 1);
    let public = load_public_key(&path).expect("key and its own certificate are one key");
    assert!(public.pkey().public_eq(&key));
}

#[test]
fn pkcs12_with_and_without_password() {
    let ca = ca();
    let key = rsa_key();
    let user = user_cert(&key, &ca);
    let mut chain = Stack::new().expect("stack");
    chain.push(ca.0.clone()).expect("push");
    let mut builder = Pkcs12::builder();
    builder.name("jane").pkey(&key).cert(&user).ca(chain);
    let with_pass = builder
        .build2(std::str::from_utf8(PASS).expect("ascii"))
        .expect("p12")
        .to_der()
        .expect("der");
    let no_pass = builder.build2("").expect("p12").to_der().expect("der");

    let check = |items: Vec<KeyMaterial>| {
        let [KeyMaterial::Private(k), KeyMaterial::Certificate(c), KeyMaterial::Certificate(chain)] =
            items.as_slice()
        else {
            panic!("unexpected {items:?}");
        };
        assert!(k.expose_secret().public_eq(&key));
        assert!(k.matches_certificate(c));
        assert_eq!(
            chain.summary().subject,
            grid::grid_dn_display(ca.0.subject_name())
        );
    };
    assert!(needs_passphrase(&with_pass));
    check(parse(&with_pass, Some(&pass())).expect("right passphrase"));
    let msg = key_file_reason(parse(&with_pass, Some(&SecretBytes::from_slice(WRONG))));
    assert!(msg.contains("wrong passphrase"), "{msg}");
    let msg = key_file_reason(parse(&with_pass, None));
    assert!(msg.contains("no passphrase"), "{msg}");
    key_file_reason(parse(&with_pass, Some(&SecretBytes::from_slice(b"a\0b"))));
    key_file_reason(parse(
        &with_pass,
        Some(&SecretBytes::from_slice(&[0xff, 0xfe])),
    ));

    assert!(!needs_passphrase(&no_pass));
    check(parse(&no_pass, None).expect("empty passphrase"));
    // A passphrase given for an unprotected file falls back to the empty one.
    check(parse(&no_pass, Some(&pass())).expect("fallback to empty"));
}

const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

#[test]
fn rfc7638_thumbprint() {
    let jwk =
        format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#);
    let key = only_public(parse(jwk.as_bytes(), None).expect("jwk"));
    assert_eq!(key.jwk_alg(), Some("RS256"));
    assert_eq!(
        jwk_thumbprint(key.pkey()).expect("thumbprint"),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    let public = public_jwk(key.pkey()).expect("jwk");
    assert_eq!(
        public,
        serde_json::json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    );
}

fn b64u(bn: &openssl::bn::BigNumRef, len: Option<i32>) -> String {
    URL_SAFE_NO_PAD.encode(match len {
        Some(len) => bn.to_vec_padded(len).expect("pad"),
        None => bn.to_vec(),
    })
}

fn rsa_private_jwk(key: &PKey<Private>, crt: bool) -> serde_json::Value {
    let r = key.rsa().expect("rsa");
    let mut v = serde_json::json!({
        "kty": "RSA", "alg": "RSA-OAEP-256", "kid": "k1", "use": "enc",
        "n": b64u(r.n(), None), "e": b64u(r.e(), None), "d": b64u(r.d(), None),
        "p": b64u(r.p().expect("p"), None), "q": b64u(r.q().expect("q"), None),
    });
    if crt {
        v["dp"] = b64u(r.dmp1().expect("dp"), None).into();
        v["dq"] = b64u(r.dmq1().expect("dq"), None).into();
        v["qi"] = b64u(r.iqmp().expect("qi"), None).into();
    }
    v
}

fn ec_jwk(key: &PKey<Private>, private: bool) -> serde_json::Value {
    let mut v = public_jwk(key).expect("public jwk");
    v["alg"] = "ECDH-ES+A256KW".into();
    if private {
        let ec = key.ec_key().expect("ec");
        let size = (ec.group().degree() as i32 + 7) / 8;
        v["d"] = b64u(ec.private_key(), Some(size)).into();
    }
    v
}

#[test]
fn jwk_rsa_private_and_public() {
    let key = rsa_key();
    for crt in [true, false] {
        let jwk = rsa_private_jwk(&key, crt).to_string();
        let k = only_private(parse(jwk.as_bytes(), None).expect("rsa jwk"));
        assert!(k.expose_secret().public_eq(&key));
        assert_eq!(k.jwk_alg(), Some("RSA-OAEP-256"));
        assert_eq!(
            k.public_key().expect("public").jwk_alg(),
            Some("RSA-OAEP-256")
        );
        // The components form a consistent key (RSA_check_key).
        let rsa = k.expose_secret().rsa().expect("rsa");
        assert!(rsa.check_key().expect("check"));
    }
    let public = public_jwk(&key).expect("public jwk").to_string();
    let k = only_public(parse(public.as_bytes(), None).expect("public jwk"));
    assert!(k.pkey().public_eq(&key));
    assert_eq!(
        jwk_thumbprint(k.pkey()).expect("t"),
        jwk_thumbprint(&key).expect("t")
    );

    // A private JWK with the wrong d is refused.
    let mut bad = rsa_private_jwk(&key, true);
    bad["d"] = "AQAB".into();
    key_file_reason(parse(bad.to_string().as_bytes(), None));
}

#[test]
fn jwk_ec_private_and_public_on_all_curves() {
    for nid in [Nid::X9_62_PRIME256V1, Nid::SECP384R1, Nid::SECP521R1] {
        let key = ec_key(nid);
        let jwk = ec_jwk(&key, true).to_string();
        let k = only_private(parse(jwk.as_bytes(), None).expect("ec jwk"));
        assert!(k.expose_secret().public_eq(&key));
        assert_eq!(k.jwk_alg(), Some("ECDH-ES+A256KW"));
        let public = ec_jwk(&key, false);
        // Coordinates are left-padded to the field size.
        let size = match nid {
            Nid::X9_62_PRIME256V1 => 32,
            Nid::SECP384R1 => 48,
            _ => 66,
        };
        for c in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(public[c].as_str().expect("str"))
                .expect("b64");
            assert_eq!(bytes.len(), size);
        }
        let k = only_public(parse(public.to_string().as_bytes(), None).expect("public"));
        assert!(k.pkey().public_eq(&key));
        assert_eq!(k.jwk_alg(), Some("ECDH-ES+A256KW"));
    }
}

#[test]
fn jwk_set() {
    let rsa = rsa_key();
    let ec = ec_key(Nid::X9_62_PRIME256V1);
    let set = serde_json::json!({"keys": [rsa_private_jwk(&rsa, true), ec_jwk(&ec, false)]});
    let items = parse(set.to_string().as_bytes(), None).expect("set");
    let [KeyMaterial::Private(a), KeyMaterial::Public(b)] = items.as_slice() else {
        panic!("unexpected {items:?}");
    };
    assert!(a.expose_secret().public_eq(&rsa));
    assert!(b.pkey().public_eq(&ec));
    key_file_reason(parse(br#"{"keys":[]}"#, None));
    key_file_reason(parse(br#"{"keys":[{"keys":[]}]}"#, None));
}

#[test]
fn bad_jwks_are_refused_without_panics() {
    let ec = ec_key(Nid::X9_62_PRIME256V1);
    let good = ec_jwk(&ec, true);

    let mut off_curve = good.clone();
    let mut y = URL_SAFE_NO_PAD
        .decode(good["y"].as_str().expect("y"))
        .expect("b64");
    y[31] ^= 1;
    off_curve["y"] = URL_SAFE_NO_PAD.encode(&y).into();
    let msg = key_file_reason(parse(off_curve.to_string().as_bytes(), None));
    assert!(msg.contains("not on curve"), "{msg}");
    let mut public_off_curve = off_curve.clone();
    public_off_curve.as_object_mut().expect("obj").remove("d");
    key_file_reason(parse(public_off_curve.to_string().as_bytes(), None));

    let mut wrong_d = good.clone();
    wrong_d["d"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
    let msg = key_file_reason(parse(wrong_d.to_string().as_bytes(), None));
    assert!(msg.contains("inconsistent"), "{msg}");

    let mut short_x = good.clone();
    short_x["x"] = "AQAB".into();
    key_file_reason(parse(short_x.to_string().as_bytes(), None));

    let cases: &[&[u8]] = &[
        br#"{"kty":"oct","k":"AAAA"}"#,
        br#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#,
        br#"{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}"#,
        br#"{"kty":"RSA","e":"AQAB"}"#,
        br#"{"kty":"RSA","n":"!!","e":"AQAB"}"#,
        br#"{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}"#,
        br#"{"n":"AQAB"}"#,
        br#"{"kty":"RSA""#,
        br#"{"kty":5}"#,
        b"{}",
    ];
    for case in cases {
        key_file_reason(parse(case, None));
    }
    // JSON errors do not quote values.
    let msg = key_file_reason(parse(br#"{"kty":"EC","d":123456789}"#, None));
    assert!(!msg.contains("123456789"), "{msg}");
}

#[test]
fn certificates_pem_der_and_summary() {
    let ca = ca();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let user = user_cert(&key, &ca);
    for bytes in [user.to_pem().expect("pem"), user.to_der().expect("der")] {
        let items = parse(&bytes, None).expect("cert");
        let [KeyMaterial::Certificate(c)] = items.as_slice() else {
            panic!("unexpected {items:?}");
        };
        let s = c.summary();
        assert_eq!(
            s.subject,
            "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-"
        );
        assert_eq!(
            s.issuer,
            "/DC=eu/DC=rcauth/O=Certification Authorities/CN=Test CA"
        );
        assert_eq!(s.serial, "beefcafe");
        assert_eq!(s.not_before, "2025-01-01T00:00:00Z");
        assert_eq!(s.not_after, "2035-01-01T00:00:00Z");
        assert_eq!(s.key_type, "EC P-256");
        assert!(!s.is_proxy);
        let public = PublicKey::from_certificate(c).expect("public");
        assert!(public.pkey().public_eq(&key));
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["serial"], "beefcafe");
    }
    let s = Certificate::new(ca.0.clone(), "ca").summary();
    assert_eq!(s.key_type, "RSA-2048");
    let email = cert(
        &key,
        &[
            ("C", "NL"),
            ("ST", "NH"),
            ("L", "Amsterdam"),
            ("OU", "x"),
            ("emailAddress", "a@b.c"),
        ],
        None,
        2,
    );
    assert_eq!(
        Certificate::new(email, "e").summary().subject,
        "/C=NL/ST=NH/L=Amsterdam/OU=x/emailAddress=a@b.c"
    );
}

/// An RFC 3820 proxy certificate issued by `user`, as `grid-proxy-init` makes them.
fn proxy_cert(user: &X509, user_key: &PKey<Private>) -> X509 {
    let proxy_key = rsa_key();
    let mut subject = user.subject_name().to_owned().expect("name");
    let mut b = X509NameBuilder::new().expect("builder");
    for e in subject.entries() {
        b.append_entry(e).expect("entry");
    }
    b.append_entry_by_text("CN", "1234567").expect("cn");
    subject = b.build();
    let mut builder = X509::builder().expect("builder");
    builder.set_version(2).expect("version");
    builder
        .set_serial_number(
            &Asn1Integer::from_bn(&BigNum::from_u32(1234567).expect("bn")).expect("int"),
        )
        .expect("serial");
    builder.set_subject_name(&subject).expect("subject");
    builder
        .set_issuer_name(user.subject_name())
        .expect("issuer");
    builder.set_pubkey(&proxy_key).expect("key");
    builder
        .set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    builder
        .set_not_after(&Asn1Time::days_from_now(1).expect("t"))
        .expect("na");
    // ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll } }
    let value: &[u8] = &[
        0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01,
    ];
    let ext = openssl::x509::X509Extension::new_from_der(
        &openssl::asn1::Asn1Object::from_str("1.3.6.1.5.5.7.1.14").expect("oid"),
        true,
        &openssl::asn1::Asn1OctetString::new_from_bytes(value).expect("octets"),
    )
    .expect("proxyCertInfo");
    builder.append_extension(ext).expect("append");
    builder
        .sign(user_key, MessageDigest::sha256())
        .expect("sign");
    builder.build()
}

#[test]
fn proxy_certificates_are_recognised() {
    let ca = ca();
    let key = rsa_key();
    let user = user_cert(&key, &ca);
    let proxy = proxy_cert(&user, &key);
    let s = Certificate::new(proxy, "proxy").summary();
    assert!(s.is_proxy);
    assert!(
        s.subject
            .ends_with("/CN=Jane Doe 7ewsApjEZsBcCLz-/CN=1234567"),
        "{}",
        s.subject
    );
    assert!(!Certificate::new(user, "user").is_proxy());
    assert!(!Certificate::new(ca.0, "ca").is_proxy());
}

#[test]
fn proxy_certificate_made_by_the_openssl_command() {
    // The same, made by `openssl x509 -req` as the brief describes; skipped without the binary.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca();
    let key = rsa_key();
    let user = user_cert(&key, &ca);
    let user_pem = write(&dir, "user.pem", &user.to_pem().expect("pem"));
    let key_pem = write(
        &dir,
        "user.key",
        &key.private_key_to_pem_pkcs8().expect("pem"),
    );
    let proxy_key = write(
        &dir,
        "proxy.key",
        &rsa_key().private_key_to_pem_pkcs8().expect("pem"),
    );
    let ext = write(
        &dir,
        "ext.cnf",
        b"[v3_proxy]\nproxyCertInfo=critical,language:id-ppl-inheritAll\n",
    );
    let csr = dir.path().join("proxy.csr");
    let out = dir.path().join("proxy.pem");
    let run = |args: &[&std::ffi::OsStr]| std::process::Command::new("openssl").args(args).output();
    let Ok(req) = run(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-key".as_ref(),
        proxy_key.as_os_str(),
        "-subj".as_ref(),
        "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-/CN=99"
            .as_ref(),
        "-out".as_ref(),
        csr.as_os_str(),
    ]) else {
        return; // no openssl binary
    };
    assert!(
        req.status.success(),
        "{}",
        String::from_utf8_lossy(&req.stderr)
    );
    let x509 = run(&[
        "x509".as_ref(),
        "-req".as_ref(),
        "-in".as_ref(),
        csr.as_os_str(),
        "-CA".as_ref(),
        user_pem.as_os_str(),
        "-CAkey".as_ref(),
        key_pem.as_os_str(),
        "-set_serial".as_ref(),
        "99".as_ref(),
        "-days".as_ref(),
        "1".as_ref(),
        "-extfile".as_ref(),
        ext.as_os_str(),
        "-extensions".as_ref(),
        "v3_proxy".as_ref(),
        "-out".as_ref(),
        out.as_os_str(),
    ])
    .expect("openssl ran before");
    assert!(
        x509.status.success(),
        "{}",
        String::from_utf8_lossy(&x509.stderr)
    );
    let certs = load_certificates(&out).expect("proxy");
    assert!(certs[0].summary().is_proxy);
    assert_eq!(certs[0].summary().serial, "63");
}

#[test]
fn garbage_empty_truncated_and_oversized() {
    let key = rsa_key();
    let pem = key.private_key_to_pem_pkcs8().expect("pem");
    let der = key.private_key_to_pkcs8().expect("der");
    let cert_der = ca().0.to_der().expect("der");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("whitespace", b" \n\t\n".to_vec()),
        ("garbage", b"this is not a key".to_vec()),
        ("binary garbage", vec![0x30, 0x82, 0xff, 0xff, 1, 2, 3]),
        ("truncated pem", pem[..pem.len() / 2].to_vec()),
        ("truncated der", der[..der.len() / 2].to_vec()),
        ("truncated cert der", cert_der[..cert_der.len() - 10].to_vec()),
        ("unknown block", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".to_vec()),
        ("bad base64", b"-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----\n".to_vec()),
        ("wrong body", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec()),
        ("only params", b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n".to_vec()),
        ("encrypted pem malformed", b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_vec()),
    ];
    // Every one-byte truncation of a small DER key.
    let ec_der = ec_key(Nid::X9_62_PRIME256V1)
        .private_key_to_pkcs8()
        .expect("der");
    for n in 1..ec_der.len() {
        cases.push(("ec der prefix", ec_der[..n].to_vec()));
    }
    for (what, bytes) in cases {
        let msg = key_file_reason(parse(&bytes, Some(&pass())));
        assert!(msg.contains("test-key"), "{what}: {msg}");
        assert!(!needs_passphrase(&bytes), "{what}");
    }
    let msg = key_file_reason(parse(b"garbage", None));
    assert!(
        msg.contains("JWK") && msg.contains("PKCS#12"),
        "lists formats: {msg}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let big = write(&dir, "big.pem", &vec![b'A'; 2 * 1024 * 1024]);
    let msg = key_file_reason(load_key_file(&big, None));
    assert!(msg.contains("big.pem") && msg.contains("larger"), "{msg}");
    assert!(load_certificates(&big).is_err());
    let msg = key_file_reason(load_key_file(dir.path(), None));
    assert!(msg.contains("not a regular file"), "{msg}");
    let msg = key_file_reason(load_key_file(&dir.path().join("missing.pem"), None));
    assert!(msg.contains("missing.pem"), "{msg}");
    let empty = write(&dir, "empty.pem", b"");
    let msg = key_file_reason(load_key_file(&empty, None));
    assert!(msg.contains("empty"), "{msg}");
}

#[test]
fn load_public_key_accepts_one_recipient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rsa = rsa_key();
    let ec = ec_key(Nid::SECP384R1);

    let spki = write(&dir, "rsa.pub", &rsa.public_key_to_pem().expect("pem"));
    let k = load_public_key(&spki).expect("spki");
    assert!(k.pkey().public_eq(&rsa));

    let spki_der = write(&dir, "ec.der", &ec.public_key_to_der().expect("der"));
    assert!(load_public_key(&spki_der)
        .expect("der")
        .pkey()
        .public_eq(&ec));

    let private_jwk = write(&dir, "ec.jwk", ec_jwk(&ec, true).to_string().as_bytes());
    let k = load_public_key(&private_jwk).expect("public half of a private jwk");
    assert!(k.pkey().public_eq(&ec));
    assert_eq!(k.jwk_alg(), Some("ECDH-ES+A256KW"));

    let cert_path = write(
        &dir,
        "user.pem",
        &user_cert(&rsa, &ca()).to_pem().expect("pem"),
    );
    assert!(load_public_key(&cert_path)
        .expect("cert")
        .pkey()
        .public_eq(&rsa));

    let mut two = rsa.public_key_to_pem().expect("pem");
    two.extend(ec.public_key_to_pem().expect("pem"));
    let two = write(&dir, "two.pem", &two);
    let err = load_public_key(&two).expect_err("two keys");
    assert!(
        matches!(err, Error::Recipient { .. }) && err.to_string().contains("exactly one"),
        "{err}"
    );

    let mut bad_alg = ec_jwk(&ec, false);
    bad_alg["alg"] = "RSA-OAEP".into();
    let bad_alg = write(&dir, "bad-alg.jwk", bad_alg.to_string().as_bytes());
    assert!(matches!(
        load_public_key(&bad_alg),
        Err(Error::Recipient { .. })
    ));
    let mut sig_alg = ec_jwk(&ec, false);
    sig_alg["alg"] = "ES384".into();
    let sig_alg = write(&dir, "sig-alg.jwk", sig_alg.to_string().as_bytes());
    assert!(matches!(
        load_public_key(&sig_alg),
        Err(Error::Recipient { .. })
    ));

    let ed = PKey::generate_ed25519().expect("ed25519");
    let ed = write(&dir, "ed.pub", &ed.public_key_to_pem().expect("pem"));
    let err = load_public_key(&ed).expect_err("ed25519");
    assert!(err.to_string().contains("Ed25519"), "{err}");
}

#[test]
fn public_jwk_refuses_other_key_types() {
    let ed = PKey::generate_ed25519().expect("ed25519");
    assert!(public_jwk(&ed).is_err());
    assert!(jwk_thumbprint(&ed).is_err());
}

#[test]
fn debug_output_has_no_key_material() {
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let d = key
        .ec_key()
        .expect("ec")
        .private_key()
        .to_hex_str()
        .expect("hex")
        .to_string();
    let items = parse(&key.private_key_to_pem_pkcs8().expect("pem"), None).expect("parse");
    let debug = format!("{items:?}");
    assert!(!debug.contains(&d) && !debug.to_lowercase().contains(&d.to_lowercase()));
    assert!(debug.contains("test-key"));
}
