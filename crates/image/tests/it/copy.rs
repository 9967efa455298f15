//! Copies between layouts and archives, with handlers that copy, transform, rewrite and fail.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use layercrypt_image::copy::{
    copy_image, CopyOptions, CopyReport, LayerHandler, PlatformSelection,
};
use layercrypt_image::digest::sha256_digest;
use layercrypt_image::layout::LayoutDest;
use layercrypt_image::manifest::{self, go_json, Document, OCI_INDEX};
use layercrypt_image::transport::TransportOptions;
use layercrypt_image::{Error, ImageDest, ImageRef, RawManifest};
use oci_spec::image::Platform;
use serde_json::json;

use crate::support::*;

pub fn copy(
    src: &str,
    dst: &str,
    handler: &dyn LayerHandler,
    opts: &CopyOptions,
) -> Result<CopyReport, Error> {
    let t = TransportOptions::default();
    let mut s = src.parse::<ImageRef>()?.open_source(&t)?;
    let d = dst.parse::<ImageRef>()?.open_dest(&t)?;
    copy_image(s.as_mut(), d, handler, opts)
}

pub fn top(r: &str) -> RawManifest {
    r.parse::<ImageRef>()
        .unwrap()
        .open_source(&TransportOptions::default())
        .unwrap()
        .top_manifest()
        .unwrap()
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn identity_copy_is_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("sub/b"));
    let m = write_image(&a, "v1", &two_layers());
    let counter = Counter::default();
    let (bytes, finished) = (counter.bytes.clone(), counter.finished.clone());
    let opts = CopyOptions {
        progress: Some(Arc::new(counter)),
        ..Default::default()
    };
    let report = copy(&oci(&a, "v1"), &oci(&b, "v1"), &Identity, &opts).unwrap();
    assert_eq!(
        (report.copied, report.transformed, report.rewritten),
        (2, 0, 0)
    );
    assert_eq!(report.top_digest, m.digest);
    let out = top(&oci(&b, "v1"));
    assert_eq!(out.bytes, m.bytes);
    assert_eq!(blob_set(&a), blob_set(&b));
    let total: u64 = two_layers().iter().map(|l| l.len() as u64).sum::<u64>()
        + config_for(&two_layers(), "amd64").len() as u64;
    assert_eq!(bytes.load(Ordering::SeqCst), total);
    assert_eq!(finished.load(Ordering::SeqCst), 3);
    // skopeo's index.json shape and oci-layout bytes.
    assert_eq!(
        fs::read_to_string(b.join("index.json")).unwrap(),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
            m.digest,
            m.bytes.len()
        )
    );
    assert_eq!(
        fs::read_to_string(b.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion": "1.0.0"}"#
    );
    // Nothing left beside it.
    assert_eq!(entries(&t.path().join("sub")), vec!["b"]);
}

#[test]
fn transform_and_back_restores_manifest_bytes() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let layers = two_layers();
    let m = write_image(&a, "v1", &layers);
    let r = copy(
        &oci(&a, "v1"),
        &oci(&b, "enc"),
        &Xor {
            decrypt: false,
            fail_on: None,
        },
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.transformed, 2);
    let enc = top(&oci(&b, "enc"));
    let Document::Image(doc) = manifest::parse(&enc).unwrap() else {
        panic!("image")
    };
    for (i, l) in doc.layers().iter().enumerate() {
        assert_eq!(
            l.media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        );
        assert_eq!(l.size(), layers[i].len() as u64);
        let blob = read_blob(&b, l.digest().as_ref());
        assert_eq!(blob.iter().map(|x| x ^ 0x5a).collect::<Vec<_>>(), layers[i]);
        assert_eq!(
            l.annotations().as_ref().unwrap()[XOR_ANNOTATION],
            format!("layer {i}")
        );
    }
    // The config is untouched.
    assert_eq!(
        doc.config().digest().to_string(),
        sha256_digest(&config_for(&layers, "amd64"))
    );
    let r = copy(
        &oci(&b, "enc"),
        &oci(&c, "v1"),
        &Xor {
            decrypt: true,
            fail_on: None,
        },
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.transformed, 2);
    assert_eq!(
        top(&oci(&c, "v1")).bytes,
        m.bytes,
        "decrypted manifest is byte-identical"
    );
    assert_eq!(blob_set(&a), blob_set(&c));
}

