//! The user's configuration: `$XDG_CONFIG_HOME/layercrypt/config.toml` (else
//! `~/.config/layercrypt/config.toml`):
//!
//! ```toml
//! broker = "https://broker.example.org"
//! issuer = "https://aai.egi.eu/auth/realms/egi"
//! client_id = "layercrypt-cli"
//! broker_ca = "/etc/layercrypt/broker-ca.pem"   # CA of the broker's TLS certificate
//! ```
//!
//! The broker is overridden by `LAYERCRYPT_BROKER` and `--broker` (in that order of strength).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Environment variable that overrides the configured broker.
pub const ENV_BROKER: &str = "LAYERCRYPT_BROKER";
/// Largest config file read.
const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// `$XDG_CONFIG_HOME/layercrypt` (an absolute `XDG_CONFIG_HOME` only, as the XDG spec says),
/// else `~/.config/layercrypt`.
pub fn config_dir() -> Result<PathBuf> {
    config_dir_from(
        std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
        dirs::home_dir(),
    )
}

fn config_dir_from(xdg: Option<PathBuf>, home: Option<PathBuf>) -> Result<PathBuf> {
    match (xdg.filter(|p| p.is_absolute()), home) {
        (Some(x), _) => Ok(x.join("layercrypt")),
        (None, Some(h)) => Ok(h.join(".config").join("layercrypt")),
        (None, None) => Err(Error::Usage(
            "cannot find the home directory: set XDG_CONFIG_HOME or HOME".into(),
        )),
    }
}

/// The user configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Broker base URL.
    pub broker: Option<String>,
    /// OIDC issuer for `layercrypt login`.
    pub issuer: Option<String>,
    /// OAuth client id for `layercrypt login`.
    pub client_id: Option<String>,
    /// CA certificates (PEM) that issued the broker's TLS certificate, trusted in addition to
    /// the system's (a broker with an IGTF host certificate).
    pub broker_ca: Option<PathBuf>,
}

impl UserConfig {
    /// The default path of the file.
    pub fn default_path() -> Result<PathBuf> {
        Ok(config_dir()?.join("config.toml"))
    }

    /// Reads `path`; a missing file is the empty configuration.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |reason: String| Error::File {
            path: path.to_owned(),
            reason,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        if meta.len() > MAX_CONFIG_LEN {
            return Err(err(format!("larger than {MAX_CONFIG_LEN} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses the TOML text.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("not a layercrypt config: {}", e.message()))
    }

    /// The broker: `--broker`, else `LAYERCRYPT_BROKER`, else the file.
    pub fn broker(&self, flag: Option<&str>, env: Option<&str>) -> Option<String> {
        flag.or(env.filter(|s| !s.is_empty()))
            .or(self.broker.as_deref())
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_overrides() {
        let c = UserConfig::parse("broker = \"https://b.example.org\"\nissuer = \"https://i\"\n")
            .expect("toml");
        assert_eq!(
            c.broker(None, None).as_deref(),
            Some("https://b.example.org")
        );
        assert_eq!(
            c.broker(None, Some("https://env")).as_deref(),
            Some("https://env")
        );
        assert_eq!(
            c.broker(Some("https://flag"), Some("https://env"))
                .as_deref(),
            Some("https://flag")
        );
        assert_eq!(UserConfig::default().broker(None, Some("")), None);
        assert!(UserConfig::parse("brokr = \"x\"").is_err());
    }

    #[test]
    fn config_dir_follows_xdg() {
        let d = config_dir_from(Some("/x".into()), Some("/home/u".into())).expect("dir");
        assert_eq!(d, PathBuf::from("/x/layercrypt"));
        let d = config_dir_from(Some("relative".into()), Some("/home/u".into())).expect("dir");
        assert_eq!(d, PathBuf::from("/home/u/.config/layercrypt"));
        assert!(config_dir_from(None, None).is_err());
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(
            UserConfig::load(&dir.path().join("none.toml")).expect("load"),
            UserConfig::default()
        );
    }
}
