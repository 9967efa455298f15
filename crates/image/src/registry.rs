//! `docker://HOST/REPO[:TAG|@DIGEST]`: images in a registry, over the OCI distribution API.
//!
//! [`oci_client`] does reference normalisation (`alpine` → `docker.io/library/alpine:latest`),
//! the token dance of Docker Hub, Quay, GHCR and Harbor (or HTTP Basic where a registry asks
//! for it), manifest pulls and pushes, blob `HEAD`s and streamed blob pulls. Blob uploads are
//! made here with `reqwest` (see [`RegistryBlobWriter`] for why).
//!
//! The traits are blocking; each source and destination runs a small private tokio runtime
//! (one worker thread) and blocks on it. Do not call these from inside an async runtime
//! (use `spawn_blocking`).
//!
//! Plain HTTP is used only for `localhost`, `127.0.0.1` and `[::1]` (any port), or when
//! [`TransportOptions::insecure`] is set; everything else is HTTPS.

use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::Descriptor;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::{StreamReader, SyncIoBridge};
use zeroize::Zeroizing;

use crate::auth::{self, Credentials};
use crate::digest::{sha256_digest, validate_digest, HashingWriter, VerifyingReader};
use crate::error::{Error, Result};
use crate::transport::{
    BlobInfo, BlobWriter, ImageDest, ImageSource, RawManifest, TransportOptions,
};

/// Manifest media types accepted from registries and pushed to them.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Largest manifest accepted (distribution refuses manifests over 4 MiB too).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Size of the pieces a blob upload is streamed in.
const UPLOAD_PIECE: usize = 256 << 10;
/// Pieces queued between the writer and the upload request: with [`UPLOAD_PIECE`] this
/// bounds an upload's memory at about 1.25 MiB, whatever the blob size.
const UPLOAD_QUEUE: usize = 4;

const USER_AGENT: &str = concat!("layercrypt/", env!("CARGO_PKG_VERSION"));

/// True if `registry` (`host[:port]`) may be reached over plain HTTP: loopback names only,
/// unless `insecure` allows it for every registry.
pub fn plain_http_allowed(registry: &str, insecure: bool) -> bool {
    if insecure {
        return true;
    }
    let host = if registry.starts_with('[') {
        // `[::1]` or `[::1]:5000`
        registry.split_inclusive(']').next().unwrap_or(registry)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "[::1]"
    )
}

/// The private runtime. Shut down without waiting when dropped, so that dropping a source or
/// destination never blocks or panics, even inside someone else's async context.
struct PrivateRuntime(Option<Runtime>);

impl std::ops::Deref for PrivateRuntime {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("the runtime is only taken in drop")
    }
}

impl Drop for PrivateRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What both ends share: the runtime, the oci-client, the reference and how to authenticate.
struct Remote {
    rt: PrivateRuntime,
    client: Client,
    /// For the upload requests oci-client has no API for.
    http: reqwest::Client,
    reference: Reference,
    auth: RegistryAuth,
    creds: Option<Credentials>,
    scheme: &'static str,
}

