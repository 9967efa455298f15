//! IGTF namespace constraints: which subject DNs each CA of a grid CA directory may sign.
//!
//! Next to each `<hash>.0` in `/etc/grid-security/certificates`, the IGTF CA distribution
//! (EGI's `ca-policy-egi-core` meta-package and its `ca_*` packages) installs two policy
//! files that say which subjects that CA may certify:
//!
//! - `<hash>.signing_policy`, a Globus EACL:
//!   ```text
//!   access_id_CA   X509    '/DC=eu/DC=rcauth/O=Certification Authorities/CN=Example CA'
//!   pos_rights     globus  CA:sign
//!   cond_subjects  globus  '"/DC=eu/DC=rcauth/DC=rcauth-clients/*" "/DC=eu/DC=x/*"'
//!   ```
//!   The patterns are shell-style globs: `*` matches any run of characters (`/` included),
//!   `?` one character. A subject is permitted if it matches a `cond_subjects` pattern of an
//!   `access_id_CA` block that names the issuing CA and has `pos_rights globus CA:sign`.
//! - `<hash>.namespaces`, the EUGridPMA namespaces format (version 1.0):
//!   ```text
//!   TO Issuer "/C=NL/O=Example/CN=Example CA" \
//!     PERMIT Subject "/C=NL/O=Example/.*"
//!   TO Issuer "/C=NL/O=Example/CN=Example CA" DENY Subject "/C=NL/O=Example/CN=Bad.*"
//!   ```
//!   `SELF` may stand for the issuer (`TO SELF …` or `TO Issuer SELF …`): the CA of the file.
//!   Subject patterns are POSIX extended regular expressions matched against the whole DN.
//!   A matching DENY wins over any PERMIT; a subject no PERMIT matches is not permitted.
//!
//! DNs are compared in the grid `/K=V/…` form that [`grid_dn`] produces (the form
//! grants are written in), byte for byte: attribute names and case must be written as OpenSSL
//! prints them (`emailAddress`, not `Email`).
//!
//! [`grid_dn`]: https://docs.rs/layercrypt-ocicrypt (`keys::grid::grid_dn`)
//!
//! Written by hand: no maintained Rust crate parses either format (the implementations are
//! the C of Globus GSI, VOMS and gridsite, and the Java of canl-java). Both are small line
//! formats; the subject patterns, globs included (translated), are compiled with the `regex`
//! crate, which matches in time linear in the DN, so no pattern can make a check slow.
//! What is read is bounded: file size, number of rules, pattern length, compiled size.
//! A file that does not parse is refused with its name and line.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// File name suffix of a Globus EACL signing policy (`<hash>.signing_policy`).
pub const SIGNING_POLICY_SUFFIX: &str = "signing_policy";
/// File name suffix of an EUGridPMA namespaces file (`<hash>.namespaces`).
pub const NAMESPACES_SUFFIX: &str = "namespaces";
/// Largest policy file read, bytes (IGTF's are well under 4 KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most rules (namespaces lines, or signing-policy patterns) in one file.
pub const MAX_RULES: usize = 1024;
/// Longest DN or subject pattern, bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Largest compiled pattern, bytes (the `regex` crate's size limit).
const MAX_REGEX_BYTES: usize = 256 * 1024;

// Globus EACL keywords.
const ACCESS_ID_CA: &str = "access_id_CA";
const POS_RIGHTS: &str = "pos_rights";
const COND_SUBJECTS: &str = "cond_subjects";
const AUTHORITY_X509: &str = "X509";
const AUTHORITY_GLOBUS: &str = "globus";
const RIGHT_CA_SIGN: &str = "CA:sign";

// EUGridPMA namespaces keywords (case-insensitive).
const NS_TO: &str = "TO";
const NS_ISSUER: &str = "ISSUER";
const NS_SELF: &str = "SELF";
const NS_PERMIT: &str = "PERMIT";
const NS_DENY: &str = "DENY";
const NS_SUBJECT: &str = "SUBJECT";
/// The version line of a namespaces file, and the one version defined.
const NS_VERSION_PREFIX: &str = "#NAMESPACES-VERSION:";
const NS_VERSION: &str = "1.0";

