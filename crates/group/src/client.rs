//! Blocking HTTP client of the broker API (`docs/broker-api.md`), public and admin routes.
//!
//! Every error names the broker and says what to do. Tokens go only into the `Authorization`
//! header (marked sensitive) and are never logged; response bodies are read up to
//! [`MAX_RESPONSE_LEN`]. Redirects are not followed, so a token is only ever sent to the
//! broker it was meant for.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use layercrypt_ocicrypt::SecretBytes;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::payload::GroupName;
use crate::token::AccessToken;

/// Largest response body read from the broker.
pub const MAX_RESPONSE_LEN: u64 = 1024 * 1024;
/// Default time limit of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit for connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("layercrypt/", env!("CARGO_PKG_VERSION"));

/// Checks and normalises a broker base URL: `http(s)://host[:port][/path]`, no credentials,
/// query or fragment, no trailing slash (one function for every side:
/// [`layercrypt_proto::url`]). Two URLs name the same broker iff their normal forms are equal.
pub fn normalize_broker_url(url: &str) -> Result<String> {
    Ok(layercrypt_proto::normalize_broker_url(url)?)
}

/// The grid convention for trusted CA certificates (IGTF), trusted in addition to the system's
/// for brokers' TLS certificates when it exists.
pub const GRID_CA_DIR: &str = "/etc/grid-security/certificates";

/// Checks that talking to the broker at `url` keeps tokens and keys off the network in clear:
/// `https://`, or `http://` to this machine; with `insecure`, any `http://` too.
pub fn check_transport(url: &str, insecure: bool) -> Result<()> {
    let parsed = layercrypt_proto::BrokerUrl::parse(url)?;
    if parsed.is_cleartext_off_loopback() && !insecure {
        return Err(Error::CleartextBroker {
            broker: parsed.to_string(),
        });
    }
    Ok(())
}

/// Checks that `value` (of option `what`) is an RFC 3339 time, e.g. `2027-01-01T00:00:00Z`.
pub fn check_rfc3339(what: &str, value: &str) -> Result<()> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(drop)
        .map_err(|_| {
            Error::Usage(format!(
                "{what} {value:?}: expected an RFC 3339 time such as 2027-01-01T00:00:00Z"
            ))
        })
}

/// The public key of a group (`GET /v1/groups/{group}/recipient`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecipient {
    /// The group.
    pub group: GroupName,
    /// The current key version.
    pub version: u32,
    /// The age X25519 recipient, `age1…`.
    pub recipient: String,
    /// The broker's public base URL.
    pub broker: String,
}

/// What `POST /v1/unwrap` sends.
#[derive(Debug, Clone, Copy)]
pub struct UnwrapRequest<'a> {
    /// The payload bytes as stored in the layer (before ocicrypt's base64).
    pub payload: &'a [u8],
    /// The payload's group (for error messages).
    pub group: &'a GroupName,
    /// The layer digest, for the audit log.
    pub layer_digest: Option<&'a str>,
    /// The image, for the audit log.
    pub image: Option<&'a str>,
}

/// The part of the broker API that the key wrapper needs. The HTTP implementation is
/// [`HttpBrokers`]; tests serve it from memory.
pub trait BrokerApi: Send + Sync {
    /// The current recipient of `group` at the broker at `broker` (a normalised base URL).
    fn recipient(&self, broker: &str, group: &GroupName) -> Result<GroupRecipient>;

    /// Has the broker at `broker` release the private options in a payload.
    fn unwrap(&self, broker: &str, request: &UnwrapRequest<'_>) -> Result<SecretBytes>;
}

/// A key version of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersionInfo {
    /// Version number.
    pub version: u32,
    /// The age recipient.
    pub recipient: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
}

/// A grant as the broker returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// Grant id.
    pub id: String,
    /// Entitlement (exact, or prefix when `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// The entitlement is a prefix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefix: bool,
    /// Subject (`voperson_id` or `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Certificate subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    /// Client networks (CIDR); empty = anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Expiry (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
}

impl GrantInfo {
    /// Who the grant admits, in one line.
    pub fn principal(&self) -> String {
        match (&self.entitlement, &self.subject, &self.dn) {
            (Some(e), _, _) if self.prefix => format!("entitlement {e}*"),
            (Some(e), _, _) => format!("entitlement {e}"),
            (_, Some(s), _) => format!("subject {s}"),
            (_, _, Some(d)) => format!("dn {d}"),
            _ => "?".into(),
        }
    }
}

/// A group as the broker returns it (never with private keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Name.
    pub name: String,
    /// The version that encrypts.
    pub current_version: u32,
    /// Every key version.
    #[serde(default)]
    pub versions: Vec<KeyVersionInfo>,
    /// Grants.
    #[serde(default)]
    pub grants: Vec<GrantInfo>,
    /// When it was created.
    #[serde(default)]
    pub created: String,
}

