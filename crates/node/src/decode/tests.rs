use std::collections::BTreeMap;

use layercrypt_ocicrypt::keys::PrivateKey;
use layercrypt_ocicrypt::keys::{generate_keypair, parse_key_material, KeyKind, KeyMaterial};
use layercrypt_ocicrypt::layer::encrypt_layer;
use layercrypt_ocicrypt::options::PublicOptions;
use layercrypt_ocicrypt::spec::ANNOTATION_PUBOPTS;
use layercrypt_ocicrypt::EncryptConfig;

use super::*;

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
const HOLD_BACK: usize = layercrypt_ocicrypt::blockcipher::HOLD_BACK;

struct Keys {
    ec: EncryptConfig,
    dc: DecryptConfig,
}

fn keys() -> Keys {
    let (private, public) = generate_keypair(KeyKind::EcP256).expect("keygen");
    let mut ec = EncryptConfig::default();
    for m in parse_key_material(&public, None, "pub").expect("pub") {
        if let KeyMaterial::Public(k) = m {
            ec.jwe.push(k);
        }
    }
    let mut dc = DecryptConfig::default();
    for m in parse_key_material(private.expose_secret(), None, "priv").expect("priv") {
        if let KeyMaterial::Private(k) = m {
            dc.private_keys.push(k);
        }
    }
    Keys { ec, dc }
}

fn other_key() -> PrivateKey {
    let (private, _) = generate_keypair(KeyKind::EcP256).expect("keygen");
    match parse_key_material(private.expose_secret(), None, "other")
        .expect("priv")
        .remove(0)
    {
        KeyMaterial::Private(k) => k,
        _ => panic!("not a private key"),
    }
}

/// A tar with one file of `len` pseudo-random bytes (incompressible enough).
fn tar_bytes(len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "etc/secret.txt", &data[..])
        .expect("tar");
    b.into_inner().expect("tar")
}

fn encrypt(k: &Keys, blob: &[u8]) -> (Vec<u8>, BTreeMap<String, String>) {
    let mut out = Vec::new();
    let ann =
        encrypt_layer(&Wrappers::new(), &k.ec, &mut &blob[..], &mut out, DIGEST).expect("encrypt");
    (out, ann)
}

fn descriptor(media_type: &str, ct: &[u8], ann: BTreeMap<String, String>) -> LayerDescriptor {
    LayerDescriptor {
        media_type: media_type.into(),
        digest: DIGEST.into(),
        size: ct.len() as u64,
        annotations: ann,
    }
}

fn run(
    dc: &DecryptConfig,
    media_type: &str,
    desc: &LayerDescriptor,
    input: &[u8],
) -> (Result<u64>, Vec<u8>) {
    run_on(&NodeConfig::default(), dc, media_type, desc, input)
}

/// As [`run`] on a node with `node`'s brokers (and its group wrapper, if any).
fn run_on(
    node: &NodeConfig,
    dc: &DecryptConfig,
    media_type: &str,
    desc: &LayerDescriptor,
    input: &[u8],
) -> (Result<u64>, Vec<u8>) {
    let mut wrappers = Wrappers::new();
    let group = crate::broker::node_group(node).expect("node group");
    let status = group.as_ref().map(|g| g.status.clone());
    if let Some(g) = group {
        wrappers.push(Box::new(g.wrapper));
    }
    let key_dir = KeyDirReport::default();
    let req = DecodeRequest {
        media_type,
        descriptor: desc,
        wrappers: &wrappers,
        keys: dc,
        key_dir: &key_dir,
        node,
        node_file: None,
        group: status.as_ref(),
    };
    let mut out = Vec::new();
    let r = decode_layer(&req, &mut &input[..], &mut out);
    (r, out)
}