impl Remote {
    fn open(reference: &str, opts: &TransportOptions, op: RegistryOperation) -> Result<Self> {
        let parsed: Reference = reference.parse().map_err(|e| Error::Reference {
            reference: reference.to_owned(),
            reason: format!("{e}; expected docker://HOST/REPOSITORY[:TAG|@sha256:DIGEST]"),
        })?;
        let net_host = parsed.resolve_registry().to_owned();
        let plain = plain_http_allowed(&net_host, opts.insecure);
        let scheme = if plain { "http" } else { "https" };
        let protocol = if plain {
            ClientProtocol::HttpsExcept(vec![net_host.clone()])
        } else {
            ClientProtocol::Https
        };
        let creds = auth::lookup(parsed.registry(), parsed.repository(), opts)?;
        let auth = match &creds {
            // oci-client keeps its own plain `String` copies for as long as the client lives;
            // it has no secret type to hand them over in.
            Some(c) => RegistryAuth::Basic(c.username().to_owned(), c.expose_password().to_owned()),
            None => RegistryAuth::Anonymous,
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let fail = |what: &str, e: &dyn std::fmt::Display| Error::Registry {
            registry: parsed.registry().to_owned(),
            reason: format!("{what}: {e}"),
        };
        let client =
            Client::try_from(config).map_err(|e| fail("cannot set up the HTTP client", &e))?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| fail("cannot set up the HTTP client", &e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("layercrypt-registry")
            .enable_all()
            .build()
            .map_err(|e| fail("cannot start the I/O runtime", &e))?;
        let rt = PrivateRuntime(Some(rt));
        let remote = Self {
            rt,
            client,
            http,
            reference: parsed,
            auth,
            creds,
            scheme,
        };
        tracing::debug!(
            reference = %remote.reference.whole(),
            scheme,
            credentials = remote.creds.as_ref().map(Credentials::origin),
            "opening registry"
        );
        // Authenticate now, so that refused credentials are reported before any work is done.
        remote
            .rt
            .block_on(remote.client.auth(&remote.reference, &remote.auth, op))
            .map_err(|e| {
                remote.error(
                    match op {
                        RegistryOperation::Pull => "authenticating to pull",
                        RegistryOperation::Push => "authenticating to push",
                    },
                    op,
                    e,
                )
            })?;
        Ok(remote)
    }

    fn registry(&self) -> &str {
        self.reference.registry()
    }

    fn describe(&self) -> String {
        format!("docker://{}", self.reference.whole())
    }

    fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.reference.registry().to_owned(),
            self.reference.repository().to_owned(),
            digest.to_owned(),
        )
    }

    fn reg_err(&self, reason: String) -> Error {
        Error::Registry {
            registry: self.registry().to_owned(),
            reason,
        }
    }