/// Who a new grant admits: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An entitlement value, or every value starting with it.
    Entitlement {
        /// The value.
        value: String,
        /// Match as a prefix.
        prefix: bool,
    },
    /// A subject (`voperson_id`, else `sub`).
    Subject(String),
    /// A certificate subject DN (`/DC=…/CN=…`).
    Dn(String),
}

/// A grant to create (`POST /v1/admin/groups/{group}/grants`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    /// Who.
    pub principal: Principal,
    /// Only from these networks (CIDR).
    pub networks: Vec<String>,
    /// Not after (RFC 3339).
    pub expires: Option<String>,
}

#[derive(Serialize)]
struct NewGrantWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    entitlement: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    prefix: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dn: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    networks: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<&'a str>,
}

impl NewGrant {
    fn wire(&self) -> NewGrantWire<'_> {
        let mut w = NewGrantWire {
            entitlement: None,
            prefix: false,
            subject: None,
            dn: None,
            networks: &self.networks,
            expires: self.expires.as_deref(),
        };
        match &self.principal {
            Principal::Entitlement { value, prefix } => {
                w.entitlement = Some(value);
                w.prefix = *prefix;
            }
            Principal::Subject(s) => w.subject = Some(s),
            Principal::Dn(d) => w.dn = Some(d),
        }
        w
    }
}

/// An audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (RFC 3339).
    #[serde(default)]
    pub time: String,
    /// Token subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Certificate DN.
    #[serde(default)]
    pub dn: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Key version.
    #[serde(default)]
    pub key_version: Option<u32>,
    /// Layer digest, if the client sent it.
    #[serde(default)]
    pub layer_digest: Option<String>,
    /// Image, if the client sent it.
    #[serde(default)]
    pub image: Option<String>,
    /// Client address.
    #[serde(default)]
    pub client: Option<String>,
    /// `allow` or `deny`.
    #[serde(default)]
    pub decision: String,
    /// Why; for admin actions, what changed.
    #[serde(default)]
    pub reason: String,
    /// `unwrap`, `unauthenticated` or `admin`; empty (read as `unwrap`) from brokers that
    /// predate kinds.
    #[serde(default)]
    pub kind: String,
    /// The admin action (`create_group`, `delete_group`, `add_grant`, `remove_grant`,
    /// `rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The credential of the admin (`token`, `certificate`, `bootstrap_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The grant added or revoked, as the broker stores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<serde_json::Value>,
    /// A summary: how many refusals the record stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// A summary: the last refusal it stands for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl AuditEvent {
    /// The kind, `unwrap` for records of brokers that predate kinds.
    pub fn kind(&self) -> &str {
        if self.kind.is_empty() {
            "unwrap"
        } else {
            &self.kind
        }
    }
}

/// The kinds of audit records a broker filters by.
pub const AUDIT_KINDS: [&str; 3] = ["unwrap", "unauthenticated", "admin"];

/// Filters of an audit query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this group.
    pub group: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
    /// Only this kind (one of [`AUDIT_KINDS`]).
    pub kind: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct UnwrapBody<'a> {
    payload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
}

#[derive(Deserialize)]
struct UnwrapReply {
    optsdata: String,
}

/// What a request was for: decides how 403 and 404 read.
enum Route<'a> {
    Public(&'a str),
    Unwrap(&'a GroupName),
    Admin(&'a str),
}

/// Keeps a server-supplied text printable and short.
fn safe_text(s: &str) -> String {
    layercrypt_proto::text::escape_bytes(s.as_bytes(), 300)
}

/// TLS settings of broker connections: a client certificate (a host or robot certificate,
/// or an RFC 3820 proxy such as RCAuth's) and extra trusted CAs. Cheap to clone.
#[derive(Clone, Default)]
pub struct BrokerTls {
    identity: Option<reqwest::Identity>,
    roots: Vec<reqwest::Certificate>,
    /// The identity is an RFC 3820 proxy: rustls refuses to present one (its critical
    /// proxyCertInfo extension fails rustls' check of the client certificate), OpenSSL
    /// presents it, so such connections use reqwest's native-tls (OpenSSL) backend.
    native: bool,
}

impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field("client_certificate", &self.identity.is_some())
            .field("extra_roots", &self.roots.len())
            .finish()
    }
}

impl BrokerTls {
    /// Presents the client certificate in `pem`: the certificate (chain, leaf or proxy first)
    /// and its private key (PKCS#8, PKCS#1 or SEC1), in one buffer in any order.
    pub fn with_client_certificate(mut self, pem: &[u8]) -> Result<Self> {
        let usage = |e: &dyn std::fmt::Display| {
            Error::Usage(format!(
                "client certificate: {e} (expected PEM with the certificate chain and an unencrypted private key)"
            ))
        };
        if let Some((chain, key)) = proxy_identity(pem).map_err(|e| usage(&e))? {
            let identity =
                reqwest::Identity::from_pkcs8_pem(&chain, &key).map_err(|e| usage(&e))?;
            self.identity = Some(identity);
            self.native = true;
            return Ok(self);
        }
        let identity = reqwest::Identity::from_pem(pem).map_err(|e| usage(&e))?;
        self.identity = Some(identity);
        self.native = false;
        Ok(self)
    }

