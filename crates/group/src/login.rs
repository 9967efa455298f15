//! `layercrypt login`: the OAuth 2.0 device authorization grant (RFC 8628) against an OIDC
//! issuer (EGI Check-in by default), and refreshing stored tokens.
//!
//! Discovery gives the `device_authorization_endpoint` and `token_endpoint`; the user is shown
//! the verification URI and user code; the token endpoint is polled at the given interval
//! (`authorization_pending`: keep polling; `slow_down`: 5 s more; `expired_token`,
//! `access_denied`: stop). Polling stops at the first success: a redeemed device code that is
//! polled again makes some issuers revoke the grant.

use std::io::Write;
use std::time::Duration;

use reqwest::blocking::Client;
use serde::Deserialize;
use tracing::debug;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::client::{http_client, read_bounded};
use crate::error::{Error, Result};
use crate::token::StoredTokens;

/// EGI Check-in production.
pub const DEFAULT_ISSUER: &str = "https://aai.egi.eu/auth/realms/egi";
/// The public client id registered for the CLI.
pub const DEFAULT_CLIENT_ID: &str = "layercrypt-cli";
/// Scopes asked for: the subject, group entitlements, the stable id, and a refresh token.
pub const DEFAULT_SCOPES: &str = "openid eduperson_entitlement voperson_id offline_access";
/// The grant type of RFC 8628.
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time, injectable for tests.
pub trait Clock {
    /// Unix seconds.
    fn now(&self) -> u64;
    /// Waits.
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::token::unix_now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Who to log in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginParams {
    /// Issuer URL.
    pub issuer: String,
    /// Public client id.
    pub client_id: String,
    /// Space-separated scopes.
    pub scopes: String,
}

impl Default for LoginParams {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            scopes: DEFAULT_SCOPES.into(),
        }
    }
}

/// The endpoints of an issuer.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// The issuer as it names itself.
    pub issuer: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Device authorization endpoint, if the issuer supports the device grant.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn trim_issuer(s: &str) -> &str {
    s.trim_end_matches('/')
}

fn login_err(issuer: &str, reason: impl Into<String>) -> Error {
    Error::Login {
        issuer: issuer.to_owned(),
        reason: reason.into(),
    }
}

fn check_endpoint(issuer: &str, what: &str, url: &str) -> Result<()> {
    let ok = reqwest::Url::parse(url)
        .map(|u| matches!(u.scheme(), "https" | "http"))
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(login_err(
            issuer,
            format!("its {what} is not an http(s) URL"),
        ))
    }
}

/// Reads `<issuer>/.well-known/openid-configuration`.
pub fn discover(http: &Client, issuer: &str) -> Result<Discovery> {
    let issuer = trim_issuer(issuer);
    let url = format!("{issuer}/.well-known/openid-configuration");
    let resp = http
        .get(&url)
        .send()
        .map_err(|e| login_err(issuer, format!("cannot read {url}: {e}")))?;
    let status = resp.status();
    let body = read_bounded(resp, "discovery").map_err(|r| login_err(issuer, r))?;
    if !status.is_success() {
        return Err(login_err(
            issuer,
            format!("{url} answered HTTP {status}; check --issuer"),
        ));
    }
    let d: Discovery = serde_json::from_slice(&body).map_err(|e| {
        login_err(
            issuer,
            format!("{url} is not OpenID Connect discovery JSON: {e}"),
        )
    })?;
    if trim_issuer(&d.issuer) != issuer {
        return Err(login_err(
            issuer,
            format!("the discovery document names another issuer ({})", d.issuer),
        ));
    }
    check_endpoint(issuer, "token endpoint", &d.token_endpoint)?;
    Ok(d)
}

fn parse_tokens(
    issuer: &str,
    client_id: &str,
    body: &[u8],
    now: u64,
    old_refresh: Option<&str>,
) -> Result<StoredTokens> {
    let reply: TokenReply = serde_json::from_slice(body)
        .map_err(|_| login_err(issuer, "the token answer is not the expected JSON"))?;
    crate::token::AccessToken::new(reply.access_token.clone())?;
    Ok(StoredTokens {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        access_token: reply.access_token.clone(),
        refresh_token: reply
            .refresh_token
            .clone()
            .or_else(|| old_refresh.map(str::to_owned)),
        expires_at: now.saturating_add(reply.expires_in.unwrap_or(300)),
    })
}