    /// A registry error with what was being done, which repository, and what to do about it.
    fn error(&self, action: &str, op: RegistryOperation, e: OciDistributionError) -> Error {
        let status = match &e {
            OciDistributionError::UnauthorizedError { .. } => Some(401),
            OciDistributionError::ServerError { code, .. } => Some(*code),
            OciDistributionError::ImageManifestNotFoundError(_) => Some(404),
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().find_map(|err| match err.code {
                    OciErrorCode::Unauthorized => Some(401),
                    OciErrorCode::Denied => Some(403),
                    OciErrorCode::Toomanyrequests => Some(429),
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound => Some(404),
                    _ => None,
                })
            }
            OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
            _ => None,
        };
        if let OciDistributionError::AuthenticationFailure(reply) = &e {
            return self.reg_err(format!(
                "{}: {action}: the token service refused {} ({}): {}",
                self.reference.repository(),
                self.who(),
                shorten(reply),
                self.login_hint()
            ));
        }
        if let OciDistributionError::RequestError(r) = &e {
            if r.status().is_none() {
                return self.unreachable(action, r);
            }
        }
        match status {
            Some(code) => self.status_error(action, op, code, &e.to_string()),
            None => self.reg_err(format!(
                "{}: {action}: {}",
                self.reference.repository(),
                shorten(&e.to_string())
            )),
        }
    }

    fn unreachable(&self, action: &str, e: &reqwest::Error) -> Error {
        let hint = if self.scheme == "https" {
            "; check the host name and the network (registries without TLS are reached over \
             plain HTTP only on localhost or when insecure access is allowed)"
        } else {
            "; check that the registry is running and the host name and port are right"
        };
        self.reg_err(format!(
            "{}: {action}: cannot reach {}://{}: {}{hint}",
            self.reference.repository(),
            self.scheme,
            self.reference.resolve_registry(),
            error_chain(e),
        ))
    }

    /// An error for an HTTP status from the registry.
    fn status_error(&self, action: &str, op: RegistryOperation, code: u16, detail: &str) -> Error {
        let repo = self.reference.repository();
        match code {
            401 => self.reg_err(format!("{repo}: {action}: {}", self.login_hint())),
            403 => self.reg_err(format!(
                "{repo}: {action}: access denied: {} may not {} this repository; check the \
                 repository name and its permissions",
                self.who(),
                match op {
                    RegistryOperation::Pull => "pull from",
                    RegistryOperation::Push => "push to",
                }
            )),
            404 => Error::NotFound(format!(
                "{}: {action}: the registry has no such {} ({})",
                self.describe(),
                if action.contains("blob") {
                    "blob"
                } else {
                    "repository, tag or manifest"
                },
                shorten(detail)
            )),
            429 => self.reg_err(format!(
                "{repo}: {action}: rate limit reached: wait and retry{}",
                if self.creds.is_none() {
                    ", or log in (registries such as Docker Hub allow more to logged-in users)"
                } else {
                    ""
                }
            )),
            _ => self.reg_err(format!(
                "{repo}: {action}: HTTP {code}: {}",
                shorten(detail)
            )),
        }
    }

    fn who(&self) -> String {
        match &self.creds {
            Some(c) => format!("user {:?} (credentials from {})", c.username(), c.origin()),
            None => "anonymous access".to_owned(),
        }
    }

    fn login_hint(&self) -> String {
        let host = self.registry();
        match &self.creds {
            None => format!(
                "authentication required: run with --creds USER:PASSWORD or log in with \
                 `podman login {host}` / `docker login {host}`"
            ),
            Some(c) => format!(
                "the registry refused the credentials of user {:?} from {}: check the user \
                 name and password (or token), or log in again",
                c.username(),
                c.origin()
            ),
        }
    }

    /// The `Authorization` header for upload requests: a fresh bearer token with push scope
    /// (oci-client does the token dance), or Basic where the registry asks for Basic.
    async fn upload_auth(&self) -> Result<Option<HeaderValue>> {
        let token = self
            .client
            .auth(&self.reference, &self.auth, RegistryOperation::Push)
            .await
            .map_err(|e| self.error("authenticating to push", RegistryOperation::Push, e))?;
        let value = match (token.map(Zeroizing::new), &self.creds) {
            (Some(token), _) => Zeroizing::new(format!("Bearer {}", token.as_str())),
            (None, Some(c)) => {
                use base64::Engine as _;
                let pair = Zeroizing::new(format!("{}:{}", c.username(), c.expose_password()));
                Zeroizing::new(format!(
                    "Basic {}",
                    Zeroizing::new(
                        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
                    )
                    .as_str()
                ))
            }
            (None, None) => return Ok(None),
        };
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| self.reg_err("the registry token is not a valid HTTP header".into()))?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    fn base_url(&self) -> Result<Url> {
        Url::parse(&format!(
            "{}://{}/",
            self.scheme,
            self.reference.resolve_registry()
        ))
        .map_err(|e| self.reg_err(format!("bad registry address: {e}")))
    }
}

/// Authentication is sent only to the registry itself, never to another host a `Location`
/// points to (as oci-client does; see CVE-2020-15157).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn shorten(s: &str) -> String {
    const MAX: usize = 300;
    let s = s.trim();
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The media type of a manifest: its `mediaType` field, or (OCI documents may omit it) what
/// its fields say it is.
fn manifest_media_type(bytes: &[u8], what: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<i64>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
        what: what.to_owned(),
        reason: format!("not a JSON manifest: {e}"),
    })?;
    if probe.schema_version != Some(2) {
        return Err(Error::Unsupported(format!(
            "{what} has schemaVersion {:?}; only schema 2 (OCI, Docker v2) manifests are supported",
            probe.schema_version
        )));
    }
    match probe.media_type {
        Some(mt) if MANIFEST_MEDIA_TYPES.contains(&mt.as_str()) => Ok(mt),
        Some(mt) => Err(Error::Unsupported(format!("{what} has media type {mt}"))),
        None if probe.manifests.is_some() => Ok(OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned()),
        None if probe.config.is_some() => Ok(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        None => Err(Error::Malformed {
            what: what.to_owned(),
            reason: "neither a manifest nor an index (no mediaType, config or manifests)".into(),
        }),
    }
}

