//! Access tokens for the broker, and where they come from. In order:
//! 1. `--token-file FILE` (first line),
//! 2. `OIDC_ACCESS_TOKEN`,
//! 3. oidc-agent: `oidc-token ACCOUNT` when `--oidc-agent-account` / `OIDC_AGENT_ACCOUNT` is set,
//! 4. the login store written by `layercrypt login` (refreshed when it has < 60 s left).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tracing::debug;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Environment variable holding an access token.
pub const ENV_ACCESS_TOKEN: &str = "OIDC_ACCESS_TOKEN";
/// Environment variable naming the oidc-agent account.
pub const ENV_OIDC_AGENT_ACCOUNT: &str = "OIDC_AGENT_ACCOUNT";
/// A stored access token is refreshed when it has less than this many seconds left.
pub const REFRESH_MARGIN_SECS: u64 = 60;
/// Largest token accepted (Check-in access tokens are about 1,400 characters).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// An OAuth access token. Zeroized on drop; no `Debug` of the value; reach it through
/// [`AccessToken::expose_secret`].
#[derive(Clone)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Checks the shape (non-empty, printable ASCII without spaces, bounded) and wraps it.
    pub fn new(token: String) -> Result<Self> {
        let token = Zeroizing::new(token);
        let t = token.trim();
        if t.is_empty() {
            return Err(Error::Token("the token is empty".into()));
        }
        if t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Token("this does not look like an access token (one line of printable characters expected)".into()));
        }
        Ok(Self(Zeroizing::new(t.to_owned())))
    }

    /// The token.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken([redacted; {} bytes])", self.0.len())
    }
}

/// What `layercrypt login` keeps: `tokens.json`.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct StoredTokens {
    /// The issuer the tokens are from.
    pub issuer: String,
    /// The client id they were issued to.
    pub client_id: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, if the issuer gave one (`offline_access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix time (seconds) at which the access token expires.
    pub expires_at: u64,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl StoredTokens {
    /// True if the access token has less than [`REFRESH_MARGIN_SECS`] left at `now`.
    pub fn needs_refresh(&self, now: u64) -> bool {
        self.expires_at < now.saturating_add(REFRESH_MARGIN_SECS)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token store file.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The store at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// `<config dir>/tokens.json`.
    pub fn default_path() -> Result<PathBuf> {
        Ok(crate::config::config_dir()?.join("tokens.json"))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: String) -> Error {
        Error::File {
            path: self.path.clone(),
            reason,
        }
    }

    /// Reads the stored tokens; `None` if there is no store.
    pub fn load(&self) -> Result<Option<StoredTokens>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(e.to_string())),
        };
        let mut buf = Zeroizing::new(Vec::new());
        (&mut f)
            .take(256 * 1024)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(e.to_string()))?;
        serde_json::from_slice(&buf).map(Some).map_err(|_| {
            self.err("not a layercrypt token store; run `layercrypt login` again".into())
        })
    }

    /// Writes the tokens atomically: a new file of mode 0600 in the same directory (created
    /// with mode 0700 if needed), synced, then renamed over the old one.
    pub fn save(&self, tokens: &StoredTokens) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.err(format!("creating {}: {e}", dir.display())))?;
        let json =
            Zeroizing::new(serde_json::to_vec_pretty(tokens).map_err(|e| self.err(e.to_string()))?);
        layercrypt_ocicrypt::secretfile::write_secret_atomic(&self.path, &json)
            .map_err(|e| self.err(format!("writing: {e}")))
    }

    /// Removes the store (`layercrypt logout`); no store is fine.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err(e.to_string())),
            _ => Ok(()),
        }
    }

    /// The stored access token at `now`, refreshed through `refresh` (and saved) when it has
    /// less than [`REFRESH_MARGIN_SECS`] left. `None` if nobody logged in.
    pub fn access_token(
        &self,
        now: u64,
        refresh: &dyn Fn(&StoredTokens) -> Result<StoredTokens>,
    ) -> Result<Option<AccessToken>> {
        let Some(stored) = self.load()? else {
            return Ok(None);
        };
        if !stored.needs_refresh(now) {
            return AccessToken::new(stored.access_token.clone()).map(Some);
        }
        if stored.refresh_token.is_none() {
            if stored.expires_at > now {
                return AccessToken::new(stored.access_token.clone()).map(Some);
            }
            return Err(Error::Token(format!(
                "the token from `layercrypt login` ({}) has expired and there is no refresh token: run `layercrypt login`",
                stored.issuer
            )));
        }
        debug!(issuer = %stored.issuer, "refreshing the stored access token");
        let fresh = refresh(&stored)?;
        self.save(&fresh)?;
        AccessToken::new(fresh.access_token.clone()).map(Some)
    }
}

/// Which source a token came from (for `-v` output and `layercrypt login --status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token-file`.
    File(PathBuf),
    /// `OIDC_ACCESS_TOKEN`.
    Env,
    /// `oidc-token ACCOUNT`.
    OidcAgent(String),
    /// The login store.
    Store(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "token file {}", p.display()),
            TokenSource::Env => write!(f, "${ENV_ACCESS_TOKEN}"),
            TokenSource::OidcAgent(a) => write!(f, "oidc-agent account {a}"),
            TokenSource::Store(p) => write!(f, "login store {}", p.display()),
        }
    }
}

/// Where to look for a token.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--oidc-agent-account` (the caller also reads `OIDC_AGENT_ACCOUNT` into it).
    pub oidc_agent_account: Option<String>,
    /// The program that prints an oidc-agent token (`oidc-token`).
    pub oidc_token_program: PathBuf,
    /// The login store.
    pub store: TokenStore,
}