#[test]
fn rewrite_changes_only_annotations() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let m = write_image(&a, "v1", &two_layers());
    let r = copy(
        &oci(&a, "v1"),
        &oci(&b, "v1"),
        &Annotate,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.rewritten, 2);
    let out = top(&oci(&b, "v1"));
    let text = String::from_utf8(out.bytes.clone()).unwrap();
    // Existing annotation kept (Go-escaped), new one added in sorted position.
    assert!(text.contains(r#""annotations":{"com.example.note":"a\u003cb \u0026 c\u003ed","org.example.rewritten":"yes"}"#), "{text}");
    let only_in_a: Vec<_> = blob_set(&a).difference(&blob_set(&b)).cloned().collect();
    let only_in_b: Vec<_> = blob_set(&b).difference(&blob_set(&a)).cloned().collect();
    assert_eq!(
        only_in_a,
        vec![m.digest["sha256:".len()..].to_owned()],
        "only the manifest differs"
    );
    assert_eq!(only_in_b, vec![out.digest["sha256:".len()..].to_owned()]);
}

#[test]
fn handler_error_leaves_no_new_dir() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    write_image(&a, "v1", &two_layers());
    let e = copy(
        &oci(&a, "v1"),
        &oci(&b, "x"),
        &Xor {
            decrypt: false,
            fail_on: Some(1),
        },
        &CopyOptions::default(),
    )
    .unwrap_err();
    match &e {
        Error::Layer {
            index,
            count,
            digest,
            ..
        } => {
            assert_eq!((*index, *count), (2, 2));
            assert_eq!(digest, &sha256_digest(&two_layers()[1]));
        }
        other => panic!("wrong error {other}"),
    }
    assert!(!b.exists());
    assert_eq!(entries(t.path()), vec!["a"], "no temporary directory left");
}