/// Reads an image from a registry.
pub struct RegistrySource {
    remote: Remote,
}

impl RegistrySource {
    /// Opens `reference` (what follows `docker://`, e.g. `alpine`, `quay.io/org/img:tag`,
    /// `localhost:5000/x@sha256:…`), finds credentials and authenticates for pulling.
    pub fn open(reference: &str, opts: &TransportOptions) -> Result<Self> {
        Ok(Self {
            remote: Remote::open(reference, opts, RegistryOperation::Pull)?,
        })
    }

    fn pull_manifest(&self, reference: &Reference, what: &str) -> Result<RawManifest> {
        let r = &self.remote;
        tracing::debug!(reference = %reference.whole(), "pulling manifest");
        let (bytes, _digest) =
            r.rt.block_on(
                r.client
                    .pull_manifest_raw(reference, &r.auth, MANIFEST_MEDIA_TYPES),
            )
            .map_err(|e| r.error(&format!("pulling {what}"), RegistryOperation::Pull, e))?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::Malformed {
                what: format!("{what} of {}", r.describe()),
                reason: format!(
                    "{} bytes, more than the {MAX_MANIFEST_SIZE} allowed",
                    bytes.len()
                ),
            });
        }
        let digest = sha256_digest(&bytes);
        if let Some(want) = reference.digest() {
            if want != digest {
                return Err(Error::BlobMismatch {
                    digest: want.to_owned(),
                    reason: format!("the registry served a manifest with digest {digest}"),
                });
            }
        }
        let media_type = manifest_media_type(&bytes, &format!("{what} of {}", r.describe()))?;
        Ok(RawManifest {
            bytes: bytes.to_vec(),
            media_type,
            digest,
        })
    }
}

impl ImageSource for RegistrySource {
    fn describe(&self) -> String {
        self.remote.describe()
    }

    fn top_manifest(&mut self) -> Result<RawManifest> {
        let reference = self.remote.reference.clone();
        self.pull_manifest(&reference, "manifest")
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        let digest = desc.digest().to_string();
        validate_digest(&digest).map_err(|reason| self.remote.reg_err(reason))?;
        let m = self.pull_manifest(
            &self.remote.by_digest(&digest),
            &format!("manifest {digest}"),
        )?;
        if m.bytes.len() as u64 != desc.size() {
            return Err(Error::BlobMismatch {
                digest,
                reason: format!(
                    "descriptor size {}, manifest size {}",
                    desc.size(),
                    m.bytes.len()
                ),
            });
        }
        Ok(m)
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let r = &self.remote;
        let digest = desc.digest().to_string();
        validate_digest(&digest).map_err(|reason| r.reg_err(reason))?;
        tracing::debug!(reference = %r.reference.whole(), %digest, size = desc.size(), "pulling blob");
        let action = format!("pulling blob {digest}");
        let stream =
            r.rt.block_on(r.client.pull_blob_stream(&r.reference, digest.as_str()))
                .map_err(|e| r.error(&action, RegistryOperation::Pull, e))?;
        if let Some(len) = stream.content_length {
            if len != desc.size() {
                return Err(Error::BlobMismatch {
                    digest,
                    reason: format!(
                        "the registry serves {len} bytes, the descriptor says {}",
                        desc.size()
                    ),
                });
            }
        }
        let expected = digest.clone();
        let body = futures_util::TryStreamExt::map_err(stream.stream, move |e| {
            // oci-client verifies the digest too and may notice first: report it as the
            // mismatch it is, like `VerifyingReader` does.
            let mismatch = e
                .get_ref()
                .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
            if mismatch {
                crate::digest::blob_mismatch(&expected, e.to_string())
            } else {
                e
            }
        });
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(body), r.rt.handle().clone());
        Ok(Box::new(VerifyingReader::new(reader, &digest, desc.size())))
    }
}

