//! The layercrypt key-provider payload:
//! `{"v":1,"broker":"https://…","group":"…","version":N,"age":"<std base64 of age ciphertext>"}`.
//!
//! It names the broker, the group and the key version, so that a decryptor knows whom to ask
//! (and a worker node can refuse brokers it does not trust), and carries the layer's private
//! options encrypted to the group's age recipient.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Payload format version written and accepted.
pub const PAYLOAD_VERSION: u32 = 1;
/// Largest payload accepted (the age ciphertext of ~200 bytes plus headers is ~400 bytes).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// Largest group name.
pub const MAX_GROUP_NAME_LEN: usize = 128;

/// Errors of payload parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the layercrypt payload, or malformed.
    #[error("malformed layercrypt group payload: {0}")]
    Malformed(String),
}

/// A validated group name: 1-128 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`
/// (VO names such as `vo.example.org`, `fedcloud.egi.eu`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

impl GroupName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = PayloadError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = !s.is_empty()
            && s.len() <= MAX_GROUP_NAME_LEN
            && !s.starts_with(['.', '-'])
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(GroupName(s))
        } else {
            Err(PayloadError::Malformed(format!(
                "invalid group name {:?}: use 1-{MAX_GROUP_NAME_LEN} characters of A-Z a-z 0-9 . _ -",
                s.chars().take(MAX_GROUP_NAME_LEN + 1).collect::<String>()
            )))
        }
    }
}

impl std::str::FromStr for GroupName {
    type Err = PayloadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupName::try_from(s.to_owned())
    }
}

impl From<GroupName> for String {
    fn from(g: GroupName) -> String {
        g.0
    }
}

impl std::fmt::Display for GroupName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    broker: String,
    group: GroupName,
    version: u32,
    age: String,
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPayload {
    /// Base URL of the broker that holds the group key.
    pub broker: String,
    /// The group.
    pub group: GroupName,
    /// Key version the options were encrypted to.
    pub version: u32,
    /// The age ciphertext (binary) of the private options.
    pub age_ciphertext: Vec<u8>,
}

impl GroupPayload {
    /// Serializes to the annotation bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            v: PAYLOAD_VERSION,
            broker: self.broker.clone(),
            group: self.group.clone(),
            version: self.version,
            age: STANDARD.encode(&self.age_ciphertext),
        };
        serde_json::to_vec(&wire).expect("a struct of strings and integers always serializes")
    }

    /// Parses annotation bytes, bounded by [`MAX_PAYLOAD_LEN`].
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_LEN {
            return Err(PayloadError::Malformed(format!(
                "larger than {MAX_PAYLOAD_LEN} bytes"
            )));
        }
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| {
            PayloadError::Malformed(format!("not the payload JSON ({})", e.classify_name()))
        })?;
        if wire.v != PAYLOAD_VERSION {
            return Err(PayloadError::Malformed(format!(
                "payload version {} is not supported",
                wire.v
            )));
        }
        if !(wire.broker.starts_with("https://") || wire.broker.starts_with("http://"))
            || wire.broker.len() > 2048
        {
            return Err(PayloadError::Malformed(
                "broker is not an http(s) URL".into(),
            ));
        }
        let age_ciphertext = STANDARD
            .decode(wire.age.as_bytes())
            .map_err(|_| PayloadError::Malformed("age ciphertext is not base64".into()))?;
        Ok(GroupPayload {
            broker: wire.broker,
            group: wire.group,
            version: wire.version,
            age_ciphertext,
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected or missing fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let p = GroupPayload {
            broker: "https://broker.example.org".into(),
            group: "vo.example.org".parse().expect("name"),
            version: 3,
            age_ciphertext: vec![1, 2, 3],
        };
        assert_eq!(GroupPayload::parse(&p.to_bytes()).expect("parse"), p);
        assert!(GroupPayload::parse(b"{}").is_err());
        assert!(GroupPayload::parse(&vec![b' '; MAX_PAYLOAD_LEN + 1]).is_err());
        let bad = br#"{"v":2,"broker":"https://b","group":"g","version":1,"age":""}"#;
        assert!(GroupPayload::parse(bad).is_err());
        let bad = br#"{"v":1,"broker":"file:///etc","group":"g","version":1,"age":""}"#;
        assert!(GroupPayload::parse(bad).is_err());
        let bad = br#"{"v":1,"broker":"https://b","group":"../x","version":1,"age":""}"#;
        assert!(GroupPayload::parse(bad).is_err());
    }

    #[test]
    fn group_names() {
        for good in ["vo.example.org", "fedcloud.egi.eu", "a", "A_b-1"] {
            assert!(good.parse::<GroupName>().is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(bad.parse::<GroupName>().is_err(), "{bad}");
        }
    }
}
