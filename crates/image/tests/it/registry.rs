//! The registry transport against a real registry: Debian's `docker-registry` (distribution
//! 2.8), started on 127.0.0.1 on a free port for each test and killed when the test ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use layercrypt_image::digest::sha256_digest;
use layercrypt_image::registry::{RegistryDest, RegistrySource};
use layercrypt_image::transport::TransportOptions;
use layercrypt_image::{BlobInfo, Error, ImageDest, ImageSource, RawManifest};
use oci_spec::image::{Descriptor, Digest, MediaType};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running `docker-registry serve`; killed on drop.
struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// `htpasswd`: a user and password the registry will require (HTTP Basic).
    fn start_with(htpasswd: Option<(&str, &str)>) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install it with `apt-get install -y docker-registry` \
             (the project's test command does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, pass)) = htpasswd {
            let hash = bcrypt::hash(pass, 4).expect("bcrypt");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: layercrypt-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log file"))
            .spawn()
            .expect("start docker-registry");
        let reg = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(reg.port, "GET", "/v2/").is_none() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn image(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }

    /// The file the registry keeps a blob's bytes in.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry logged (errors only), for assertion messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn status(&self, method: &str, path: &str) -> u16 {
        http(self.port, method, path).expect("registry answers")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a bare HTTP/1.0 request, or None if nothing answers.
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Options that read no credentials from the environment: an empty auth file.
fn anonymous(dir: &Path) -> TransportOptions {
    let file = dir.join("empty-auth.json");
    std::fs::write(&file, "{}").expect("write auth file");
    TransportOptions {
        auth_file: Some(file),
        ..Default::default()
    }
}

fn with_creds(creds: &str) -> TransportOptions {
    TransportOptions {
        creds: Some(creds.to_owned()),
        ..Default::default()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so big blobs do not compress to nothing.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn descriptor(media_type: &str, info: &BlobInfo) -> Descriptor {
    Descriptor::new(
        MediaType::from(media_type),
        info.size,
        Digest::from_str(&info.digest).expect("digest"),
    )
}

fn write_blob(dest: &mut dyn ImageDest, data: &[u8]) -> BlobInfo {
    let mut w = dest.blob_writer().expect("start upload");
    // Small writes, as a copy loop makes them: the upload streams them in pieces.
    for piece in data.chunks(64 << 10) {
        w.write_all(piece).expect("write blob");
    }
    let info = w.finish().expect("finish upload");
    assert_eq!(
        info,
        BlobInfo {
            digest: sha256_digest(data),
            size: data.len() as u64
        }
    );
    info
}

fn read_blob(src: &mut dyn ImageSource, desc: &Descriptor) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    src.blob(desc).expect("open blob").read_to_end(&mut out)?;
    Ok(out)
}

fn manifest_json(config: &Descriptor, layers: &[Descriptor]) -> RawManifest {
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    }))
    .expect("json");
    RawManifest {
        digest: sha256_digest(&bytes),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes,
    }
}

/// Pushes config + layers + manifest (not committed); returns the manifest and layers.
fn push_image(dest: &mut dyn ImageDest, layers: &[Vec<u8>]) -> (RawManifest, Vec<Descriptor>) {
    let config = write_blob(
        dest,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let config = descriptor("application/vnd.oci.image.config.v1+json", &config);
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|l| {
            descriptor(
                "application/vnd.oci.image.layer.v1.tar",
                &write_blob(dest, l),
            )
        })
        .collect();
    (manifest_json(&config, &layers), layers)
}

#[test]
fn push_commit_and_pull_back() {
    let reg = TestRegistry::start();
    let opts = anonymous(reg.dir.path());
    let big = noise(5 << 20, 7);
    let layers = vec![b"hello layer".to_vec(), Vec::new(), big];

    let mut dest = RegistryDest::open(&reg.image("test/img:v1"), &opts).expect("open dest");
    assert!(dest.describe().contains("test/img:v1"));
    let (manifest, layer_descs) = push_image(&mut dest, &layers);
    for d in &layer_descs {
        let info = BlobInfo {
            digest: d.digest().to_string(),
            size: d.size(),
        };
        assert!(dest.has_blob(&info).expect("has_blob"));
    }
    let absent = BlobInfo {
        digest: sha256_digest(b"never pushed"),
        size: 12,
    };
    assert!(!dest.has_blob(&absent).expect("has_blob"));

    // An index over the manifest: the child goes by digest, the index is the tagged top.
    dest.put_manifest(&manifest).expect("put child manifest");
    let index_bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .expect("json");
    let index = RawManifest {
        digest: sha256_digest(&index_bytes),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        bytes: index_bytes,
    };
    assert_eq!(
        reg.status("GET", "/v2/test/img/manifests/v1"),
        404,
        "tagged before commit"
    );
    Box::new(dest).commit(&index).expect("commit");

    let mut src = RegistrySource::open(&reg.image("test/img:v1"), &opts).expect("open source");
    let top = src.top_manifest().expect("top manifest");
    assert_eq!(top.bytes, index.bytes);
    assert_eq!(top.digest, index.digest);
    assert_eq!(top.media_type, "application/vnd.oci.image.index.v1+json");
    let child_desc = descriptor(
        &manifest.media_type,
        &BlobInfo {
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
        },
    );
    let child = src.manifest(&child_desc).expect("child manifest");
    assert_eq!(child.bytes, manifest.bytes);
    assert_eq!(child.media_type, manifest.media_type);
    for (desc, data) in layer_descs.iter().zip(&layers) {
        assert_eq!(&read_blob(&mut src, desc).expect("verified blob"), data);
    }

    // By digest too.
    let mut by_digest =
        RegistrySource::open(&reg.image(&format!("test/img@{}", index.digest)), &opts)
            .expect("open by digest");
    assert_eq!(
        by_digest.top_manifest().expect("by digest").bytes,
        index.bytes
    );
}

