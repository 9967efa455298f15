//! Grant evaluation: does a verified identity, calling from an address, match a grant of a
//! group? The first matching grant wins; the reason is recorded in the audit log.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::auth::{Identity, Method};
use crate::model::{Grant, Principal};

/// Where an entitlement prefix may end. Check-in entitlements read
/// `urn:mace:egi.eu:group:<VO>[:<SUBGROUP>…][:role=<ROLE>]#<authority>` (AARC-G002): `:`
/// separates components, `#` the authority, and after `:role=` comes a whole role value.
/// A prefix ending anywhere else (`…:vo.example`) would also match `…:vo.example.evil`.
pub fn prefix_at_boundary(prefix: &str) -> bool {
    prefix.ends_with(':') || prefix.ends_with('#') || prefix.ends_with(":role=")
}

/// Does the prefix grant `prefix` cover `entitlement`? Only at a component boundary: the
/// entitlement starts with the prefix and either the prefix ends at a boundary
/// ([`prefix_at_boundary`]) or the entitlement goes on with `:` or `#` (or ends). New grants
/// must end at a boundary (refused otherwise); this rule keeps prefixes stored before that
/// check (`…:vo.example`) from matching `…:vo.example.evil:…`, while they still match
/// `…:vo.example:role=member#…`.
pub fn prefix_matches(prefix: &str, entitlement: &str) -> bool {
    match entitlement.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix_at_boundary(prefix) || rest.is_empty() || rest.starts_with([':', '#']),
    }
}

/// The outcome of evaluating a group's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// A grant matched: its id and why (for the audit log).
    Allow {
        /// The matching grant.
        grant_id: String,
        /// Why it matched.
        reason: String,
    },
    /// No grant matched: why (for the audit log only, never for the caller).
    Deny {
        /// Why.
        reason: String,
    },
}

/// Why one grant did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    Principal,
    Expired,
    Network,
}

/// Evaluates `grants` in order; the first that matches wins.
pub fn evaluate(
    grants: &[Grant],
    identity: &Identity,
    client: Option<IpAddr>,
    now: OffsetDateTime,
) -> Evaluation {
    let (mut expired, mut network) = (0usize, 0usize);
    for grant in grants {
        match check(grant, identity, client, now) {
            Ok(why) => {
                return Evaluation::Allow {
                    grant_id: grant.id.clone(),
                    reason: format!("grant {} matched {why}", grant.id),
                }
            }
            Err(Miss::Principal) => {}
            Err(Miss::Expired) => expired += 1,
            Err(Miss::Network) => network += 1,
        }
    }
    let reason = match (grants.is_empty(), expired, network) {
        (true, _, _) => "group has no grants".to_owned(),
        (false, 0, 0) => "no grant matches the identity".to_owned(),
        (false, e, n) => format!(
            "no grant matches: {e} matching grant(s) expired, {n} matching grant(s) exclude client address {}",
            client.map_or_else(|| "(unknown)".to_owned(), |c| c.to_string())
        ),
    };
    Evaluation::Deny { reason }
}

