//! PKCS#7 key wrapper: annotation `org.opencontainers.image.enc.keys.pkcs7`.
//!
//! X.509 recipients (grid user certificates such as RCAuth.eu's) get the layer's private
//! options wrapped in a PKCS#7 `EnvelopedData` exactly as Go ocicrypt writes it with
//! go.mozilla.org/pkcs7 (Debian's ocicrypt 1.0.3, upstream ≤ v1.2.0):
//!
//! ```text
//! ContentInfo { envelopedData, [0] EXPLICIT EnvelopedData {
//!   version 0,
//!   SET OF RecipientInfo { version 0, IssuerAndSerialNumber,
//!                          rsaEncryption (no parameters), OCTET STRING RSA-PKCS1v15(CEK) },
//!   EncryptedContentInfo { data,
//!                          aes128-GCM  10 13 30 11 84 0C <nonce> 02 01 10,
//!                          [0] { OCTET STRING GCM ciphertext ‖ tag } } } }
//! ```
//!
//! The content key (CEK) is 16 random bytes, the nonce 12; there is no AAD. The `SET OF` is
//! sorted by encoding, as Go's `encoding/asn1` does (checked against skopeo output).
//!
//! **Why this is hand-rolled and not OpenSSL's CMS:** OpenSSL cannot parse the GCM parameters
//! Go writes (a *primitive* element with universal tag 16 wrapping a SEQUENCE whose nonce is
//! tagged `[4]`), and even with RFC 5084 parameters it refuses AEAD ciphers inside
//! `EnvelopedData`. So the structure is built from primitives (RSA and AES through the
//! `openssl` crate) and a small DER reader/writer below.
//!
//! **Why a small DER reader/writer and not the `der` crate for the structure:** `der` models
//! tags as an enum in which universal tag 16 is always constructed, so it can neither write
//! nor read Go's `0x10` parameters element; and the reader must accept the encrypted content
//! both constructed (`A0 { 04 … }`, mozilla) and primitive (`80 …`, smallstep ≥ 1.2.1). The
//! reader here handles only what this format needs: low tag numbers, definite lengths in
//! minimal form, every length checked against the bytes left. `der` is still used for the
//! OID constants and for printing unknown OIDs.
//!
//! Reading accepts more than Go writes, like Go ocicrypt's decoder does: AES-128/256-GCM
//! (Go's or RFC 5084 parameters), AES-128/256-CBC and DES-EDE3-CBC content, and
//! rsaEncryption (PKCS#1 v1.5) or RSAES-OAEP (SHA-1 defaults) key transport.

use der::asn1::ObjectIdentifier;
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Private, Public};
use openssl::rsa::Padding;
use openssl::symm::Cipher;
use openssl::x509::X509Name;
use zeroize::Zeroizing;

use super::{KeyWrapper, RecipientInfo};
use crate::config::{DecryptConfig, EncryptConfig};
use crate::error::{Error, Result};
use crate::keys::grid::grid_dn_display;
use crate::keys::{Certificate, PrivateKey};
use crate::secret::SecretBytes;

/// Largest wrapped item this module parses (the DER, after base64 decoding).
const MAX_ITEM_LEN: usize = 1 << 20;
/// Most RecipientInfos accepted in one item.
const MAX_RECIPIENTS: usize = 256;

const OID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
const OID_AES128_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6");
const OID_AES256_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");
const OID_AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
const OID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const OID_DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");

/// GCM nonce length Go uses (and requires).
const GCM_NONCE_LEN: usize = 12;
/// GCM tag length Go uses (and requires).
const GCM_TAG_LEN: usize = 16;

/// The PKCS#7 key wrapper (Go ocicrypt's `pkcs7` scheme).
#[derive(Debug, Default, Clone, Copy)]
pub struct Pkcs7KeyWrapper;

impl KeyWrapper for Pkcs7KeyWrapper {
    fn annotation_key(&self) -> &str {
        crate::spec::ANNOTATION_KEYS_PKCS7
    }

    fn wrap(&self, ec: &EncryptConfig, opts: &SecretBytes) -> Result<Option<Vec<u8>>> {
        if ec.pkcs7.is_empty() {
            return Ok(None);
        }
        envelope(&ec.pkcs7, opts.expose_secret(), &Layout::GO).map(Some)
    }

    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        !dc.private_keys.is_empty()
    }

    fn unwrap(&self, dc: &DecryptConfig, item: &[u8]) -> Option<Result<SecretBytes>> {
        let env = match Envelope::parse(item) {
            Ok(env) => env,
            Err(e) => return Some(Err(e)),
        };
        if dc.private_keys.is_empty() {
            return None;
        }
        // Only RSA keys can be PKCS#7 recipients: with none, this item is simply not ours.
        let has_rsa = dc
            .private_keys
            .iter()
            .any(|k| k.expose_secret().id() == openssl::pkey::Id::RSA);
        if !has_rsa {
            return None;
        }
        if dc.certificates.is_empty() {
            let wrapped_for: Vec<String> = env
                .recipients
                .iter()
                .map(|r| match r.info() {
                    Ok(RecipientInfo::Pkcs7 { issuer, serial }) => {
                        format!("issuer {issuer} serial {serial}")
                    }
                    _ => "an unreadable recipient".to_owned(),
                })
                .collect();
            return Some(Err(Error::Pkcs7(format!(
                "this layer key is wrapped for the X.509 certificate(s) {}: if one of the \
                 given RSA keys belongs to such a certificate, give the certificate too \
                 (--key cert.pem); otherwise none of the given keys is a recipient of it",
                wrapped_for.join(", ")
            ))));
        }

        let mut last_err = None;
        for key in &dc.private_keys {
            for cert in &dc.certificates {
                let Ok(cert_pub) = cert.x509().public_key() else {
                    continue;
                };
                if !cert_pub.public_eq(key.expose_secret()) {
                    continue;
                }
                let Ok(id) = CertId::of(cert) else { continue };
                let Some(recipient) = env.recipients.iter().find(|r| r.matches(&id)) else {
                    continue;
                };
                match env.decrypt(recipient, key) {
                    Ok(opts) => return Some(Ok(opts)),
                    Err(e) => {
                        tracing::debug!(
                            key = key.source(),
                            cert = cert.source(),
                            "PKCS#7 unwrap failed"
                        );
                        last_err = Some(e);
                    }
                }
            }
        }
        last_err.map(Err)
    }

    fn recipients(&self, item: &[u8]) -> Result<Vec<RecipientInfo>> {
        Envelope::parse(item)?
            .recipients
            .iter()
            .map(KeyTrans::info)
            .collect()
    }

    /// Removes RecipientInfos (matched by issuer and serial, as `recipients()` reports them)
    /// and re-encodes the EnvelopedData around the remaining ones, sorted by encoding as Go
    /// writes a SET OF. The version and the EncryptedContentInfo (and unprotectedAttrs, if
    /// any) are copied byte for byte, so the remaining recipients still decrypt. Nothing
    /// matching: the item is returned unchanged; nothing left: `Ok(None)`.
    fn remove_recipients(
        &self,
        item: &[u8],
        remove: &dyn Fn(&RecipientInfo) -> bool,
    ) -> Result<Option<Vec<u8>>> {
        let env = Envelope::parse(item)?;
        let mut kept = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            if !remove(&r.info()?) {
                kept.push(r.raw);
            }
        }
        if kept.len() == env.recipients.len() {
            return Ok(Some(item.to_vec()));
        }
        if kept.is_empty() {
            return Ok(None);
        }
        kept.sort();
        let enveloped = tlv(
            SEQUENCE,
            &cat(&[env.head, &tlv(SET, &kept.concat()), env.tail]),
        );
        Ok(Some(tlv(
            SEQUENCE,
            &cat(&[&oid(OID_ENVELOPED_DATA), &tlv(CTX0_CONS, &enveloped)]),
        )))
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// Encoding choices for [`envelope`]. Go ocicrypt's are [`Layout::GO`]; the others exist so
/// the tests can produce what other writers produce and check the reader accepts it.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Content cipher.
    content: ContentAlg,
    /// Key transport.
    key_transport: KeyTransport,
    /// GCM parameters in RFC 5084 form (`30 11 04 0C … 02 01 10`) instead of Go's.
    rfc5084_params: bool,
    /// Encrypted content primitive (`80 len`, smallstep) instead of constructed (mozilla).
    primitive_content: bool,
}

impl Layout {
    /// What Go ocicrypt (mozilla pkcs7) writes.
    const GO: Layout = Layout {
        content: ContentAlg::Aes128Gcm,
        key_transport: KeyTransport::RsaPkcs1,
        rfc5084_params: false,
        primitive_content: false,
    };
}