/// Writes an image to a registry. Blobs and child manifests are pushed as they come; the tag
/// is set only by [`ImageDest::commit`]. Dropped without commit, nothing is tagged (the blobs
/// stay, unreferenced, until the registry's garbage collection).
pub struct RegistryDest {
    remote: Remote,
}

impl RegistryDest {
    /// Opens `reference` (what follows `docker://`), finds credentials and authenticates for
    /// pushing.
    pub fn open(reference: &str, opts: &TransportOptions) -> Result<Self> {
        Ok(Self {
            remote: Remote::open(reference, opts, RegistryOperation::Push)?,
        })
    }

    fn push_manifest(&self, reference: &Reference, m: &RawManifest, action: &str) -> Result<()> {
        let r = &self.remote;
        let actual = sha256_digest(&m.bytes);
        if actual != m.digest {
            return Err(Error::BlobMismatch {
                digest: m.digest.clone(),
                reason: format!("the manifest bytes have digest {actual}"),
            });
        }
        if !MANIFEST_MEDIA_TYPES.contains(&m.media_type.as_str()) {
            return Err(Error::Unsupported(format!(
                "{action}: media type {} cannot be pushed as a manifest",
                m.media_type
            )));
        }
        let content_type = HeaderValue::from_str(&m.media_type)
            .map_err(|_| r.reg_err(format!("{action}: bad media type")))?;
        tracing::debug!(reference = %reference.whole(), digest = %m.digest, "pushing manifest");
        r.rt.block_on(
            r.client
                .push_manifest_raw(reference, m.bytes.clone(), content_type),
        )
        .map_err(|e| r.error(action, RegistryOperation::Push, e))?;
        Ok(())
    }
}

impl ImageDest for RegistryDest {
    fn describe(&self) -> String {
        self.remote.describe()
    }

    fn has_blob(&mut self, info: &BlobInfo) -> Result<bool> {
        let r = &self.remote;
        validate_digest(&info.digest).map_err(|reason| r.reg_err(reason))?;
        r.rt.block_on(r.client.blob_exists(&r.reference, &info.digest))
            .map_err(|e| {
                r.error(
                    &format!("checking for blob {}", info.digest),
                    RegistryOperation::Push,
                    e,
                )
            })
    }

    fn blob_writer(&mut self) -> Result<Box<dyn BlobWriter + '_>> {
        Ok(Box::new(RegistryBlobWriter::start(&self.remote)?))
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        let reference = self.remote.by_digest(&manifest.digest);
        self.push_manifest(
            &reference,
            manifest,
            &format!("pushing manifest {}", manifest.digest),
        )
    }

    fn commit(self: Box<Self>, top: &RawManifest) -> Result<()> {
        let r = &self.remote;
        let reference = match (r.reference.tag(), r.reference.digest()) {
            (_, Some(want)) if want != top.digest => {
                return Err(Error::BlobMismatch {
                    digest: want.to_owned(),
                    reason: format!(
                        "the destination names a digest, but the manifest written has digest {}",
                        top.digest
                    ),
                })
            }
            (_, Some(_)) => r.by_digest(&top.digest),
            (tag, None) => Reference::with_tag(
                r.reference.registry().to_owned(),
                r.reference.repository().to_owned(),
                tag.unwrap_or("latest").to_owned(),
            ),
        };
        self.push_manifest(&reference, top, &format!("tagging {}", reference.whole()))?;
        tracing::info!(reference = %reference.whole(), digest = %top.digest, "image pushed");
        Ok(())
    }
}