const TAR: &str = "application/vnd.oci.image.layer.v1.tar+encrypted";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd+encrypted";
const ND_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd+encrypted";

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn media_types() {
    assert_eq!(LayerKind::from_media_type(TAR).ok(), Some(LayerKind::Tar));
    assert_eq!(LayerKind::from_media_type(GZIP).ok(), Some(LayerKind::Gzip));
    assert_eq!(LayerKind::from_media_type(ZSTD).ok(), Some(LayerKind::Zstd));
    assert_eq!(
        LayerKind::from_media_type(ND_ZSTD).ok(),
        Some(LayerKind::Zstd)
    );
    for bad in [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
        "",
    ] {
        assert!(LayerKind::from_media_type(bad).is_err(), "{bad}");
    }
}

#[test]
fn round_trips_every_kind_and_size() {
    let k = keys();
    for len in [0, 1, 511, HOLD_BACK, 3 * HOLD_BACK + 17, 2 * CHUNK + 5] {
        let tar = tar_bytes(len);
        // tar: output = tar.
        let (ct, ann) = encrypt(&k, &tar);
        let (r, out) = run(&k.dc, TAR, &descriptor(TAR, &ct, ann), &ct);
        assert_eq!(r.expect("tar"), tar.len() as u64);
        assert_eq!(out, tar);
        // gzip: output = the gzip blob.
        let gz = gzip(&tar);
        let (ct, ann) = encrypt(&k, &gz);
        let (r, out) = run(&k.dc, GZIP, &descriptor(GZIP, &ct, ann), &ct);
        r.expect("gzip");
        assert_eq!(out, gz);
        // zstd: output = the decompressed tar.
        let zs = zstd::encode_all(&tar[..], 1).expect("zstd");
        let (ct, ann) = encrypt(&k, &zs);
        let (r, out) = run(&k.dc, ZSTD, &descriptor(ZSTD, &ct, ann), &ct);
        r.expect("zstd");
        assert_eq!(out, tar, "len {len}");
    }
}

#[test]
fn tampering_never_completes_the_stream() {
    let k = keys();
    let tar = tar_bytes(3 * CHUNK);
    let variants: Vec<(&str, Vec<u8>)> = vec![
        (TAR, tar.clone()),
        (GZIP, gzip(&tar)),
        (ZSTD, zstd::encode_all(&tar[..], 1).expect("zstd")),
    ];
    for (mt, blob) in variants {
        let (ct, ann) = encrypt(&k, &blob);
        // A flipped ciphertext bit.
        let mut bad = ct.clone();
        bad[ct.len() / 2] ^= 1;
        let (r, out) = run(&k.dc, mt, &descriptor(mt, &ct, ann.clone()), &bad);
        let e = r.expect_err("bit flip");
        assert!(matches!(e, Error::Tampered(_)), "{mt}: {e}");
        assert!(e.to_string().starts_with("tampered layer"), "{e}");
        let full = if mt == ZSTD { tar.len() } else { blob.len() };
        assert!(out.len() < full, "{mt}: the complete stream came out");
        if mt != ZSTD {
            assert!(out.len() <= blob.len() - HOLD_BACK, "{mt}: tail released");
        }
        // A wrong HMAC in pubopts (annotations re-signed by someone without the key).
        let mut ann2 = ann.clone();
        ann2.insert(
            ANNOTATION_PUBOPTS.into(),
            PublicOptions::new([7; 32]).to_annotation(),
        );
        let (r, out) = run(&k.dc, mt, &descriptor(mt, &ct, ann2), &ct);
        assert!(matches!(r, Err(Error::Tampered(_))), "{mt}");
        assert!(out.len() < full);
        // Truncated and extended blobs (size check before the decryptor sees EOF).
        let (r, out) = run(
            &k.dc,
            mt,
            &descriptor(mt, &ct, ann.clone()),
            &ct[..ct.len() - 1],
        );
        assert!(matches!(r, Err(Error::Tampered(_))), "{mt} truncated");
        assert!(out.len() < full);
        let mut long = ct.clone();
        long.push(0);
        let (r, out) = run(&k.dc, mt, &descriptor(mt, &ct, ann.clone()), &long);
        assert!(matches!(r, Err(Error::Tampered(_))), "{mt} extended");
        assert!(out.len() < full);
    }
}