/// Builds the DER `ContentInfo` for `certs` around `plaintext`.
fn envelope(certs: &[Certificate], plaintext: &[u8], layout: &Layout) -> Result<Vec<u8>> {
    // Refuse unusable recipients before doing anything else.
    let mut recipients = Vec::with_capacity(certs.len());
    for cert in certs {
        let public = cert.x509().public_key()?;
        if public.id() != Id::RSA {
            return Err(Error::Pkcs7(format!(
                "recipient certificate {} ({}) has a {} key; PKCS#7 recipients need an RSA key \
                 (ocicrypt's PKCS#7 uses RSA key transport)",
                grid_dn_display(cert.x509().subject_name()),
                cert.source(),
                key_type_name(public.id()),
            )));
        }
        recipients.push((CertId::of(cert)?, public));
    }

    let (cipher, key_len) = layout.content.cipher();
    let mut cek = Zeroizing::new(vec![0u8; key_len]);
    openssl::rand::rand_bytes(&mut cek)?;
    let (params, ciphertext) = match layout.content {
        ContentAlg::Aes128Gcm | ContentAlg::Aes256Gcm => {
            let mut nonce = [0u8; GCM_NONCE_LEN];
            openssl::rand::rand_bytes(&mut nonce)?;
            let mut tag = [0u8; GCM_TAG_LEN];
            let mut ct =
                openssl::symm::encrypt_aead(cipher, &cek, Some(&nonce), &[], plaintext, &mut tag)?;
            ct.extend_from_slice(&tag);
            let params = if layout.rfc5084_params {
                tlv(
                    SEQUENCE,
                    &cat(&[&tlv(OCTET_STRING, &nonce), &uint(GCM_TAG_LEN as u64)]),
                )
            } else {
                let inner = tlv(
                    SEQUENCE,
                    &cat(&[&tlv(CTX4_PRIM, &nonce), &uint(GCM_TAG_LEN as u64)]),
                );
                tlv(GO_GCM_PARAMS, &inner)
            };
            (params, ct)
        }
        ContentAlg::Aes128Cbc | ContentAlg::Aes256Cbc | ContentAlg::DesEde3Cbc => {
            let mut iv = vec![0u8; cipher.iv_len().unwrap_or(0)];
            openssl::rand::rand_bytes(&mut iv)?;
            let ct = openssl::symm::encrypt(cipher, &cek, Some(&iv), plaintext)?;
            (tlv(OCTET_STRING, &iv), ct)
        }
    };

    let mut infos = Vec::with_capacity(recipients.len());
    for (id, public) in &recipients {
        let encrypted_key = rsa_encrypt(public, &cek, layout.key_transport)?;
        let ias = tlv(SEQUENCE, &cat(&[&id.issuer, &tlv(INTEGER, &id.serial)]));
        let alg = tlv(SEQUENCE, &oid(layout.key_transport.oid()));
        infos.push(tlv(
            SEQUENCE,
            &cat(&[&uint(0), &ias, &alg, &tlv(OCTET_STRING, &encrypted_key)]),
        ));
    }
    // DER SET OF: elements in ascending order of their encodings (Go's encoding/asn1 does this).
    infos.sort();
    let infos: Vec<&[u8]> = infos.iter().map(Vec::as_slice).collect();

    let content = if layout.primitive_content {
        tlv(CTX0_PRIM, &ciphertext)
    } else {
        tlv(CTX0_CONS, &tlv(OCTET_STRING, &ciphertext))
    };
    let alg = tlv(SEQUENCE, &cat(&[&oid(layout.content.oid()), &params]));
    let eci = tlv(SEQUENCE, &cat(&[&oid(OID_DATA), &alg, &content]));
    let enveloped = tlv(SEQUENCE, &cat(&[&uint(0), &tlv(SET, &cat(&infos)), &eci]));
    Ok(tlv(
        SEQUENCE,
        &cat(&[&oid(OID_ENVELOPED_DATA), &tlv(CTX0_CONS, &enveloped)]),
    ))
}

fn rsa_encrypt(public: &PKeyRef<Public>, cek: &[u8], kt: KeyTransport) -> Result<Vec<u8>> {
    let mut enc = Encrypter::new(public)?;
    match kt {
        KeyTransport::RsaPkcs1 => enc.set_rsa_padding(Padding::PKCS1)?,
        KeyTransport::RsaOaepSha1 => {
            enc.set_rsa_padding(Padding::PKCS1_OAEP)?;
            enc.set_rsa_oaep_md(MessageDigest::sha1())?;
            enc.set_rsa_mgf1_md(MessageDigest::sha1())?;
        }
    }
    let mut out = vec![0u8; enc.encrypt_len(cek)?];
    let n = enc.encrypt(cek, &mut out)?;
    out.truncate(n);
    Ok(out)
}

fn key_type_name(id: Id) -> &'static str {
    match id {
        Id::EC => "EC",
        Id::ED25519 => "Ed25519",
        Id::ED448 => "Ed448",
        Id::DSA => "DSA",
        Id::RSA_PSS => "RSA-PSS",
        _ => "non-RSA",
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// Content-encryption algorithms this module reads (and, for tests, writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentAlg {
    Aes128Gcm,
    Aes256Gcm,
    Aes128Cbc,
    Aes256Cbc,
    DesEde3Cbc,
}

impl ContentAlg {
    fn from_oid(oid: &[u8]) -> Result<Self> {
        Ok(match oid {
            o if o == OID_AES128_GCM.as_bytes() => Self::Aes128Gcm,
            o if o == OID_AES256_GCM.as_bytes() => Self::Aes256Gcm,
            o if o == OID_AES128_CBC.as_bytes() => Self::Aes128Cbc,
            o if o == OID_AES256_CBC.as_bytes() => Self::Aes256Cbc,
            o if o == OID_DES_EDE3_CBC.as_bytes() => Self::DesEde3Cbc,
            o => {
                return Err(Error::Pkcs7(format!(
                    "unsupported content-encryption algorithm {}",
                    oid_text(o)
                )))
            }
        })
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Aes128Gcm => OID_AES128_GCM,
            Self::Aes256Gcm => OID_AES256_GCM,
            Self::Aes128Cbc => OID_AES128_CBC,
            Self::Aes256Cbc => OID_AES256_CBC,
            Self::DesEde3Cbc => OID_DES_EDE3_CBC,
        }
    }

    /// The OpenSSL cipher and its key length.
    fn cipher(self) -> (Cipher, usize) {
        match self {
            Self::Aes128Gcm => (Cipher::aes_128_gcm(), 16),
            Self::Aes256Gcm => (Cipher::aes_256_gcm(), 32),
            Self::Aes128Cbc => (Cipher::aes_128_cbc(), 16),
            Self::Aes256Cbc => (Cipher::aes_256_cbc(), 32),
            Self::DesEde3Cbc => (Cipher::des_ede3_cbc(), 24),
        }
    }
}

/// Key-transport algorithms this module reads (and, for tests, writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyTransport {
    RsaPkcs1,
    RsaOaepSha1,
}

impl KeyTransport {
    fn from_alg(alg: &AlgId<'_>) -> Result<Self> {
        // Parameters: absent (Go), NULL (OpenSSL) or, for OAEP, an empty SEQUENCE (all defaults).
        let params_ok = |allow_empty_seq: bool| match alg.params {
            None => true,
            Some(p) if p.tag == NULL && p.content.is_empty() => true,
            Some(p) => allow_empty_seq && p.tag == SEQUENCE && p.content.is_empty(),
        };
        if alg.oid == OID_RSA_ENCRYPTION.as_bytes() {
            if params_ok(false) {
                return Ok(Self::RsaPkcs1);
            }
            return Err(Error::Pkcs7("malformed rsaEncryption parameters".into()));
        }
        if alg.oid == OID_RSAES_OAEP.as_bytes() {
            if params_ok(true) {
                return Ok(Self::RsaOaepSha1);
            }
            return Err(Error::Pkcs7(
                "unsupported RSAES-OAEP parameters (only the SHA-1 defaults are supported)".into(),
            ));
        }
        Err(Error::Pkcs7(format!(
            "unsupported key-encryption algorithm {}",
            oid_text(alg.oid)
        )))
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::RsaPkcs1 => OID_RSA_ENCRYPTION,
            Self::RsaOaepSha1 => OID_RSAES_OAEP,
        }
    }
}

/// An AlgorithmIdentifier as read: the OID's content bytes and the parameters element.
#[derive(Debug, Clone, Copy)]
struct AlgId<'a> {
    oid: &'a [u8],
    params: Option<Tlv<'a>>,
}