impl TokenOptions {
    /// Defaults: no file, no account, `oidc-token`, the default store.
    pub fn new(store: TokenStore) -> Self {
        Self {
            token_file: None,
            oidc_agent_account: None,
            oidc_token_program: "oidc-token".into(),
            store,
        }
    }
}

/// Reads a token file: its first line.
pub fn read_token_file(path: &Path) -> Result<AccessToken> {
    let err = |reason: String| Error::Token(format!("{}: {reason}", path.display()));
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = Zeroizing::new(String::new());
    f.take(MAX_TOKEN_LEN as u64 + 2)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    let first = text.lines().next().unwrap_or_default().to_owned();
    AccessToken::new(first).map_err(|_| {
        err("no token in its first line (one line of printable characters expected)".into())
    })
}

/// Runs `oidc-token ACCOUNT`.
pub fn oidc_agent_token(program: &Path, account: &str) -> Result<AccessToken> {
    let out = Command::new(program).arg(account).output().map_err(|e| {
        Error::Token(format!(
            "cannot run {} for oidc-agent account {account}: {e} (is oidc-agent installed and started?)",
            program.display()
        ))
    })?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        let msg: String = String::from_utf8_lossy(&out.stderr)
            .trim()
            .chars()
            .take(300)
            .collect();
        return Err(Error::Token(format!(
            "oidc-token {account} failed ({}): {msg}",
            out.status
        )));
    }
    let text = Zeroizing::new(String::from_utf8_lossy(&stdout).trim().to_owned());
    AccessToken::new(text.to_string())
        .map_err(|_| Error::Token(format!("oidc-token {account} printed no usable token")))
}

