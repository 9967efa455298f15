//! Shared set-up for the fuzz targets: fixed keys made once per process.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use layercrypt_ocicrypt::keys::{Certificate, PrivateKey};
use layercrypt_ocicrypt::DecryptConfig;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Name, X509};

/// A decrypt config with an RSA key (2048 bits, the smallest layercrypt generates), a P-256 key
/// and a self-signed certificate for the RSA key, so that JWE and PKCS#7 unwrapping get past
/// "not mine" whenever the input names them.
pub fn decrypt_config() -> &'static DecryptConfig {
    static DC: OnceLock<DecryptConfig> = OnceLock::new();
    DC.get_or_init(|| {
        let rsa = PKey::from_rsa(Rsa::generate(2048).expect("RSA keygen")).expect("pkey");
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let ec = PKey::from_ec_key(EcKey::generate(&group).expect("EC keygen")).expect("pkey");

        let mut name = X509Name::builder().expect("name");
        name.append_entry_by_text("CN", "layercrypt fuzz")
            .expect("CN");
        let name = name.build();
        let mut cert = X509::builder().expect("x509");
        cert.set_version(2).expect("version");
        let serial = BigNum::from_u32(1)
            .and_then(|b| b.to_asn1_integer())
            .expect("serial");
        cert.set_serial_number(&serial).expect("serial");
        cert.set_subject_name(&name).expect("subject");
        cert.set_issuer_name(&name).expect("issuer");
        cert.set_pubkey(&rsa).expect("pubkey");
        cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("not before");
        cert.set_not_after(&Asn1Time::days_from_now(365).expect("time"))
            .expect("not after");
        cert.sign(&rsa, MessageDigest::sha256()).expect("sign");

        DecryptConfig {
            private_keys: vec![
                PrivateKey::new(rsa, "fuzz-rsa"),
                PrivateKey::new(ec, "fuzz-ec"),
            ],
            certificates: vec![Certificate::new(cert.build(), "fuzz-cert")],
            ..DecryptConfig::default()
        }
    })
}
