//! Grid conventions for X.509 certificates, the one copy the whole project uses: the
//! one-line DN form (what grants, namespace files, `inspect`, PKCS#7 recipient listings and
//! the broker's audit log show), RFC 3820 proxy detection with the proxy policy, and the
//! client-authentication purpose (extendedKeyUsage).
//!
//! # The DN form
//!
//! `/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-`: one
//! `/` before each RDN, in DER order (most significant first), `TYPE=value` per attribute, as
//! OpenSSL's `-nameopt compat` and Globus print ordinary names. `TYPE` is OpenSSL's short name
//! (`DC`, `C`, `ST`, `L`, `O`, `OU`, `CN`, `emailAddress`, `UID`, …), or the dotted OID of an
//! attribute OpenSSL does not name. Values are decoded to Unicode as OpenSSL does (UTF8String
//! as UTF-8; PrintableString, IA5String, TeletexString, VisibleString, NumericString as
//! Latin-1; BMPString as UTF-16; UniversalString as UCS-4), so the same text in two string
//! types gives the same DN, as in OpenSSL's name comparison.
//!
//! Unlike OpenSSL's and Globus's output, the form is unambiguous: two names print the same
//! only if they have the same RDN structure, attribute types and decoded values.
//! - The attributes of a multi-valued RDN are joined by `+` (`/CN=Jane+UID=jd`), not `/`.
//! - In values, each of `\`, `/`, `+`, the control characters (C0, DEL, C1) and the
//!   invisible format characters that can reorder, break or hide text (bidi controls, line
//!   and paragraph separators, zero-width characters, soft hyphen, BOM) is written as `\xHH`
//!   per UTF-8 byte (`/` is `\x2F`, `+` is `\x2B`,
//!   `\` is `\x5C`, a NUL is `\x00`). Every other character, `=` and non-ASCII letters
//!   included, is written as itself. `=` needs no escape: attribute types never contain one,
//!   so the first `=` of an attribute ends its type.
//! - A value that is not a valid string (invalid UTF-8 or UTF-16, an unknown string type, a
//!   non-string value) is written as `\#` and the lowercase hex of its whole DER encoding
//!   (tag, length, content), which no decodable value can produce (in them every `\` starts
//!   a `\x`).
//!
//! So the grammar is `DN = *("/" RDN)`, `RDN = AVA *("+" AVA)`, `AVA = TYPE "=" VALUE`,
//! `TYPE = 1*(ALPHA / DIGIT / "-" / ".")`, and a value contains no raw `/`, `+` or `\`:
//! splitting on `/`, then `+`, then the first `=`, then undoing `\xHH`, gives back the name.
//! [`parse_grid_dn`] does that, and refuses text the formatter never writes (for checking
//! DNs that people type, such as grants).
//!
//! Compared with what this project printed before, ordinary names (letters, digits, spaces,
//! `-.,'@():=` and non-ASCII letters, single-valued RDNs) print exactly as before, so
//! grants written with them still match. Names that print differently now: values with `/`,
//! `+` or invisible characters, and multi-valued RDNs. A grant written with an unescaped `/`
//! meant inside a value (`/O=EGI Foundation/CN=Jane Doe` for a single `O` value) now means
//! two RDNs and can only match a certificate that has two RDNs; that is the point.

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{
    Decode as _, Encode as _, Length, Reader as _, SliceReader, Tag, TagNumber, Tagged as _,
};
use openssl::asn1::Asn1Object;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref};

use crate::error::{Error, Result};

/// id-pe-proxyCertInfo, RFC 3820.
const OID_PROXY_CERT_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.14");
/// The proxyCertInfo of the pre-RFC draft (GSI-3, Globus Toolkit 3 and 4 in "GT3" mode).
const OID_DRAFT_PROXY_CERT_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3536.1.222");
/// id-ppl-inheritAll: the proxy has all rights of its issuer.
const OID_PPL_INHERIT_ALL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.21.1");
/// id-ppl-independent: the proxy has none of its issuer's rights.
const OID_PPL_INDEPENDENT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.21.2");
/// The Globus "limited proxy" policy language.
const OID_PPL_LIMITED: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3536.1.1.1.9");
/// id-ce-extKeyUsage.
const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// id-kp-clientAuth.
const OID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
/// anyExtendedKeyUsage.
const OID_ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

// ---------------------------------------------------------------------------------------
// DNs

/// A name in the grid one-line form (see the [module docs](self) for the exact rules).
/// Errors only if OpenSSL cannot encode the name or its DER is not a Name.
pub fn grid_dn(name: &X509NameRef) -> Result<String> {
    grid_dn_from_der(&name.to_der()?)
}