/// How the broker applies namespace constraints (`tls.namespaces`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamespaceMode {
    /// A CA signs only subjects its `.namespaces` (else `.signing_policy`) file permits; a CA
    /// with neither file signs nothing.
    #[default]
    Require,
    /// As `Require`, but a CA with neither file is trusted for every subject.
    IfPresent,
    /// Not enforced: every CA in the directory is trusted for every subject.
    Off,
}

impl std::fmt::Display for NamespaceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NamespaceMode::Require => "require",
            NamespaceMode::IfPresent => "if-present",
            NamespaceMode::Off => "off",
        })
    }
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// The file cannot be read.
    #[error("cannot read {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`] or not a regular file.
    #[error("{}: {message}", file.display())]
    Unusable {
        /// The file.
        file: PathBuf,
        /// What.
        message: String,
    },
    /// A line does not parse or exceeds a limit.
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line number (the first line of a continued entry).
        line: usize,
        /// What.
        message: String,
    },
}

/// Why a policy does not let an issuer sign a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The file has no rule (namespaces) or `access_id_CA` block (signing policy) for the issuer.
    NoRuleForIssuer,
    /// The signing policy names the issuer but grants it no `pos_rights globus CA:sign`.
    NoSignRight,
    /// A DENY rule matches.
    Denied {
        /// Its line.
        line: usize,
        /// Its subject pattern.
        pattern: String,
    },
    /// No PERMIT rule or `cond_subjects` pattern matches.
    NotPermitted,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoRuleForIssuer => f.write_str("the file has no rule for this issuer"),
            Refusal::NoSignRight => write!(
                f,
                "the issuer's block has no `{POS_RIGHTS} {AUTHORITY_GLOBUS} {RIGHT_CA_SIGN}`"
            ),
            Refusal::Denied { line, pattern } => {
                write!(f, "DENY Subject \"{pattern}\" (line {line}) matches")
            }
            Refusal::NotPermitted => f.write_str("no permitted subject pattern matches"),
        }
    }
}

/// A compiled subject pattern and where it came from.
#[derive(Debug, Clone)]
struct SubjectPattern {
    /// As written in the file.
    text: String,
    /// Anchored at both ends.
    regex: Regex,
    line: usize,
}

impl SubjectPattern {
    fn matches(&self, subject: &str) -> bool {
        self.regex.is_match(subject)
    }
}

fn compile(anchored: &str) -> Result<Regex, String> {
    RegexBuilder::new(anchored)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| format!("invalid pattern: {e}"))
}

/// A Globus glob as an anchored regex: `*` any run of characters, `?` one character,
/// everything else literal.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::with_capacity(glob.len() * 2 + 8);
    re.push_str("^(?s:");
    let mut buf = [0u8; 4];
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    re.push_str(")$");
    re
}

/// One `access_id_CA` block of a signing policy.
#[derive(Debug, Clone)]
struct CaBlock {
    ca_dn: String,
    can_sign: bool,
    subjects: Vec<SubjectPattern>,
}

/// A parsed `<hash>.signing_policy` (Globus EACL).
#[derive(Debug, Clone)]
pub struct SigningPolicy {
    blocks: Vec<CaBlock>,
}

/// Splits off the first whitespace-separated word.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `'text'` (or `"text"`) with nothing after the closing quote.
fn quoted_value(value: &str) -> Result<&str, String> {
    let value = value.trim();
    let Some(quote) = value.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        return Err(format!("expected a quoted string, found {value:?}"));
    };
    let inner = &value[1..];
    let Some(end) = inner.find(quote) else {
        return Err(format!("no closing {quote} in {value:?}"));
    };
    if !inner[end + 1..].trim().is_empty() {
        return Err(format!(
            "unexpected text after the quoted string: {:?}",
            inner[end + 1..].trim()
        ));
    }
    Ok(&inner[..end])
}

/// The patterns of `cond_subjects globus '"p1" "p2"'`: double-quoted strings inside a
/// single-quoted one (a lone unquoted pattern is accepted, as Globus does).
fn subject_list(value: &str) -> Result<Vec<&str>, String> {
    let value = value.trim();
    let inner = if value.starts_with('\'') {
        quoted_value(value)?
    } else {
        value
    };
    let mut patterns = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let end = after
                .find('"')
                .ok_or_else(|| format!("no closing \" in {rest:?}"))?;
            patterns.push(&after[..end]);
            rest = &after[end + 1..];
            if rest.starts_with(|c: char| !c.is_whitespace()) {
                return Err(format!("expected a space after a pattern, found {rest:?}"));
            }
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            patterns.push(&rest[..end]);
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    if patterns.is_empty() {
        return Err(format!("{COND_SUBJECTS} lists no subject pattern"));
    }
    Ok(patterns)
}

