//! Registry credentials: `--creds`, auth files and Docker credential helpers.
//!
//! Lookup order (the first source that has something for the registry wins):
//! 1. `--creds user:pass` ([`TransportOptions::creds`]);
//! 2. [`TransportOptions::auth_file`] if set (then no other file is read);
//! 3. otherwise, in turn: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
//!    (podman/skopeo), `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (docker).
//!
//! Inside one file: a `credHelpers` entry for the host, then an `auths` entry (the most
//! specific of `host/repo/path`, …, `host`; URL keys such as Docker Hub's
//! `https://index.docker.io/v1/` match by host), then the `credsStore` helper.
//!
//! Passwords live in [`Zeroizing`] strings and are reached through
//! [`Credentials::expose_password`]; they never appear in `Debug`, logs or errors.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::transport::TransportOptions;

/// Docker Hub's registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The key Docker Hub logins are stored under in `config.json` and the server URL credential
/// helpers are asked about.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or access token) for one registry.
pub struct Credentials {
    username: String,
    password: Zeroizing<String>,
    /// Where they came from, for messages ("--creds", "auth file /path").
    origin: String,
}

impl Credentials {
    /// Credentials from their parts; `origin` says where they came from, for messages.
    pub fn new(username: String, password: Zeroizing<String>, origin: String) -> Self {
        Self {
            username,
            password,
            origin,
        }
    }

