//! Certificate summaries in grid conventions: one-line DNs (`/DC=eu/DC=rcauth/O=…/CN=…`)
//! and RFC 3820 proxy detection.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKeyRef, Public};
use openssl::x509::X509NameRef;

use super::Certificate;

/// What a user needs to see about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateSummary {
    /// Subject DN, one-line grid form.
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
    /// True for an RFC 3820 proxy certificate.
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
            subject: one_line_dn(x509.subject_name()),
            issuer: one_line_dn(x509.issuer_name()),
            serial,
            not_before: format_time(x509.not_before()),
            not_after: format_time(x509.not_after()),
            key_type,
            is_proxy: self.is_proxy(),
        }
    }

    /// True if the certificate has the RFC 3820 proxyCertInfo extension
    /// (1.3.6.1.5.5.7.1.14).
    pub fn is_proxy(&self) -> bool {
        // The openssl crate has no accessor for a certificate's extension list, so we walk the
        // DER: Certificate → tbsCertificate → [3] Extensions → each Extension's extnID. OpenSSL
        // already parsed the certificate, so the DER is well-formed.
        self.x509()
            .to_der()
            .is_ok_and(|der| has_extension(&der, &PROXY_CERT_INFO))
    }
}

const PROXY_CERT_INFO: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.14");

fn has_extension(cert_der: &[u8], wanted: &der::asn1::ObjectIdentifier) -> bool {
    use der::asn1::{AnyRef, ObjectIdentifier};
    use der::{Decode as _, Reader as _, Tag, TagNumber, Tagged as _};
    let extensions_tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N3,
    };
    let walk = || -> der::Result<bool> {
        let cert = AnyRef::from_der(cert_der)?;
        cert.sequence(|r| {
            let tbs = AnyRef::decode(r)?;
            // Skip signatureAlgorithm and signature.
            while !r.is_finished() {
                AnyRef::decode(r)?;
            }
            tbs.sequence(|t| {
                let mut found = false;
                while !t.is_finished() {
                    let field = AnyRef::decode(t)?;
                    if field.tag() != extensions_tag {
                        continue;
                    }
                    let extensions = AnyRef::from_der(field.value())?;
                    extensions.sequence(|exts| {
                        while !exts.is_finished() {
                            AnyRef::decode(exts)?.sequence(|ext| {
                                found |= ObjectIdentifier::decode(ext)? == *wanted;
                                while !ext.is_finished() {
                                    AnyRef::decode(ext)?;
                                }
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })?;
                }
                Ok(found)
            })
        })
    };
    walk().unwrap_or(false)
}

/// A DN in the one-line grid form: `/DC=eu/DC=rcauth/O=EGI Foundation/CN=Jane Doe`, in DER
/// order (most significant first).
pub(super) fn one_line_dn(name: &X509NameRef) -> String {
    let mut out = String::new();
    for entry in name.entries() {
        let nid = entry.object().nid();
        let key = match nid {
            Nid::DOMAINCOMPONENT => "DC".to_owned(),
            Nid::COUNTRYNAME => "C".to_owned(),
            Nid::STATEORPROVINCENAME => "ST".to_owned(),
            Nid::LOCALITYNAME => "L".to_owned(),
            Nid::ORGANIZATIONNAME => "O".to_owned(),
            Nid::ORGANIZATIONALUNITNAME => "OU".to_owned(),
            Nid::COMMONNAME => "CN".to_owned(),
            Nid::PKCS9_EMAILADDRESS => "emailAddress".to_owned(),
            other => other
                .short_name()
                .map(str::to_owned)
                .unwrap_or_else(|_| entry.object().to_string()),
        };
        let value = entry.data().to_string().unwrap_or_else(|_| "?".into());
        out.push('/');
        out.push_str(&key);
        out.push('=');
        out.push_str(&value);
    }
    out
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