/// A blob upload in progress.
///
/// oci-client 0.18 has `push_blob_stream_chunked`, which computes the digest while it uploads,
/// but it is not used here because: it sends one `PATCH` per stream item (so the caller must
/// re-chunk anyway), it refuses empty blobs, and it keeps the upload session's URL to itself,
/// so an abandoned upload cannot be cancelled with `DELETE`. So the upload is made here: `POST
/// /v2/<name>/blobs/uploads/`, then the bytes as **one streamed `PATCH`** (chunked transfer
/// encoding, no `Content-Range`; fed through a bounded queue, so memory stays constant), then
/// `PUT <location>?digest=<computed>`. One streamed `PATCH` is what docker and
/// containers/image (podman, skopeo) send; it works with Docker Hub, Quay, GHCR and Harbor,
/// whereas multi-`PATCH` uploads with `Content-Range` are not accepted by all of them.
/// Authentication: the same bearer token oci-client gets for push scope, or Basic.
pub struct RegistryBlobWriter<'a> {
    remote: &'a Remote,
    /// `None` once finished or cancelled.
    writer: Option<HashingWriter<UploadSink>>,
    /// The `PATCH` request; yields the location for the final `PUT`.
    task: Option<JoinHandle<Result<Url>>>,
    /// The upload session, for `DELETE` when abandoned; `None` once complete.
    session: Option<Url>,
    auth: Option<HeaderValue>,
}

/// Feeds the `PATCH` body: buffers writes into pieces and queues them.
struct UploadSink {
    buf: BytesMut,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl UploadSink {
    fn send(&mut self, piece: Bytes) -> io::Result<()> {
        self.tx.blocking_send(Ok(piece)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the blob upload request ended early",
            )
        })
    }
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(UPLOAD_PIECE);
        self.buf.extend_from_slice(&data[..n]);
        while self.buf.len() >= UPLOAD_PIECE {
            let piece = self.buf.split_to(UPLOAD_PIECE).freeze();
            self.send(piece)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Pieces go out when full; `finish` sends the rest.
        Ok(())
    }
}

