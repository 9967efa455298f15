//! Whom a token was issued for. EGI Check-in's access tokens carry no `aud` unless a client
//! exchanged them for an audience (RFC 8693), so a missing `aud` is accepted (unless an
//! audience is required); but an `aud` that is present must name this broker, or the token
//! was minted for another service. And the client that obtained the token (`azp`, else
//! `client_id`) must be one this broker trusts: without that check a relying party the user
//! logged in to could replay the user's token here and unwrap as the user.
//!
//! The same checks run on JWT access tokens and on introspection answers.

use serde_json::Value;

use crate::auth::AuthError;

use super::jwt::printable;

/// Clients whose tokens are accepted by default: the `layercrypt` CLI's device-flow client
/// and oidc-agent's public client (how EGI users get tokens on the command line).
pub const DEFAULT_ALLOWED_CLIENTS: [&str; 2] = ["layercrypt-cli", "oidc-agent"];

/// The configuration value that means "any client" in `oidc.allowed_clients`.
pub const ANY_CLIENT: &str = "*";

/// Bound on `aud` values looked at (a token is at most 16 KiB anyway).
const MAX_AUDIENCES: usize = 64;

/// Which clients' tokens are accepted: the token's `azp`, else its `client_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPolicy {
    /// Any client, and tokens that name none (Check-in compatibility at its loosest: any
    /// relying party that holds a user's token can use it here).
    Any,
    /// Only these client ids (compared exactly); a token that names no client is refused.
    Listed(Vec<String>),
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy::Listed(DEFAULT_ALLOWED_CLIENTS.map(String::from).to_vec())
    }
}

impl ClientPolicy {
    /// From the configured list: `["*"]` is [`ClientPolicy::Any`].
    pub fn from_list(list: &[String]) -> ClientPolicy {
        if list.iter().any(|c| c == ANY_CLIENT) {
            ClientPolicy::Any
        } else {
            ClientPolicy::Listed(list.to_vec())
        }
    }
}

/// What `aud` and `azp`/`client_id` must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AudiencePolicy {
    /// The values of `aud` that name this broker, normalised ([`normalise`]).
    names: Vec<String>,
    /// `aud` must be present.
    required: bool,
    clients: ClientPolicy,
}