#[test]
fn abandoned_blob_writer_leaves_no_blob_and_no_tag() {
    let reg = TestRegistry::start();
    let opts = anonymous(reg.dir.path());
    let data = noise(1 << 20, 3);
    let mut dest = RegistryDest::open(&reg.image("test/drop:v1"), &opts).expect("open dest");
    {
        let mut w = dest.blob_writer().expect("start upload");
        w.write_all(&data).expect("write");
        // dropped without finish
    }
    let info = BlobInfo {
        digest: sha256_digest(&data),
        size: data.len() as u64,
    };
    assert!(!dest.has_blob(&info).expect("has_blob"));
    assert!(!reg.blob_file(&info.digest).exists());
    // The upload session was cancelled (its data deleted), not left for the registry's purge
    // a week later. (distribution leaves the session's empty `hashstates` directory behind.)
    let uploads = reg
        .dir
        .path()
        .join("storage/docker/registry/v2/repositories/test/drop/_uploads");
    let data_left: Vec<PathBuf> = std::fs::read_dir(&uploads)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("data"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        data_left.is_empty(),
        "upload data left: {data_left:?}; registry log:\n{}",
        reg.log()
    );
    drop(dest);
    assert_eq!(reg.status("GET", "/v2/test/drop/manifests/v1"), 404);
    assert_eq!(
        reg.status("GET", &format!("/v2/test/drop/blobs/{}", info.digest)),
        404
    );
}

#[test]
fn dest_dropped_without_commit_leaves_no_tag() {
    let reg = TestRegistry::start();
    let opts = anonymous(reg.dir.path());
    let mut dest = RegistryDest::open(&reg.image("test/nocommit:v1"), &opts).expect("open dest");
    let (manifest, _) = push_image(&mut dest, &[b"layer".to_vec()]);
    dest.put_manifest(&manifest)
        .expect("put manifest by digest");
    drop(dest);
    assert_eq!(reg.status("GET", "/v2/test/nocommit/manifests/v1"), 404);
    let src = RegistrySource::open(&reg.image("test/nocommit:v1"), &opts)
        .expect("open source")
        .top_manifest();
    assert!(matches!(src, Err(Error::NotFound(_))), "{src:?}");
}

#[test]
fn blob_that_does_not_match_its_descriptor_is_an_error() {
    let reg = TestRegistry::start();
    let opts = anonymous(reg.dir.path());
    let data = noise(300_000, 11);
    let mut dest = RegistryDest::open(&reg.image("test/bad:v1"), &opts).expect("open dest");
    let info = write_blob(&mut dest, &data);
    let mut src = RegistrySource::open(&reg.image("test/bad:v1"), &opts).expect("open source");

    // A descriptor that claims one byte more than the registry holds.
    let mut longer = descriptor("application/octet-stream", &info);
    longer.set_size(info.size + 1);
    let e = src
        .blob(&longer)
        .err()
        .map(|e| e.to_string())
        .or_else(|| read_blob(&mut src, &longer).err().map(|e| e.to_string()));
    assert!(e.is_some(), "a short blob was accepted");

    // The registry's stored bytes tampered with (same size): its content no longer has the
    // digest it is served under.
    let file = reg.blob_file(&info.digest);
    let mut stored = std::fs::read(&file).expect("read stored blob");
    stored[1000] ^= 0x40;
    std::fs::write(&file, &stored).expect("tamper");
    let desc = descriptor("application/octet-stream", &info);
    let err = read_blob(&mut src, &desc).expect_err("tampered blob accepted");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains(&info.digest), "{err}");
}