/// [`grid_dn`] for messages and listings: a name that cannot be formatted shows as
/// `<unreadable name>` (which no grant can equal: grant DNs start with `/`).
pub fn grid_dn_display(name: &X509NameRef) -> String {
    grid_dn(name).unwrap_or_else(|_| "<unreadable name>".into())
}

/// [`grid_dn`] of a DER-encoded Name.
pub fn grid_dn_from_der(der: &[u8]) -> Result<String> {
    let malformed = |e: der::Error| Error::X509Name(e.to_string());
    let mut out = String::new();
    AnyRef::from_der(der)
        .and_then(|name| {
            name.sequence(|rdns| {
                while !rdns.is_finished() {
                    let rdn = AnyRef::decode(rdns)?;
                    rdn.tag().assert_eq(Tag::Set)?;
                    let mut avas = SliceReader::new(rdn.value())?;
                    if avas.is_finished() {
                        return Err(Tag::Set.value_error());
                    }
                    out.push('/');
                    let mut first = true;
                    while !avas.is_finished() {
                        if !first {
                            out.push('+');
                        }
                        first = false;
                        AnyRef::decode(&mut avas)?.sequence(|ava| {
                            let oid = ObjectIdentifier::decode(ava)?;
                            out.push_str(&attribute_type(&oid));
                            out.push('=');
                            push_value(&mut out, ava)
                        })?;
                    }
                }
                Ok(())
            })
        })
        .map_err(malformed)?;
    Ok(out)
}

/// OpenSSL's short name of an attribute type, else its dotted OID.
fn attribute_type(oid: &ObjectIdentifier) -> String {
    let dotted = oid.to_string();
    Asn1Object::from_str(&dotted)
        .ok()
        .map(|o| o.nid())
        .filter(|nid| *nid != Nid::UNDEF)
        .and_then(|nid| nid.short_name().ok())
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .map_or(dotted, str::to_owned)
}

/// Reads one attribute value (any TLV, including string types the `der` crate has no tag
/// for) and appends it, escaped.
fn push_value(out: &mut String, ava: &mut SliceReader<'_>) -> der::Result<()> {
    let tag = ava.read_byte()?;
    if tag & 0x1F == 0x1F {
        // High tag numbers: no string type uses them.
        return Err(der::ErrorKind::TagNumberInvalid.into());
    }
    let len = Length::decode(ava)?;
    let content = ava.read_slice(len)?;
    let text: Option<String> = match tag {
        0x0C => std::str::from_utf8(content).ok().map(str::to_owned),
        // NumericString, PrintableString, TeletexString, IA5String, VisibleString: one byte a
        // character, Latin-1 (what OpenSSL's ASN1_STRING_to_UTF8 does).
        0x12 | 0x13 | 0x14 | 0x16 | 0x1A => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString
        0x1E if content.len() % 2 == 0 => char::decode_utf16(
            content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .collect::<Result<String, _>>()
        .ok(),
        // UniversalString
        0x1C if content.len() % 4 == 0 => content
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    };
    match text {
        Some(text) => push_escaped(out, &text),
        None => {
            // The whole TLV, so that the type is part of the text too. The `der` crate
            // accepts only minimal lengths, so re-encoding gives the bytes as they were.
            let mut tlv = vec![tag];
            len.encode_to_vec(&mut tlv)?;
            tlv.extend_from_slice(content);
            out.push_str("\\#");
            out.push_str(&hex::encode(tlv));
        }
    }
    Ok(())
}

/// True for a character that must not appear raw in a DN value.
fn must_escape(c: char) -> bool {
    matches!(c, '\\' | '/' | '+')
        || c.is_control()
        // Invisible format characters: zero-width space/joiners, LRM/RLM, line and paragraph
        // separators, bidi embeddings, overrides and isolates, word joiner and invisible
        // operators, BOM (a superset of what `layercrypt_proto::text` escapes for display).
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}' | '\u{061C}' | '\u{180E}')
}

fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        if must_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// One attribute value of a parsed DN.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnValue {
    /// A string value, escapes undone.
    Text(String),
    /// A value written `\#hex`: the DER of a value that is not a valid string.
    Der(Vec<u8>),
}