fn check_len(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("empty {what}"));
    }
    if text.len() > MAX_PATTERN_LEN {
        return Err(format!("{what} longer than {MAX_PATTERN_LEN} bytes"));
    }
    Ok(())
}

impl SigningPolicy {
    /// Parses the text of a signing policy; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<SigningPolicy, PolicyFileError> {
        let mut blocks: Vec<CaBlock> = Vec::new();
        let mut rules = 0usize;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let syntax = |message: String| PolicyFileError::Syntax {
                file: file.to_owned(),
                line,
                message,
            };
            let statement = raw.trim();
            if statement.is_empty() || statement.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(statement);
            let (authority, value) = split_word(rest);
            let expect_authority = |expected: &str| {
                if authority == expected {
                    Ok(())
                } else {
                    Err(syntax(format!(
                        "{keyword}: expected defining authority {expected}, found {authority:?}"
                    )))
                }
            };
            match keyword {
                ACCESS_ID_CA => {
                    expect_authority(AUTHORITY_X509)?;
                    let dn = quoted_value(value).map_err(&syntax)?;
                    check_len("CA DN", dn).map_err(&syntax)?;
                    blocks.push(CaBlock {
                        ca_dn: dn.to_owned(),
                        can_sign: false,
                        subjects: Vec::new(),
                    });
                }
                POS_RIGHTS => {
                    expect_authority(AUTHORITY_GLOBUS)?;
                    let block = blocks
                        .last_mut()
                        .ok_or_else(|| syntax(format!("{POS_RIGHTS} before any {ACCESS_ID_CA}")))?;
                    // Other rights grant nothing here; only CA:sign is looked at.
                    if value.split_whitespace().any(|r| r == RIGHT_CA_SIGN) {
                        block.can_sign = true;
                    }
                }
                COND_SUBJECTS => {
                    expect_authority(AUTHORITY_GLOBUS)?;
                    let block = blocks.last_mut().ok_or_else(|| {
                        syntax(format!("{COND_SUBJECTS} before any {ACCESS_ID_CA}"))
                    })?;
                    for glob in subject_list(value).map_err(&syntax)? {
                        check_len("subject pattern", glob).map_err(&syntax)?;
                        rules += 1;
                        if rules > MAX_RULES {
                            return Err(syntax(format!("more than {MAX_RULES} subject patterns")));
                        }
                        block.subjects.push(SubjectPattern {
                            text: glob.to_owned(),
                            regex: compile(&glob_to_regex(glob)).map_err(&syntax)?,
                            line,
                        });
                    }
                }
                // neg_rights, other access identities and conditions: refused rather than
                // ignored, since ignoring a restriction would widen what a CA may sign.
                other => {
                    return Err(syntax(format!(
                        "unsupported statement {other:?} (expected {ACCESS_ID_CA}, {POS_RIGHTS} or {COND_SUBJECTS})"
                    )))
                }
            }
        }
        if blocks.is_empty() {
            return Err(PolicyFileError::Unusable {
                file: file.to_owned(),
                message: format!("no {ACCESS_ID_CA} statement"),
            });
        }
        Ok(SigningPolicy { blocks })
    }

    /// Whether `issuer_dn` may sign `subject_dn` (both in `/K=V/…` form).
    pub fn check(&self, issuer_dn: &str, subject_dn: &str) -> Result<(), Refusal> {
        let mut named = false;
        let mut can_sign = false;
        for block in self.blocks.iter().filter(|b| b.ca_dn == issuer_dn) {
            named = true;
            if !block.can_sign {
                continue;
            }
            can_sign = true;
            if block.subjects.iter().any(|p| p.matches(subject_dn)) {
                return Ok(());
            }
        }
        Err(match (named, can_sign) {
            (false, _) => Refusal::NoRuleForIssuer,
            (true, false) => Refusal::NoSignRight,
            (true, true) => Refusal::NotPermitted,
        })
    }
}

/// The issuer a namespaces rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleIssuer {
    /// `SELF`: the CA whose file this is.
    SelfCa,
    /// `Issuer "<dn>"`.
    Dn(String),
}