#[test]
fn handler_error_leaves_existing_layout_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    write_image(&a, "v1", &two_layers());
    write_image(&b, "other", &[gz_layer("z", b"unrelated")]);
    let index_before = fs::read(b.join("index.json")).unwrap();
    let blobs_before = blob_set(&b);
    let e = copy(
        &oci(&a, "v1"),
        &oci(&b, "other"),
        &Xor {
            decrypt: false,
            fail_on: Some(1),
        },
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Layer { index: 2, .. }), "{e}");
    assert_eq!(fs::read(b.join("index.json")).unwrap(), index_before);
    assert_eq!(blob_set(&b), blobs_before);
    // A successful copy into the existing layout replaces the tag; the replaced image's blobs,
    // which no manifest references any more, are removed (an in-place encrypt must not leave
    // plaintext layers behind).
    copy(
        &oci(&a, "v1"),
        &oci(&b, "other"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    copy(
        &oci(&a, "v1"),
        &oci(&b, "second"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(b.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        blob_set(&b),
        blob_set(&a),
        "exactly the blobs both tags use"
    );
    assert!(blob_set(&b).is_disjoint(&blobs_before));
}

#[test]
fn tampered_or_truncated_blob_fails_without_output() {
    for (name, damage) in [
        (
            "flip",
            Box::new(|p: &Path| {
                let mut b = fs::read(p).unwrap();
                b[10] ^= 1;
                fs::write(p, b).unwrap();
            }) as Box<dyn Fn(&Path)>,
        ),
        (
            "truncate",
            Box::new(|p: &Path| {
                let b = fs::read(p).unwrap();
                fs::write(p, &b[..b.len() - 1]).unwrap();
            }),
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        write_image(&a, "v1", &two_layers());
        let layer = sha256_digest(&two_layers()[1]);
        damage(&a.join("blobs/sha256").join(&layer["sha256:".len()..]));
        let e = copy(
            &oci(&a, "v1"),
            &oci(&b, "v1"),
            &Identity,
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::BlobMismatch { digest, .. } if *digest == layer),
            "{name}: {e}"
        );
        assert!(!b.exists(), "{name}");
        // Through a transforming handler the failure is reported for the layer.
        let e = copy(
            &oci(&a, "v1"),
            &oci(&b, "v1"),
            &Xor {
                decrypt: false,
                fail_on: None,
            },
            &CopyOptions::default(),
        )
        .unwrap_err();
        match e {
            Error::Layer {
                index: 2, source, ..
            } => assert!(
                source.to_string().contains("does not match"),
                "{name}: {source}"
            ),
            other => panic!("{name}: {other}"),
        }
        assert!(!b.exists(), "{name}");
        assert_eq!(entries(t.path()), vec!["a"], "{name}");
    }
}

#[test]
fn digest_path_traversal_in_index_json_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    write_image(&a, "v1", &two_layers());
    fs::write(
        a.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../etc/passwd","size":10,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}"#,
    )
    .unwrap();
    let r = format!("oci:{}:v1", a.display());
    let e = r
        .parse::<ImageRef>()
        .unwrap()
        .open_source(&TransportOptions::default())
        .err()
        .unwrap();
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
}

#[test]
fn untagged_source_needs_a_single_image() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let m = write_image(&a, "v1", &two_layers());
    assert_eq!(top(&format!("oci:{}", a.display())).digest, m.digest);
    write_image(&a, "v2", &[gz_layer("x", b"y")]);
    let e = format!("oci:{}", a.display())
        .parse::<ImageRef>()
        .unwrap()
        .open_source(&TransportOptions::default())
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(msg.contains("v1") && msg.contains("v2"), "{msg}");
    let e = format!("oci:{}:nope", a.display())
        .parse::<ImageRef>()
        .unwrap()
        .open_source(&TransportOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::NotFound(ref m) if m.contains("v1")),
        "{e}"
    );
}

