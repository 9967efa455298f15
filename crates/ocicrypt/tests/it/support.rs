//! Keys, recipients and helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use layercrypt_ocicrypt::annotations::LayerAnnotations;
use layercrypt_ocicrypt::blockcipher::unwrap_io;
use layercrypt_ocicrypt::keys::{
    generate_keypair, load_certificates, load_key_file, parse_key_material, Certificate, KeyKind,
    KeyMaterial, PrivateKey, PublicKey,
};
use layercrypt_ocicrypt::keywrap::keyprovider::Invocation;
use layercrypt_ocicrypt::layer::{decrypt_layer, encrypt_layer, Wrappers};
use layercrypt_ocicrypt::{DecryptConfig, EncryptConfig, Error, ProviderRecipient, Result};

/// 1 MiB + 3 bytes: many block-cipher chunks and a ragged end.
pub const LAYER_LEN: usize = (1 << 20) + 3;

pub fn layer_data() -> Vec<u8> {
    (0..LAYER_LEN)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect()
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(openssl::sha::sha256(data)))
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A JWE recipient: private key and its public half, made with `generate_keypair`.
pub struct JweKey {
    pub private: PrivateKey,
    pub public: PublicKey,
}

impl JweKey {
    pub fn generate(kind: KeyKind) -> Self {
        let (private_pem, public_pem) = generate_keypair(kind).unwrap();
        let private = match parse_key_material(private_pem.expose_secret(), None, "gen.key")
            .unwrap()
            .remove(0)
        {
            KeyMaterial::Private(k) => k,
            other => panic!("expected a private key, got {other:?}"),
        };
        let public = match parse_key_material(&public_pem, None, "gen.pub")
            .unwrap()
            .remove(0)
        {
            KeyMaterial::Public(k) => k,
            other => panic!("expected a public key, got {other:?}"),
        };
        Self { private, public }
    }

    pub fn thumbprint(&self) -> String {
        layercrypt_ocicrypt::keys::jwk_thumbprint(self.public.pkey()).unwrap()
    }
}

/// A PKCS#7 recipient: certificate and private key (test fixtures of `tests/data/pkcs7`).
pub struct CertKey {
    pub cert: Certificate,
    pub key: PrivateKey,
}

impl CertKey {
    /// `cert.pem`/`key.pem` (n = 1) or `cert2.pem`/`key2.pem` (n = 2).
    pub fn fixture(n: u8) -> Self {
        let suffix = if n == 1 { String::new() } else { n.to_string() };
        let dir = data_dir().join("pkcs7");
        let cert = load_certificates(&dir.join(format!("cert{suffix}.pem")))
            .unwrap()
            .remove(0);
        let key = match load_key_file(&dir.join(format!("key{suffix}.pem")), None)
            .unwrap()
            .remove(0)
        {
            KeyMaterial::Private(k) => k,
            other => panic!("expected a private key, got {other:?}"),
        };
        Self { cert, key }
    }

    pub fn dc(&self) -> DecryptConfig {
        DecryptConfig {
            private_keys: vec![clone_key(&self.key)],
            certificates: vec![self.cert.clone()],
            ..Default::default()
        }
    }
}

/// `PrivateKey` is not `Clone` (on purpose); tests make a second handle to the same key.
pub fn clone_key(k: &PrivateKey) -> PrivateKey {
    PrivateKey::new(k.expose_secret().to_owned(), k.source())
}

pub fn jwe_dc(k: &JweKey) -> DecryptConfig {
    DecryptConfig {
        private_keys: vec![clone_key(&k.private)],
        ..Default::default()
    }
}

/// A toy key provider `toy`: wraps by storing the private options together with a group
/// name (the recipient parameter), unwraps only for callers that name that group.
pub struct Provider {
    _dir: tempfile::TempDir,
    pub invocation: Invocation,
}

pub const PROVIDER: &str = "toy";
pub const GROUP: &[u8] = b"grid-users";

impl Provider {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("toy.py");
        std::fs::write(
            &script,
            r#"import base64, json, sys
r = json.load(sys.stdin)
if r["op"] == "keywrap":
    group = base64.b64decode(r["keywrapparams"]["ec"]["Parameters"]["toy"][0]).decode()
    ann = json.dumps({"group": group, "opts": r["keywrapparams"]["optsdata"]}).encode()
    print(json.dumps({"keywrapresults": {"annotation": base64.b64encode(ann).decode()}}))
else:
    a = json.loads(base64.b64decode(r["keyunwrapparams"]["annotation"]))
    have = [base64.b64decode(p).decode() for p in r["keyunwrapparams"]["dc"]["Parameters"].get("toy") or []]
    if a["group"] not in have:
        sys.stderr.write("not a member of group %s\n" % a["group"])
        sys.exit(1)
    print(json.dumps({"keyunwrapresults": {"optsdata": a["opts"]}}))
"#,
        )
        .unwrap();
        let invocation = Invocation::Cmd {
            path: "python3".into(),
            args: vec![script.display().to_string()],
        };
        Self {
            _dir: dir,
            invocation,
        }
    }

    pub fn wrappers(&self) -> Wrappers {
        Wrappers::new().with_providers(BTreeMap::from([(
            PROVIDER.to_owned(),
            self.invocation.clone(),
        )]))
    }

    pub fn recipient() -> ProviderRecipient {
        ProviderRecipient {
            name: PROVIDER.into(),
            param: Some(GROUP.to_vec()),
        }
    }

    pub fn dc() -> DecryptConfig {
        DecryptConfig {
            provider_params: BTreeMap::from([(PROVIDER.to_owned(), vec![GROUP.to_vec()])]),
            ..Default::default()
        }
    }
}

/// An encrypted layer: ciphertext and its encryption annotations.
pub struct Encrypted {
    pub ciphertext: Vec<u8>,
    pub map: BTreeMap<String, String>,
}

impl Encrypted {
    pub fn ann(&self) -> LayerAnnotations {
        LayerAnnotations::parse(&self.map).unwrap()
    }
}

pub fn encrypt(wrappers: &Wrappers, ec: &EncryptConfig, data: &[u8]) -> Encrypted {
    let mut ciphertext = Vec::new();
    let map = encrypt_layer(
        wrappers,
        ec,
        &mut &data[..],
        &mut ciphertext,
        &sha256_digest(data),
    )
    .unwrap();
    assert_eq!(ciphertext.len(), data.len(), "CTR keeps the size");
    assert!(ciphertext != data);
    Encrypted { ciphertext, map }
}

/// Decrypts `ciphertext` with `map`'s annotations, reading to the end (HMAC checked).
pub fn decrypt(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    map: &BTreeMap<String, String>,
    ciphertext: &[u8],
) -> Result<Vec<u8>> {
    let ann = LayerAnnotations::parse(map)?;
    let mut reader = decrypt_layer(wrappers, dc, &ann, ciphertext)?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(unwrap_io)?;
    Ok(out)
}

pub fn assert_no_matching_key(r: Result<Vec<u8>>) {
    match r {
        Err(Error::NoMatchingKey { .. }) => {}
        Err(e) => panic!("expected NoMatchingKey, got {e}"),
        Ok(_) => panic!("expected NoMatchingKey, decrypted"),
    }
}

/// The items of one `keys.*` annotation value, as written (std base64, comma-separated).
pub fn raw_items<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Vec<&'a str> {
    map[key].split(',').collect()
}