#[derive(Debug, Clone)]
struct NamespaceRule {
    issuer: RuleIssuer,
    permit: bool,
    subject: SubjectPattern,
}

/// A parsed `<hash>.namespaces` (EUGridPMA namespaces format 1.0).
#[derive(Debug, Clone)]
pub struct Namespaces {
    rules: Vec<NamespaceRule>,
}

/// `text` up to an unquoted, unescaped `#`.
fn strip_comment(text: &str) -> &str {
    let mut in_quote = false;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => in_quote = !in_quote,
            '#' if !in_quote => return &text[..i],
            _ => {}
        }
    }
    text
}

/// A token of a namespaces entry.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    /// The text between the quotes; backslash escapes are kept as written (they are regex
    /// escapes in subject patterns).
    Quoted(&'a str),
}

fn tokenize(entry: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut rest = entry.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let mut end = None;
            let mut chars = after.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("no closing \" in {rest:?}"))?;
            tokens.push(Token::Quoted(&after[..end]));
            rest = &after[end + 1..];
            if rest.starts_with(|c: char| !c.is_whitespace()) {
                return Err(format!(
                    "expected a space after a quoted string, found {rest:?}"
                ));
            }
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            tokens.push(Token::Word(&rest[..end]));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

fn is_word(token: Option<&Token<'_>>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
}

fn expected(what: &str, found: Option<&Token<'_>>) -> String {
    match found {
        Some(Token::Word(w)) => format!("expected {what}, found {w:?}"),
        Some(Token::Quoted(q)) => format!("expected {what}, found \"{q}\""),
        None => format!("expected {what} at the end of the entry"),
    }
}