impl<'a> RegistryBlobWriter<'a> {
    fn start(remote: &'a Remote) -> Result<Self> {
        let action = "starting a blob upload";
        let base = remote.base_url()?;
        let (auth, session) = remote.rt.block_on(async {
            let auth = remote.upload_auth().await?;
            let url = base
                .join(&format!(
                    "v2/{}/blobs/uploads/",
                    remote.reference.repository()
                ))
                .map_err(|e| remote.reg_err(format!("bad repository name: {e}")))?;
            let mut req = remote.http.post(url.clone()).header("Content-Length", "0");
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let res = req
                .send()
                .await
                .map_err(|e| remote.unreachable(action, &e))?;
            let session = location(remote, &url, res, StatusCode::ACCEPTED, action).await?;
            Ok::<_, Error>((auth, session))
        })?;
        tracing::debug!(reference = %remote.reference.whole(), "blob upload started");

        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(UPLOAD_QUEUE);
        let body = reqwest::Body::wrap_stream(queue_stream(rx));
        let mut req = remote
            .http
            .patch(session.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(a) = auth.as_ref().filter(|_| same_origin(&base, &session)) {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let patch_url = session.clone();
        let registry = remote.registry().to_owned();
        let repo = remote.reference.repository().to_owned();
        let task = remote.rt.spawn(async move {
            let fail = |reason: String| Error::Registry {
                registry: registry.clone(),
                reason,
            };
            let res = req.send().await.map_err(|e| {
                fail(format!(
                    "uploading a blob to {repo}: the request failed: {}",
                    error_chain(&e)
                ))
            })?;
            let status = res.status();
            if status != StatusCode::ACCEPTED && status != StatusCode::NO_CONTENT {
                let body = res.text().await.unwrap_or_default();
                return Err(fail(format!(
                    "uploading a blob to {repo}: HTTP {status}: {}",
                    shorten(&body)
                )));
            }
            match res.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                Some(loc) => patch_url
                    .join(loc)
                    .map_err(|e| fail(format!("uploading a blob to {repo}: bad Location: {e}"))),
                None => Ok(patch_url),
            }
        });
        let sink = UploadSink {
            buf: BytesMut::with_capacity(UPLOAD_PIECE),
            tx,
        };
        Ok(Self {
            remote,
            writer: Some(HashingWriter::new(sink)),
            task: Some(task),
            session: Some(session),
            auth,
        })
    }

    /// Why the upload request ended early (waits for it).
    fn failure(&mut self) -> String {
        match self.task.take() {
            Some(task) => match self.remote.rt.block_on(task) {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => "the registry ended the blob upload early".to_owned(),
                Err(e) => format!("the blob upload task failed: {e}"),
            },
            None => "the blob upload already ended".to_owned(),
        }
    }

    fn auth_for(&self, url: &Url) -> Option<HeaderValue> {
        let base = self.remote.base_url().ok()?;
        self.auth.clone().filter(|_| same_origin(&base, url))
    }

    /// Sends what is left, ends the `PATCH` body and waits for the `PATCH`; returns the digest,
    /// size and where to `PUT`.
    fn end_patch(&mut self) -> Result<(String, u64, Url)> {
        let writer = self.writer.take().ok_or_else(|| {
            self.remote
                .reg_err("finishing a blob upload that already ended".into())
        })?;
        let (mut sink, digest, size) = writer.finish();
        let rest = sink.buf.split().freeze();
        if !rest.is_empty() && sink.send(rest).is_err() {
            drop(sink);
            return Err(self.remote.reg_err(self.failure()));
        }
        drop(sink); // ends the PATCH body
        let task = self
            .task
            .take()
            .ok_or_else(|| self.remote.reg_err("the blob upload already failed".into()))?;
        let put_url = self.remote.rt.block_on(task).map_err(|e| {
            self.remote.reg_err(format!(
                "uploading blob {digest}: the upload task failed: {e}"
            ))
        })??;
        self.session = Some(put_url.clone());
        Ok((digest, size, put_url))
    }

    fn put(&self, digest: &str, put_url: &Url) -> Result<()> {
        let remote = self.remote;
        let action = format!("completing the upload of blob {digest}");
        let mut url = put_url.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let mut req = remote.http.put(url.clone()).header("Content-Length", "0");
        if let Some(a) = self.auth_for(&url) {
            req = req.header(AUTHORIZATION, a);
        }
        remote.rt.block_on(async {
            let res = req
                .send()
                .await
                .map_err(|e| remote.unreachable(&action, &e))?;
            let stored = res
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            location(remote, &url, res, StatusCode::CREATED, &action).await?;
            match stored {
                Some(d) if d != digest => Err(Error::BlobMismatch {
                    digest: digest.to_owned(),
                    reason: format!("the registry stored it as {d}"),
                }),
                _ => Ok(()),
            }
        })
    }

    /// Ends the upload and deletes its session (best effort).
    ///
    /// The `PATCH` body is ended cleanly rather than cut off: distribution only accepts a
    /// `DELETE` carrying the upload state (`_state`, with the offset) that the last `PATCH`
    /// returned, so the `PATCH` has to complete for the session to be deletable.
    fn cancel(&mut self) {
        self.writer = None; // ends the PATCH body
        let blocking_ok = tokio::runtime::Handle::try_current().is_err();
        if let Some(task) = self.task.take() {
            if blocking_ok {
                let ended = self
                    .remote
                    .rt
                    .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await });
                if let Ok(Ok(Ok(latest))) = ended {
                    self.session = Some(latest);
                }
            } else {
                task.abort();
            }
        }
        let Some(session) = self.session.take() else {
            return;
        };
        let remote = self.remote;
        let mut req = remote
            .http
            .delete(session.clone())
            .timeout(Duration::from_secs(10));
        if let Some(a) = self.auth_for(&session) {
            req = req.header(AUTHORIZATION, a);
        }
        let fut = async move {
            match req.send().await {
                Ok(res) => tracing::debug!(status = %res.status(), "blob upload cancelled"),
                Err(e) => tracing::debug!(error = %e, "cancelling the blob upload failed"),
            }
        };
        if blocking_ok {
            remote.rt.block_on(fut);
        } else {
            // Dropped inside some async context, where blocking would panic.
            drop(remote.rt.spawn(fut));
        }
    }
}