/// Runs the device flow: prints where to go on `out`, polls until the user approved, and
/// returns the tokens (the caller stores them).
pub fn device_login(
    params: &LoginParams,
    out: &mut dyn Write,
    clock: &dyn Clock,
) -> Result<StoredTokens> {
    let issuer = trim_issuer(&params.issuer);
    let http = http_client(REQUEST_TIMEOUT)?;
    let d = discover(&http, issuer)?;
    let device_endpoint = d.device_authorization_endpoint.as_deref().ok_or_else(|| {
        login_err(
            issuer,
            "the issuer does not offer the device authorization grant",
        )
    })?;
    check_endpoint(issuer, "device authorization endpoint", device_endpoint)?;

    let resp = http
        .post(device_endpoint)
        .form(&[
            ("client_id", params.client_id.as_str()),
            ("scope", params.scopes.as_str()),
        ])
        .send()
        .map_err(|e| login_err(issuer, format!("device authorization request failed: {e}")))?;
    let status = resp.status();
    let body = read_bounded(resp, "device authorization").map_err(|r| login_err(issuer, r))?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| {
                format!(
                    "{}{}",
                    e.error,
                    e.error_description
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(login_err(
            issuer,
            format!(
                "the device authorization was refused ({}); check --client-id {}",
                safe(&detail),
                params.client_id
            ),
        ));
    }
    let auth: DeviceAuthorization = serde_json::from_slice(&body).map_err(|_| {
        login_err(
            issuer,
            "the device authorization answer is not the expected JSON",
        )
    })?;
    let started = clock.now();
    let deadline = started.saturating_add(auth.expires_in.unwrap_or(600));
    let mut interval = auth.interval.unwrap_or(5).max(1);

    let _ = writeln!(out, "To log in, open {}", safe(&auth.verification_uri));
    let _ = writeln!(out, "and enter the code: {}", safe(&auth.user_code));
    if let Some(c) = &auth.verification_uri_complete {
        let _ = writeln!(out, "(or open {})", safe(c));
    }
    let _ = writeln!(out, "Waiting for you to approve…");
    let _ = out.flush();

    loop {
        clock.sleep(Duration::from_secs(interval));
        if clock.now() >= deadline {
            return Err(login_err(
                issuer,
                "the code expired before it was approved; run `layercrypt login` again",
            ));
        }
        let device_code = Zeroizing::new(auth.device_code.clone());
        let resp = http
            .post(&d.token_endpoint)
            .form(&[
                ("grant_type", GRANT_DEVICE_CODE),
                ("device_code", device_code.as_str()),
                ("client_id", params.client_id.as_str()),
            ])
            .send()
            .map_err(|e| login_err(issuer, format!("polling the token endpoint failed: {e}")))?;
        let status = resp.status();
        let body = read_bounded(resp, "token").map_err(|r| login_err(issuer, r))?;
        if status.is_success() {
            // Done: never poll a redeemed code again.
            return parse_tokens(issuer, &params.client_id, &body, clock.now(), None);
        }
        let err: OAuthError = serde_json::from_slice(&body)
            .map_err(|_| login_err(issuer, format!("the token endpoint answered HTTP {status}")))?;
        debug!(error = %err.error, "device flow poll");
        match err.error.as_str() {
            "authorization_pending" => {}
            "slow_down" => interval += 5,
            "expired_token" => {
                return Err(login_err(
                    issuer,
                    "the code expired before it was approved; run `layercrypt login` again",
                ))
            }
            "access_denied" => return Err(login_err(issuer, "the login was denied")),
            other => {
                let d = err
                    .error_description
                    .as_deref()
                    .map(|d| format!(": {}", safe(d)))
                    .unwrap_or_default();
                return Err(login_err(
                    issuer,
                    format!("the token endpoint refused: {}{d}", safe(other)),
                ));
            }
        }
    }
}

/// Refreshes stored tokens with their refresh token at `now`.
pub fn refresh(stored: &StoredTokens, now: u64) -> Result<StoredTokens> {
    let issuer = trim_issuer(&stored.issuer);
    let refresh_token = stored
        .refresh_token
        .as_deref()
        .ok_or_else(|| login_err(issuer, "no refresh token stored; run `layercrypt login`"))?;
    let http = http_client(REQUEST_TIMEOUT)?;
    let d = discover(&http, issuer)?;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", stored.client_id.as_str()),
    ];
    let body = match post_grant(
        &http,
        issuer,
        &d.token_endpoint,
        &form,
        "refreshing the token",
    )? {
        Ok(body) => body,
        Err(code) => {
            return Err(login_err(
                issuer,
                format!(
                    "the refresh token was refused ({}); run `layercrypt login`",
                    safe(&code)
                ),
            ))
        }
    };
    parse_tokens(issuer, &stored.client_id, &body, now, Some(refresh_token))
}