impl<'a> AlgId<'a> {
    fn parse(content: &'a [u8], what: &str) -> Result<Self> {
        let mut r = Reader::new(content);
        let oid = r.expect(OID, what)?;
        let params = if r.is_empty() { None } else { Some(r.any()?) };
        r.finish(what)?;
        Ok(Self { oid, params })
    }
}

/// Issuer (full Name DER) and serial (INTEGER content, minimal) of a certificate, taken
/// verbatim from the certificate's DER as Go's `cert.RawIssuer` and `cert.SerialNumber` are.
struct CertId {
    issuer: Vec<u8>,
    serial: Vec<u8>,
}

impl CertId {
    fn of(cert: &Certificate) -> Result<Self> {
        let der = cert.x509().to_der()?;
        let bad = || {
            Error::Pkcs7(format!(
                "certificate {}: cannot read issuer and serial",
                cert.source()
            ))
        };
        let mut r = Reader::new(&der);
        let certificate = r.expect(SEQUENCE, "Certificate").map_err(|_| bad())?;
        let mut r = Reader::new(certificate);
        let tbs = r.expect(SEQUENCE, "TBSCertificate").map_err(|_| bad())?;
        let mut r = Reader::new(tbs);
        if r.peek_tag() == Some(CTX0_CONS) {
            r.any().map_err(|_| bad())?;
        }
        let serial = r.expect(INTEGER, "serialNumber").map_err(|_| bad())?;
        r.expect(SEQUENCE, "signature").map_err(|_| bad())?;
        let issuer = r.any().map_err(|_| bad())?;
        if issuer.tag != SEQUENCE || serial.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            issuer: issuer.raw.to_vec(),
            serial: minimal_int(serial).to_vec(),
        })
    }
}

/// One key-transport RecipientInfo.
struct KeyTrans<'a> {
    /// The whole RecipientInfo element.
    raw: &'a [u8],
    /// The issuer Name, full TLV.
    issuer: &'a [u8],
    /// The serial INTEGER's content.
    serial: &'a [u8],
    alg: AlgId<'a>,
    encrypted_key: &'a [u8],
}

impl<'a> KeyTrans<'a> {
    fn parse(ri: Tlv<'a>) -> Result<Self> {
        let mut r = Reader::new(ri.content);
        let version = small_uint(r.expect(INTEGER, "RecipientInfo version")?)?;
        if version != 0 {
            return Err(Error::Pkcs7(format!(
                "RecipientInfo version {version} is not supported (only issuerAndSerialNumber recipients)"
            )));
        }
        let ias = r.expect(SEQUENCE, "IssuerAndSerialNumber")?;
        let alg = AlgId::parse(
            r.expect(SEQUENCE, "keyEncryptionAlgorithm")?,
            "keyEncryptionAlgorithm",
        )?;
        let encrypted_key = r.expect(OCTET_STRING, "encryptedKey")?;
        r.finish("RecipientInfo")?;

        let mut r = Reader::new(ias);
        let issuer = r.any()?;
        if issuer.tag != SEQUENCE {
            return Err(malformed("issuer is not a Name"));
        }
        let serial = r.expect(INTEGER, "serialNumber")?;
        if serial.is_empty() {
            return Err(malformed("empty serialNumber"));
        }
        r.finish("IssuerAndSerialNumber")?;
        Ok(Self {
            raw: ri.raw,
            issuer: issuer.raw,
            serial,
            alg,
            encrypted_key,
        })
    }

    fn matches(&self, id: &CertId) -> bool {
        self.issuer == id.issuer.as_slice() && minimal_int(self.serial) == id.serial.as_slice()
    }

    fn info(&self) -> Result<RecipientInfo> {
        let name = X509Name::from_der(self.issuer)
            .map_err(|_| Error::Pkcs7("recipient issuer name is malformed".into()))?;
        Ok(RecipientInfo::Pkcs7 {
            issuer: grid_dn_display(&name),
            serial: serial_hex(self.serial),
        })
    }
}

/// A parsed `EnvelopedData`, borrowing from the item.
struct Envelope<'a> {
    /// The EnvelopedData content before `recipientInfos` (the version), as encoded.
    head: &'a [u8],
    /// The EnvelopedData content after `recipientInfos` (EncryptedContentInfo and any
    /// unprotectedAttrs), as encoded.
    tail: &'a [u8],
    recipients: Vec<KeyTrans<'a>>,
    content_alg: AlgId<'a>,
    /// Encrypted content (for GCM: ciphertext ‖ tag).
    ciphertext: Vec<u8>,
}

impl<'a> Envelope<'a> {
    fn parse(item: &'a [u8]) -> Result<Self> {
        if item.len() > MAX_ITEM_LEN {
            return Err(Error::Pkcs7(format!(
                "wrapped key is {} bytes, more than the limit of {MAX_ITEM_LEN}",
                item.len()
            )));
        }
        let mut r = Reader::new(item);
        let content_info = r.expect(SEQUENCE, "ContentInfo")?;
        r.finish("ContentInfo")?;

        let mut r = Reader::new(content_info);
        let content_type = r.expect(OID, "contentType")?;
        if content_type != OID_ENVELOPED_DATA.as_bytes() {
            return Err(Error::Pkcs7(format!(
                "content type is {}, not envelopedData",
                oid_text(content_type)
            )));
        }
        let explicit = r.expect(CTX0_CONS, "content")?;
        r.finish("ContentInfo")?;
        let mut r = Reader::new(explicit);
        let enveloped = r.expect(SEQUENCE, "EnvelopedData")?;
        r.finish("content")?;

        let mut r = Reader::new(enveloped);
        let version = small_uint(r.expect(INTEGER, "EnvelopedData version")?)?;
        if version != 0 && version != 2 {
            return Err(Error::Pkcs7(format!(
                "EnvelopedData version {version} is not supported"
            )));
        }
        if r.peek_tag() == Some(CTX0_CONS) {
            return Err(Error::Pkcs7(
                "EnvelopedData originatorInfo is not supported".into(),
            ));
        }
        let head = &enveloped[..enveloped.len() - r.buf.len()];
        let mut set = Reader::new(r.expect(SET, "recipientInfos")?);
        let tail = r.buf;
        let mut recipients = Vec::new();
        while !set.is_empty() {
            if recipients.len() == MAX_RECIPIENTS {
                return Err(Error::Pkcs7(format!(
                    "more than {MAX_RECIPIENTS} recipients"
                )));
            }
            let ri = set.any()?;
            if ri.tag != SEQUENCE {
                return Err(Error::Pkcs7(
                    "unsupported RecipientInfo type (only key transport is supported)".into(),
                ));
            }
            recipients.push(KeyTrans::parse(ri)?);
        }
        if recipients.is_empty() {
            return Err(malformed("no RecipientInfo"));
        }
        let eci = r.expect(SEQUENCE, "EncryptedContentInfo")?;
        if r.peek_tag() == Some(CTX1_CONS) {
            r.any()?; // unprotectedAttrs: not used by ocicrypt, ignored.
        }
        r.finish("EnvelopedData")?;

        let mut r = Reader::new(eci);
        let content_type = r.expect(OID, "EncryptedContentInfo contentType")?;
        if content_type != OID_DATA.as_bytes() {
            return Err(Error::Pkcs7(format!(
                "encrypted content type is {}, not data",
                oid_text(content_type)
            )));
        }
        let content_alg = AlgId::parse(
            r.expect(SEQUENCE, "contentEncryptionAlgorithm")?,
            "contentEncryptionAlgorithm",
        )?;
        let content = r.any()?;
        let ciphertext = match content.tag {
            CTX0_PRIM => content.content.to_vec(),
            CTX0_CONS => {
                // A constructed string: the concatenation of its OCTET STRING segments.
                let mut parts = Reader::new(content.content);
                let mut out = Vec::with_capacity(content.content.len());
                while !parts.is_empty() {
                    out.extend_from_slice(parts.expect(OCTET_STRING, "encryptedContent segment")?);
                }
                out
            }
            _ => return Err(malformed("expected [0] encryptedContent")),
        };
        r.finish("EncryptedContentInfo")?;
        Ok(Self {
            head,
            tail,
            recipients,
            content_alg,
            ciphertext,
        })
    }