/// Turns the queue into the `Stream` reqwest wants for a body.
fn queue_stream(
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// The absolute URL in a response's `Location` header, if the status is `want`.
async fn location(
    remote: &Remote,
    base: &Url,
    res: reqwest::Response,
    want: StatusCode,
    action: &str,
) -> Result<Url> {
    let status = res.status();
    if status != want {
        let body = res.text().await.unwrap_or_default();
        return Err(remote.status_error(action, RegistryOperation::Push, status.as_u16(), &body));
    }
    let loc = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| remote.reg_err(format!("{action}: the registry sent no Location")))?;
    base.join(loc)
        .map_err(|e| remote.reg_err(format!("{action}: bad Location {loc:?}: {e}")))
}

impl Write for RegistryBlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let writer = self.writer.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "blob upload already ended")
        })?;
        match writer.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, self.failure()))
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for RegistryBlobWriter<'_> {
    fn finish(mut self: Box<Self>) -> Result<BlobInfo> {
        let result = self.end_patch().and_then(|(digest, size, put_url)| {
            self.put(&digest, &put_url)?;
            Ok(BlobInfo { digest, size })
        });
        match result {
            Ok(info) => {
                tracing::debug!(
                    reference = %self.remote.reference.whole(),
                    digest = %info.digest,
                    size = info.size,
                    "blob pushed"
                );
                self.session = None; // complete: nothing to cancel on drop
                Ok(info)
            }
            Err(e) => {
                self.cancel();
                Err(e)
            }
        }
    }
}

impl Drop for RegistryBlobWriter<'_> {
    fn drop(&mut self) {
        if self.session.is_some() {
            tracing::debug!(reference = %self.remote.reference.whole(), "blob upload abandoned");
            self.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_insecure() {
        for ok in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:5000",
        ] {
            assert!(plain_http_allowed(ok, false), "{ok}");
        }
        assert!(plain_http_allowed("[::1]:5000", false));
        assert!(plain_http_allowed("[::1]", false));
        for no in [
            "docker.io",
            "index.docker.io",
            "quay.io",
            "localhost.example.com",
            "127.0.0.2:5000",
            "10.0.0.1:5000",
            "[::2]:5000",
            "mylocalhost:5000",
        ] {
            assert!(!plain_http_allowed(no, false), "{no}");
            assert!(plain_http_allowed(no, true), "{no}");
        }
    }

    #[test]
    fn media_type_from_document() {
        let m = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(m, "m").expect("ok"),
            OCI_IMAGE_MEDIA_TYPE
        );
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(i, "i").expect("ok"),
            OCI_IMAGE_INDEX_MEDIA_TYPE
        );
        let d = format!(r#"{{"schemaVersion":2,"mediaType":"{IMAGE_MANIFEST_LIST_MEDIA_TYPE}"}}"#);
        assert_eq!(
            manifest_media_type(d.as_bytes(), "d").expect("ok"),
            IMAGE_MANIFEST_LIST_MEDIA_TYPE
        );
        assert!(manifest_media_type(br#"{"schemaVersion":1}"#, "s1").is_err());
        assert!(
            manifest_media_type(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, "x").is_err()
        );
        assert!(manifest_media_type(b"[]", "x").is_err());
    }

    #[test]
    fn references_are_normalised() {
        let r: Reference = "alpine".parse().expect("parse");
        assert_eq!(r.whole(), "docker.io/library/alpine:latest");
        assert_eq!(r.resolve_registry(), "index.docker.io");
        let r: Reference = "localhost:5000/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .expect("parse");
        assert_eq!(r.registry(), "localhost:5000");
        assert!(r.tag().is_none());
    }
}