    /// Also trusts the CA certificates in `pem` for the broker's server certificate.
    pub fn with_root_certificates(mut self, pem: &[u8]) -> Result<Self> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::Usage(format!("CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Usage(
                "CA certificates: no certificate in the PEM".into(),
            ));
        }
        self.roots.extend(certs);
        Ok(self)
    }

    /// True if a client certificate is presented.
    /// Trusts, in addition, the CAs of a grid CA directory (`/etc/grid-security/certificates`:
    /// the IGTF CAs, which issue the host certificates of EGI sites' brokers).
    pub fn with_ca_dir(self, dir: &std::path::Path) -> Result<Self> {
        let pem = ca_dir_pems(dir).map_err(|e| Error::File {
            path: dir.to_owned(),
            reason: format!("cannot read the CA directory: {e}"),
        })?;
        if pem.is_empty() {
            return Ok(self);
        }
        self.with_root_certificates(&pem)
    }

    /// True if a client certificate is presented.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }
}

/// A proxy's certificate chain (PEM) and private key (PKCS#8 PEM).
type ProxyIdentity = (Vec<u8>, Zeroizing<Vec<u8>>);

/// For a PEM whose first certificate is an RFC 3820 proxy: the certificate chain (in its
/// order) and the private key as unencrypted PKCS#8, both PEM, as native-tls takes them.
/// `None` for anything else (the rustls path reads the PEM as it is).
fn proxy_identity(pem: &[u8]) -> std::result::Result<Option<ProxyIdentity>, String> {
    use layercrypt_ocicrypt::keys::{parse_key_material, KeyMaterial};
    let Ok(material) = parse_key_material(pem, None, "client certificate") else {
        return Ok(None); // the rustls path reports what is wrong
    };
    let certs: Vec<_> = material
        .iter()
        .filter_map(|m| match m {
            KeyMaterial::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if !certs.first().is_some_and(|c| c.is_proxy()) {
        return Ok(None);
    }
    let key = material
        .iter()
        .find_map(|m| match m {
            KeyMaterial::Private(k) if k.matches_certificate(certs[0]) => Some(k),
            _ => None,
        })
        .ok_or("no private key for the proxy certificate")?;
    let key = Zeroizing::new(
        key.expose_secret()
            .private_key_to_pem_pkcs8()
            .map_err(|e| e.to_string())?,
    );
    let mut chain = Vec::new();
    for c in certs {
        chain.extend_from_slice(&c.x509().to_pem().map_err(|e| e.to_string())?);
    }
    Ok(Some((chain, key)))
}

/// A client of one broker.
pub struct BrokerClient {
    base: String,
    http: Client,
    token: Option<AccessToken>,
    certificate_auth: bool,
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The blocking HTTP client with our timeouts, no redirects, rustls.
pub(crate) fn http_client(timeout: Duration) -> Result<Client> {
    http_client_tls(timeout, &BrokerTls::default())
}

/// [`http_client`] with a client certificate and extra roots.
fn http_client_tls(timeout: Duration, tls: &BrokerTls) -> Result<Client> {
    // rustls explicitly (a PEM identity is a rustls identity), except for a proxy
    // certificate, which only OpenSSL presents (see `BrokerTls::native`).
    let b = Client::builder();
    let b = if tls.native {
        b.tls_backend_native()
    } else {
        b.tls_backend_rustls()
    };
    let mut b = b
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT);
    if let Some(id) = &tls.identity {
        b = b.identity(id.clone());
    }
    for root in &tls.roots {
        b = b.add_root_certificate(root.clone());
    }
    b.build()
        .map_err(|e| Error::Usage(format!("cannot set up the HTTP client: {e}")))
}

/// Why rustls refused the broker's certificate, if that is why the request failed (found by
/// type: rustls' error sits inside an `io::Error`, whose `source()` skips it, so each
/// `io::Error` is opened with `get_ref`).
fn certificate_refusal(e: &reqwest::Error) -> Option<String> {
    let mut todo: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    while let Some(err) = todo.pop() {
        if let Some(rustls::Error::InvalidCertificate(why)) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("{why:?}"));
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            todo.push(inner);
        }
        if let Some(source) = err.source() {
            todo.push(source);
        }
    }
    None
}