    /// Parses `user:pass` (the password may contain `:`; the user name may not be empty).
    pub fn parse_user_pass(value: &str, origin: &str) -> std::result::Result<Self, String> {
        match value.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Ok(Self::new(
                user.to_owned(),
                Zeroizing::new(pass.to_owned()),
                origin.to_owned(),
            )),
            _ => Err(format!(
                "{origin}: expected USER:PASSWORD (the value is not shown)"
            )),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password or token. Every use can be found by grepping for this name.
    pub fn expose_password(&self) -> &str {
        &self.password
    }

    /// Where the credentials came from ("--creds", "auth file /run/user/1000/containers/auth.json").
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

/// Finds credentials for `registry` (as written in the reference, e.g. `docker.io`,
/// `localhost:5000`) and `repository` (e.g. `library/alpine`). `Ok(None)` means anonymous.
pub fn lookup(
    registry: &str,
    repository: &str,
    opts: &TransportOptions,
) -> Result<Option<Credentials>> {
    lookup_with_env(registry, repository, opts, &|name| std::env::var_os(name))
}

/// [`lookup`] with the environment passed in (for tests).
pub(crate) fn lookup_with_env(
    registry: &str,
    repository: &str,
    opts: &TransportOptions,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<Credentials>> {
    if let Some(creds) = &opts.creds {
        return Credentials::parse_user_pass(creds, "--creds")
            .map(Some)
            .map_err(|reason| Error::Registry {
                registry: registry.to_owned(),
                reason,
            });
    }
    if let Some(file) = &opts.auth_file {
        let Some(auth) = AuthFile::read(file, registry)? else {
            return Err(Error::Registry {
                registry: registry.to_owned(),
                reason: format!(
                    "auth file {} does not exist: check the path, or log in with `podman login --authfile {}`",
                    file.display(),
                    file.display()
                ),
            });
        };
        return auth.credentials(registry, repository, file);
    }
    for file in default_auth_files(env) {
        let Some(auth) = AuthFile::read(&file, registry)? else {
            continue;
        };
        if let Some(creds) = auth.credentials(registry, repository, &file)? {
            tracing::debug!(
                registry,
                origin = creds.origin(),
                "using stored credentials"
            );
            return Ok(Some(creds));
        }
    }
    tracing::debug!(
        registry,
        "no credentials found; accessing the registry anonymously"
    );
    Ok(None)
}

/// The auth files read when none is given, in order.
pub(crate) fn default_auth_files(env: &dyn Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(f));
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    if let Some(dir) = env("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        files.push(Path::new(&dir).join("config.json"));
    } else if let Some(home) = env("HOME").filter(|v| !v.is_empty()) {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// `auth.json` / `config.json`. Everything else in the file is ignored.
#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry. Wiped on drop; no Debug.
#[derive(Deserialize, Default, Zeroize, ZeroizeOnDrop)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl AuthFile {
    /// Reads and parses `path`; `Ok(None)` if it does not exist.
    fn read(path: &Path, registry: &str) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    action: "reading auth file",
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::parse(&text, path, registry).map(Some)
    }

    fn parse(text: &str, path: &Path, registry: &str) -> Result<Self> {
        // serde_json's messages can quote the offending value (which may be a secret): report
        // only the position and the kind of error.
        serde_json::from_str(text).map_err(|e| Error::Malformed {
            what: format!("auth file {} (while looking up {registry})", path.display()),
            reason: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
    }

    fn credentials(
        &self,
        registry: &str,
        repository: &str,
        path: &Path,
    ) -> Result<Option<Credentials>> {
        let host = normalize_host(registry);
        if let Some((_, helper)) = self
            .cred_helpers
            .iter()
            .find(|(key, _)| normalize_key(key) == host)
        {
            return run_helper(helper, registry, path);
        }
        if let Some(entry) = self.best_entry(&host, repository) {
            if let Some(creds) = entry.to_credentials(registry, path)? {
                return Ok(Some(creds));
            }
        }
        match &self.creds_store {
            Some(store) if !store.is_empty() => run_helper(store, registry, path),
            _ => Ok(None),
        }
    }

    /// The most specific `auths` entry: `host/a/b`, then `host/a`, then `host`.
    fn best_entry(&self, host: &str, repository: &str) -> Option<&AuthEntry> {
        let mut scope = format!("{host}/{repository}");
        loop {
            if let Some((_, entry)) = self
                .auths
                .iter()
                .find(|(key, _)| normalize_key(key) == scope)
            {
                return Some(entry);
            }
            match scope.rfind('/') {
                Some(i) => scope.truncate(i),
                None => return None,
            }
        }
    }
}

impl AuthEntry {
    fn to_credentials(&self, registry: &str, path: &Path) -> Result<Option<Credentials>> {
        let origin = format!("auth file {}", path.display());
        let malformed = |reason: &str| Error::Malformed {
            what: format!("entry for {registry} in auth file {}", path.display()),
            reason: reason.to_owned(),
        };
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| malformed("`auth` is not base64 of USER:PASSWORD"))?,
            );
            let text = std::str::from_utf8(&decoded)
                .map_err(|_| malformed("`auth` is not base64 of UTF-8 USER:PASSWORD"))?;
            return Credentials::parse_user_pass(text, &origin)
                .map(Some)
                .map_err(|_| malformed("`auth` is not base64 of USER:PASSWORD"));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials::new(
                u.clone(),
                Zeroizing::new(p.clone()),
                origin,
            ))),
            _ if self.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) => {
                Err(Error::Unsupported(format!(
                    "the login for {registry} in auth file {} is an identity (OAuth refresh) \
                     token, which layercrypt cannot use: log in with a password or access token, \
                     or pass --creds",
                    path.display()
                )))
            }
            _ => Ok(None),
        }
    }
}

