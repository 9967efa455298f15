//! The DN form (ordinary names as before, the `/`-in-a-value collision, string types,
//! multi-valued RDNs, a round-trip over generated tricky names), proxy kinds and the
//! client-authentication purpose.

use super::*;
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Extension, X509Name, X509NameBuilder, X509};

fn name(parts: &[(&str, &str)]) -> X509Name {
    let mut b = X509NameBuilder::new().expect("name");
    for (k, v) in parts {
        b.append_entry_by_text(k, v).expect("entry");
    }
    b.build()
}

fn dn(parts: &[(&str, &str)]) -> String {
    grid_dn(&name(parts)).expect("dn")
}

// ---- DER by hand, for what X509NameBuilder cannot make --------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    Length::try_from(content.len())
        .expect("len")
        .encode_to_vec(&mut out)
        .expect("len");
    out.extend_from_slice(content);
    out
}

fn oid(dotted: &str) -> Vec<u8> {
    ObjectIdentifier::new(dotted)
        .expect("oid")
        .to_der()
        .expect("der")
}

/// A Name from RDNs of (type OID, value tag, value bytes).
fn name_der(rdns: &[&[(&str, u8, &[u8])]]) -> Vec<u8> {
    let mut seq = Vec::new();
    for rdn in rdns {
        let mut set = Vec::new();
        for (t, tag, v) in *rdn {
            set.extend(tlv(0x30, &[oid(t), tlv(*tag, v)].concat()));
        }
        seq.extend(tlv(0x31, &set));
    }
    tlv(0x30, &seq)
}

const CN: &str = "2.5.4.3";
const O: &str = "2.5.4.10";
const UID: &str = "0.9.2342.19200300.100.1.1";
const UTF8: u8 = 0x0C;
const PRINTABLE: u8 = 0x13;

#[test]
fn ordinary_names_print_as_before() {
    assert_eq!(
        dn(&[
            ("C", "NL"),
            ("ST", "Noord-Holland"),
            ("L", "Amsterdam"),
            ("O", "Nikhef"),
            ("OU", "PDP"),
            ("CN", "Jane Doe"),
            ("emailAddress", "jane@example.org"),
        ]),
        "/C=NL/ST=Noord-Holland/L=Amsterdam/O=Nikhef/OU=PDP/CN=Jane Doe/emailAddress=jane@example.org"
    );
    assert_eq!(
        dn(&[
            ("DC", "eu"),
            ("DC", "rcauth"),
            ("DC", "rcauth-clients"),
            ("O", "EGI Foundation"),
            ("CN", "Jane Doe 7ewsApjEZsBcCLz-"),
        ]),
        "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-"
    );
    assert_eq!(dn(&[("CN", "Zoë")]), "/CN=Zoë");
    assert_eq!(dn(&[("1.2.3.4", "x")]), "/1.2.3.4=x");
    // Robot and host DNs: `=`, `:`, `(`, `'`, `,`, `.` print as themselves.
    assert_eq!(
        dn(&[("CN", "Robot: O'Neil (a=b), x.y")]),
        "/CN=Robot: O'Neil (a=b), x.y"
    );
    assert_eq!(dn(&[]), "");
}

#[test]
fn a_slash_inside_a_value_cannot_forge_another_rdn() {
    let jane = dn(&[("DC", "eu"), ("O", "EGI Foundation"), ("CN", "Jane Doe")]);
    let forged = dn(&[("DC", "eu"), ("O", "EGI Foundation/CN=Jane Doe")]);
    assert_eq!(jane, "/DC=eu/O=EGI Foundation/CN=Jane Doe");
    assert_eq!(forged, "/DC=eu/O=EGI Foundation\\x2FCN=Jane Doe");
    assert_ne!(jane, forged);
    // A `+` cannot forge a multi-valued RDN either, nor a `\` an escape.
    assert_eq!(dn(&[("CN", "a+UID=b")]), "/CN=a\\x2BUID=b");
    assert_eq!(dn(&[("CN", "a\\x2Fb")]), "/CN=a\\x5Cx2Fb");
}