#[test]
fn basic_auth_registry() {
    let reg = TestRegistry::start_with(Some(("alice", "s3cret-pw")));
    let image = reg.image("private/img:v1");

    // Anonymous: a clear error that says what to do.
    let anon = anonymous(reg.dir.path());
    let err = RegistryDest::open(&image, &anon)
        .and_then(|mut d| d.blob_writer().map(|_| ()))
        .expect_err("anonymous push accepted");
    let msg = err.to_string();
    assert!(
        msg.contains("authentication required") && msg.contains("--creds"),
        "{msg}"
    );
    assert!(msg.contains(&format!("127.0.0.1:{}", reg.port)), "{msg}");

    // Wrong password: refused, and the password is not in the message.
    let err = RegistryDest::open(&image, &with_creds("alice:wrong-pw"))
        .and_then(|mut d| d.blob_writer().map(|_| ()))
        .expect_err("wrong password accepted");
    let msg = err.to_string();
    assert!(!msg.contains("wrong-pw") && msg.contains("alice"), "{msg}");

    // --creds.
    let good = with_creds("alice:s3cret-pw");
    let mut dest = RegistryDest::open(&image, &good).expect("open with creds");
    let (manifest, layers) = push_image(&mut dest, &[b"secret layer".to_vec()]);
    Box::new(dest).commit(&manifest).expect("commit");

    let err = RegistrySource::open(&image, &anon)
        .and_then(|mut s| s.top_manifest())
        .expect_err("anonymous pull accepted");
    assert!(err.to_string().contains("authentication required"), "{err}");

    // An auth file in Docker's config.json format.
    let auth_file = reg.dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{auth}"}}}}}}"#,
            reg.port
        ),
    )
    .expect("write auth file");
    let from_file = TransportOptions {
        auth_file: Some(auth_file),
        ..Default::default()
    };
    let mut src = RegistrySource::open(&image, &from_file).expect("open with auth file");
    assert_eq!(src.top_manifest().expect("pull").bytes, manifest.bytes);
    assert_eq!(
        read_blob(&mut src, &layers[0]).expect("blob"),
        b"secret layer"
    );

    // And pushing with it.
    let mut dest = RegistryDest::open(&reg.image("private/other:v2"), &from_file).expect("open");
    let (m2, _) = push_image(&mut dest, &[b"another".to_vec()]);
    Box::new(dest).commit(&m2).expect("commit with auth file");
}

#[test]
fn unreachable_registry_says_so() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let err = RegistrySource::open(&format!("127.0.0.1:{port}/x/y:z"), &anonymous(dir.path()))
        .and_then(|mut s| s.top_manifest())
        .expect_err("nothing listens there");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn docker_schema2_manifest_round_trip() {
    let reg = TestRegistry::start();
    let opts = anonymous(reg.dir.path());
    let mut dest = RegistryDest::open(&reg.image("test/docker:v2"), &opts).expect("open dest");
    let config = write_blob(&mut dest, br#"{"architecture":"amd64","os":"linux"}"#);
    let layer = write_blob(&mut dest, b"docker layer");
    let mt = "application/vnd.docker.distribution.manifest.v2+json";
    let bytes = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer)],
    }))
    .expect("json");
    let manifest = RawManifest {
        digest: sha256_digest(&bytes),
        media_type: mt.into(),
        bytes,
    };
    Box::new(dest).commit(&manifest).expect("commit");
    let mut src = RegistrySource::open(&reg.image("test/docker:v2"), &opts).expect("open source");
    let top = src.top_manifest().expect("pull");
    assert_eq!(
        (top.bytes, top.media_type, top.digest),
        (manifest.bytes, manifest.media_type, manifest.digest)
    );
}

/// Peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Generates `len` bytes of [`noise`]-like data without holding them.
struct NoiseReader {
    left: u64,
    x: u64,
}

impl Read for NoiseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn big_blob_streams_in_constant_memory() {
    // 48 MiB goes up and comes back down; the process's peak memory must grow by much less
    // (other tests running at the same time hold a few MiB each).
    const LEN: u64 = 48 << 20;
    let reg = TestRegistry::start();
    let opts = anonymous(reg.dir.path());
    let mut dest = RegistryDest::open(&reg.image("test/big:v1"), &opts).expect("open dest");
    // Warm up (TLS and HTTP set-up, runtime threads) before measuring.
    write_blob(&mut dest, &noise(1 << 20, 5));
    let before = peak_rss();
    let mut w = dest.blob_writer().expect("start upload");
    let sent = std::io::copy(&mut NoiseReader { left: LEN, x: 99 }, &mut w).expect("stream up");
    let info = w.finish().expect("finish");
    assert_eq!((sent, info.size), (LEN, LEN));
    let mut src = RegistrySource::open(&reg.image("test/big:v1"), &opts).expect("open source");
    let desc = descriptor("application/octet-stream", &info);
    let mut expected = NoiseReader { left: LEN, x: 99 };
    let mut got = src.blob(&desc).expect("open blob");
    let (mut a, mut b) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = got.read(&mut a).expect("verified read");
        if n == 0 {
            break;
        }
        expected.read_exact(&mut b[..n]).expect("same length");
        assert!(a[..n] == b[..n], "content differs");
    }
    assert_eq!(expected.left, 0, "blob came back short");
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "peak memory grew by {} MiB for a {} MiB blob",
        grown >> 20,
        LEN >> 20
    );
}