/// The registry name used to match auth-file keys: Docker Hub's aliases become `docker.io`.
fn normalize_host(registry: &str) -> String {
    let host = registry.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

/// An auth-file key as `host[/path]`: URL keys (`https://index.docker.io/v1/`) keep only
/// their host (as docker matches them); plain keys keep their repository path (as podman).
fn normalize_key(key: &str) -> String {
    let (had_scheme, rest) = match key.split_once("://") {
        Some((_, rest)) => (true, rest),
        None => (false, key),
    };
    let rest = rest.trim_end_matches('/');
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host = normalize_host(host);
    match path {
        Some(p) if !had_scheme => format!("{host}/{p}"),
        _ => host,
    }
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin.
fn run_helper(helper: &str, registry: &str, path: &Path) -> Result<Option<Credentials>> {
    let fail = |reason: String| Error::Registry {
        registry: registry.to_owned(),
        reason,
    };
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(fail(format!(
            "auth file {} names credential helper {helper:?}, which is not a valid helper name",
            path.display()
        )));
    }
    let program = format!("docker-credential-{helper}");
    if find_on_path(&program).is_none() {
        return Err(fail(format!(
            "auth file {} says to get credentials from `{program}`, which is not installed or \
             not on PATH: install it, or pass --creds USER:PASSWORD",
            path.display()
        )));
    }
    let server = if normalize_host(registry) == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY
    } else {
        registry
    };
    tracing::debug!(registry, helper = %program, "asking credential helper");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run `{program} get`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("cannot write to `{program} get`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot run `{program} get`: {e}")))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        // Helpers report "credentials not found in native keychain" with a failure status:
        // that means no login, which is anonymous access, not an error. Their output carries
        // no secret in that case.
        let not_found = String::from_utf8_lossy(&stdout)
            .to_ascii_lowercase()
            .contains("not found")
            || first.to_ascii_lowercase().contains("not found");
        if not_found {
            tracing::debug!(registry, helper = %program, "credential helper has no login");
            return Ok(None);
        }
        return Err(fail(format!(
            "`{program} get` failed ({}): {first}",
            out.status
        )));
    }
    #[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
    struct HelperReply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let reply: HelperReply = serde_json::from_slice(&stdout).map_err(|e| {
        fail(format!(
            "`{program} get` printed no valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if reply.username == "<token>" {
        return Err(Error::Unsupported(format!(
            "`{program}` holds an identity (OAuth refresh) token for {registry}, which layercrypt \
             cannot use: pass --creds USER:PASSWORD"
        )));
    }
    if reply.username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(
        reply.username.clone(),
        Zeroizing::new(reply.secret.clone()),
        format!("credential helper {program}"),
    )))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write auth file");
        p
    }

    fn opts_file(p: &Path) -> TransportOptions {
        TransportOptions {
            auth_file: Some(p.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn creds_win_and_split_at_first_colon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "a.json",
            r#"{"auths":{"r.example":{"auth":"eDp5"}}}"#,
        );
        let opts = TransportOptions {
            creds: Some("alice:pa:ss".into()),
            auth_file: Some(file),
            ..Default::default()
        };
        let c = lookup("r.example", "x", &opts).expect("ok").expect("some");
        assert_eq!(
            (c.username(), c.expose_password(), c.origin()),
            ("alice", "pa:ss", "--creds")
        );
        let bad = TransportOptions {
            creds: Some("nocolon-secret".into()),
            ..Default::default()
        };
        let err = lookup("r.example", "x", &bad)
            .expect_err("no colon")
            .to_string();
        assert!(!err.contains("nocolon-secret"), "{err}");
    }

    #[test]
    fn auth_file_forms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "quay.io":{{"auth":"{}"}},
                "quay.io/org/special":{{"auth":"{}"}},
                "localhost:5000":{{"username":"u","password":"p"}},
                "http://legacy.example/v2/":{{"auth":"{}"}},
                "empty.example":{{}}
            }}, "other": 1}}"#,
            b64("hub:hubpw"),
            b64("q:qpw"),
            b64("qs:qspw"),
            b64("l:lpw")
        );
        let file = write(dir.path(), "config.json", &text);
        let o = opts_file(&file);
        let get = |reg: &str, repo: &str| {
            lookup(reg, repo, &o)
                .expect("ok")
                .map(|c| format!("{}:{}", c.username(), c.expose_password()))
        };
        assert_eq!(
            get("docker.io", "library/alpine").as_deref(),
            Some("hub:hubpw")
        );
        assert_eq!(
            get("index.docker.io", "library/alpine").as_deref(),
            Some("hub:hubpw")
        );
        assert_eq!(get("quay.io", "org/other").as_deref(), Some("q:qpw"));
        assert_eq!(get("quay.io", "org/special").as_deref(), Some("qs:qspw"));
        assert_eq!(
            get("quay.io", "org/special/sub").as_deref(),
            Some("qs:qspw")
        );
        assert_eq!(get("localhost:5000", "a").as_deref(), Some("u:p"));
        assert_eq!(get("legacy.example", "a").as_deref(), Some("l:lpw"));
        assert_eq!(get("empty.example", "a"), None);
        assert_eq!(get("ghcr.io", "a"), None);
    }

    #[test]
    fn malformed_files_do_not_leak_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "bad.json",
            r#"{"auths":{"r.example":{"auth":["topsecret"]}}}"#,
        );
        let err = lookup("r.example", "x", &opts_file(&file))
            .expect_err("bad")
            .to_string();
        assert!(
            !err.contains("topsecret") && err.contains("bad.json"),
            "{err}"
        );
        let file = write(
            dir.path(),
            "bad2.json",
            r#"{"auths":{"r.example":{"auth":"!!!"}}}"#,
        );
        let err = lookup("r.example", "x", &opts_file(&file))
            .expect_err("bad")
            .to_string();
        assert!(err.contains("base64"), "{err}");
        let missing = dir.path().join("missing.json");
        let err = lookup("r.example", "x", &opts_file(&missing))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "c.json",
            r#"{"credHelpers":{"ghcr.io":"layercrypt-test-absent"},"credsStore":"also-absent-x"}"#,
        );
        let err = lookup("ghcr.io", "a", &opts_file(&file))
            .expect_err("absent")
            .to_string();
        assert!(
            err.contains("docker-credential-layercrypt-test-absent"),
            "{err}"
        );
        let err = lookup("quay.io", "a", &opts_file(&file))
            .expect_err("absent")
            .to_string();
        assert!(
            err.contains("docker-credential-also-absent-x") && err.contains("--creds"),
            "{err}"
        );
        let file = write(dir.path(), "d.json", r#"{"credsStore":"../evil"}"#);
        assert!(lookup("quay.io", "a", &opts_file(&file)).is_err());
    }

    #[test]
    fn default_files_in_order() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "REGISTRY_AUTH_FILE" => Some("/x/auth.json".into()),
                "XDG_RUNTIME_DIR" => Some("/run/user/7".into()),
                "HOME" => Some("/home/u".into()),
                _ => None,
            }
        };
        assert_eq!(
            default_auth_files(&env),
            vec![
                PathBuf::from("/x/auth.json"),
                PathBuf::from("/run/user/7/containers/auth.json"),
                PathBuf::from("/home/u/.docker/config.json"),
            ]
        );
    }

    #[test]
    fn first_default_file_with_an_entry_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(
            dir.path(),
            "a.json",
            r#"{"auths":{"other.example":{"auth":"eDp5"}}}"#,
        );
        std::fs::create_dir_all(dir.path().join("home/.docker")).expect("mkdir");
        write(
            &dir.path().join("home/.docker"),
            "config.json",
            &format!(
                r#"{{"auths":{{"r.example":{{"auth":"{}"}}}}}}"#,
                b64("d:dpw")
            ),
        );
        let home = dir.path().join("home");
        let env = |name: &str| -> Option<OsString> {
            match name {
                "REGISTRY_AUTH_FILE" => Some(a.clone().into()),
                "XDG_RUNTIME_DIR" => Some(dir.path().join("no-such-runtime").into()),
                "HOME" => Some(home.clone().into()),
                _ => None,
            }
        };
        let c = lookup_with_env("r.example", "x", &TransportOptions::default(), &env)
            .expect("ok")
            .expect("found in docker config");
        assert_eq!((c.username(), c.expose_password()), ("d", "dpw"));
        assert!(format!("{c:?}").contains("<redacted>") && !format!("{c:?}").contains("dpw"));
    }
}