#[test]
fn archive_round_trip_and_determinism() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let m = write_image(&a, "v1", &two_layers());
    let tar1 = t.path().join("img.tar");
    let tar2 = t.path().join("img2.tar");
    copy(
        &oci(&a, "v1"),
        &format!("oci-archive:{}:v1", tar1.display()),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    copy(
        &oci(&a, "v1"),
        &format!("oci-archive:{}:v1", tar2.display()),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read(&tar1).unwrap(),
        fs::read(&tar2).unwrap(),
        "deterministic"
    );
    let mut names = Vec::new();
    for e in tar::Archive::new(fs::File::open(&tar1).unwrap())
        .entries()
        .unwrap()
    {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 0);
        assert_eq!(e.header().uid().unwrap(), 0);
        names.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"index.json".to_owned()) && names.contains(&"oci-layout".to_owned()));
    let b = t.path().join("b");
    copy(
        &format!("oci-archive:{}:v1", tar1.display()),
        &oci(&b, "v1"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(top(&oci(&b, "v1")).bytes, m.bytes);
    assert_eq!(blob_set(&a), blob_set(&b));
    // Failure leaves no archive.
    let tar3 = t.path().join("img3.tar");
    copy(
        &oci(&a, "v1"),
        &format!("oci-archive:{}", tar3.display()),
        &Xor {
            decrypt: false,
            fail_on: Some(0),
        },
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert!(!tar3.exists());
}

fn bad_archive(t: &Path, name: &str, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Error {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let path = t.join(name);
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    format!("oci-archive:{}", path.display())
        .parse::<ImageRef>()
        .unwrap()
        .open_source(&TransportOptions::default())
        .err()
        .unwrap()
}

#[test]
fn archive_with_links_or_escaping_paths_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let e = bad_archive(t.path(), "link.tar", |b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "index.json", "/etc/passwd").unwrap();
    });
    assert!(
        matches!(e, Error::Malformed { ref reason, .. } if reason.contains("Symlink")),
        "{e}"
    );
    let e = bad_archive(t.path(), "dotdot.tar", |b| {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`, so write the name into the header directly.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    });
    assert!(
        matches!(e, Error::Malformed { ref reason, .. } if reason.contains("relative")),
        "{e}"
    );
    assert!(!t.path().parent().unwrap().join("escape").exists());
    let e = bad_archive(t.path(), "abs.tar", |b| {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_old_mut().name[..8].copy_from_slice(b"/abs.txt");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    });
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
    let e = bad_archive(t.path(), "fifo.tar", |b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        b.append_data(&mut h, "fifo", std::io::empty()).unwrap();
    });
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
}

/// A layout holding an index with amd64 and arm64 images, tagged "multi".
fn multi_platform(dir: &Path) -> (RawManifest, RawManifest, RawManifest) {
    let amd = vec![gz_layer("amd", b"amd64 bits")];
    let arm = vec![gz_layer("arm", b"arm64 bits"), gz_layer("arm2", b"more")];
    let (ca, cr) = (config_for(&amd, "amd64"), config_for(&arm, "arm64"));
    let (ma, mr) = (
        oci_manifest(&ca, &amd, false),
        oci_manifest(&cr, &arm, false),
    );
    let index = go_json(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": ma.media_type, "digest": ma.digest, "size": ma.bytes.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": mr.media_type, "digest": mr.digest, "size": mr.bytes.len(), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }));
    let idx = RawManifest {
        digest: sha256_digest(&index),
        bytes: index,
        media_type: OCI_INDEX.into(),
    };
    let mut dest: Box<dyn ImageDest> = Box::new(LayoutDest::open(dir, Some("multi")).unwrap());
    for b in [&ca, &cr].into_iter().chain(amd.iter()).chain(arm.iter()) {
        put_blob(dest.as_mut(), b);
    }
    dest.put_manifest(&ma).unwrap();
    dest.put_manifest(&mr).unwrap();
    dest.commit(&idx).unwrap();
    (idx, ma, mr)
}

#[test]
fn index_all_platforms_and_only_one() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let (idx, _ma, mr) = multi_platform(&a);
    // All, unchanged: the index is byte-identical.
    let r = copy(
        &oci(&a, "multi"),
        &oci(&b, "multi"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.copied, 3);
    assert_eq!(top(&oci(&b, "multi")).bytes, idx.bytes);
    // All, transformed: children get new digests, the index points at them.
    let r = copy(
        &oci(&a, "multi"),
        &oci(&c, "enc"),
        &Xor {
            decrypt: false,
            fail_on: None,
        },
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.transformed, 3);
    let enc_idx = top(&oci(&c, "enc"));
    let Document::Index(doc) = manifest::parse(&enc_idx).unwrap() else {
        panic!("index")
    };
    for d in doc.manifests() {
        let child = read_blob(&c, d.digest().as_ref());
        assert_eq!(child.len() as u64, d.size());
        assert!(String::from_utf8(child).unwrap().contains("+encrypted"));
    }
    assert!(String::from_utf8(enc_idx.bytes)
        .unwrap()
        .contains(r#""platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#));
    // Only one platform: a single manifest is written.
    let d = t.path().join("d");
    let want = Platform::default();
    let mut want = want;
    want.set_architecture("arm64".into());
    want.set_os("linux".into());
    let opts = CopyOptions {
        platforms: PlatformSelection::Only(want.clone()),
        ..Default::default()
    };
    copy(&oci(&a, "multi"), &oci(&d, "arm"), &Identity, &opts).unwrap();
    assert_eq!(top(&oci(&d, "arm")).bytes, mr.bytes);
    // A platform that is not there: the error lists what is.
    want.set_architecture("s390x".into());
    let opts = CopyOptions {
        platforms: PlatformSelection::Only(want),
        ..Default::default()
    };
    let e = copy(
        &oci(&a, "multi"),
        &oci(&t.path().join("e"), "x"),
        &Identity,
        &opts,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64/v8"),
        "{msg}"
    );
    assert!(!t.path().join("e").exists());
}

#[test]
fn docker_schema2_is_converted_to_oci() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let layers = two_layers();
    let config = config_for(&layers, "amd64");
    let docker = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": manifest::DOCKER_MANIFEST,
        "config": {"mediaType": manifest::DOCKER_CONFIG, "size": config.len(), "digest": sha256_digest(&config)},
        "layers": layers.iter().map(|l| json!({"mediaType": manifest::DOCKER_LAYER_GZIP, "size": l.len(), "digest": sha256_digest(l)})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let raw = RawManifest {
        digest: sha256_digest(&docker),
        bytes: docker,
        media_type: manifest::DOCKER_MANIFEST.into(),
    };
    let mut dest: Box<dyn ImageDest> = Box::new(LayoutDest::open(&a, Some("d")).unwrap());
    put_blob(dest.as_mut(), &config);
    for l in &layers {
        put_blob(dest.as_mut(), l);
    }
    dest.commit(&raw).unwrap();
    // Without conversion: byte-identical Docker manifest.
    copy(
        &oci(&a, "d"),
        &oci(&b, "same"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(top(&oci(&b, "same")).bytes, raw.bytes);
    // With conversion.
    let opts = CopyOptions {
        convert_to_oci: true,
        ..Default::default()
    };
    copy(&oci(&a, "d"), &oci(&b, "oci"), &Identity, &opts).unwrap();
    let out = top(&oci(&b, "oci"));
    assert_eq!(out.media_type, manifest::OCI_MANIFEST);
    let text = String::from_utf8(out.bytes).unwrap();
    assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":""#), "{text}");
    assert!(text.contains(&format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
        sha256_digest(&layers[0]),
        layers[0].len()
    )));
    assert!(
        text.contains(&sha256_digest(&config)),
        "config bytes unchanged"
    );
}

#[test]
fn dest_dropped_without_commit_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    write_image(&a, "v1", &two_layers());
    let before = blob_set(&a);
    {
        let mut d: Box<dyn ImageDest> = Box::new(LayoutDest::open(&a, Some("v1")).unwrap());
        put_blob(d.as_mut(), b"orphan blob");
        put_blob(d.as_mut(), b"first layer, again");
        // Writer dropped mid-way: its temp file goes too.
        let mut w = d.blob_writer().unwrap();
        std::io::Write::write_all(&mut w, b"partial").unwrap();
    }
    assert_eq!(blob_set(&a), before);
}

/// A planted symlink (or a file of the right size with other content) in a destination's
/// `blobs/` must not count as the blob: it is written again, and the result verifies.
#[test]
fn planted_blob_in_the_destination_is_replaced_not_trusted() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let layers = two_layers();
    write_image(&a, "v1", &layers);
    let digests: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    fs::create_dir_all(b.join("blobs/sha256")).unwrap();
    fs::write(b.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    fs::write(
        b.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    // Layer 0: a symlink to a file of the right size with other bytes (a dangling one would
    // do the same harm once its target appears). Layer 1: a plain file, right size, wrong bytes.
    let decoy = t.path().join("decoy");
    fs::write(&decoy, vec![b'x'; layers[0].len()]).unwrap();
    let blob = |d: &str| b.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    std::os::unix::fs::symlink(&decoy, blob(&digests[0])).unwrap();
    fs::write(blob(&digests[1]), vec![b'y'; layers[1].len()]).unwrap();
    copy(
        &oci(&a, "v1"),
        &oci(&b, "v1"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    for (d, l) in digests.iter().zip(&layers) {
        let meta = fs::symlink_metadata(blob(d)).unwrap();
        assert!(meta.file_type().is_file(), "{d} is a regular file now");
        assert_eq!(&fs::read(blob(d)).unwrap(), l, "{d} holds the layer");
    }
    assert_eq!(
        fs::read(&decoy).unwrap(),
        vec![b'x'; layers[0].len()],
        "decoy untouched"
    );
}