fn check(
    grant: &Grant,
    identity: &Identity,
    client: Option<IpAddr>,
    now: OffsetDateTime,
) -> Result<String, Miss> {
    let why = principal_matches(&grant.principal, identity).ok_or(Miss::Principal)?;
    if grant.expires.is_some_and(|e| e <= now) {
        return Err(Miss::Expired);
    }
    if !grant.networks.is_empty() {
        let ip = client.ok_or(Miss::Network)?;
        let ip = canonical(ip);
        if !grant.networks.iter().any(|net| net.contains(&ip)) {
            return Err(Miss::Network);
        }
    }
    Ok(why)
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, as a dual-stack listener reports IPv4
/// peers) are compared as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Entitlements and subjects come from tokens, DNs from certificates: a certificate caller
/// never matches a subject grant (nor a token caller a DN grant, nor the bootstrap admin any).
fn principal_matches(principal: &Principal, identity: &Identity) -> Option<String> {
    let token = identity.method == Method::Token;
    let cert = identity.method == Method::Certificate;
    match principal {
        Principal::Entitlement { .. } | Principal::Subject { .. } if !token => None,
        Principal::Dn { .. } if !cert => None,
        Principal::Entitlement {
            entitlement,
            prefix: false,
        } => identity
            .entitlements
            .iter()
            .any(|e| e == entitlement)
            .then(|| format!("entitlement {entitlement}")),
        Principal::Entitlement {
            entitlement,
            prefix: true,
        } => identity
            .entitlements
            .iter()
            .find(|e| !entitlement.is_empty() && prefix_matches(entitlement, e))
            .map(|e| format!("entitlement {e} by prefix {entitlement}")),
        Principal::Subject { subject } => (identity.subject.as_deref() == Some(subject.as_str()))
            .then(|| format!("subject {subject}")),
        Principal::Dn { dn } => {
            (identity.dn.as_deref() == Some(dn.as_str())).then(|| format!("dn {dn}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
    const VO: &str = "urn:mace:egi.eu:group:vo.example.org:";
    const MEMBER: &str = "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu";

    fn grant(id: &str, principal: Principal) -> Grant {
        Grant {
            id: id.into(),
            principal,
            networks: vec![],
            expires: None,
            created: NOW,
        }
    }

    fn ent(e: &str, prefix: bool) -> Principal {
        Principal::Entitlement {
            entitlement: e.into(),
            prefix,
        }
    }

    fn token_identity(sub: &str, ents: &[&str]) -> Identity {
        Identity {
            method: Method::Token,
            subject: Some(sub.into()),
            dn: None,
            entitlements: ents.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
        }
    }

    fn cert_identity(dn: &str) -> Identity {
        Identity {
            method: Method::Certificate,
            subject: None,
            dn: Some(dn.into()),
            entitlements: vec![],
            expires_at: None,
        }
    }

    fn allowed(e: &Evaluation) -> Option<&str> {
        match e {
            Evaluation::Allow { grant_id, .. } => Some(grant_id),
            Evaluation::Deny { .. } => None,
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("test ip"))
    }

    #[test]
    fn exact_entitlement() {
        let g = [grant("g-1", ent(MEMBER, false))];
        assert_eq!(
            allowed(&evaluate(&g, &token_identity("a", &[MEMBER]), None, NOW)),
            Some("g-1")
        );
        assert_eq!(
            allowed(&evaluate(&g, &token_identity("a", &[VO]), None, NOW)),
            None
        );
        let longer = format!("{MEMBER}x");
        assert_eq!(
            allowed(&evaluate(&g, &token_identity("a", &[&longer]), None, NOW)),
            None
        );
        assert_eq!(
            allowed(&evaluate(&g, &token_identity("a", &[]), None, NOW)),
            None
        );
    }

    #[test]
    fn prefix_entitlement() {
        let g = [grant("g-1", ent(VO, true))];
        for ok in [
            MEMBER,
            VO,
            "urn:mace:egi.eu:group:vo.example.org:sub:role=vm_operator#aai.egi.eu",
        ] {
            assert_eq!(
                allowed(&evaluate(
                    &g,
                    &token_identity("a", &["other", ok]),
                    None,
                    NOW
                )),
                Some("g-1"),
                "{ok}"
            );
        }
        for bad in [
            "urn:mace:egi.eu:group:vo.example.org",
            "urn:mace:egi.eu:group:vo.example.org.evil:x",
            "",
        ] {
            assert_eq!(
                allowed(&evaluate(&g, &token_identity("a", &[bad]), None, NOW)),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn prefix_matches_only_at_component_boundaries() {
        const BARE: &str = "urn:mace:egi.eu:group:vo.example.org";
        // A prefix stored before grants were checked at creation, without a trailing `:`.
        let g = [grant("g-old", ent(BARE, true))];
        for ok in [
            MEMBER,
            BARE,
            "urn:mace:egi.eu:group:vo.example.org#aai.egi.eu",
            "urn:mace:egi.eu:group:vo.example.org:sub:role=member#aai.egi.eu",
        ] {
            assert_eq!(
                allowed(&evaluate(&g, &token_identity("a", &[ok]), None, NOW)),
                Some("g-old"),
                "{ok}"
            );
        }
        for bad in [
            "urn:mace:egi.eu:group:vo.example.org.evil:role=member#aai.egi.eu",
            "urn:mace:egi.eu:group:vo.example.orgx#aai.egi.eu",
            "urn:mace:egi.eu:group:vo.example.or",
        ] {
            assert_eq!(
                allowed(&evaluate(&g, &token_identity("a", &[bad]), None, NOW)),
                None,
                "{bad}"
            );
        }
        // `:role=` ends at a boundary: every role of the group itself, no subgroup.
        let roles = [grant(
            "g-r",
            ent("urn:mace:egi.eu:group:vo.example.org:role=", true),
        )];
        assert_eq!(
            allowed(&evaluate(
                &roles,
                &token_identity("a", &[MEMBER]),
                None,
                NOW
            )),
            Some("g-r")
        );
        assert_eq!(
            allowed(&evaluate(
                &roles,
                &token_identity(
                    "a",
                    &["urn:mace:egi.eu:group:vo.example.org:sub:role=member#aai.egi.eu"]
                ),
                None,
                NOW
            )),
            None
        );
        // A prefix ending inside a role value matches that value only.
        assert!(prefix_matches(
            "urn:x:vo:role=mem",
            "urn:x:vo:role=mem#aai.egi.eu"
        ));
        assert!(!prefix_matches(
            "urn:x:vo:role=mem",
            "urn:x:vo:role=member#aai.egi.eu"
        ));
        assert!(prefix_at_boundary("urn:x:vo:"));
        assert!(prefix_at_boundary("urn:x:vo:role=member#"));
        assert!(!prefix_at_boundary("urn:x:vo"));
        assert!(!prefix_at_boundary("urn:x:vo:role"));
    }

    #[test]
    fn subject_and_dn() {
        let dn = "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-";
        let g = [
            grant(
                "g-s",
                Principal::Subject {
                    subject: "abc@egi.eu".into(),
                },
            ),
            grant("g-d", Principal::Dn { dn: dn.into() }),
        ];
        assert_eq!(
            allowed(&evaluate(&g, &token_identity("abc@egi.eu", &[]), None, NOW)),
            Some("g-s")
        );
        assert_eq!(
            allowed(&evaluate(&g, &token_identity("abd@egi.eu", &[]), None, NOW)),
            None
        );
        assert_eq!(
            allowed(&evaluate(&g, &cert_identity(dn), None, NOW)),
            Some("g-d")
        );
        assert_eq!(
            allowed(&evaluate(
                &g,
                &cert_identity(&format!("{dn}/CN=123")),
                None,
                NOW
            )),
            None
        );
        // A subject that equals the DN string does not match a DN grant, and vice versa.
        assert_eq!(
            allowed(&evaluate(&g, &token_identity(dn, &[]), None, NOW)),
            None
        );
        assert_eq!(
            allowed(&evaluate(&g, &cert_identity("abc@egi.eu"), None, NOW)),
            None
        );
        let mut admin = token_identity("abc@egi.eu", &[MEMBER]);
        admin.method = Method::BootstrapAdmin;
        assert_eq!(
            allowed(&evaluate(&g, &admin, None, NOW)),
            None,
            "the bootstrap admin matches no grant"
        );
    }

    #[test]
    fn networks_v4_and_v6() {
        let mut g = grant("g-n", ent(MEMBER, false));
        g.networks = vec![
            "192.0.2.0/24".parse::<IpNet>().expect("net"),
            "2001:db8::/32".parse().expect("net"),
        ];
        let g = [g];
        let id = token_identity("a", &[MEMBER]);
        assert_eq!(
            allowed(&evaluate(&g, &id, ip("192.0.2.77"), NOW)),
            Some("g-n")
        );
        assert_eq!(
            allowed(&evaluate(&g, &id, ip("::ffff:192.0.2.77"), NOW)),
            Some("g-n")
        );
        assert_eq!(
            allowed(&evaluate(&g, &id, ip("2001:db8:1::5"), NOW)),
            Some("g-n")
        );
        assert_eq!(allowed(&evaluate(&g, &id, ip("192.0.3.1"), NOW)), None);
        assert_eq!(allowed(&evaluate(&g, &id, ip("2001:db9::1"), NOW)), None);
        assert_eq!(
            allowed(&evaluate(&g, &id, None, NOW)),
            None,
            "unknown address never matches a network"
        );
        match evaluate(&g, &id, ip("198.51.100.1"), NOW) {
            Evaluation::Deny { reason } => assert!(reason.contains("198.51.100.1"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expiry() {
        let mut g = grant("g-e", ent(MEMBER, false));
        g.expires = Some(NOW + time::Duration::seconds(1));
        let id = token_identity("a", &[MEMBER]);
        assert_eq!(
            allowed(&evaluate(std::slice::from_ref(&g), &id, None, NOW)),
            Some("g-e")
        );
        g.expires = Some(NOW);
        match evaluate(&[g], &id, None, NOW) {
            Evaluation::Deny { reason } => {
                assert!(reason.contains("1 matching grant(s) expired"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_match_wins_and_reasons() {
        let mut expired = grant("g-old", ent(MEMBER, false));
        expired.expires = Some(NOW - time::Duration::days(1));
        let g = [
            expired,
            grant("g-2", ent(VO, true)),
            grant("g-3", ent(MEMBER, false)),
        ];
        match evaluate(&g, &token_identity("a", &[MEMBER]), None, NOW) {
            Evaluation::Allow { grant_id, reason } => {
                assert_eq!(grant_id, "g-2");
                assert!(reason.contains("by prefix"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            evaluate(&[], &token_identity("a", &[MEMBER]), None, NOW),
            Evaluation::Deny {
                reason: "group has no grants".into()
            }
        );
        assert_eq!(
            evaluate(&g, &token_identity("a", &["x"]), None, NOW),
            Evaluation::Deny {
                reason: "no grant matches the identity".into()
            }
        );
    }
}
