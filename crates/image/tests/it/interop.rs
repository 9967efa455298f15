//! Interoperability with the real skopeo (and umoci, when installed). Skipped, with a notice
//! on stderr, when the tools are not on PATH.

use std::path::Path;
use std::process::Command;

use layercrypt_image::copy::CopyOptions;

use crate::copy::{copy, top};
use crate::support::*;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("NOTICE: `{tool}` is not on PATH; skipping this interop test");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

#[test]
fn skopeo_reads_what_we_write() {
    if !have("skopeo") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, out, out2) = (
        t.path().join("a"),
        t.path().join("out"),
        t.path().join("out2"),
    );
    let m = write_image(&a, "t", &two_layers());
    copy(
        &oci(&a, "t"),
        &oci(&out, "t"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    let inspect = run(Command::new("skopeo").args(["inspect", &oci(&out, "t")]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"], m.digest);
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    run(Command::new("skopeo").args(["copy", "-q", &oci(&out, "t"), &oci(&out2, "t")]));
    // skopeo kept our manifest as it is, and we read its layout.
    assert_eq!(top(&oci(&out2, "t")).bytes, m.bytes);
    // An archive we wrote is readable by skopeo too.
    let tar = t.path().join("img.tar");
    copy(
        &oci(&a, "t"),
        &format!("oci-archive:{}:t", tar.display()),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    let inspect =
        run(Command::new("skopeo").args(["inspect", &format!("oci-archive:{}:t", tar.display())]));
    assert!(inspect.contains(&m.digest), "{inspect}");
    // And an archive skopeo wrote is readable by us.
    let tar2 = t.path().join("skopeo.tar");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &oci(&a, "t"),
        &format!("oci-archive:{}:t", tar2.display()),
    ]));
    let back = t.path().join("back");
    copy(
        &format!("oci-archive:{}:t", tar2.display()),
        &oci(&back, "t"),
        &Identity,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(top(&oci(&back, "t")).bytes, m.bytes);
}

#[test]
fn we_read_layouts_umoci_and_skopeo_wrote() {
    if !have("skopeo") || !have("umoci") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (u, s, ours) = (
        t.path().join("u"),
        t.path().join("s"),
        t.path().join("ours"),
    );
    let u_str = u.display().to_string();
    run(Command::new("umoci").args(["init", "--layout", &u_str]));
    run(Command::new("umoci").args(["new", "--image", &format!("{u_str}:t")]));
    // Give the image a layer: unpack, add a file, repack.
    let bundle = t.path().join("bundle");
    let b_str = bundle.display().to_string();
    run(Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{u_str}:t"),
        &b_str,
    ]));
    std::fs::write(bundle.join("rootfs/hello.txt"), b"hello from umoci").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &format!("{u_str}:t"), &b_str]));
    run(Command::new("skopeo").args(["copy", "-q", &oci(&u, "t"), &oci(&s, "t")]));
    for (src, name) in [(&u, "umoci"), (&s, "skopeo")] {
        let _ = std::fs::remove_dir_all(&ours);
        let original = top(&oci(src, "t"));
        let r = copy(
            &oci(src, "t"),
            &oci(&ours, "t"),
            &Identity,
            &CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(r.copied, 1, "{name}");
        assert_eq!(top(&oci(&ours, "t")).bytes, original.bytes, "{name}");
        // XOR and back through our code: identical manifest again, and skopeo still reads it.
        let enc = t.path().join(format!("enc-{name}"));
        let dec = t.path().join(format!("dec-{name}"));
        copy(
            &oci(&ours, "t"),
            &oci(&enc, "t"),
            &Xor {
                decrypt: false,
                fail_on: None,
            },
            &CopyOptions::default(),
        )
        .unwrap();
        copy(
            &oci(&enc, "t"),
            &oci(&dec, "t"),
            &Xor {
                decrypt: true,
                fail_on: None,
            },
            &CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(top(&oci(&dec, "t")).bytes, original.bytes, "{name}");
        run(Command::new("skopeo").args(["inspect", &oci(&dec, "t")]));
    }
}