/// URLs (`http(s)://host[:port][/path]`) in their normal form (lower-case scheme and host,
/// no default port, no trailing slash), with the same helper that compares broker URLs
/// everywhere else; any other value (a client id) unchanged, compared exactly.
pub(crate) fn normalise(value: &str) -> String {
    if value.trim() == value {
        if let Ok(url) = layercrypt_proto::url::normalize_broker_url(value) {
            return url;
        }
    }
    value.to_owned()
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

fn shown(values: &[&str]) -> String {
    let mut out: Vec<String> = values.iter().take(4).map(|v| printable(v, 64)).collect();
    if values.len() > 4 {
        out.push("…".into());
    }
    out.join(", ")
}

impl AudiencePolicy {
    /// `names`: the values of `aud` that name this broker (its audience, client id or public
    /// URL); an `aud` naming none of them is refused. `required`: a token without `aud` is
    /// refused too.
    pub(crate) fn new(names: &[String], required: bool, clients: ClientPolicy) -> Self {
        let mut normal: Vec<String> = names.iter().map(|n| normalise(n)).collect();
        normal.sort();
        normal.dedup();
        AudiencePolicy {
            names: normal,
            required,
            clients,
        }
    }

    /// No audience known and any client: for tokens of the built-in `--dev` issuer, which
    /// names neither. An `aud` present is still refused.
    pub(crate) fn dev() -> Self {
        AudiencePolicy::new(&[], false, ClientPolicy::Any)
    }

    /// Checks `aud` and `azp`/`client_id` of `claims` (a verified token's payload or an
    /// introspection answer); `source` names it in the reason.
    pub(crate) fn check(&self, claims: &Value, source: &str) -> Result<(), AuthError> {
        self.check_audience(claims, source)?;
        self.check_client(claims, source)
    }

    fn check_audience(&self, claims: &Value, source: &str) -> Result<(), AuthError> {
        let values: Vec<&str> = match claims.get("aud") {
            None | Some(Value::Null) if self.required => {
                return Err(invalid(format!(
                    "{source} has no aud; this broker requires an audience naming it"
                )))
            }
            None | Some(Value::Null) => return Ok(()),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(invalid(format!("{source} aud is an empty array")))
            }
            Some(Value::Array(items)) if items.len() > MAX_AUDIENCES => {
                return Err(invalid(format!(
                    "{source} aud has more than {MAX_AUDIENCES} values"
                )))
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| invalid(format!("{source} aud holds a non-string value")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(format!(
                    "{source} aud is neither a string nor an array of strings"
                )))
            }
        };
        if values
            .iter()
            .any(|v| self.names.binary_search(&normalise(v)).is_ok())
        {
            return Ok(());
        }
        Err(invalid(format!(
            "{source} aud [{}] does not name this broker ({})",
            shown(&values),
            if self.names.is_empty() {
                "no audience configured".to_owned()
            } else {
                self.names.join(", ")
            }
        )))
    }

    fn check_client(&self, claims: &Value, source: &str) -> Result<(), AuthError> {
        let ClientPolicy::Listed(allowed) = &self.clients else {
            return Ok(());
        };
        let claim = |name: &str| match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(invalid(format!("{source} {name} is not a string"))),
        };
        let client = match (claim("azp")?, claim("client_id")?) {
            (Some(azp), Some(id)) if azp != id => {
                return Err(invalid(format!(
                    "{source} azp {} and client_id {} differ",
                    printable(azp, 64),
                    printable(id, 64)
                )))
            }
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => {
                return Err(invalid(format!(
                    "{source} names no client (azp, client_id); oidc.allowed_clients needs one"
                )))
            }
        };
        if allowed.iter().any(|a| a == client) {
            Ok(())
        } else {
            Err(invalid(format!(
                "{source} was obtained by client {}, not in oidc.allowed_clients",
                printable(client, 64)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BROKER: &str = "https://broker.example.org";

    fn policy(required: bool, clients: ClientPolicy) -> AudiencePolicy {
        AudiencePolicy::new(
            &[BROKER.into(), "layercrypt-broker".into()],
            required,
            clients,
        )
    }

    fn reason(r: Result<(), AuthError>) -> String {
        match r {
            Err(AuthError::Invalid(s)) => s,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn aud_absent_accepted_unless_required() {
        let p = policy(false, ClientPolicy::Any);
        p.check(&json!({}), "token").expect("no aud");
        p.check(&json!({"aud": null}), "token").expect("null aud");
        let p = policy(true, ClientPolicy::Any);
        assert!(reason(p.check(&json!({}), "token")).contains("no aud"));
    }

    #[test]
    fn aud_must_name_the_broker_in_every_shape() {
        let p = policy(false, ClientPolicy::Any);
        for ok in [
            json!(BROKER),
            json!("https://broker.example.org/"),
            json!("HTTPS://Broker.Example.ORG:443"),
            json!("layercrypt-broker"),
            json!(["other", "https://broker.example.org"]),
            json!(["layercrypt-broker"]),
        ] {
            p.check(&json!({ "aud": ok }), "token")
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            json!("https://other.example.org"),
            json!("https://broker.example.org.evil.example"),
            json!("https://broker.example.org:8443"),
            json!("http://broker.example.org"),
            json!("https://broker.example.org/sub"),
            json!("https://user@broker.example.org"),
            json!("Layercrypt-Broker"),
            json!("layercrypt-broker "),
            json!(["other", "account"]),
            json!([]),
            json!([BROKER, 3]),
            json!(3),
            json!({"aud": BROKER}),
        ] {
            let r = reason(p.check(&json!({ "aud": bad }), "token"));
            assert!(r.starts_with("token aud"), "{bad}: {r}");
        }
        let many: Vec<String> = (0..=MAX_AUDIENCES).map(|i| format!("a{i}")).collect();
        assert!(reason(p.check(&json!({ "aud": many }), "token")).contains("more than"));
    }

    #[test]
    fn no_names_configured_refuses_any_aud() {
        let p = AudiencePolicy::dev();
        p.check(&json!({"sub": "x"}), "token").expect("no aud");
        assert!(reason(p.check(&json!({"aud": BROKER}), "token")).contains("no audience"));
    }

    #[test]
    fn clients_listed_or_any() {
        let p = policy(false, ClientPolicy::default());
        p.check(&json!({"azp": "layercrypt-cli"}), "token")
            .expect("cli");
        p.check(&json!({"azp": "oidc-agent"}), "token")
            .expect("oidc-agent");
        p.check(&json!({"client_id": "oidc-agent"}), "token")
            .expect("client_id when azp is missing");
        p.check(
            &json!({"azp": "oidc-agent", "client_id": "oidc-agent"}),
            "token",
        )
        .expect("both, equal");
        for (bad, why) in [
            (json!({"azp": "other-rp"}), "not in oidc.allowed_clients"),
            (json!({"azp": "OIDC-AGENT"}), "not in oidc.allowed_clients"),
            (json!({}), "names no client"),
            (json!({"azp": 1}), "not a string"),
            (
                json!({"azp": "other-rp", "client_id": "oidc-agent"}),
                "differ",
            ),
        ] {
            let r = reason(p.check(&bad, "token"));
            assert!(r.contains(why), "{bad}: {r}");
        }
        let any = policy(false, ClientPolicy::Any);
        any.check(&json!({"azp": "other-rp"}), "token")
            .expect("any client");
        any.check(&json!({}), "token").expect("no client");
        assert_eq!(
            ClientPolicy::from_list(&["*".into()]),
            ClientPolicy::Any,
            "`*` means any"
        );
    }
}