    /// Decrypts for `recipient` with `key`. Algorithm problems are reported precisely; every
    /// cryptographic failure gets one coarse message (no padding or tag oracle, no key bytes).
    fn decrypt(&self, recipient: &KeyTrans<'_>, key: &PrivateKey) -> Result<SecretBytes> {
        let transport = KeyTransport::from_alg(&recipient.alg)?;
        let content_alg = ContentAlg::from_oid(self.content_alg.oid)?;
        let iv = content_iv(content_alg, self.content_alg.params)?;
        let failed = || {
            Error::Pkcs7(format!(
                "could not decrypt the wrapped layer key with {}: wrong key or corrupted data",
                key.source()
            ))
        };
        let cek = rsa_decrypt(key.expose_secret(), recipient.encrypted_key, transport)
            .map_err(|_| failed())?;
        let (cipher, key_len) = content_alg.cipher();
        if cek.len() != key_len {
            return Err(failed());
        }
        let plain = match content_alg {
            ContentAlg::Aes128Gcm | ContentAlg::Aes256Gcm => {
                let split = self
                    .ciphertext
                    .len()
                    .checked_sub(GCM_TAG_LEN)
                    .ok_or_else(failed)?;
                let (ct, tag) = self.ciphertext.split_at(split);
                openssl::symm::decrypt_aead(cipher, &cek, Some(&iv), &[], ct, tag)
            }
            _ => openssl::symm::decrypt(cipher, &cek, Some(&iv), &self.ciphertext),
        };
        plain.map(SecretBytes::new).map_err(|_| failed())
    }
}

/// The nonce (GCM) or IV (CBC) from the content-encryption parameters.
fn content_iv(alg: ContentAlg, params: Option<Tlv<'_>>) -> Result<Vec<u8>> {
    let params = params.ok_or_else(|| malformed("content-encryption parameters missing"))?;
    match alg {
        ContentAlg::Aes128Gcm | ContentAlg::Aes256Gcm => {
            // Go: 10 13 { 30 11 { 84 0C nonce, 02 01 10 } }; RFC 5084: 30 11 { 04 0C nonce, 02 01 10 }.
            let (body, nonce_tag) = match params.tag {
                GO_GCM_PARAMS => {
                    let mut r = Reader::new(params.content);
                    let seq = r.expect(SEQUENCE, "GCM parameters")?;
                    r.finish("GCM parameters")?;
                    (seq, CTX4_PRIM)
                }
                SEQUENCE => (params.content, OCTET_STRING),
                _ => return Err(malformed("unexpected GCM parameters")),
            };
            let mut r = Reader::new(body);
            let nonce = r.expect(nonce_tag, "GCM nonce")?;
            let icv_len = small_uint(r.expect(INTEGER, "GCM ICV length")?)?;
            r.finish("GCM parameters")?;
            if nonce.len() != GCM_NONCE_LEN || icv_len != GCM_TAG_LEN as u64 {
                return Err(Error::Pkcs7(format!(
                    "unsupported GCM parameters (nonce {} bytes, tag {icv_len} bytes; need {GCM_NONCE_LEN} and {GCM_TAG_LEN})",
                    nonce.len()
                )));
            }
            Ok(nonce.to_vec())
        }
        _ => {
            let block = alg.cipher().0.iv_len().unwrap_or(0);
            if params.tag != OCTET_STRING || params.content.len() != block {
                return Err(malformed(
                    "CBC parameters must be an OCTET STRING IV of one block",
                ));
            }
            Ok(params.content.to_vec())
        }
    }
}

fn rsa_decrypt(
    key: &PKeyRef<Private>,
    encrypted: &[u8],
    kt: KeyTransport,
) -> Result<Zeroizing<Vec<u8>>> {
    if key.id() != Id::RSA {
        return Err(Error::Pkcs7("the private key is not an RSA key".into()));
    }
    let mut dec = Decrypter::new(key)?;
    match kt {
        KeyTransport::RsaPkcs1 => dec.set_rsa_padding(Padding::PKCS1)?,
        KeyTransport::RsaOaepSha1 => {
            dec.set_rsa_padding(Padding::PKCS1_OAEP)?;
            dec.set_rsa_oaep_md(MessageDigest::sha1())?;
            dec.set_rsa_mgf1_md(MessageDigest::sha1())?;
        }
    }
    let mut out = Zeroizing::new(vec![0u8; dec.decrypt_len(encrypted)?]);
    let n = dec.decrypt(encrypted, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// A serial number as lowercase hex without leading zeros (`openssl x509 -serial` style,
/// lowercased); negative serials show their two's-complement octets.
fn serial_hex(content: &[u8]) -> String {
    match minimal_int(content) {
        [0, rest @ ..] if !rest.is_empty() => hex::encode(rest),
        minimal => hex::encode(minimal),
    }
}

fn malformed(what: &str) -> Error {
    Error::Pkcs7(format!("malformed EnvelopedData: {what}"))
}

fn oid_text(content: &[u8]) -> String {
    ObjectIdentifier::from_bytes(content)
        .map(|o| o.to_string())
        .unwrap_or_else(|_| "(malformed OID)".to_owned())
}

/// An INTEGER's content without redundant leading 0x00/0xFF octets (Go compares serials as
/// numbers, and re-encodes them minimally when writing).
fn minimal_int(mut content: &[u8]) -> &[u8] {
    while content.len() > 1
        && ((content[0] == 0x00 && content[1] & 0x80 == 0)
            || (content[0] == 0xFF && content[1] & 0x80 != 0))
    {
        content = &content[1..];
    }
    content
}

/// A small non-negative INTEGER (versions, ICV length) in minimal form.
fn small_uint(content: &[u8]) -> Result<u64> {
    match content {
        [] => Err(malformed("empty INTEGER")),
        [first, ..] if first & 0x80 != 0 => Err(malformed("negative INTEGER")),
        [0, second, ..] if second & 0x80 == 0 => Err(malformed("non-minimal INTEGER")),
        c if c.len() > 8 => Err(malformed("INTEGER too large")),
        c => Ok(c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))),
    }
}

// ---------------------------------------------------------------------------------------
// A minimal DER reader and writer (see the module docs for why not `der`).

const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
/// Universal tag 16 in *primitive* form: Go's (mis)encoding of the GCM parameters.
const GO_GCM_PARAMS: u8 = 0x10;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const CTX0_PRIM: u8 = 0x80;
const CTX4_PRIM: u8 = 0x84;
const CTX0_CONS: u8 = 0xA0;
const CTX1_CONS: u8 = 0xA1;

/// One element: tag octet, content, and the whole encoding.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

/// Reads consecutive elements from a byte slice; never reads past it.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Reads one element: low tag number, definite length in minimal form.
    fn any(&mut self) -> Result<Tlv<'a>> {
        let all = self.buf;
        let (&tag, rest) = all.split_first().ok_or_else(|| malformed("truncated"))?;
        if tag & 0x1F == 0x1F {
            return Err(malformed("high tag numbers are not supported"));
        }
        let (&first, rest) = rest.split_first().ok_or_else(|| malformed("truncated"))?;
        let (len, rest) = match first {
            0..=0x7F => (usize::from(first), rest),
            0x80 => return Err(malformed("indefinite length")),
            _ => {
                let n = usize::from(first & 0x7F);
                if n > 4 {
                    return Err(malformed("length too large"));
                }
                if rest.len() < n {
                    return Err(malformed("truncated"));
                }
                let (bytes, rest) = rest.split_at(n);
                if bytes[0] == 0 {
                    return Err(malformed("non-minimal length"));
                }
                let len = bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                if len < 0x80 {
                    return Err(malformed("non-minimal length"));
                }
                (len, rest)
            }
        };
        if rest.len() < len {
            return Err(malformed("truncated"));
        }
        let header = all.len() - rest.len();
        let (raw, after) = all.split_at(header + len);
        self.buf = after;
        Ok(Tlv {
            tag,
            content: &raw[header..],
            raw,
        })
    }

    /// Reads one element that must have `tag`; returns its content.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8]> {
        let tlv = self.any()?;
        if tlv.tag != tag {
            return Err(malformed(&format!("expected {what}")));
        }
        Ok(tlv.content)
    }

    /// Fails if anything is left.
    fn finish(&self, what: &str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed(&format!("trailing data in {what}")))
        }
    }
}

/// Encodes one element with a minimal definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn oid(oid: ObjectIdentifier) -> Vec<u8> {
    tlv(OID, oid.as_bytes())
}