/// The OAuth 2.0 client credentials grant (RFC 6749 §4.4) at the issuer's token endpoint (found
/// by discovery): an access token for a service or robot account, e.g. a worker node. The
/// secret is sent in the form body (`client_secret_post`), as Check-in and Keycloak accept.
pub fn client_credentials(
    issuer: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
    now: u64,
) -> Result<StoredTokens> {
    let issuer = trim_issuer(issuer);
    let http = http_client(REQUEST_TIMEOUT)?;
    let d = discover(&http, issuer)?;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let body = match post_grant(
        &http,
        issuer,
        &d.token_endpoint,
        &form,
        "client credentials grant",
    )? {
        Ok(body) => body,
        Err(code) => {
            return Err(login_err(
                issuer,
                format!(
                "the client credentials of {} were refused ({}); check client_id and the secret",
                safe(client_id),
                safe(&code)
            ),
            ))
        }
    };
    parse_tokens(issuer, client_id, &body, now, None)
}

/// POSTs a grant to the token endpoint. `Ok(Ok(body))` on success, `Ok(Err(code))` with the
/// OAuth error code (or HTTP status) when the issuer refused it, `Err` when it was unreachable.
fn post_grant(
    http: &Client,
    issuer: &str,
    token_endpoint: &str,
    form: &[(&str, &str)],
    what: &str,
) -> Result<std::result::Result<Zeroizing<Vec<u8>>, String>> {
    let resp = http
        .post(token_endpoint)
        .form(form)
        .send()
        .map_err(|e| login_err(issuer, format!("{what} failed: {e}")))?;
    let status = resp.status();
    let body = read_bounded(resp, "token").map_err(|r| login_err(issuer, r))?;
    if status.is_success() {
        return Ok(Ok(body));
    }
    Ok(Err(serde_json::from_slice::<OAuthError>(&body)
        .map(|e| e.error)
        .unwrap_or_else(|_| status.to_string())))
}