/// The CA certificates of a grid CA directory (`<hash>.0`…`<hash>.9`, `*.pem`), for
/// [`BrokerTls::with_ca_dir`]. Bounded: at most 4096 files of at most 1 MiB each.
fn ca_dir_pems(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    const MAX_FILES: usize = 4096;
    const MAX_FILE: u64 = 1024 * 1024;
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".pem")
                    || n.rsplit_once('.').is_some_and(|(_, ext)| {
                        ext.len() == 1 && ext.bytes().all(|b| b.is_ascii_digit())
                    })
            })
        })
        .collect();
    names.sort();
    names.truncate(MAX_FILES);
    let mut all = Vec::new();
    for path in names {
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        let mut bytes = Vec::new();
        if f.take(MAX_FILE).read_to_end(&mut bytes).is_ok() && bytes.starts_with(b"-----BEGIN") {
            all.extend_from_slice(&bytes);
            all.push(b'\n');
        }
    }
    Ok(all)
}

/// Reads at most [`MAX_RESPONSE_LEN`] bytes of a body.
pub(crate) fn read_bounded(
    resp: Response,
    what: &str,
) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let mut buf = Zeroizing::new(Vec::new());
    resp.take(MAX_RESPONSE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading the {what} answer: {e}"))?;
    if buf.len() as u64 > MAX_RESPONSE_LEN {
        return Err(format!(
            "the {what} answer is larger than {MAX_RESPONSE_LEN} bytes"
        ));
    }
    Ok(buf)
}

impl BrokerClient {
    /// A client of the broker at `base` (see [`normalize_broker_url`]).
    pub fn new(base: &str) -> Result<Self> {
        Self::with_timeout(base, DEFAULT_TIMEOUT)
    }

    /// As [`BrokerClient::new`] with another time limit per request.
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self> {
        Self::with_tls(base, timeout, &BrokerTls::default())
    }

    /// As [`BrokerClient::with_timeout`], with TLS settings. With a client certificate and
    /// no token, authenticated requests rely on the certificate alone (no `Authorization`).
    pub fn with_tls(base: &str, timeout: Duration, tls: &BrokerTls) -> Result<Self> {
        let base = normalize_broker_url(base)?;
        Ok(Self {
            base,
            http: http_client_tls(timeout, tls)?,
            token: None,
            certificate_auth: tls.has_client_certificate(),
        })
    }

