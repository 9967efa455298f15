//! Certificate summaries in grid conventions: one-line DNs (`/DC=eu/DC=rcauth/O=…/CN=…`)
//! and proxy detection, both from [`super::grid`].

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::pkey::{Id, PKeyRef, Public};

use super::{grid, Certificate};

/// What a user needs to see about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateSummary {
    /// Subject DN, one-line grid form ([`grid::grid_dn`]).
    pub subject: String,
    /// Issuer DN, one-line grid form.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_before: String,
    /// End of validity, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// Key type and size, e.g. `RSA-2048`, `EC P-256`.
    pub key_type: String,
    /// True for a proxy certificate ([`Certificate::is_proxy`]).
    pub is_proxy: bool,
}

impl Certificate {
    /// A summary for listings and `--json` output.
    pub fn summary(&self) -> CertificateSummary {
        let x509 = self.x509();
        let serial = x509
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_ascii_lowercase()))
            .unwrap_or_else(|_| "?".into());
        let key_type = x509
            .public_key()
            .map_or_else(|_| "unknown".into(), |k| key_description(&k));
        CertificateSummary {
            subject: grid::grid_dn_display(x509.subject_name()),
            issuer: grid::grid_dn_display(x509.issuer_name()),
            serial,
            not_before: format_time(x509.not_before()),
            not_after: format_time(x509.not_after()),
            key_type,
            is_proxy: self.is_proxy(),
        }
    }

    /// True if the certificate is a proxy certificate of any kind [`grid::proxy_kind`]
    /// recognises (RFC 3820, the pre-RFC GSI-3 draft, or an unparsable proxyCertInfo).
    pub fn is_proxy(&self) -> bool {
        !matches!(grid::proxy_kind(self.x509()), grid::ProxyKind::NotProxy)
    }
}

/// `RSA-2048`, `EC P-256`, `Ed25519`, …
pub(super) fn key_description(key: &PKeyRef<Public>) -> String {
    match key.id() {
        Id::RSA => format!("RSA-{}", key.bits()),
        Id::EC => {
            let curve = key.ec_key().ok().and_then(|ec| ec.group().curve_name());
            match curve {
                Some(nid) => match super::jwk::curve_name(nid) {
                    Some((name, _)) => format!("EC {name}"),
                    None => format!("EC {}", nid.short_name().unwrap_or("unknown curve")),
                },
                None => "EC (explicit curve)".into(),
            }
        }
        other => key_type_name(other).into(),
    }
}

/// The name of a key type.
pub(super) fn key_type_name(id: Id) -> &'static str {
    match id {
        Id::RSA => "RSA",
        Id::RSA_PSS => "RSA-PSS",
        Id::EC => "EC",
        Id::DSA => "DSA",
        Id::DH => "DH",
        Id::ED25519 => "Ed25519",
        Id::ED448 => "Ed448",
        Id::X25519 => "X25519",
        Id::X448 => "X448",
        _ => "unknown",
    }
}

/// An ASN.1 time as `YYYY-MM-DDTHH:MM:SSZ`; OpenSSL's own text if that fails.
fn format_time(t: &Asn1TimeRef) -> String {
    let seconds = Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(t))
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs));
    match seconds {
        Ok(s) => {
            let (days, secs) = (s.div_euclid(86_400), s.rem_euclid(86_400));
            let (y, m, d) = civil_from_days(days);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            )
        }
        Err(_) => t.to_string(),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn times_format_as_rfc3339() {
        let t = Asn1Time::from_str("20250301123456Z").expect("valid time");
        assert_eq!(format_time(&t), "2025-03-01T12:34:56Z");
    }
}