#[test]
fn multi_valued_rdns_are_joined_by_plus() {
    let multi = name_der(&[&[(CN, UTF8, b"a"), (UID, UTF8, b"b")]]);
    let two = name_der(&[&[(CN, UTF8, b"a")], &[(UID, UTF8, b"b")]]);
    assert_eq!(grid_dn_from_der(&multi).expect("dn"), "/CN=a+UID=b");
    assert_eq!(grid_dn_from_der(&two).expect("dn"), "/CN=a/UID=b");
    // An empty RDN is not a Name.
    assert!(grid_dn_from_der(&tlv(0x30, &tlv(0x31, &[]))).is_err());
    assert!(grid_dn_from_der(&[0x30, 0x05]).is_err());
}

#[test]
fn string_types_decode_as_openssl_does() {
    let utf8 = name_der(&[&[(O, UTF8, b"EGI")]]);
    let printable = name_der(&[&[(O, PRINTABLE, b"EGI")]]);
    let bmp = name_der(&[&[(O, 0x1E, &[0, b'E', 0, b'G', 0, b'I'])]]);
    let universal = name_der(&[&[(O, 0x1C, &[0, 0, 0, b'E', 0, 0, 0, b'G', 0, 0, 0, b'I'])]]);
    for der in [&utf8, &printable, &bmp, &universal] {
        assert_eq!(grid_dn_from_der(der).expect("dn"), "/O=EGI");
    }
    // Teletex as Latin-1, like OpenSSL; the same text in UTF-8 prints the same.
    let t61 = name_der(&[&[(CN, 0x14, &[b'Z', b'o', 0xEB])]]);
    assert_eq!(grid_dn_from_der(&t61).expect("dn"), "/CN=Zoë");
    // What OpenSSL itself prints for the same names (no escapes needed here).
    for der in [&utf8, &printable, &bmp] {
        let n = X509Name::from_der(der).expect("openssl parses");
        let entry = n.entries().next().expect("entry");
        assert_eq!(entry.data().to_string().expect("utf8"), "EGI");
    }
}

#[test]
fn invisible_and_undecodable_values_are_escaped() {
    let nul = name_der(&[&[(CN, UTF8, b"Jane Doe\0evil")]]);
    assert_eq!(grid_dn_from_der(&nul).expect("dn"), "/CN=Jane Doe\\x00evil");
    let bidi = name_der(&[&[(CN, UTF8, "a\u{202E}b\u{200B}c\n".as_bytes())]]);
    assert_eq!(
        grid_dn_from_der(&bidi).expect("dn"),
        "/CN=a\\xE2\\x80\\xAEb\\xE2\\x80\\x8Bc\\x0A"
    );
    let separator = name_der(&[&[(CN, UTF8, "a\u{2028}b".as_bytes())]]);
    assert_eq!(
        grid_dn_from_der(&separator).expect("dn"),
        "/CN=a\\xE2\\x80\\xA8b"
    );
    let bad_utf8 = name_der(&[&[(CN, UTF8, &[0xFF])]]);
    assert_eq!(grid_dn_from_der(&bad_utf8).expect("dn"), "/CN=\\#0c01ff");
    assert_eq!(
        parse_grid_dn("/CN=\\#0c01ff").expect("parses"),
        vec![vec![("CN".into(), DnValue::Der(vec![0x0C, 0x01, 0xFF]))]]
    );
    let lone_surrogate = name_der(&[&[(CN, 0x1E, &[0xD8, 0x00])]]);
    assert_eq!(
        grid_dn_from_der(&lone_surrogate).expect("dn"),
        "/CN=\\#1e02d800"
    );
    let odd_bmp = name_der(&[&[(CN, 0x1E, &[0x00])]]);
    assert_eq!(grid_dn_from_der(&odd_bmp).expect("dn"), "/CN=\\#1e0100");
    let integer = name_der(&[&[(CN, 0x02, &[0x01])]]);
    assert_eq!(grid_dn_from_der(&integer).expect("dn"), "/CN=\\#020101");
}

// ---- unambiguity: a parser of the form, and a round trip over tricky names -----------