    /// Sends `token` with authenticated requests.
    pub fn with_token(mut self, token: AccessToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The normalised base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str, auth: bool) -> Result<RequestBuilder> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, url)
            .header("Accept", "application/json");
        if auth && !(self.token.is_none() && self.certificate_auth) {
            let token = self.token.as_ref().ok_or_else(|| {
                Error::Token(format!(
                    "broker {} needs an access token: run `layercrypt login`, or give --token-file or OIDC_ACCESS_TOKEN",
                    self.base
                ))
            })?;
            let value = Zeroizing::new(format!("Bearer {}", token.expose_secret()));
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Error::Token("the access token contains characters not allowed in a header".into())
            })?;
            value.set_sensitive(true);
            req = req.header(AUTHORIZATION, value);
        }
        Ok(req)
    }

    fn send(&self, req: RequestBuilder, route: Route<'_>) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let resp = req.send().map_err(|e| {
            if let Some(reason) = certificate_refusal(&e) {
                return Error::BrokerNotTrusted {
                    broker: self.base.clone(),
                    reason,
                };
            }
            let reason = if e.is_timeout() {
                "no answer in time".to_owned()
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                // reqwest's message names the URL (never the token) and the cause.
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    s.push_str(": ");
                    s.push_str(&c.to_string());
                    src = c.source();
                }
                s
            };
            Error::Unavailable {
                broker: self.base.clone(),
                reason,
            }
        })?;
        let status = resp.status();
        debug!(broker = %self.base, status = status.as_u16(), "broker answered");
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let body = read_bounded(resp, "broker's").map_err(|reason| Error::Protocol {
            broker: self.base.clone(),
            reason,
        })?;
        if status.is_success() {
            return Ok(Some(body));
        }
        let err: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        let broker = self.base.clone();
        Err(match (status.as_u16(), route) {
            (401, _) if self.token.is_none() && self.certificate_auth => {
                Error::CertificateRefused { broker }
            }
            (401, _) => Error::Unauthenticated { broker },
            (403, Route::Unwrap(group)) => Error::NotMember {
                broker,
                group: group.to_string(),
            },
            (403, Route::Admin(_)) => Error::NotAdmin { broker },
            (404, Route::Public(what) | Route::Admin(what)) => Error::NotFound {
                broker,
                what: what.to_owned(),
            },
            (503, _) => Error::Unavailable {
                broker,
                reason: "503 service unavailable".into(),
            },
            (status, _) => {
                let (code, message) = err
                    .map(|e| (safe_text(&e.error), safe_text(&e.message)))
                    .unwrap_or_default();
                Error::Status {
                    broker,
                    status,
                    code,
                    message,
                }
            }
        })
    }

    fn json<T: DeserializeOwned>(&self, body: Option<Zeroizing<Vec<u8>>>) -> Result<T> {
        let body = body.ok_or_else(|| Error::Protocol {
            broker: self.base.clone(),
            reason: "empty answer".into(),
        })?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            broker: self.base.clone(),
            reason: format!("not the expected JSON: {e}"),
        })
    }

    /// `GET /v1/groups/{group}/recipient` (no token needed).
    pub fn recipient(&self, group: &GroupName) -> Result<GroupRecipient> {
        let req = self.request(Method::GET, &format!("/v1/groups/{group}/recipient"), false)?;
        let what = format!("group {group}");
        let r: GroupRecipient = self.json(self.send(req, Route::Public(&what))?)?;
        if &r.group != group {
            return Err(Error::Protocol {
                broker: self.base.clone(),
                reason: format!("asked for group {group}, got the recipient of {}", r.group),
            });
        }
        Ok(r)
    }

    /// `POST /v1/unwrap` with the token: the layer's private options.
    pub fn unwrap(&self, request: &UnwrapRequest<'_>) -> Result<SecretBytes> {
        let body = UnwrapBody {
            payload: STANDARD.encode(request.payload),
            layer_digest: request.layer_digest,
            image: request.image,
        };
        let req = self.request(Method::POST, "/v1/unwrap", true)?.json(&body);
        let body = self.send(req, Route::Unwrap(request.group))?;
        let reply: UnwrapReply = self.json(body)?;
        let reply = Zeroizing::new(reply.optsdata);
        let opts = STANDARD
            .decode(reply.as_bytes())
            .map_err(|_| Error::Protocol {
                broker: self.base.clone(),
                reason: "optsdata is not base64".into(),
            })?;
        Ok(SecretBytes::new(opts))
    }

    /// `POST /v1/admin/groups`.
    pub fn create_group(&self, name: &GroupName) -> Result<GroupInfo> {
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a GroupName,
        }
        let req = self
            .request(Method::POST, "/v1/admin/groups", true)?
            .json(&Body { name });
        let what = format!("group {name}");
        self.json(self.send(req, Route::Admin(&what))?)
    }

    /// `GET /v1/admin/groups`.
    pub fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let req = self.request(Method::GET, "/v1/admin/groups", true)?;
        self.json(self.send(req, Route::Admin("groups"))?)
    }

    /// `GET /v1/admin/groups/{group}`.
    pub fn group(&self, name: &GroupName) -> Result<GroupInfo> {
        let req = self.request(Method::GET, &format!("/v1/admin/groups/{name}"), true)?;
        let what = format!("group {name}");
        self.json(self.send(req, Route::Admin(&what))?)
    }

    /// `DELETE /v1/admin/groups/{group}`.
    pub fn delete_group(&self, name: &GroupName) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("/v1/admin/groups/{name}"), true)?;
        let what = format!("group {name}");
        self.send(req, Route::Admin(&what)).map(drop)
    }

    /// `POST /v1/admin/groups/{group}/grants`.
    pub fn add_grant(&self, group: &GroupName, grant: &NewGrant) -> Result<GrantInfo> {
        let req = self
            .request(
                Method::POST,
                &format!("/v1/admin/groups/{group}/grants"),
                true,
            )?
            .json(&grant.wire());
        let what = format!("group {group}");
        self.json(self.send(req, Route::Admin(&what))?)
    }

    /// `DELETE /v1/admin/groups/{group}/grants/{id}`.
    pub fn remove_grant(&self, group: &GroupName, id: &str) -> Result<()> {
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(Error::Usage(format!(
                "grant id {:?} is not valid (see `layercrypt group show`)",
                safe_text(id)
            )));
        }
        let req = self.request(
            Method::DELETE,
            &format!("/v1/admin/groups/{group}/grants/{id}"),
            true,
        )?;
        let what = format!("grant {id} of group {group}");
        self.send(req, Route::Admin(&what)).map(drop)
    }

    /// `POST /v1/admin/groups/{group}/rotate`.
    pub fn rotate(&self, group: &GroupName) -> Result<GroupInfo> {
        let req = self.request(
            Method::POST,
            &format!("/v1/admin/groups/{group}/rotate"),
            true,
        )?;
        let what = format!("group {group}");
        self.json(self.send(req, Route::Admin(&what))?)
    }

    /// `GET /v1/admin/audit`.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut url = Url::parse(&format!("{}/v1/admin/audit", self.base))
            .map_err(|e| Error::Usage(format!("broker URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(g) = &query.group {
                q.append_pair("group", g);
            }
            if let Some(s) = &query.subject {
                q.append_pair("subject", s);
            }
            if let Some(s) = &query.since {
                q.append_pair("since", s);
            }
            if let Some(n) = query.limit {
                q.append_pair("limit", &n.to_string());
            }
            if let Some(k) = &query.kind {
                q.append_pair("kind", k);
            }
        }
        let path = &url.as_str()[self.base.len()..];
        let req = self.request(Method::GET, path, true)?;
        self.json(self.send(req, Route::Admin("audit log"))?)
    }
}