/// The first token source that has a token: see the module documentation. `env` reads an
/// environment variable; `refresh` refreshes a stored token (see [`crate::login::refresh`]).
pub fn access_token(
    opts: &TokenOptions,
    env: &dyn Fn(&str) -> Option<String>,
    now: u64,
    refresh: &dyn Fn(&StoredTokens) -> Result<StoredTokens>,
) -> Result<(AccessToken, TokenSource)> {
    if let Some(path) = &opts.token_file {
        return Ok((read_token_file(path)?, TokenSource::File(path.clone())));
    }
    if let Some(t) = env(ENV_ACCESS_TOKEN).filter(|t| !t.trim().is_empty()) {
        let t = AccessToken::new(t).map_err(|_| {
            Error::Token(format!(
                "${ENV_ACCESS_TOKEN} is not one line of printable characters"
            ))
        })?;
        return Ok((t, TokenSource::Env));
    }
    if let Some(account) = opts.oidc_agent_account.as_deref().filter(|a| !a.is_empty()) {
        return Ok((
            oidc_agent_token(&opts.oidc_token_program, account)?,
            TokenSource::OidcAgent(account.to_owned()),
        ));
    }
    if let Some(t) = opts.store.access_token(now, refresh)? {
        return Ok((t, TokenSource::Store(opts.store.path().to_owned())));
    }
    Err(Error::Token(
        "no access token: run `layercrypt login`, or give --token-file, OIDC_ACCESS_TOKEN or --oidc-agent-account".into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn stored(access: &str, refresh: Option<&str>, expires_at: u64) -> StoredTokens {
        StoredTokens {
            issuer: "https://issuer.example".into(),
            client_id: "layercrypt-cli".into(),
            access_token: access.into(),
            refresh_token: refresh.map(str::to_owned),
            expires_at,
        }
    }

    fn no_refresh(_: &StoredTokens) -> Result<StoredTokens> {
        panic!("no refresh expected")
    }

    #[test]
    fn store_is_0600_and_round_trips() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = TokenStore::new(dir.path().join("sub/tokens.json"));
        assert!(store.load().expect("load").is_none());
        store.save(&stored("a1", Some("r1"), 1000)).expect("save");
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(dir.path().join("sub"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        // Overwriting keeps the mode and leaves no temp file behind.
        store.save(&stored("a2", Some("r2"), 2000)).expect("save");
        assert_eq!(
            std::fs::metadata(store.path())
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub"))
                .expect("dir")
                .count(),
            1
        );
        let back = store.load().expect("load").expect("some");
        assert_eq!(back.access_token, "a2");
        assert_eq!(back.refresh_token.as_deref(), Some("r2"));
        assert!(!format!("{back:?}").contains("a2"));
    }

    #[test]
    fn refreshes_when_less_than_a_minute_is_left() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = TokenStore::new(dir.path().join("tokens.json"));
        store.save(&stored("old", Some("r1"), 1000)).expect("save");
        // 61 s left: used as is.
        let t = store
            .access_token(939, &no_refresh)
            .expect("ok")
            .expect("some");
        assert_eq!(t.expose_secret(), "old");
        // 59 s left: refreshed once, and the new tokens are saved.
        let calls = AtomicUsize::new(0);
        let refresh = |s: &StoredTokens| -> Result<StoredTokens> {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(s.refresh_token.as_deref(), Some("r1"));
            Ok(stored("new", Some("r2"), 941 + 3599))
        };
        let t = store
            .access_token(941, &refresh)
            .expect("ok")
            .expect("some");
        assert_eq!(t.expose_secret(), "new");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let saved = store.load().expect("load").expect("some");
        assert_eq!(
            (saved.access_token.as_str(), saved.refresh_token.as_deref()),
            ("new", Some("r2"))
        );
        let t = store
            .access_token(942, &no_refresh)
            .expect("ok")
            .expect("some");
        assert_eq!(t.expose_secret(), "new");
        // Expired without a refresh token: log in again.
        store.save(&stored("x", None, 1000)).expect("save");
        let err = store
            .access_token(1001, &no_refresh)
            .expect_err("expired")
            .to_string();
        assert!(err.contains("layercrypt login"), "{err}");
    }

    #[test]
    fn sources_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = TokenStore::new(dir.path().join("tokens.json"));
        store
            .save(&stored("from-store", None, u64::MAX))
            .expect("save");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        let agent = dir.path().join("oidc-token");
        std::fs::write(
            &agent,
            "#!/bin/sh\n[ \"$1\" = egi ] && echo from-agent || exit 3\n",
        )
        .expect("write");
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");

        let mut opts = TokenOptions::new(store);
        opts.oidc_token_program = agent;
        opts.oidc_agent_account = Some("egi".into());
        opts.token_file = Some(file.clone());
        let with_env = |k: &str| (k == ENV_ACCESS_TOKEN).then(|| "from-env".to_owned());
        let no_env = |_: &str| None;

        let (t, s) = access_token(&opts, &with_env, 0, &no_refresh).expect("token");
        assert_eq!(
            (t.expose_secret(), s),
            ("from-file", TokenSource::File(file))
        );
        opts.token_file = None;
        let (t, s) = access_token(&opts, &with_env, 0, &no_refresh).expect("token");
        assert_eq!((t.expose_secret(), s), ("from-env", TokenSource::Env));
        let (t, s) = access_token(&opts, &no_env, 0, &no_refresh).expect("token");
        assert_eq!(
            (t.expose_secret(), s),
            ("from-agent", TokenSource::OidcAgent("egi".into()))
        );
        opts.oidc_agent_account = Some("other".into());
        let err = access_token(&opts, &no_env, 0, &no_refresh)
            .expect_err("agent fails")
            .to_string();
        assert!(err.contains("oidc-token other failed"), "{err}");
        opts.oidc_agent_account = None;
        let (t, s) = access_token(&opts, &no_env, 0, &no_refresh).expect("token");
        assert_eq!(t.expose_secret(), "from-store");
        assert!(matches!(s, TokenSource::Store(_)));
        opts.store.remove().expect("rm");
        let err = access_token(&opts, &no_env, 0, &no_refresh)
            .expect_err("none")
            .to_string();
        assert!(err.contains("run `layercrypt login`"), "{err}");
    }

    #[test]
    fn token_shape() {
        assert!(AccessToken::new("  eyJ.a.b \n".into()).is_ok());
        assert!(AccessToken::new(String::new()).is_err());
        assert!(AccessToken::new("a b".into()).is_err());
        let t = AccessToken::new("secret".into()).expect("token");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