/// A non-negative INTEGER.
fn uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(INTEGER, &content)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509NameBuilder, X509};

    const OPTS: &[u8] = br#"{"symkey":"4wnOkz5m2tKqqgrxq7rCl8gFHrqPjxJG2YWyB8sBqXE=","digest":"sha256:96a7f7b0a8e5a9ef5e2fdc8a9ae3b2a1b3c4d5e6f708192a3b4c5d6e7f807daa","cipheroptions":{"nonce":"9JPe3vZzDT88v06HZStxLw=="}}"#;

    const USER_DN: &[(&str, &str)] = &[
        ("DC", "eu"),
        ("DC", "rcauth"),
        ("DC", "rcauth-clients"),
        ("O", "EGI Foundation"),
        ("CN", "Jane Doe 7ewsApjEZsBcCLz-"),
    ];
    const CA_DN: &[(&str, &str)] = &[
        ("DC", "eu"),
        ("DC", "rcauth"),
        ("O", "Certification Authorities"),
        (
            "CN",
            "Research and Collaboration Authentication Pilot G1 CA",
        ),
    ];
    const CA_GRID: &str =
        "/DC=eu/DC=rcauth/O=Certification Authorities/CN=Research and Collaboration Authentication Pilot G1 CA";

    fn name(parts: &[(&str, &str)]) -> X509Name {
        let mut b = X509NameBuilder::new().unwrap();
        for (k, v) in parts {
            b.append_entry_by_text(k, v).unwrap();
        }
        b.build()
    }

    fn rsa(bits: u32) -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
    }

    /// A certificate for `key` with `subject`, signed by `issuer` (self-signed if None).
    fn cert(
        subject: &[(&str, &str)],
        key: &PKeyRef<Private>,
        serial: u32,
        issuer: Option<(&X509, &PKeyRef<Private>)>,
    ) -> X509 {
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name(subject)).unwrap();
        let (issuer_name, signer) = match issuer {
            Some((ca, ca_key)) => (ca.subject_name().to_owned().unwrap(), ca_key),
            None => (name(subject), key),
        };
        b.set_issuer_name(&issuer_name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        b.sign(signer, MessageDigest::sha256()).unwrap();
        b.build()
    }

    /// An RCAuth-like user (RSA-2048) issued by a test CA.
    fn rcauth_user() -> (Certificate, PrivateKey) {
        rcauth_user_with_serial(0x1234_5678)
    }

    fn rcauth_user_with_serial(serial: u32) -> (Certificate, PrivateKey) {
        let ca_key = rsa(2048);
        let ca = cert(CA_DN, &ca_key, 1, None);
        let key = rsa(2048);
        let user = cert(USER_DN, &key, serial, Some((&ca, &ca_key)));
        (
            Certificate::new(user, "user.pem"),
            PrivateKey::new(key, "user.key"),
        )
    }

    fn ec_for(certs: Vec<Certificate>) -> EncryptConfig {
        EncryptConfig {
            pkcs7: certs,
            ..Default::default()
        }
    }

    fn dc_for(keys: Vec<PrivateKey>, certs: Vec<Certificate>) -> DecryptConfig {
        DecryptConfig {
            private_keys: keys,
            certificates: certs,
            ..Default::default()
        }
    }

    fn wrap(certs: &[Certificate]) -> Vec<u8> {
        Pkcs7KeyWrapper
            .wrap(&ec_for(certs.to_vec()), &SecretBytes::from_slice(OPTS))
            .unwrap()
            .unwrap()
    }

    fn fixture_pem(name: &str) -> &'static [u8] {
        match name {
            "cert.pem" => include_bytes!("../../tests/data/pkcs7/cert.pem"),
            "key.pem" => include_bytes!("../../tests/data/pkcs7/key.pem"),
            "cert2.pem" => include_bytes!("../../tests/data/pkcs7/cert2.pem"),
            "key2.pem" => include_bytes!("../../tests/data/pkcs7/key2.pem"),
            _ => unreachable!(),
        }
    }

    fn fixture_cert(name: &str) -> Certificate {
        Certificate::new(X509::from_pem(fixture_pem(name)).unwrap(), name)
    }

    fn fixture_key(name: &str) -> PrivateKey {
        PrivateKey::new(PKey::private_key_from_pem(fixture_pem(name)).unwrap(), name)
    }

    /// Annotation value → items.
    fn items(annotation: &str) -> Vec<Vec<u8>> {
        annotation
            .trim()
            .split(',')
            .map(|i| base64::engine::general_purpose::STANDARD.decode(i).unwrap())
            .collect()
    }

    const GO_SINGLE: &str = include_str!("../../tests/data/pkcs7/single.b64");
    const GO_TWO: &str = include_str!("../../tests/data/pkcs7/two.b64");

    fn assert_private_opts(opts: &SecretBytes) {
        let v: serde_json::Value = serde_json::from_slice(opts.expose_secret()).unwrap();
        let symkey = base64::engine::general_purpose::STANDARD
            .decode(v["symkey"].as_str().unwrap())
            .unwrap();
        assert_eq!(symkey.len(), 32);
        assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(v["cipheroptions"]["nonce"].as_str().unwrap())
            .unwrap();
        assert_eq!(nonce.len(), 16);
    }

    fn unwrap_ok(dc: &DecryptConfig, item: &[u8]) -> Vec<u8> {
        Pkcs7KeyWrapper
            .unwrap(dc, item)
            .unwrap()
            .unwrap()
            .expose_secret()
            .to_vec()
    }

    #[test]
    fn round_trip_rcauth_user_rsa2048() {
        let (cert, key) = rcauth_user();
        let item = wrap(std::slice::from_ref(&cert));
        let dc = dc_for(vec![key], vec![cert]);
        assert_eq!(unwrap_ok(&dc, &item), OPTS);
        let recipients = Pkcs7KeyWrapper.recipients(&item).unwrap();
        assert_eq!(
            recipients,
            vec![RecipientInfo::Pkcs7 {
                issuer: CA_GRID.into(),
                serial: "12345678".into()
            }]
        );
    }

    #[test]
    fn round_trip_rsa4096_self_signed() {
        let key = rsa(4096);
        let c = Certificate::new(cert(&[("CN", "big")], &key, 0x80, None), "big.pem");
        let item = wrap(std::slice::from_ref(&c));
        let dc = dc_for(vec![PrivateKey::new(key, "big.key")], vec![c]);
        assert_eq!(unwrap_ok(&dc, &item), OPTS);
        // Serial 0x80 needs a leading zero octet in DER; shown without it.
        assert_eq!(
            Pkcs7KeyWrapper.recipients(&item).unwrap(),
            vec![RecipientInfo::Pkcs7 {
                issuer: "/CN=big".into(),
                serial: "80".into()
            }]
        );
    }

    #[test]
    fn round_trip_empty_and_large_payloads() {
        let (cert, key) = rcauth_user();
        let dc = dc_for(vec![key], vec![cert.clone()]);
        for len in [0usize, 1, 15, 16, 17, 200, 70_000] {
            let data = vec![0x5Au8; len];
            let item = Pkcs7KeyWrapper
                .wrap(&ec_for(vec![cert.clone()]), &SecretBytes::from_slice(&data))
                .unwrap()
                .unwrap();
            assert_eq!(unwrap_ok(&dc, &item), data, "len {len}");
        }
    }

    #[test]
    fn two_recipients_each_unwrap() {
        let (cert1, key1) = rcauth_user();
        let key2 = rsa(2048);
        let cert2 = Certificate::new(cert(&[("CN", "two")], &key2, 2, None), "two.pem");
        let item = wrap(&[cert1.clone(), cert2.clone()]);
        assert_eq!(
            unwrap_ok(&dc_for(vec![key1], vec![cert1.clone()]), &item),
            OPTS
        );
        let key2 = PrivateKey::new(key2, "two.key");
        // Both certificates offered, only one key: the key's own certificate is found.
        assert_eq!(
            unwrap_ok(&dc_for(vec![key2], vec![cert1, cert2]), &item),
            OPTS
        );
        assert_eq!(Pkcs7KeyWrapper.recipients(&item).unwrap().len(), 2);
    }

    #[test]
    fn recipient_infos_are_sorted_like_go() {
        let (cert1, _) = rcauth_user();
        let key2 = rsa(3072);
        let cert2 = Certificate::new(cert(&[("CN", "two")], &key2, 2, None), "two.pem");
        let a = Pkcs7KeyWrapper
            .recipients(&wrap(&[cert1.clone(), cert2.clone()]))
            .unwrap();
        let b = Pkcs7KeyWrapper.recipients(&wrap(&[cert2, cert1])).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn wrong_key_or_cert_is_none() {
        let (cert1, key1) = rcauth_user();
        let (cert2, key2) = rcauth_user_with_serial(7);
        let item = wrap(std::slice::from_ref(&cert1));
        // Key and certificate of someone else.
        assert!(Pkcs7KeyWrapper
            .unwrap(&dc_for(vec![key2], vec![cert2.clone()]), &item)
            .is_none());
        // Right certificate, wrong key (pair does not match).
        let other = PrivateKey::new(rsa(2048), "other.key");
        assert!(Pkcs7KeyWrapper
            .unwrap(&dc_for(vec![other], vec![cert1]), &item)
            .is_none());
        // Right key, someone else's certificate.
        assert!(Pkcs7KeyWrapper
            .unwrap(&dc_for(vec![key1], vec![cert2]), &item)
            .is_none());
        // No keys at all.
        assert!(Pkcs7KeyWrapper
            .unwrap(&dc_for(vec![], vec![]), &item)
            .is_none());
        // Another certificate with the same issuer DN and serial (PKCS#7 identifies the
        // recipient by these alone): tried, and it fails with an error, not a success.
        let (clash_cert, clash_key) = rcauth_user();
        let out = Pkcs7KeyWrapper.unwrap(&dc_for(vec![clash_key], vec![clash_cert]), &item);
        assert!(matches!(out, Some(Err(_))));
    }

    #[test]
    fn key_without_certificates_is_an_error() {
        let (cert, key) = rcauth_user();
        let item = wrap(&[cert]);
        let dc = dc_for(vec![key], vec![]);
        assert!(Pkcs7KeyWrapper.has_possible_keys(&dc));
        let err = Pkcs7KeyWrapper
            .unwrap(&dc, &item)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("give the certificate too")
                && err.contains("otherwise none of the given keys"),
            "{err}"
        );
        assert!(err.contains(CA_GRID), "{err}");
        assert!(!Pkcs7KeyWrapper.has_possible_keys(&DecryptConfig::default()));
    }

    #[test]
    fn no_recipients_is_none() {
        let out = Pkcs7KeyWrapper.wrap(&EncryptConfig::default(), &SecretBytes::from_slice(OPTS));
        assert!(out.unwrap().is_none());
    }

    #[test]
    fn ec_certificate_is_refused_naming_the_subject() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let c = Certificate::new(cert(USER_DN, &key, 9, None), "ec.pem");
        let (rsa_cert, _) = rcauth_user();
        let err = Pkcs7KeyWrapper
            .wrap(&ec_for(vec![rsa_cert, c]), &SecretBytes::from_slice(OPTS))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/CN=Jane Doe 7ewsApjEZsBcCLz-"), "{err}");
        assert!(err.contains("EC key"), "{err}");
    }

    #[test]
    fn flipped_bytes_never_decrypt_and_never_panic() {
        let (cert, key) = rcauth_user();
        let item = wrap(std::slice::from_ref(&cert));
        let dc = dc_for(vec![key], vec![cert]);
        let mut outcomes = [0usize; 3];
        for i in 0..item.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut bad = item.clone();
                bad[i] ^= mask;
                match Pkcs7KeyWrapper.unwrap(&dc, &bad) {
                    Some(Ok(_)) => panic!("modified item decrypted (byte {i}, mask {mask:#x})"),
                    Some(Err(_)) => outcomes[0] += 1,
                    None => outcomes[1] += 1,
                }
                if Pkcs7KeyWrapper.recipients(&bad).is_ok() {
                    outcomes[2] += 1;
                }
            }
        }
        // Flips in issuer/serial give None, everything else an error.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }

    #[test]
    fn flipped_bytes_in_each_region_of_a_go_item() {
        let dc = dc_for(vec![fixture_key("key.pem")], vec![fixture_cert("cert.pem")]);
        let item = &items(GO_SINGLE)[0];
        let r = regions(item);
        for (label, range) in [
            ("encryptedKey", r.encrypted_key),
            ("params", r.params),
            ("content", r.content.start..r.content.end - GCM_TAG_LEN),
            ("tag", r.content.end - GCM_TAG_LEN..r.content.end),
        ] {
            for i in range {
                let mut bad = item.clone();
                bad[i] ^= 0x01;
                assert!(
                    matches!(Pkcs7KeyWrapper.unwrap(&dc, &bad), Some(Err(_))),
                    "{label} byte {i}"
                );
            }
        }
    }

    #[test]
    fn truncated_at_every_length_is_an_error() {
        let (cert, key) = rcauth_user();
        let item = wrap(std::slice::from_ref(&cert));
        let dc = dc_for(vec![key], vec![cert]);
        for len in 0..item.len() {
            assert!(
                matches!(Pkcs7KeyWrapper.unwrap(&dc, &item[..len]), Some(Err(_))),
                "len {len}"
            );
            assert!(Pkcs7KeyWrapper.recipients(&item[..len]).is_err());
        }
        let mut trailing = item.clone();
        trailing.push(0);
        assert!(matches!(
            Pkcs7KeyWrapper.unwrap(&dc, &trailing),
            Some(Err(_))
        ));
    }

    #[test]
    fn hostile_lengths_and_sizes() {
        let dc = dc_for(vec![fixture_key("key.pem")], vec![fixture_cert("cert.pem")]);
        let cases: Vec<Vec<u8>> = vec![
            vec![0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0x06],
            vec![0x30, 0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            vec![0x30, 0x80, 0x06, 0x00, 0x00, 0x00], // indefinite length
            vec![0x30, 0x81, 0x03, 0x06, 0x01, 0x00], // non-minimal length
            vec![0x30, 0x82, 0x00, 0x03, 0x06, 0x01, 0x00], // non-minimal length
            vec![0x1F, 0x81, 0x01, 0x00],             // high tag number
            vec![0x30, 0x00],
            vec![],
            vec![0u8; MAX_ITEM_LEN + 1],
        ];
        for case in &cases {
            assert!(
                matches!(Pkcs7KeyWrapper.unwrap(&dc, case), Some(Err(_))),
                "{case:02x?}"
            );
            assert!(Pkcs7KeyWrapper.recipients(case).is_err());
        }
        // A structure whose inner length claims more than the outer element holds.
        let mut item = items(GO_SINGLE).remove(0);
        item[17] = 0xFF; // high byte of the [0] length
        assert!(matches!(Pkcs7KeyWrapper.unwrap(&dc, &item), Some(Err(_))));
    }

    #[test]
    fn too_many_recipients_is_an_error() {
        let (cert, _) = rcauth_user();
        let item = wrap(&[cert]);
        let env = Envelope::parse(&item).unwrap();
        let r = &env.recipients[0];
        let ri = tlv(
            SEQUENCE,
            &cat(&[
                &uint(0),
                &tlv(SEQUENCE, &cat(&[r.issuer, &tlv(INTEGER, r.serial)])),
                &tlv(SEQUENCE, &oid(OID_RSA_ENCRYPTION)),
                &tlv(OCTET_STRING, r.encrypted_key),
            ]),
        );
        let build = |n: usize| {
            let set = tlv(SET, &ri.repeat(n));
            let eci = tlv(
                SEQUENCE,
                &cat(&[
                    &oid(OID_DATA),
                    &tlv(SEQUENCE, &oid(OID_AES128_GCM)),
                    &tlv(CTX0_PRIM, &[0; 16]),
                ]),
            );
            let ed = tlv(SEQUENCE, &cat(&[&uint(0), &set, &eci]));
            tlv(
                SEQUENCE,
                &cat(&[&oid(OID_ENVELOPED_DATA), &tlv(CTX0_CONS, &ed)]),
            )
        };
        assert_eq!(
            Pkcs7KeyWrapper
                .recipients(&build(MAX_RECIPIENTS))
                .unwrap()
                .len(),
            MAX_RECIPIENTS
        );
        let err = Pkcs7KeyWrapper
            .recipients(&build(MAX_RECIPIENTS + 1))
            .unwrap_err();
        assert!(err.to_string().contains("recipients"), "{err}");
    }

    #[test]
    fn reads_other_writers_layouts() {
        let (cert, key) = rcauth_user();
        let dc = dc_for(vec![key], vec![cert.clone()]);
        for content in [
            ContentAlg::Aes128Gcm,
            ContentAlg::Aes256Gcm,
            ContentAlg::Aes128Cbc,
            ContentAlg::Aes256Cbc,
            ContentAlg::DesEde3Cbc,
        ] {
            for key_transport in [KeyTransport::RsaPkcs1, KeyTransport::RsaOaepSha1] {
                for (rfc5084_params, primitive_content) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let layout = Layout {
                        content,
                        key_transport,
                        rfc5084_params,
                        primitive_content,
                    };
                    let item = envelope(std::slice::from_ref(&cert), OPTS, &layout).unwrap();
                    assert_eq!(unwrap_ok(&dc, &item), OPTS, "{layout:?}");
                }
            }
        }
    }

    /// OpenSSL's CMS as an independent writer for the CBC content ciphers (it cannot write GCM
    /// inside EnvelopedData): RSA PKCS#1 v1.5 with NULL parameters, primitive content.
    #[test]
    fn reads_openssl_cms_cbc() {
        use openssl::cms::{CMSOptions, CmsContentInfo};
        use openssl::stack::Stack;
        let (cert, key) = rcauth_user();
        let dc = dc_for(vec![key], vec![cert.clone()]);
        let mut stack = Stack::new().unwrap();
        stack.push(cert.x509().clone()).unwrap();
        for cipher in [
            Cipher::aes_128_cbc(),
            Cipher::aes_256_cbc(),
            Cipher::des_ede3_cbc(),
        ] {
            let cms = CmsContentInfo::encrypt(&stack, OPTS, cipher, CMSOptions::BINARY).unwrap();
            assert_eq!(unwrap_ok(&dc, &cms.to_der().unwrap()), OPTS);
        }
    }

    #[test]
    fn go_vector_single_recipient() {
        let dc = dc_for(vec![fixture_key("key.pem")], vec![fixture_cert("cert.pem")]);
        let items = items(GO_SINGLE);
        assert_eq!(items.len(), 1);
        let opts = Pkcs7KeyWrapper.unwrap(&dc, &items[0]).unwrap().unwrap();
        assert_private_opts(&opts);
        let cert = fixture_cert("cert.pem");
        let serial = cert
            .x509()
            .serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_lowercase();
        assert_eq!(
            Pkcs7KeyWrapper.recipients(&items[0]).unwrap(),
            vec![RecipientInfo::Pkcs7 {
                issuer: "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-"
                    .into(),
                serial: serial.trim_start_matches('0').to_owned(),
            }]
        );
    }

    #[test]
    fn go_vector_two_recipients() {
        let items = items(GO_TWO);
        assert_eq!(items.len(), 1);
        for (key, cert) in [("key.pem", "cert.pem"), ("key2.pem", "cert2.pem")] {
            let dc = dc_for(vec![fixture_key(key)], vec![fixture_cert(cert)]);
            assert_private_opts(&Pkcs7KeyWrapper.unwrap(&dc, &items[0]).unwrap().unwrap());
        }
        // The key of one recipient with the certificate of the other: no matching pair.
        let dc = dc_for(
            vec![fixture_key("key.pem")],
            vec![fixture_cert("cert2.pem")],
        );
        assert!(Pkcs7KeyWrapper.unwrap(&dc, &items[0]).is_none());
        assert_eq!(Pkcs7KeyWrapper.recipients(&items[0]).unwrap().len(), 2);
    }

    /// Where the random parts of an item are (byte ranges into the item).
    struct Regions {
        encrypted_key: std::ops::Range<usize>,
        params: std::ops::Range<usize>,
        content: std::ops::Range<usize>,
        encrypted_keys: Vec<std::ops::Range<usize>>,
    }

    fn range_of(item: &[u8], part: &[u8]) -> std::ops::Range<usize> {
        let start = part.as_ptr() as usize - item.as_ptr() as usize;
        start..start + part.len()
    }

    /// Finds the random regions by walking the structure (Go's constructed layout).
    fn regions(item: &[u8]) -> Regions {
        let env = Envelope::parse(item).unwrap();
        let encrypted_keys: Vec<_> = env
            .recipients
            .iter()
            .map(|r| range_of(item, r.encrypted_key))
            .collect();
        let params = range_of(item, env.content_alg.params.unwrap().raw);
        // The OCTET STRING inside [0] is the last element of the item.
        let content = item.len() - env.ciphertext.len()..item.len();
        Regions {
            encrypted_key: encrypted_keys[0].clone(),
            params,
            content,
            encrypted_keys,
        }
    }

    /// Zeroes encryptedKeys, the GCM nonce and the ciphertext ‖ tag.
    fn mask_random(item: &[u8]) -> Vec<u8> {
        let r = regions(item);
        let mut out = item.to_vec();
        for range in r.encrypted_keys.iter().cloned().chain([
            r.params.end - 3 - GCM_NONCE_LEN..r.params.end - 3,
            r.content.clone(),
        ]) {
            out[range].fill(0);
        }
        out
    }

    #[test]
    fn wrap_matches_go_byte_for_byte_except_random_parts() {
        for (annotation, certs) in [
            (GO_SINGLE, vec!["cert.pem"]),
            (GO_TWO, vec!["cert2.pem", "cert.pem"]),
        ] {
            let go = items(annotation).remove(0);
            let dc = dc_for(vec![fixture_key("key.pem")], vec![fixture_cert("cert.pem")]);
            let opts = Pkcs7KeyWrapper.unwrap(&dc, &go).unwrap().unwrap();
            let certs: Vec<Certificate> = certs.into_iter().map(fixture_cert).collect();
            let ours = Pkcs7KeyWrapper
                .wrap(&ec_for(certs), &opts)
                .unwrap()
                .unwrap();
            assert_eq!(ours.len(), go.len());
            // The Go parameters element is exactly 10 13 30 11 84 0C <nonce> 02 01 10.
            let p = regions(&go).params;
            assert_eq!(
                &go[p.start..p.start + 6],
                &[0x10, 0x13, 0x30, 0x11, 0x84, 0x0C]
            );
            assert_eq!(&go[p.end - 3..p.end], &[0x02, 0x01, 0x10]);
            assert_eq!(mask_random(&ours), mask_random(&go));
            assert!(ours != go);
        }
    }

    // ---- removing recipients --------------------------------------------------------

    /// The recipient of `cert` as `recipients()` reports it.
    fn info_of(cert: &Certificate) -> RecipientInfo {
        RecipientInfo::Pkcs7 {
            issuer: grid_dn_display(cert.x509().issuer_name()),
            serial: serial_hex(&CertId::of(cert).unwrap().serial),
        }
    }

    fn remove_certs(item: &[u8], certs: &[&Certificate]) -> Result<Option<Vec<u8>>> {
        let infos: Vec<RecipientInfo> = certs.iter().map(|c| info_of(c)).collect();
        Pkcs7KeyWrapper.remove_recipients(item, &|r: &RecipientInfo| infos.contains(r))
    }

    fn self_signed(cn: &str, serial: u32) -> (Certificate, PrivateKey) {
        let key = rsa(2048);
        let c = cert(&[("CN", cn)], &key, serial, None);
        (
            Certificate::new(c, format!("{cn}.pem")),
            PrivateKey::new(key, format!("{cn}.key")),
        )
    }

    #[test]
    fn remove_one_of_three_keeps_the_others() {
        let (c1, k1) = rcauth_user();
        let (c2, k2) = self_signed("two", 2);
        let (c3, k3) = self_signed("three", 3);
        let item = wrap(&[c1.clone(), c2.clone(), c3.clone()]);
        let out = remove_certs(&item, &[&c2]).unwrap().unwrap();
        let (before, after) = (
            Envelope::parse(&item).unwrap(),
            Envelope::parse(&out).unwrap(),
        );
        assert_eq!(after.head, before.head, "version changed");
        assert_eq!(after.tail, before.tail, "EncryptedContentInfo changed");
        let raws = |e: &Envelope<'_>| {
            e.recipients
                .iter()
                .map(|r| r.raw.to_vec())
                .collect::<Vec<_>>()
        };
        let mut want = raws(&before);
        want.retain(|r| Pkcs7KeyWrapper.recipients(&wrap_ri(r)).unwrap()[0] != info_of(&c2));
        assert_eq!(raws(&after), want);
        let mut sorted = raws(&after);
        sorted.sort();
        assert_eq!(raws(&after), sorted, "SET OF not sorted");
        assert_eq!(unwrap_ok(&dc_for(vec![k1], vec![c1.clone()]), &out), OPTS);
        assert_eq!(unwrap_ok(&dc_for(vec![k3], vec![c3.clone()]), &out), OPTS);
        assert!(Pkcs7KeyWrapper
            .unwrap(&dc_for(vec![k2], vec![c2.clone()]), &out)
            .is_none());
        let mut left = Pkcs7KeyWrapper.recipients(&item).unwrap();
        left.retain(|i| *i != info_of(&c2));
        assert_eq!(left.len(), 2);
        assert_eq!(Pkcs7KeyWrapper.recipients(&out).unwrap(), left);
    }

    /// An item holding only the RecipientInfo `ri` (to read its issuer and serial back).
    fn wrap_ri(ri: &[u8]) -> Vec<u8> {
        let ed = tlv(
            SEQUENCE,
            &cat(&[
                &uint(0),
                &tlv(SET, ri),
                &tlv(
                    SEQUENCE,
                    &cat(&[
                        &oid(OID_DATA),
                        &tlv(SEQUENCE, &oid(OID_AES128_GCM)),
                        &tlv(CTX0_PRIM, &[0; 16]),
                    ]),
                ),
            ]),
        );
        tlv(
            SEQUENCE,
            &cat(&[&oid(OID_ENVELOPED_DATA), &tlv(CTX0_CONS, &ed)]),
        )
    }

    #[test]
    fn remove_all_is_none() {
        let (c1, _) = rcauth_user();
        let (c2, _) = self_signed("two", 2);
        let two = wrap(&[c1.clone(), c2.clone()]);
        assert!(remove_certs(&two, &[&c1, &c2]).unwrap().is_none());
        assert!(Pkcs7KeyWrapper
            .remove_recipients(&two, &|_| true)
            .unwrap()
            .is_none());
        let one = wrap(std::slice::from_ref(&c1));
        assert!(remove_certs(&one, &[&c1]).unwrap().is_none());
        let after = remove_certs(&two, &[&c2]).unwrap().unwrap();
        assert!(remove_certs(&after, &[&c1]).unwrap().is_none());
    }

    #[test]
    fn remove_nothing_returns_the_item_byte_for_byte() {
        let (c1, _) = rcauth_user();
        let (c2, _) = self_signed("two", 2);
        let (stranger, _) = self_signed("stranger", 9);
        let mut cases = vec![wrap(&[c1.clone(), c2]), wrap(&[c1])];
        cases.extend(items(GO_TWO));
        // An unsorted SET OF from another writer stays unsorted when nothing is removed.
        let env = Envelope::parse(&cases[0]).unwrap();
        let unsorted = tlv(
            SEQUENCE,
            &cat(&[
                &oid(OID_ENVELOPED_DATA),
                &tlv(
                    CTX0_CONS,
                    &tlv(
                        SEQUENCE,
                        &cat(&[
                            env.head,
                            &tlv(SET, &cat(&[env.recipients[1].raw, env.recipients[0].raw])),
                            env.tail,
                        ]),
                    ),
                ),
            ]),
        );
        cases.push(unsorted);
        for item in cases {
            assert_eq!(
                remove_certs(&item, &[&stranger]).unwrap(),
                Some(item.clone())
            );
            assert_eq!(
                Pkcs7KeyWrapper
                    .remove_recipients(&item, &|_| false)
                    .unwrap(),
                Some(item.clone())
            );
        }
    }

    #[test]
    fn remove_from_malformed_items_is_an_error() {
        let all = |_: &RecipientInfo| true;
        for bad in [
            &b""[..],
            &[0x30, 0x00],
            &[0x30, 0x80, 0x06, 0x00, 0x00, 0x00],
            &[0u8; 64],
        ] {
            assert!(
                Pkcs7KeyWrapper.remove_recipients(bad, &all).is_err(),
                "{bad:02x?}"
            );
        }
        let item = items(GO_TWO).remove(0);
        for len in 0..item.len() {
            assert!(
                Pkcs7KeyWrapper
                    .remove_recipients(&item[..len], &all)
                    .is_err(),
                "len {len}"
            );
        }
        let mut trailing = item.clone();
        trailing.push(0);
        assert!(Pkcs7KeyWrapper.remove_recipients(&trailing, &all).is_err());
        // Flipped bytes: an error or an answer, never a panic.
        let cert2 = fixture_cert("cert2.pem");
        for i in 0..item.len() {
            let mut bad = item.clone();
            bad[i] ^= 0x80;
            let _ = remove_certs(&bad, &[&cert2]);
        }
    }

    #[test]
    fn go_vector_remove_second_recipient() {
        let item = items(GO_TWO).remove(0);
        let (cert, cert2) = (fixture_cert("cert.pem"), fixture_cert("cert2.pem"));
        let out = remove_certs(&item, &[&cert2]).unwrap().unwrap();
        assert_eq!(
            Pkcs7KeyWrapper.recipients(&out).unwrap(),
            vec![info_of(&cert)]
        );
        let opts = unwrap_ok(&dc_for(vec![fixture_key("key.pem")], vec![cert]), &out);
        assert_private_opts(&SecretBytes::new(opts));
        assert!(Pkcs7KeyWrapper
            .unwrap(&dc_for(vec![fixture_key("key2.pem")], vec![cert2]), &out)
            .is_none());
        assert_eq!(
            Envelope::parse(&out).unwrap().tail,
            Envelope::parse(&item).unwrap().tail
        );
        // The result is what Go writes for cert.pem alone, up to the random parts.
        assert_eq!(mask_random(&out), mask_random(&items(GO_SINGLE)[0]));
    }

    #[test]
    fn recipients_list_issuers_in_the_grid_form() {
        assert_eq!(grid_dn_display(&name(CA_DN)), CA_GRID);
    }

    #[test]
    fn der_reader_basics() {
        assert_eq!(tlv(OCTET_STRING, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(
            tlv(OCTET_STRING, &[0; 0x100])[..4],
            [0x04, 0x82, 0x01, 0x00]
        );
        assert_eq!(uint(0), [0x02, 0x01, 0x00]);
        assert_eq!(uint(0x80), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(minimal_int(&[0x00, 0x80]), &[0x00, 0x80]);
        assert_eq!(minimal_int(&[0x00, 0x00, 0x7F]), &[0x7F]);
        assert_eq!(minimal_int(&[0xFF, 0xFF, 0x80]), &[0x80]);
        assert_eq!(serial_hex(&[0x00, 0x80]), "80");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert!(small_uint(&[0x00, 0x01]).is_err());
        let data = tlv(OCTET_STRING, &[1; 300]);
        let mut r = Reader::new(&data);
        assert_eq!(r.expect(OCTET_STRING, "x").unwrap().len(), 300);
        r.finish("x").unwrap();
    }

    /// Helper for `go-interop.sh`, not a test: unwraps an annotation value with a key and
    /// certificate, and re-wraps the private options for other certificates.
    ///
    /// Env: `PKCS7_IN` (file with the annotation value), `PKCS7_KEY`, `PKCS7_CERT` (PEM files),
    /// `PKCS7_RECIPIENTS` (comma-separated PEM certificate files), `PKCS7_OUT` (output file).
    #[test]
    #[ignore = "helper for tests/data/pkcs7/go-interop.sh"]
    fn go_interop_rewrap_helper() {
        let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
        let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let key = PrivateKey::new(
            PKey::private_key_from_pem(&read(&env("PKCS7_KEY"))).unwrap(),
            "key",
        );
        let cert = Certificate::new(X509::from_pem(&read(&env("PKCS7_CERT"))).unwrap(), "cert");
        let annotation = String::from_utf8(read(&env("PKCS7_IN"))).unwrap();
        let dc = dc_for(vec![key], vec![cert]);
        let opts = items(&annotation)
            .iter()
            .find_map(|i| Pkcs7KeyWrapper.unwrap(&dc, i).map(Result::unwrap))
            .expect("no item for this key");
        assert_private_opts(&opts);
        let recipients: Vec<Certificate> = env("PKCS7_RECIPIENTS")
            .split(',')
            .map(|p| Certificate::new(X509::from_pem(&read(p)).unwrap(), p))
            .collect();
        let item = Pkcs7KeyWrapper
            .wrap(&ec_for(recipients), &opts)
            .unwrap()
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(item);
        std::fs::write(env("PKCS7_OUT"), b64).unwrap();
    }

    /// Helper for `go-interop.sh`, not a test: removes from every item of an annotation value
    /// the recipients of the given certificates (no key needed) and writes the new value.
    ///
    /// Env: `PKCS7_IN` (file with the annotation value), `PKCS7_REMOVE` (comma-separated PEM
    /// certificate files), `PKCS7_OUT` (output file). Fails if nothing was removed or nothing
    /// is left.
    #[test]
    #[ignore = "helper for tests/data/pkcs7/go-interop.sh"]
    fn go_interop_remove_helper() {
        let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
        let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let annotation = String::from_utf8(read(&env("PKCS7_IN"))).unwrap();
        let remove: Vec<Certificate> = env("PKCS7_REMOVE")
            .split(',')
            .map(|p| Certificate::new(X509::from_pem(&read(p)).unwrap(), p))
            .collect();
        let refs: Vec<&Certificate> = remove.iter().collect();
        let before = items(&annotation);
        let after: Vec<Vec<u8>> = before
            .iter()
            .filter_map(|i| remove_certs(i, &refs).unwrap())
            .collect();
        assert!(!after.is_empty(), "no recipient left");
        assert_ne!(after, before, "nothing was removed");
        let std = base64::engine::general_purpose::STANDARD;
        let value = after
            .iter()
            .map(|i| std.encode(i))
            .collect::<Vec<_>>()
            .join(",");
        std::fs::write(env("PKCS7_OUT"), value).unwrap();
    }
}