/// Where [`HttpBrokers`] gets the token from, asked at most once and only when a layer is
/// actually unwrapped (so decrypting other images never needs a login).
pub type TokenProvider = Box<dyn Fn() -> Result<AccessToken> + Send + Sync>;

/// [`BrokerApi`] over HTTP, for any (allowed) broker URL.
pub struct HttpBrokers {
    token: Option<TokenProvider>,
    cached: Mutex<Option<AccessToken>>,
    timeout: Duration,
    tls: BrokerTls,
}

impl HttpBrokers {
    /// Brokers reached over HTTP; `token` is called once, on the first unwrap.
    pub fn new(token: TokenProvider) -> Self {
        Self {
            token: Some(token),
            cached: Mutex::new(None),
            timeout: DEFAULT_TIMEOUT,
            tls: BrokerTls::default(),
        }
    }

    /// Brokers that authenticate us by the TLS client certificate in `tls` alone.
    pub fn certificate_only(tls: BrokerTls) -> Self {
        Self {
            token: None,
            cached: Mutex::new(None),
            timeout: DEFAULT_TIMEOUT,
            tls,
        }
    }

    /// Uses these TLS settings (client certificate, extra roots) for every broker.
    pub fn with_tls(mut self, tls: BrokerTls) -> Self {
        self.tls = tls;
        self
    }

    /// Changes the time limit of one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn token(&self) -> Result<Option<AccessToken>> {
        let Some(provider) = &self.token else {
            return Ok(None);
        };
        let mut cached = self
            .cached
            .lock()
            .map_err(|_| Error::Token("token cache poisoned".into()))?;
        if let Some(t) = cached.as_ref() {
            return Ok(Some(t.clone()));
        }
        let t = provider()?;
        *cached = Some(t.clone());
        Ok(Some(t))
    }
}

impl BrokerApi for HttpBrokers {
    fn recipient(&self, broker: &str, group: &GroupName) -> Result<GroupRecipient> {
        BrokerClient::with_tls(broker, self.timeout, &self.tls)?.recipient(group)
    }