fn safe(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A tiny issuer: discovery, device authorization, and a token endpoint that answers the
    /// device-code polls from `script` in turn (then 500), and refresh requests.
    struct Issuer {
        url: String,
        polls: Arc<AtomicUsize>,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    fn start_issuer(script: Vec<(u16, &'static str)>) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let polls = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (u, p, b) = (url.clone(), polls.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                b.lock().expect("lock").push(body.clone());
                let (status, reply) = match path.as_str() {
                    "/.well-known/openid-configuration" => (
                        200,
                        format!(
                            r#"{{"issuer":"{u}","token_endpoint":"{u}/token","device_authorization_endpoint":"{u}/device"}}"#
                        ),
                    ),
                    "/device" => (
                        200,
                        format!(
                            r#"{{"device_code":"DEV-SECRET","user_code":"ABCD-EFGH","verification_uri":"{u}/verify","expires_in":600,"interval":5}}"#
                        ),
                    ),
                    "/token" if body.contains("grant_type=client_credentials") => {
                        if body.contains("client_secret=s3cret") {
                            (200, r#"{"access_token":"robot-token","expires_in":300,"token_type":"Bearer"}"#.to_owned())
                        } else {
                            (401, r#"{"error":"invalid_client"}"#.to_owned())
                        }
                    }
                    "/token" if body.contains("grant_type=refresh_token") => (
                        200,
                        r#"{"access_token":"refreshed","expires_in":3599,"token_type":"Bearer"}"#
                            .to_owned(),
                    ),
                    "/token" => {
                        let n = p.fetch_add(1, Ordering::SeqCst);
                        match script.get(n) {
                            Some((s, r)) => (*s, (*r).to_owned()),
                            None => (500, "{}".to_owned()),
                        }
                    }
                    _ => (404, "{}".to_owned()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Issuer { url, polls, bodies }
    }

    struct TestClock {
        now: Cell<u64>,
        sleeps: std::cell::RefCell<Vec<u64>>,
    }

    impl Clock for TestClock {
        fn now(&self) -> u64 {
            self.now.get()
        }
        fn sleep(&self, d: Duration) {
            self.sleeps.borrow_mut().push(d.as_secs());
            self.now.set(self.now.get() + d.as_secs());
        }
    }

    fn clock() -> TestClock {
        TestClock {
            now: Cell::new(1_000_000),
            sleeps: Default::default(),
        }
    }

    const PENDING: (u16, &str) = (400, r#"{"error":"authorization_pending"}"#);
    const SLOW: (u16, &str) = (400, r#"{"error":"slow_down"}"#);
    const OK: (u16, &str) = (
        200,
        r#"{"access_token":"eyJ.access","expires_in":3599,"refresh_token":"refresh-1","token_type":"Bearer"}"#,
    );

    #[test]
    fn device_flow_pending_slow_down_success_then_no_more_polls() {
        let issuer = start_issuer(vec![PENDING, SLOW, OK, OK]);
        let params = LoginParams {
            issuer: issuer.url.clone(),
            ..Default::default()
        };
        let clock = clock();
        let mut out = Vec::new();
        let tokens = device_login(&params, &mut out, &clock).expect("login");
        assert_eq!(tokens.access_token, "eyJ.access");
        assert_eq!(tokens.refresh_token.as_deref(), Some("refresh-1"));
        assert_eq!(tokens.issuer, issuer.url);
        assert_eq!(tokens.client_id, DEFAULT_CLIENT_ID);
        assert_eq!(tokens.expires_at, 1_000_000 + 5 + 5 + 10 + 3599);
        // Interval 5, then 5 more after slow_down.
        assert_eq!(*clock.sleeps.borrow(), vec![5, 5, 10]);
        let shown = String::from_utf8(out).expect("utf8");
        assert!(
            shown.contains(&format!("{}/verify", issuer.url)) && shown.contains("ABCD-EFGH"),
            "{shown}"
        );
        assert!(!shown.contains("DEV-SECRET"));
        // Stopped after the success: no further poll, even a while later.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(issuer.polls.load(Ordering::SeqCst), 3);
        let bodies = issuer.bodies.lock().expect("lock");
        assert!(bodies
            .iter()
            .any(|b| b.contains("scope=openid+eduperson_entitlement+voperson_id+offline_access")));
        assert!(bodies.iter().any(|b| b
            .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
            && b.contains("device_code=DEV-SECRET")
            && b.contains("client_id=layercrypt-cli")));
    }

    #[test]
    fn client_credentials_grant() {
        let issuer = start_issuer(vec![]);
        let t = client_credentials(&issuer.url, "node-1", "s3cret", None, 100).expect("token");
        assert_eq!(t.access_token, "robot-token");
        assert_eq!(t.expires_at, 400);
        assert!(t.refresh_token.is_none());
        let err = client_credentials(&issuer.url, "node-1", "wrong", Some("openid"), 100)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("client credentials of node-1 were refused (invalid_client)"),
            "{err}"
        );
        assert!(!err.contains("wrong"));
        let bodies = issuer.bodies.lock().expect("lock");
        assert!(bodies
            .iter()
            .any(|b| b.contains("client_id=node-1") && b.contains("scope=openid")));
    }

    #[test]
    fn device_flow_stops_on_denied_and_expired() {
        for (reply, expect) in [
            ((400, r#"{"error":"access_denied"}"#), "denied"),
            ((400, r#"{"error":"expired_token"}"#), "expired"),
            (
                (
                    400,
                    r#"{"error":"invalid_client","error_description":"unknown client"}"#,
                ),
                "unknown client",
            ),
        ] {
            let issuer = start_issuer(vec![PENDING, reply, OK]);
            let params = LoginParams {
                issuer: issuer.url.clone(),
                ..Default::default()
            };
            let err = device_login(&params, &mut Vec::new(), &clock())
                .expect_err("fails")
                .to_string();
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains("DEV-SECRET"));
            assert_eq!(issuer.polls.load(Ordering::SeqCst), 2);
        }
    }

    #[test]
    fn device_flow_gives_up_at_the_deadline() {
        let issuer = start_issuer(vec![PENDING; 200]);
        let params = LoginParams {
            issuer: issuer.url.clone(),
            ..Default::default()
        };
        let err = device_login(&params, &mut Vec::new(), &clock())
            .expect_err("expires")
            .to_string();
        assert!(err.contains("expired"), "{err}");
        // 600 s at 5 s: the poll at the deadline is not made.
        assert_eq!(issuer.polls.load(Ordering::SeqCst), 119);
    }

    #[test]
    fn refresh_keeps_the_refresh_token_when_none_is_returned() {
        let issuer = start_issuer(vec![]);
        let stored = StoredTokens {
            issuer: issuer.url.clone(),
            client_id: "c".into(),
            access_token: "old".into(),
            refresh_token: Some("r-1".into()),
            expires_at: 10,
        };
        let fresh = refresh(&stored, 100).expect("refresh");
        assert_eq!(fresh.access_token, "refreshed");
        assert_eq!(fresh.refresh_token.as_deref(), Some("r-1"));
        assert_eq!(fresh.expires_at, 100 + 3599);
        let bodies = issuer.bodies.lock().expect("lock");
        assert!(bodies
            .iter()
            .any(|b| b.contains("refresh_token=r-1") && b.contains("client_id=c")));
    }

    #[test]
    fn discovery_must_name_the_same_issuer() {
        let issuer = start_issuer(vec![]);
        let http = http_client(Duration::from_secs(5)).expect("client");
        assert!(discover(&http, &format!("{}/", issuer.url)).is_ok());
        let other = issuer.url.replace("127.0.0.1", "localhost");
        let err = discover(&http, &other)
            .expect_err("other issuer")
            .to_string();
        assert!(err.contains("names another issuer"), "{err}");
    }
}