fn parse(s: &str) -> Vec<Vec<(String, DnValue)>> {
    parse_grid_dn(s).expect("parses")
}

#[test]
fn parse_refuses_what_the_formatter_never_writes() {
    for bad in [
        "CN=x",
        "/DC=eu/O=EGI Foundation/CN=host/grid.example.org",
        "/CN=a+b",
        "/=x",
        "/C N=x",
        "/CN=a\\/b",
        "/CN=a\\x2",
        "/CN=a\\xZZ",
        "/CN=\\#zz",
        "/CN=\\xFF",
    ] {
        assert!(parse_grid_dn(bad).is_err(), "{bad}");
    }
    let r = parse_grid_dn("/CN=host/grid.example.org").expect_err("no =");
    assert!(r.to_string().contains("\\x2F"), "{r}");
    assert_eq!(
        parse("/CN=host\\x2Fgrid.example.org+UID=x/O=a=b"),
        vec![
            vec![
                ("CN".into(), DnValue::Text("host/grid.example.org".into())),
                ("UID".into(), DnValue::Text("x".into())),
            ],
            vec![("O".into(), DnValue::Text("a=b".into()))],
        ]
    );
    assert_eq!(parse(""), Vec::<Vec<(String, DnValue)>>::new());
}

#[test]
fn the_form_round_trips_over_tricky_names() {
    const PIECES: &[&str] = &[
        "a",
        "Jane Doe",
        "/",
        "+",
        "=",
        "\\",
        "\\x2F",
        "\\#",
        "#",
        "\0",
        "\n",
        "é",
        "\u{202E}",
        "\u{FEFF}",
        "/CN=",
        "+UID=",
        " ",
        ",",
        "\"",
        "*",
        "\u{1F600}",
    ];
    const TYPES: &[(&str, &str)] = &[(CN, "CN"), (O, "O"), (UID, "UID"), ("1.2.3.4", "1.2.3.4")];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).expect("small")
    };
    let mut seen = std::collections::HashMap::new();
    for _ in 0..2000 {
        let mut rdns: Vec<Vec<(&str, &str, String)>> = Vec::new();
        for _ in 0..1 + next(3) {
            let mut rdn = Vec::new();
            for _ in 0..1 + next(2) {
                let (t, short) = TYPES[next(TYPES.len())];
                let value: String = (0..next(4)).map(|_| PIECES[next(PIECES.len())]).collect();
                rdn.push((t, short, value));
            }
            rdns.push(rdn);
        }
        let owned: Vec<Vec<(&str, u8, &[u8])>> = rdns
            .iter()
            .map(|r| r.iter().map(|(t, _, v)| (*t, UTF8, v.as_bytes())).collect())
            .collect();
        let borrowed: Vec<&[(&str, u8, &[u8])]> = owned.iter().map(Vec::as_slice).collect();
        let der = name_der(&borrowed);
        let text = grid_dn_from_der(&der).expect("dn");
        let expected: Vec<Vec<(String, DnValue)>> = rdns
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(_, s, v)| ((*s).to_owned(), DnValue::Text(v.clone())))
                    .collect()
            })
            .collect();
        assert_eq!(parse(&text), expected, "{text}");
        // Injective: a DN string names one structure.
        if let Some(other) = seen.insert(text.clone(), expected.clone()) {
            assert_eq!(other, expected, "{text}");
        }
    }
}

// ---- proxies and purposes -------------------------------------------------------------

/// A self-signed certificate with the given extra extensions (OID, DER value).
fn cert_with(exts: &[(&str, &[u8])]) -> X509 {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(1).expect("bn")).expect("int"))
        .expect("serial");
    let n = name(&[("CN", "x")]);
    b.set_subject_name(&n).expect("subject");
    b.set_issuer_name(&n).expect("issuer");
    b.set_pubkey(&key).expect("key");
    // An hour back, so that a clock stepping back a little cannot make it "not yet valid".
    b.set_not_before(&Asn1Time::from_unix(now_minus_an_hour()).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("t"))
        .expect("na");
    for (o, v) in exts {
        b.append_extension(
            X509Extension::new_from_der(
                &Asn1Object::from_str(o).expect("oid"),
                false,
                &Asn1OctetString::new_from_bytes(v).expect("octets"),
            )
            .expect("ext"),
        )
        .expect("append");
    }
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    b.build()
}

