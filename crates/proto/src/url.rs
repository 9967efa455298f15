//! Broker URLs: one check and one normal form, used by the CLI when it writes a payload, by
//! worker nodes when they match a payload against their list of brokers, and by the broker
//! when it compares a payload with its own `public_url`.
//!
//! Two URLs name the same broker iff their normal forms are equal. The normal form is what
//! the WHATWG URL parser (the `url` crate) gives, which lower-cases the scheme and host,
//! drops a default port, resolves `.`/`..` path segments and writes IPv6 addresses one
//! canonical way, and then: no trailing `/`, no trailing `.` on a domain name.

use std::fmt;
use std::net::IpAddr;

/// Why a broker URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL at all.
    #[error("broker URL {url:?}: {reason}")]
    Parse {
        /// The URL as given.
        url: String,
        /// The parser's reason.
        reason: ::url::ParseError,
    },
    /// Neither `https` nor `http`.
    #[error("broker URL {url:?}: use https:// (or http:// for a broker on this machine)")]
    Scheme {
        /// The URL as given.
        url: String,
    },
    /// No host, user info, a query or a fragment.
    #[error("broker URL {url:?}: {what}")]
    Shape {
        /// The URL as given.
        url: String,
        /// What is wrong.
        what: &'static str,
    },
}

/// A checked, normalised broker base URL: `http(s)://host[:port][/path]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerUrl {
    text: String,
    loopback: bool,
    https: bool,
}

impl BrokerUrl {
    /// Checks and normalises `url` (surrounding white space is ignored).
    pub fn parse(url: &str) -> Result<BrokerUrl, UrlError> {
        let given = || url.chars().take(2048).collect::<String>();
        let shape = |what| UrlError::Shape { url: given(), what };
        let mut parsed = ::url::Url::parse(url.trim()).map_err(|reason| UrlError::Parse {
            url: given(),
            reason,
        })?;
        let https = match parsed.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(UrlError::Scheme { url: given() }),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(shape("credentials do not belong in the URL"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(shape("no query or fragment"));
        }
        let loopback = match parsed.host() {
            None => return Err(shape("no host")),
            Some(::url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.');
                if d.is_empty() {
                    return Err(shape("no host"));
                }
                d == "localhost"
            }
            Some(::url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(::url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        };
        if let Some(::url::Host::Domain(d)) = parsed.host() {
            if d.ends_with('.') {
                let trimmed = d.trim_end_matches('.').to_owned();
                parsed
                    .set_host(Some(&trimmed))
                    .map_err(|reason| UrlError::Parse {
                        url: given(),
                        reason,
                    })?;
            }
        }
        Ok(BrokerUrl {
            text: parsed.as_str().trim_end_matches('/').to_owned(),
            loopback,
            https,
        })
    }

    /// The normal form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the host is `localhost`, in 127.0.0.0/8 or `::1`.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// True for `https://`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// True for plain `http://` to a host that is not this machine: tokens and keys would
    /// cross the network in clear.
    pub fn is_cleartext_off_loopback(&self) -> bool {
        !self.https && !self.loopback
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({:?})", self.text)
    }
}

impl std::str::FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BrokerUrl::parse(s)
    }
}

/// The normal form of `url` as a string (see [`BrokerUrl::parse`]).
pub fn normalize_broker_url(url: &str) -> Result<String, UrlError> {
    BrokerUrl::parse(url).map(|u| u.text)
}

/// True if `a` and `b` are valid broker URLs that name the same broker.
pub fn same_broker(a: &str, b: &str) -> bool {
    match (BrokerUrl::parse(a), BrokerUrl::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        for (given, normal) in [
            ("https://b.example.org/", "https://b.example.org"),
            ("HTTPS://B.Example.ORG", "https://b.example.org"),
            ("https://b.example.org:443/", "https://b.example.org"),
            ("http://b.example.org:80", "http://b.example.org"),
            ("https://b.example.org:8443", "https://b.example.org:8443"),
            ("https://b.example.org./kb/", "https://b.example.org/kb"),
            (
                "https://b.example.org/a/../kb//",
                "https://b.example.org/kb",
            ),
            ("http://127.0.0.1:8080/kb/", "http://127.0.0.1:8080/kb"),
            ("http://[0:0:0:0:0:0:0:1]:8080", "http://[::1]:8080"),
            ("  https://b.example.org  ", "https://b.example.org"),
        ] {
            assert_eq!(
                normalize_broker_url(given).as_deref(),
                Ok(normal),
                "{given}"
            );
        }
        assert!(same_broker(
            "https://Broker.EXAMPLE.org:443/",
            "https://broker.example.org"
        ));
        assert!(!same_broker(
            "https://a.example.org",
            "https://b.example.org"
        ));
        assert!(!same_broker(
            "http://b.example.org",
            "https://b.example.org"
        ));
        assert!(!same_broker("not a url", "not a url"));
    }

    #[test]
    fn refusals_are_typed() {
        assert!(matches!(
            BrokerUrl::parse("ftp://b"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("no scheme"),
            Err(UrlError::Parse { .. })
        ));
        for bad in [
            "https://user:pw@b.example.org",
            "https://b.example.org?x=1",
            "https://b.example.org#f",
        ] {
            assert!(
                matches!(BrokerUrl::parse(bad), Err(UrlError::Shape { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn loopback_and_cleartext() {
        for (url, loopback) in [
            ("http://localhost:1", true),
            ("http://127.0.0.2", true),
            ("http://[::1]", true),
            ("http://10.0.0.1", false),
            ("http://broker.example.org", false),
            ("http://localhost.example.org", false),
        ] {
            let u = BrokerUrl::parse(url).expect("valid");
            assert_eq!(u.is_loopback(), loopback, "{url}");
            assert_eq!(u.is_cleartext_off_loopback(), !loopback, "{url}");
        }
        assert!(!BrokerUrl::parse("https://broker.example.org")
            .expect("valid")
            .is_cleartext_off_loopback());
    }
}