/// `TO Issuer "<dn>" PERMIT|DENY Subject "<regex>"` (or `TO [Issuer] SELF …`).
fn parse_rule(entry: &str, line: usize) -> Result<NamespaceRule, String> {
    let tokens = tokenize(entry)?;
    let mut t = tokens.iter().peekable();
    if !is_word(t.peek().copied(), NS_TO) {
        return Err(expected("TO", t.peek().copied()));
    }
    t.next();
    if is_word(t.peek().copied(), NS_ISSUER) {
        t.next();
    }
    let issuer = match t.next() {
        Some(Token::Quoted(dn)) => {
            check_len("issuer DN", dn)?;
            RuleIssuer::Dn((*dn).to_owned())
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case(NS_SELF) => RuleIssuer::SelfCa,
        other => return Err(expected("a quoted issuer DN or SELF", other)),
    };
    let permit = match t.next() {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case(NS_PERMIT) => true,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case(NS_DENY) => false,
        other => return Err(expected("PERMIT or DENY", other)),
    };
    if !is_word(t.peek().copied(), NS_SUBJECT) {
        return Err(expected("Subject", t.peek().copied()));
    }
    t.next();
    let pattern = match t.next() {
        Some(Token::Quoted(p)) => *p,
        other => return Err(expected("a quoted subject pattern", other)),
    };
    if let Some(extra) = t.next() {
        return Err(expected("the end of the entry", Some(extra)));
    }
    check_len("subject pattern", pattern)?;
    Ok(NamespaceRule {
        issuer,
        permit,
        subject: SubjectPattern {
            text: pattern.to_owned(),
            regex: compile(&format!("^(?:{pattern})$"))?,
            line,
        },
    })
}

impl Namespaces {
    /// Parses the text of a namespaces file; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Namespaces, PolicyFileError> {
        let syntax = |line: usize, message: String| PolicyFileError::Syntax {
            file: file.to_owned(),
            line,
            message,
        };
        let mut rules = Vec::new();
        // A logical entry: its first line and its text so far (continuations joined).
        let mut pending: Option<(usize, String)> = None;
        let mut lines = text.lines().enumerate().peekable();
        while let Some((index, raw)) = lines.next() {
            let line = index + 1;
            if let Some(version) = raw.trim().strip_prefix(NS_VERSION_PREFIX) {
                if version.trim() != NS_VERSION {
                    return Err(syntax(
                        line,
                        format!(
                            "namespaces format version {:?} is not {NS_VERSION}",
                            version.trim()
                        ),
                    ));
                }
                continue;
            }
            let content = strip_comment(raw).trim_end();
            let (continued, content) = match content.strip_suffix('\\') {
                Some(c) if !c.ends_with('\\') => (true, c),
                _ => (false, content),
            };
            let entry = pending.get_or_insert_with(|| (line, String::new()));
            entry.1.push(' ');
            entry.1.push_str(content);
            if continued && lines.peek().is_some() {
                continue;
            }
            let Some((first, text)) = pending.take() else {
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            if rules.len() == MAX_RULES {
                return Err(syntax(first, format!("more than {MAX_RULES} rules")));
            }
            rules.push(parse_rule(&text, first).map_err(|m| syntax(first, m))?);
        }
        if rules.is_empty() {
            return Err(PolicyFileError::Unusable {
                file: file.to_owned(),
                message: "no TO Issuer rule".into(),
            });
        }
        Ok(Namespaces { rules })
    }

    /// Whether `issuer_dn` may sign `subject_dn` (both in `/K=V/…` form). `SELF` rules are
    /// taken to be about `issuer_dn`: the caller looked this file up by the issuer's hash.
    pub fn check(&self, issuer_dn: &str, subject_dn: &str) -> Result<(), Refusal> {
        let mut any = false;
        let mut permitted = false;
        for rule in &self.rules {
            match &rule.issuer {
                RuleIssuer::SelfCa => {}
                RuleIssuer::Dn(dn) if dn == issuer_dn => {}
                RuleIssuer::Dn(_) => continue,
            }
            any = true;
            if !rule.subject.matches(subject_dn) {
                continue;
            }
            if !rule.permit {
                return Err(Refusal::Denied {
                    line: rule.subject.line,
                    pattern: rule.subject.text.clone(),
                });
            }
            permitted = true;
        }
        match (any, permitted) {
            (false, _) => Err(Refusal::NoRuleForIssuer),
            (true, true) => Ok(()),
            (true, false) => Err(Refusal::NotPermitted),
        }
    }
}

/// The policy of one CA: from its `.namespaces` file if it has one, else from its
/// `.signing_policy`.
#[derive(Debug, Clone)]
pub enum CaPolicy {
    /// EUGridPMA namespaces.
    Namespaces(Namespaces),
    /// Globus signing policy.
    SigningPolicy(SigningPolicy),
}

impl CaPolicy {
    /// Whether `issuer_dn` may sign `subject_dn` (both in `/K=V/…` form).
    pub fn check(&self, issuer_dn: &str, subject_dn: &str) -> Result<(), Refusal> {
        match self {
            CaPolicy::Namespaces(n) => n.check(issuer_dn, subject_dn),
            CaPolicy::SigningPolicy(s) => s.check(issuer_dn, subject_dn),
        }
    }
}

/// A CA's policy and the file it came from.
#[derive(Debug, Clone)]
pub struct CaNamespace {
    /// The file.
    pub file: PathBuf,
    /// Its rules.
    pub policy: CaPolicy,
}

/// Reads a policy file of at most [`MAX_FILE_BYTES`]; `Ok(None)` if it does not exist.
fn read_bounded(file: &Path) -> Result<Option<String>, PolicyFileError> {
    let read_error = |source| PolicyFileError::Read {
        file: file.to_owned(),
        source,
    };
    let unusable = |message: String| PolicyFileError::Unusable {
        file: file.to_owned(),
        message,
    };
    let handle = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let meta = handle.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(unusable("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    handle
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(unusable(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        PolicyFileError::Syntax {
            file: file.to_owned(),
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            message: "not UTF-8".into(),
        }
    })
}

/// Loads the policy of the CA whose OpenSSL subject hash is `hash` (`{:08x}`, as in
/// `<hash>.0`) from `dir`: `<hash>.namespaces` if it exists, else `<hash>.signing_policy`;
/// `Ok(None)` if neither exists.
pub fn load_for_hash(dir: &Path, hash: &str) -> Result<Option<CaNamespace>, PolicyFileError> {
    let file = dir.join(format!("{hash}.{NAMESPACES_SUFFIX}"));
    if let Some(text) = read_bounded(&file)? {
        let policy = CaPolicy::Namespaces(Namespaces::parse(&text, &file)?);
        return Ok(Some(CaNamespace { file, policy }));
    }
    let file = dir.join(format!("{hash}.{SIGNING_POLICY_SUFFIX}"));
    if let Some(text) = read_bounded(&file)? {
        let policy = CaPolicy::SigningPolicy(SigningPolicy::parse(&text, &file)?);
        return Ok(Some(CaNamespace { file, policy }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