fn proxy_cert_info(language: &str) -> Vec<u8> {
    tlv(0x30, &tlv(0x30, &oid(language)))
}

#[test]
fn proxy_kinds_and_policies() {
    let kind = |language: &str| {
        proxy_kind(&cert_with(&[(
            "1.3.6.1.5.5.7.1.14",
            &proxy_cert_info(language),
        )]))
    };
    assert_eq!(
        kind("1.3.6.1.5.5.7.21.1"),
        ProxyKind::Rfc3820(ProxyPolicy::InheritAll)
    );
    assert_eq!(
        kind("1.3.6.1.5.5.7.21.2"),
        ProxyKind::Rfc3820(ProxyPolicy::Independent)
    );
    assert_eq!(
        kind("1.3.6.1.4.1.3536.1.1.1.9"),
        ProxyKind::Rfc3820(ProxyPolicy::Limited)
    );
    assert_eq!(
        kind("1.3.6.1.4.1.99999.1"),
        ProxyKind::Rfc3820(ProxyPolicy::Other("1.3.6.1.4.1.99999.1".into()))
    );
    // With a path length and a policy.
    let with_len = tlv(
        0x30,
        &[
            tlv(0x02, &[3]),
            tlv(0x30, &[oid("1.3.6.1.5.5.7.21.1"), tlv(0x04, b"p")].concat()),
        ]
        .concat(),
    );
    assert_eq!(
        proxy_kind(&cert_with(&[("1.3.6.1.5.5.7.1.14", &with_len)])),
        ProxyKind::Rfc3820(ProxyPolicy::InheritAll)
    );
    assert_eq!(proxy_kind(&cert_with(&[])), ProxyKind::NotProxy);
    assert_eq!(
        proxy_kind(&cert_with(&[("1.3.6.1.5.5.7.1.14", &[0x30, 0x00])])),
        ProxyKind::Malformed
    );
    let trailing = [proxy_cert_info("1.3.6.1.5.5.7.21.1"), vec![0x05, 0x00]].concat();
    assert_eq!(
        proxy_kind(&cert_with(&[("1.3.6.1.5.5.7.1.14", &trailing)])),
        ProxyKind::Malformed
    );
    assert_eq!(
        proxy_kind(&cert_with(&[(
            "1.3.6.1.4.1.3536.1.222",
            &proxy_cert_info("1.3.6.1.5.5.7.21.1")
        )])),
        ProxyKind::DraftGsi3
    );
}

fn eku(usages: &[&str]) -> Vec<u8> {
    tlv(
        0x30,
        &usages.iter().map(|u| oid(u)).collect::<Vec<_>>().concat(),
    )
}

#[test]
fn client_auth_purpose() {
    const SERVER: &str = "1.3.6.1.5.5.7.3.1";
    const CLIENT: &str = "1.3.6.1.5.5.7.3.2";
    assert_eq!(client_auth(&cert_with(&[])), ClientAuth::NoExtendedKeyUsage);
    assert_eq!(
        client_auth(&cert_with(&[("2.5.29.37", &eku(&[SERVER, CLIENT]))])),
        ClientAuth::Permitted
    );
    assert_eq!(
        client_auth(&cert_with(&[("2.5.29.37", &eku(&["2.5.29.37.0"]))])),
        ClientAuth::Permitted
    );
    assert_eq!(
        client_auth(&cert_with(&[("2.5.29.37", &eku(&[SERVER]))])),
        ClientAuth::NotPermitted(vec!["serverAuth".into()])
    );
    assert_eq!(
        client_auth(&cert_with(&[("2.5.29.37", &[0x30, 0x00])])),
        ClientAuth::Malformed
    );
}

/// The Unix time an hour ago (the notBefore of test certificates).
fn now_minus_an_hour() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(i64::MAX) - 3600
}