    fn unwrap(&self, broker: &str, request: &UnwrapRequest<'_>) -> Result<SecretBytes> {
        let mut client = BrokerClient::with_tls(broker, self.timeout, &self.tls)?;
        if let Some(token) = self.token()? {
            client = client.with_token(token);
        }
        client.unwrap(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_broker_urls() {
        assert_eq!(
            normalize_broker_url("https://b.example.org/")
                .ok()
                .as_deref(),
            Some("https://b.example.org")
        );
        assert_eq!(
            normalize_broker_url("HTTPS://B.example.org")
                .ok()
                .as_deref(),
            Some("https://b.example.org")
        );
        assert_eq!(
            normalize_broker_url("http://127.0.0.1:8080/kb/")
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8080/kb")
        );
        for bad in [
            "file:///etc",
            "https://u:p@b",
            "https://b/?x=1",
            "b.example.org",
            "",
        ] {
            assert!(normalize_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cleartext_brokers_off_this_machine_are_refused() {
        for ok in [
            "https://broker.example.org",
            "http://127.0.0.1:8443",
            "http://localhost:1",
            "http://[::1]:2",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        for cleartext in ["http://broker.example.org", "http://10.1.2.3:8443"] {
            let e = check_transport(cleartext, false).expect_err(cleartext);
            assert!(matches!(e, Error::CleartextBroker { .. }), "{e}");
            assert!(e.to_string().contains("--insecure"), "{e}");
            assert!(check_transport(cleartext, true).is_ok(), "{cleartext}");
        }
    }

    #[test]
    fn rfc3339() {
        assert!(check_rfc3339("--expires", "2027-01-01T00:00:00Z").is_ok());
        assert!(check_rfc3339("--expires", "2027-01-01T00:00:00+02:00").is_ok());
        assert!(check_rfc3339("--expires", "2027-01-01").is_err());
    }

    #[test]
    fn grant_wire_has_exactly_one_principal() {
        let g = NewGrant {
            principal: Principal::Entitlement {
                value: "urn:mace:egi.eu:group:vo.example.org:".into(),
                prefix: true,
            },
            networks: vec!["192.0.2.0/24".into()],
            expires: None,
        };
        let v = serde_json::to_value(g.wire()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"entitlement":"urn:mace:egi.eu:group:vo.example.org:","prefix":true,"networks":["192.0.2.0/24"]})
        );
        let g = NewGrant {
            principal: Principal::Dn("/DC=eu/CN=x".into()),
            networks: vec![],
            expires: Some("2027-01-01T00:00:00Z".into()),
        };
        let v = serde_json::to_value(g.wire()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"dn":"/DC=eu/CN=x","expires":"2027-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn debug_redacts_the_token() {
        let c = BrokerClient::new("https://b.example.org")
            .expect("client")
            .with_token(AccessToken::new("secret-token-value".into()).expect("token"));
        assert!(!format!("{c:?}").contains("secret-token-value"));
    }

    /// A stub broker over real HTTP: the recipient route with a real age identity, and
    /// unwrap that checks the bearer token (401), the group (403 for `denied.org`) and
    /// decrypts; admin list; 503 for group `down.org`.
    fn stub_broker() -> (String, age::x25519::Identity) {
        use std::io::{BufRead as _, BufReader, Write as _};
        let identity = age::x25519::Identity::generate();
        let id = identity.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let u = url.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let (mut len, mut auth) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = h["authorization:".len()..].trim().to_owned();
                    }
                }
                let mut body = vec![0; len];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let (status, reply) = match path.as_str() {
                    "/v1/groups/down.org/recipient" => (503, r#"{"error":"unavailable"}"#.to_owned()),
                    p if p.starts_with("/v1/groups/") => {
                        let g = p.trim_start_matches("/v1/groups/").trim_end_matches("/recipient");
                        (200, format!(r#"{{"group":"{g}","version":3,"recipient":"{}","broker":"{u}"}}"#, id.to_public()))
                    }
                    "/v1/unwrap" if auth.is_empty() => (401, r#"{"error":"no-credential"}"#.to_owned()),
                    "/v1/unwrap" if auth != "Bearer good-token" => (401, r#"{"error":"unauthenticated"}"#.to_owned()),
                    "/v1/unwrap" => {
                        let req: serde_json::Value = serde_json::from_slice(&body).expect("json");
                        let payload = STANDARD.decode(req["payload"].as_str().expect("payload")).expect("b64");
                        let p = crate::payload::GroupPayload::parse(&payload).expect("payload");
                        if p.group.as_str() == "denied.org" {
                            (403, r#"{"error":"forbidden"}"#.to_owned())
                        } else {
                            let d = age::Decryptor::new(&p.age_ciphertext[..]).expect("age");
                            let mut r = d.decrypt(std::iter::once(&id as &dyn age::Identity)).expect("decrypt");
                            let mut opts = Vec::new();
                            std::io::Read::read_to_end(&mut r, &mut opts).expect("read");
                            assert_eq!(req["image"], "oci:img");
                            (200, format!(r#"{{"optsdata":"{}"}}"#, STANDARD.encode(opts)))
                        }
                    }
                    "/v1/admin/groups" if auth == "Bearer admin" => (
                        200,
                        r#"[{"name":"a.org","current_version":1,"versions":[],"grants":[{"id":"g-1","entitlement":"urn:x:","prefix":true,"created":"2026-01-01T00:00:00Z"}],"created":"2026-01-01T00:00:00Z"}]"#.to_owned(),
                    ),
                    "/v1/admin/groups" => (403, r#"{"error":"forbidden"}"#.to_owned()),
                    _ => (418, r#"{"error":"teapot","message":"no\u0007 such route"}"#.to_owned()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        (url, identity)
    }

    #[test]
    fn wrapper_over_http_round_trip_and_refusals() {
        use crate::wrap::{group_param, GroupKeyWrapper};
        use layercrypt_ocicrypt::keywrap::KeyWrapper as _;
        use std::sync::Arc;

        let (url, _identity) = stub_broker();
        let tokens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = tokens.clone();
        let api = HttpBrokers::new(Box::new(move || {
            t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            AccessToken::new("good-token".into())
        }));
        let w = GroupKeyWrapper::new(Arc::new(api))
            .with_broker(&url)
            .expect("url")
            .with_image("oci:img");
        let ec = |g: &str| layercrypt_ocicrypt::EncryptConfig {
            providers: vec![layercrypt_ocicrypt::ProviderRecipient {
                name: "layercrypt".into(),
                param: Some(group_param(&g.parse().expect("name"))),
            }],
            ..Default::default()
        };
        let opts = SecretBytes::from_slice(br#"{"symkey":"x"}"#);
        let item = w
            .wrap(&ec("vo.example.org"), &opts)
            .expect("wrap")
            .expect("item");
        assert_eq!(
            tokens.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "encrypting needs no token"
        );
        let dc = layercrypt_ocicrypt::DecryptConfig::default();
        let back = w.unwrap(&dc, &item).expect("mine").expect("unwrap");
        assert_eq!(back.expose_secret(), opts.expose_secret());
        let denied = w
            .wrap(&ec("denied.org"), &opts)
            .expect("wrap")
            .expect("item");
        let err = w
            .unwrap(&dc, &denied)
            .expect("mine")
            .expect_err("403")
            .chain_text();
        assert!(
            err.contains("not a member of group denied.org") && err.contains("ask the group admin"),
            "{err}"
        );
        assert_eq!(
            tokens.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the token is read once"
        );
        let err = w
            .wrap(&ec("down.org"), &opts)
            .expect_err("503")
            .chain_text();
        assert!(
            err.contains("unavailable, try again") && err.contains(&url),
            "{err}"
        );

        let client = BrokerClient::new(&url).expect("client");
        let err = client
            .with_token(AccessToken::new("bad".into()).expect("t"))
            .unwrap(&UnwrapRequest {
                payload: &item,
                group: &"vo.example.org".parse().expect("g"),
                layer_digest: None,
                image: None,
            })
            .expect_err("401");
        assert!(
            matches!(err, Error::Unauthenticated { .. })
                && err.to_string().contains("layercrypt login"),
            "{err}"
        );
        assert!(!err.to_string().contains("bad"));

        let admin = BrokerClient::new(&url)
            .expect("client")
            .with_token(AccessToken::new("admin".into()).expect("t"));
        let groups = admin.list_groups().expect("list");
        assert_eq!(groups[0].grants[0].principal(), "entitlement urn:x:*");
        let user = BrokerClient::new(&url)
            .expect("client")
            .with_token(AccessToken::new("user".into()).expect("t"));
        assert!(matches!(user.list_groups(), Err(Error::NotAdmin { .. })));
        let err = admin
            .audit(&AuditQuery::default())
            .expect_err("418")
            .to_string();
        assert!(
            err.contains("HTTP 418 teapot: no\\u{7} such route"),
            "{err}"
        );
        assert!(matches!(
            BrokerClient::new(&url).expect("c").list_groups(),
            Err(Error::Token(_))
        ));
    }

    #[test]
    fn client_certificate_settings() {
        let cert = include_bytes!("../../ocicrypt/tests/data/pkcs7/cert.pem");
        let key = include_bytes!("../../ocicrypt/tests/data/pkcs7/key.pem");
        let mut pem = key.to_vec();
        pem.extend_from_slice(cert);
        let tls = BrokerTls::default()
            .with_client_certificate(&pem)
            .expect("identity")
            .with_root_certificates(cert)
            .expect("root");
        assert!(tls.has_client_certificate());
        assert!(!format!("{tls:?}").contains("BEGIN"));
        // A key without its certificate, a certificate without a key, garbage: refused.
        for bad in [&key[..], &cert[..], b"junk"] {
            let err = BrokerTls::default()
                .with_client_certificate(bad)
                .expect_err("refused")
                .to_string();
            assert!(err.starts_with("client certificate:"), "{err}");
        }
        assert!(BrokerTls::default().with_root_certificates(b"x").is_err());

        // Certificate-only: the request goes out without an Authorization header (over
        // plain HTTP the stub sees no certificate, so it answers 401 "no credential").
        let (url, _identity) = stub_broker();
        let api = HttpBrokers::certificate_only(tls.clone());
        let w = crate::wrap::GroupKeyWrapper::new(std::sync::Arc::new(api))
            .with_broker(&url)
            .expect("url");
        use layercrypt_ocicrypt::keywrap::KeyWrapper as _;
        let ec = layercrypt_ocicrypt::EncryptConfig {
            providers: vec![layercrypt_ocicrypt::ProviderRecipient {
                name: "layercrypt".into(),
                param: Some(crate::wrap::group_param(
                    &"vo.example.org".parse().expect("g"),
                )),
            }],
            ..Default::default()
        };
        let item = w
            .wrap(&ec, &SecretBytes::from_slice(b"{}"))
            .expect("wrap")
            .expect("item");
        let err = w
            .unwrap(&layercrypt_ocicrypt::DecryptConfig::default(), &item)
            .expect("mine")
            .expect_err("401")
            .chain_text();
        // A certificate-only caller is told about its certificate, not asked to log in.
        assert!(
            err.contains("client certificate was not accepted") && !err.contains("login"),
            "{err}"
        );
        // Without a certificate and without a token the client refuses to send at all.
        let err = BrokerClient::with_tls(&url, DEFAULT_TIMEOUT, &BrokerTls::default())
            .expect("c")
            .unwrap(&UnwrapRequest {
                payload: &item,
                group: &"vo.example.org".parse().expect("g"),
                layer_digest: None,
                image: None,
            })
            .expect_err("no token");
        assert!(matches!(err, Error::Token(_)), "{err}");
    }

    #[test]
    fn unreachable_broker_names_itself() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        drop(l);
        let err = BrokerClient::new(&url)
            .expect("c")
            .recipient(&"a.org".parse().expect("g"))
            .expect_err("down");
        assert!(
            matches!(err, Error::Unavailable { .. }) && err.to_string().contains(&url),
            "{err}"
        );
    }
}