#[test]
fn small_layers_release_nothing_unverified() {
    let k = keys();
    let tar = tar_bytes(1000);
    let (ct, ann) = encrypt(&k, &tar);
    let mut bad = ct.clone();
    bad[600] ^= 0x80;
    let (r, out) = run(&k.dc, TAR, &descriptor(TAR, &ct, ann), &bad);
    assert!(r.is_err());
    assert!(out.is_empty());
}

#[test]
fn wrong_key_names_the_recipients_and_the_key_dir() {
    let k = keys();
    let (ct, ann) = encrypt(&k, &tar_bytes(10));
    let mut dc = DecryptConfig::default();
    dc.private_keys.push(other_key());
    let (r, out) = run(&dc, TAR, &descriptor(TAR, &ct, ann.clone()), &ct);
    let msg = r.expect_err("wrong key").to_string();
    assert!(
        msg.starts_with("no key for this layer on this node"),
        "{msg}"
    );
    assert!(msg.contains("JWE EC P-256 key"), "{msg}");
    assert!(msg.contains("no --decryption-keys-path"), "{msg}");
    assert!(out.is_empty());
    // No keys at all: the same.
    let (r, _) = run(
        &DecryptConfig::default(),
        TAR,
        &descriptor(TAR, &ct, ann),
        &ct,
    );
    assert!(matches!(r, Err(Error::NoKey { .. })));
}

#[test]
fn zstd_trailing_data_is_refused() {
    let k = keys();
    let mut zs = zstd::encode_all(&tar_bytes(100)[..], 1).expect("zstd");
    zs.extend_from_slice(b"garbage after the frame");
    let (ct, ann) = encrypt(&k, &zs);
    let (r, _) = run(&k.dc, ZSTD, &descriptor(ZSTD, &ct, ann), &ct);
    assert!(matches!(r, Err(Error::Zstd(_))), "{r:?}");
}

#[test]
fn group_layers_say_what_is_missing() {
    use base64::Engine as _;
    let k = keys();
    let (ct, mut ann) = encrypt(&k, &tar_bytes(10));
    ann.retain(|key, _| key == ANNOTATION_PUBOPTS);
    let payload = br#"{"v":1,"broker":"https://keys.example.org","group":"vo.example.org","version":3,"age":"YWdl"}"#;
    ann.insert(
        "org.opencontainers.image.enc.keys.provider.layercrypt".into(),
        base64::engine::general_purpose::STANDARD.encode(payload),
    );
    let desc = descriptor(TAR, &ct, ann);
    // No node config: the node has no broker credential.
    let (r, _) = run(&k.dc, TAR, &desc, &ct);
    let msg = r.expect_err("group").to_string();
    assert!(msg.contains("group vo.example.org"), "{msg}");
    assert!(msg.contains("https://keys.example.org"), "{msg}");
    assert!(msg.contains("no broker credential"), "{msg}");
    // A node that trusts another broker: refused without asking anyone.
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").expect("write");
    let node = NodeConfig {
        brokers: vec!["https://other.example.org".into()],
        credential: Some(crate::config::Credential::TokenFile { token_file: token }),
        ..Default::default()
    };
    let (r, out) = run_on(&node, &k.dc, TAR, &desc, &ct);
    let msg = r.expect_err("group").to_string();
    assert!(
        msg.contains("at broker https://keys.example.org, which is not in this node's allowed brokers (https://other.example.org)"),
        "{msg}"
    );
    assert!(out.is_empty());
}

#[test]
fn not_encrypted_annotations() {
    let k = keys();
    let (ct, _) = encrypt(&k, &tar_bytes(10));
    let (r, _) = run(&k.dc, TAR, &descriptor(TAR, &ct, BTreeMap::new()), &ct);
    assert!(matches!(r, Err(Error::NoKey { .. })));
}