/// A DN in the grid form parsed back: RDNs, each a list of (attribute type, value). The
/// inverse of [`grid_dn`], for checking DNs people write (grants) before they are stored:
/// an error says what is wrong, e.g. a `/`-separated part without `=`, which is what a `/`
/// inside a value written without its `\x2F` escape gives.
pub fn parse_grid_dn(dn: &str) -> Result<Vec<Vec<(String, DnValue)>>> {
    let bad = |reason: String| Error::X509Name(format!("{dn:?}: {reason}"));
    if dn.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = dn.strip_prefix('/') else {
        return Err(bad("a DN starts with /".into()));
    };
    rest.split('/')
        .map(|rdn| {
            rdn.split('+')
                .map(|ava| {
                    let Some((t, v)) = ava.split_once('=') else {
                        return Err(bad(format!(
                            "{ava:?} has no '=' (a / or + inside a value is written \\x2F or \\x2B)"
                        )));
                    };
                    if t.is_empty()
                        || !t
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    {
                        return Err(bad(format!("{t:?} is not an attribute type")));
                    }
                    if let Some(h) = v.strip_prefix("\\#") {
                        let der =
                            hex::decode(h).map_err(|_| bad(format!("{v:?} is not \\# and hex")))?;
                        return Ok((t.to_owned(), DnValue::Der(der)));
                    }
                    let mut bytes = Vec::with_capacity(v.len());
                    let mut it = v.bytes();
                    while let Some(b) = it.next() {
                        if b != b'\\' {
                            bytes.push(b);
                            continue;
                        }
                        let escape = [it.next(), it.next(), it.next()];
                        let byte = match escape {
                            [Some(b'x'), Some(hi), Some(lo)] => std::str::from_utf8(&[hi, lo])
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok()),
                            _ => None,
                        };
                        bytes.push(byte.ok_or_else(|| {
                            bad(format!("{v:?}: a \\ starts \\xHH (\\ itself is \\x5C)"))
                        })?);
                    }
                    let text = String::from_utf8(bytes)
                        .map_err(|_| bad(format!("{v:?}: the \\xHH escapes are not UTF-8")))?;
                    Ok((t.to_owned(), DnValue::Text(text)))
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Extensions

/// The extensions of a DER certificate as (OID, extnValue content). Accepts an explicitly
/// encoded `critical FALSE` (BER habit of some CAs) as OpenSSL does.
fn extensions(cert_der: &[u8]) -> der::Result<Vec<(ObjectIdentifier, &[u8])>> {
    let extensions_tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N3,
    };
    let mut found = Vec::new();
    AnyRef::from_der(cert_der)?.sequence(|cert| {
        let tbs = AnyRef::decode(cert)?;
        // signatureAlgorithm and signature.
        while !cert.is_finished() {
            AnyRef::decode(cert)?;
        }
        tbs.sequence(|t| {
            while !t.is_finished() {
                let field = AnyRef::decode(t)?;
                if field.tag() != extensions_tag {
                    continue;
                }
                AnyRef::from_der(field.value())?.sequence(|exts| {
                    while !exts.is_finished() {
                        AnyRef::decode(exts)?.sequence(|ext| {
                            let id = ObjectIdentifier::decode(ext)?;
                            let mut next = AnyRef::decode(ext)?;
                            if next.tag() == Tag::Boolean {
                                next = AnyRef::decode(ext)?;
                            }
                            let value = OctetStringRef::try_from(next)?;
                            found.push((id, value.as_bytes()));
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
    })?;
    Ok(found)
}

/// The value of the one extension `oid` of `cert_der`: None if absent, an error if the
/// certificate does not parse or has the extension twice.
fn extension<'a>(
    all: &[(ObjectIdentifier, &'a [u8])],
    oid: &ObjectIdentifier,
) -> der::Result<Option<&'a [u8]>> {
    let mut hits = all.iter().filter(|(id, _)| id == oid).map(|(_, v)| *v);
    let first = hits.next();
    if hits.next().is_some() {
        return Err(der::ErrorKind::Failed.into());
    }
    Ok(first)
}

// ---------------------------------------------------------------------------------------
// Proxies

/// What kind of proxy certificate, if any, a certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyKind {
    /// No proxy extension: a CA or an end entity. (A legacy Globus Toolkit 2 proxy has no
    /// extension either; it is told apart only by its issuer being an end entity, which
    /// OpenSSL refuses in a chain.)
    NotProxy,
    /// An RFC 3820 proxy (proxyCertInfo 1.3.6.1.5.5.7.1.14) with its policy language.
    Rfc3820(ProxyPolicy),
    /// A pre-RFC Globus Toolkit 3 proxy (draft proxyCertInfo 1.3.6.1.4.1.3536.1.222).
    DraftGsi3,
    /// A proxyCertInfo that does not parse, or the certificate's extensions do not.
    Malformed,
}

/// The policy language of an RFC 3820 proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyPolicy {
    /// id-ppl-inheritAll (1.3.6.1.5.5.7.21.1): all rights of the issuer.
    InheritAll,
    /// id-ppl-independent (1.3.6.1.5.5.7.21.2): none of the issuer's rights.
    Independent,
    /// Globus "limited proxy" (1.3.6.1.4.1.3536.1.1.1.9): by grid convention good for data
    /// access, not for starting jobs.
    Limited,
    /// Any other policy language (dotted OID).
    Other(String),
}

impl std::fmt::Display for ProxyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyPolicy::InheritAll => f.write_str("inheritAll (1.3.6.1.5.5.7.21.1)"),
            ProxyPolicy::Independent => f.write_str("independent (1.3.6.1.5.5.7.21.2)"),
            ProxyPolicy::Limited => f.write_str("limited (1.3.6.1.4.1.3536.1.1.1.9)"),
            ProxyPolicy::Other(oid) => write!(f, "unknown policy language {oid}"),
        }
    }
}

/// ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint INTEGER (0..MAX) OPTIONAL,
/// proxyPolicy ProxyPolicy } (RFC 3820 §3.8).
#[derive(der::Sequence)]
struct ProxyCertInfoDer<'a> {
    #[allow(dead_code)] // parsed to validate; OpenSSL enforces the path length
    path_len: Option<der::asn1::UintRef<'a>>,
    proxy_policy: ProxyPolicyDer<'a>,
}

/// ProxyPolicy ::= SEQUENCE { policyLanguage OBJECT IDENTIFIER, policy OCTET STRING OPTIONAL }.
#[derive(der::Sequence)]
struct ProxyPolicyDer<'a> {
    policy_language: ObjectIdentifier,
    #[allow(dead_code)] // only the language matters to us
    policy: Option<OctetStringRef<'a>>,
}

/// The proxy kind of a certificate: the one proxy detection of the project.
pub fn proxy_kind(cert: &X509Ref) -> ProxyKind {
    let Ok(der) = cert.to_der() else {
        return ProxyKind::Malformed;
    };
    let Ok(all) = extensions(&der) else {
        return ProxyKind::Malformed;
    };
    if all.iter().any(|(id, _)| *id == OID_DRAFT_PROXY_CERT_INFO) {
        return ProxyKind::DraftGsi3;
    }
    match extension(&all, &OID_PROXY_CERT_INFO) {
        Ok(None) => ProxyKind::NotProxy,
        Err(_) => ProxyKind::Malformed,
        Ok(Some(value)) => match ProxyCertInfoDer::from_der(value) {
            Err(_) => ProxyKind::Malformed,
            Ok(info) => ProxyKind::Rfc3820(match info.proxy_policy.policy_language {
                l if l == OID_PPL_INHERIT_ALL => ProxyPolicy::InheritAll,
                l if l == OID_PPL_INDEPENDENT => ProxyPolicy::Independent,
                l if l == OID_PPL_LIMITED => ProxyPolicy::Limited,
                l => ProxyPolicy::Other(l.to_string()),
            }),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Purpose

/// Whether a certificate may authenticate a TLS client, by its extendedKeyUsage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No extendedKeyUsage extension: any purpose.
    NoExtendedKeyUsage,
    /// extendedKeyUsage lists clientAuth or anyExtendedKeyUsage.
    Permitted,
    /// extendedKeyUsage lists neither; the usages it lists (OpenSSL short names or OIDs).
    NotPermitted(Vec<String>),
    /// The certificate's extensions or its extendedKeyUsage do not parse.
    Malformed,
}

/// Reads `cert`'s extendedKeyUsage (id-kp-clientAuth or anyExtendedKeyUsage needed).
pub fn client_auth(cert: &X509Ref) -> ClientAuth {
    let Ok(der) = cert.to_der() else {
        return ClientAuth::Malformed;
    };
    let Ok(all) = extensions(&der) else {
        return ClientAuth::Malformed;
    };
    match extension(&all, &OID_EXT_KEY_USAGE) {
        Ok(None) => ClientAuth::NoExtendedKeyUsage,
        Err(_) => ClientAuth::Malformed,
        Ok(Some(value)) => match Vec::<ObjectIdentifier>::from_der(value) {
            Err(_) => ClientAuth::Malformed,
            Ok(usages) if usages.is_empty() => ClientAuth::Malformed,
            Ok(usages) => {
                if usages
                    .iter()
                    .any(|u| *u == OID_KP_CLIENT_AUTH || *u == OID_ANY_EKU)
                {
                    ClientAuth::Permitted
                } else {
                    ClientAuth::NotPermitted(usages.iter().map(attribute_type).collect())
                }
            }
        },
    }
}

#[cfg(test)]
mod tests;
