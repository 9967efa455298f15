//! Tests of the policy-file parsers and checks.

use super::*;

const RCAUTH_CA: &str =
    "/DC=eu/DC=rcauth/O=Certification Authorities/CN=Research and Collaboration Authentication Pilot G1 CA";
const JANE: &str =
    "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-";
const EXAMPLE_CA: &str = "/C=NL/O=Example/CN=Example CA";

/// Shaped like the IGTF distribution's files: header comments, indented statements, two
/// patterns in one cond_subjects.
const SIGNING_POLICY: &str = r#"# ca-RCauth-Pilot-ICA-G1 signing policy
#
# EACL for the RCauth.eu Pilot ICA G1
#
 access_id_CA      X509         '/DC=eu/DC=rcauth/O=Certification Authorities/CN=Research and Collaboration Authentication Pilot G1 CA'
 pos_rights        globus        CA:sign
 cond_subjects     globus       '"/DC=eu/DC=rcauth/DC=rcauth-clients/*" "/DC=eu/DC=rcauth/DC=robots/CN=robot?"'
"#;

const NAMESPACES: &str = r#"##############################################################################
#NAMESPACES-VERSION: 1.0
#
# @(#)0123abcd.namespaces
# CA alias    : Example-CA
#    subjectDN: /C=NL/O=Example/CN=Example CA
#
TO Issuer "/C=NL/O=Example/CN=Example CA" \
  PERMIT Subject "/C=NL/O=Example/.*"   # users, hosts, robots
TO Issuer "/C=NL/O=Example/CN=Example CA" DENY Subject "/C=NL/O=Example/CN=Bad.*"
TO Issuer "/C=NL/O=Other/CN=Other CA" PERMIT Subject "/C=NL/O=Other/.*"
"#;

fn file() -> &'static Path {
    Path::new("/etc/grid-security/certificates/0123abcd.x")
}

fn sp(text: &str) -> Result<SigningPolicy, PolicyFileError> {
    SigningPolicy::parse(text, file())
}

fn ns(text: &str) -> Result<Namespaces, PolicyFileError> {
    Namespaces::parse(text, file())
}

/// The line and message of a syntax error.
fn syntax_line(e: PolicyFileError) -> (usize, String) {
    let shown = e.to_string();
    match e {
        PolicyFileError::Syntax { line, .. } => {
            assert!(shown.contains("0123abcd.x:"), "names the file: {shown}");
            (line, shown)
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn signing_policy_permits_its_namespace_only() {
    let p = sp(SIGNING_POLICY).expect("parses");
    assert_eq!(p.check(RCAUTH_CA, JANE), Ok(()));
    // `*` crosses `/`.
    assert_eq!(
        p.check(
            RCAUTH_CA,
            "/DC=eu/DC=rcauth/DC=rcauth-clients/O=A/OU=B/CN=C"
        ),
        Ok(())
    );
    // The second pattern: `?` is one character, not zero, not two.
    assert_eq!(
        p.check(RCAUTH_CA, "/DC=eu/DC=rcauth/DC=robots/CN=robot1"),
        Ok(())
    );
    for outside in [
        "/DC=eu/DC=rcauth/DC=robots/CN=robot",
        "/DC=eu/DC=rcauth/DC=robots/CN=robot12",
        // A sibling component that shares the prefix.
        "/DC=eu/DC=rcauth/DC=rcauth-clientsx/CN=x",
        "/DC=eu/DC=rcauth/CN=Jane",
        // Anchored at the start.
        "/C=XX/DC=eu/DC=rcauth/DC=rcauth-clients/CN=x",
        // Case matters.
        "/DC=EU/DC=rcauth/DC=rcauth-clients/CN=x",
    ] {
        assert_eq!(
            p.check(RCAUTH_CA, outside),
            Err(Refusal::NotPermitted),
            "{outside}"
        );
    }
    assert_eq!(p.check(EXAMPLE_CA, JANE), Err(Refusal::NoRuleForIssuer));
}

#[test]
fn glob_prefix_does_not_cover_a_longer_component() {
    let p = sp("access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/DC=eu/DC=rcauth/*\"'\n")
        .expect("parses");
    assert_eq!(p.check("/C=X/CN=CA", "/DC=eu/DC=rcauth/CN=x"), Ok(()));
    assert_eq!(
        p.check("/C=X/CN=CA", "/DC=eu/DC=rcauthx/CN=x"),
        Err(Refusal::NotPermitted)
    );
    // Regex metacharacters in a glob are literal.
    let p = sp("access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/O=a.b/(x)+/*\"'\n")
        .expect("parses");
    assert_eq!(p.check("/C=X/CN=CA", "/O=a.b/(x)+/CN=y"), Ok(()));
    assert_eq!(
        p.check("/C=X/CN=CA", "/O=aXb/(x)+/CN=y"),
        Err(Refusal::NotPermitted)
    );
    assert_eq!(
        p.check("/C=X/CN=CA", "/O=a.b/xx/CN=y"),
        Err(Refusal::NotPermitted)
    );
}

#[test]
fn signing_policy_without_ca_sign_permits_nothing() {
    let p = sp("access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:other\ncond_subjects globus '\"*\"'\n")
        .expect("parses");
    assert_eq!(
        p.check("/C=X/CN=CA", "/C=X/CN=a"),
        Err(Refusal::NoSignRight)
    );
    // A lone unquoted pattern, and a second block for another CA.
    let p = sp("access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus /C=X/*\naccess_id_CA X509 '/C=Y/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/C=Y/*\"'\n")
        .expect("parses");
    assert_eq!(p.check("/C=X/CN=CA", "/C=X/CN=a"), Ok(()));
    assert_eq!(p.check("/C=Y/CN=CA", "/C=Y/CN=a"), Ok(()));
    assert_eq!(
        p.check("/C=X/CN=CA", "/C=Y/CN=a"),
        Err(Refusal::NotPermitted)
    );
}

#[test]
fn malformed_signing_policies_are_refused_with_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("junk", 1, "unsupported statement"),
        (
            "# c\npos_rights globus CA:sign\n",
            2,
            "before any access_id_CA",
        ),
        (
            "access_id_CA X509 '/C=X/CN=CA'\ncond_subjects globus '\"/C=X/*'\n",
            2,
            "no closing",
        ),
        ("access_id_CA X509 '/C=X/CN=CA\n", 1, "no closing '"),
        (
            "access_id_CA X509 /C=X/CN=CA\n",
            1,
            "expected a quoted string",
        ),
        (
            "access_id_CA globus '/C=X/CN=CA'\n",
            1,
            "defining authority X509",
        ),
        (
            "access_id_CA X509 '/C=X/CN=CA'\n\nneg_rights globus CA:sign\n",
            3,
            "unsupported statement \"neg_rights\"",
        ),
        (
            "access_id_CA X509 '/C=X/CN=CA'\ncond_subjects globus ''\n",
            2,
            "no subject pattern",
        ),
        (
            "access_id_CA X509 '/C=X/CN=CA' trailing\n",
            1,
            "unexpected text",
        ),
    ];
    for (text, line, message) in cases {
        let (got, shown) = syntax_line(sp(text).expect_err(text));
        assert_eq!(got, *line, "{text}: {shown}");
        assert!(shown.contains(message), "{text}: {shown}");
    }
    assert!(matches!(
        sp("# only comments\n"),
        Err(PolicyFileError::Unusable { .. })
    ));
    let long = format!(
        "access_id_CA X509 '/C=X/CN=CA'\ncond_subjects globus '\"/{}\"'\n",
        "a".repeat(MAX_PATTERN_LEN)
    );
    assert!(syntax_line(sp(&long).expect_err("long"))
        .1
        .contains("longer than"));
    let many = format!(
        "access_id_CA X509 '/C=X/CN=CA'\n{}",
        "cond_subjects globus '\"/C=X/*\"'\n".repeat(MAX_RULES + 1)
    );
    let (line, shown) = syntax_line(sp(&many).expect_err("many"));
    assert_eq!(line, MAX_RULES + 2, "{shown}");
}

#[test]
fn namespaces_permit_deny_and_continuation() {
    let n = ns(NAMESPACES).expect("parses");
    assert_eq!(n.check(EXAMPLE_CA, "/C=NL/O=Example/CN=Alice"), Ok(()));
    assert_eq!(
        n.check(EXAMPLE_CA, "/C=NL/O=Example/OU=hosts/CN=host.example.nl"),
        Ok(())
    );
    // DENY wins over the PERMIT that also matches.
    assert_eq!(
        n.check(EXAMPLE_CA, "/C=NL/O=Example/CN=Bad Bob"),
        Err(Refusal::Denied {
            line: 10,
            pattern: "/C=NL/O=Example/CN=Bad.*".into()
        })
    );
    assert_eq!(
        n.check(EXAMPLE_CA, "/C=NL/O=Other/CN=Alice"),
        Err(Refusal::NotPermitted)
    );
    // The rule for another issuer does not apply to this one, and vice versa.
    assert_eq!(
        n.check("/C=NL/O=Other/CN=Other CA", "/C=NL/O=Other/CN=x"),
        Ok(())
    );
    assert_eq!(
        n.check("/C=NL/O=Other/CN=Other CA", "/C=NL/O=Example/CN=x"),
        Err(Refusal::NotPermitted)
    );
    assert_eq!(
        n.check("/C=NL/O=Nobody/CN=CA", "/C=NL/O=Example/CN=x"),
        Err(Refusal::NoRuleForIssuer)
    );
}

#[test]
fn namespaces_regexes_are_anchored_and_dot_is_any_character() {
    let n =
        ns("TO Issuer \"/C=X/CN=CA\" PERMIT Subject \"/DC=eu/DC=rcauth/.*\"\n").expect("parses");
    assert_eq!(n.check("/C=X/CN=CA", "/DC=eu/DC=rcauth/CN=x"), Ok(()));
    // `.` is any character (a regex, not a glob): `/.*` also covers `/DC=eu/DC=rcauth/`
    // followed by anything, `/` included.
    assert_eq!(n.check("/C=X/CN=CA", "/DC=eu/DC=rcauth/O=a/CN=x"), Ok(()));
    let dot = ns("TO Issuer \"/C=X/CN=CA\" PERMIT Subject \"/O=a.b/.*\"\n").expect("parses");
    assert_eq!(dot.check("/C=X/CN=CA", "/O=aXb/CN=x"), Ok(()));
    assert_eq!(
        dot.check("/C=X/CN=CA", "/O=ab/CN=x"),
        Err(Refusal::NotPermitted)
    );
    for outside in [
        "/DC=eu/DC=rcauthx/CN=x",
        "/C=XX/DC=eu/DC=rcauth/CN=x",
        "/DC=eu/DC=rcauth",
    ] {
        assert_eq!(
            n.check("/C=X/CN=CA", outside),
            Err(Refusal::NotPermitted),
            "{outside}"
        );
    }
    // Anchoring covers alternations: without the group, `a|b` would become `^a|b$`,
    // leaving the end of `a` and the start of `b` open.
    let n =
        ns("TO Issuer \"/C=X/CN=CA\" PERMIT Subject \"/O=a/CN=fixed|/O=b/.*\"\n").expect("parses");
    assert_eq!(n.check("/C=X/CN=CA", "/O=a/CN=fixed"), Ok(()));
    assert_eq!(n.check("/C=X/CN=CA", "/O=b/CN=any"), Ok(()));
    assert_eq!(
        n.check("/C=X/CN=CA", "/O=a/CN=fixed/CN=more"),
        Err(Refusal::NotPermitted)
    );
    assert_eq!(
        n.check("/C=X/CN=CA", "/O=z/O=b/CN=x"),
        Err(Refusal::NotPermitted)
    );
    // An escaped dot is literal.
    let n = ns("TO Issuer \"/C=X/CN=CA\" PERMIT Subject \"/CN=host\\.example\\.org\"\n")
        .expect("parses");
    assert_eq!(n.check("/C=X/CN=CA", "/CN=host.example.org"), Ok(()));
    assert_eq!(
        n.check("/C=X/CN=CA", "/CN=hostXexample.org"),
        Err(Refusal::NotPermitted)
    );
    // POSIX bracket classes.
    let n = ns("TO Issuer \"/C=X/CN=CA\" PERMIT Subject \"/CN=[[:alpha:]]+\"\n").expect("parses");
    assert_eq!(n.check("/C=X/CN=CA", "/CN=abc"), Ok(()));
    assert_eq!(n.check("/C=X/CN=CA", "/CN=ab1"), Err(Refusal::NotPermitted));
}

#[test]
fn namespaces_self_keywords_case_and_comments() {
    let n = ns("to self permit subject \"/C=X/.*\"  # SELF, lower case\nTO Issuer SELF DENY Subject \"/C=X/CN=no\"\nTO Issuer \"/C=Y/CN=#1 CA\" PERMIT Subject \"/C=Y/.*\"\n")
        .expect("parses");
    assert_eq!(n.check("/C=X/CN=Any CA", "/C=X/CN=a"), Ok(()));
    assert!(matches!(
        n.check("/C=X/CN=Any CA", "/C=X/CN=no"),
        Err(Refusal::Denied { line: 2, .. })
    ));
    // `#` inside quotes is not a comment.
    assert_eq!(n.check("/C=Y/CN=#1 CA", "/C=Y/CN=a"), Ok(()));
}

#[test]
fn malformed_namespaces_are_refused_with_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "# c\n\nFROM Issuer \"/C=X\" PERMIT Subject \"/C=X/.*\"\n",
            3,
            "expected TO",
        ),
        (
            "TO Issuer /C=X PERMIT Subject \"/C=X/.*\"\n",
            1,
            "quoted issuer DN or SELF",
        ),
        (
            "TO Issuer \"/C=X\" ALLOW Subject \"/C=X/.*\"\n",
            1,
            "PERMIT or DENY",
        ),
        (
            "TO Issuer \"/C=X\" PERMIT Subject /C=X/.*\n",
            1,
            "quoted subject pattern",
        ),
        (
            "TO Issuer \"/C=X\" PERMIT Subject \"/C=X/.*\" extra\n",
            1,
            "end of the entry",
        ),
        (
            "TO Issuer \"/C=X\" PERMIT \\\n  Subject \"/C=X/(.*\"\n",
            1,
            "invalid pattern",
        ),
        (
            "TO Issuer \"/C=X\" PERMIT\nSubject \"/C=X/.*\"\n",
            1,
            "expected Subject",
        ),
        ("TO Issuer \"/C=X PERMIT Subject\n", 1, "no closing"),
        ("#NAMESPACES-VERSION: 2.0\n", 1, "version"),
        (
            "\n\nTO Issuer \"/C=X\" PERMIT Subject \"\"\n",
            3,
            "empty subject pattern",
        ),
    ];
    for (text, line, message) in cases {
        let (got, shown) = syntax_line(ns(text).expect_err(text));
        assert_eq!(got, *line, "{text}: {shown}");
        assert!(shown.contains(message), "{text}: {shown}");
    }
    assert!(matches!(
        ns("#NAMESPACES-VERSION: 1.0\n# nothing else\n"),
        Err(PolicyFileError::Unusable { .. })
    ));
    let many = "TO SELF PERMIT Subject \"/C=X/.*\"\n".repeat(MAX_RULES + 1);
    assert_eq!(syntax_line(ns(&many).expect_err("many")).0, MAX_RULES + 1);
    // A pattern whose compiled form is too large.
    let huge = "TO SELF PERMIT Subject \"(((a{100}){100}){100})\"\n";
    assert!(syntax_line(ns(huge).expect_err("huge"))
        .1
        .contains("invalid pattern"));
}

#[test]
fn loading_prefers_namespaces_and_bounds_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(load_for_hash(dir.path(), "0123abcd").expect("ok").is_none());
    std::fs::write(
        dir.path().join("0123abcd.signing_policy"),
        "access_id_CA X509 '/C=NL/O=Example/CN=Example CA'\npos_rights globus CA:sign\ncond_subjects globus '\"*\"'\n",
    )
    .expect("write");
    let loaded = load_for_hash(dir.path(), "0123abcd")
        .expect("ok")
        .expect("some");
    assert!(matches!(loaded.policy, CaPolicy::SigningPolicy(_)));
    assert_eq!(loaded.policy.check(EXAMPLE_CA, JANE), Ok(()));
    std::fs::write(dir.path().join("0123abcd.namespaces"), NAMESPACES).expect("write");
    let loaded = load_for_hash(dir.path(), "0123abcd")
        .expect("ok")
        .expect("some");
    assert!(loaded.file.ends_with("0123abcd.namespaces"));
    assert_eq!(
        loaded.policy.check(EXAMPLE_CA, JANE),
        Err(Refusal::NotPermitted),
        "the namespaces file governs, not the permissive signing policy"
    );
    std::fs::write(dir.path().join("0123abcd.namespaces"), b"TO SELF\n\xff\n").expect("write");
    let err = load_for_hash(dir.path(), "0123abcd").expect_err("not UTF-8");
    assert!(
        err.to_string()
            .ends_with("0123abcd.namespaces:2: not UTF-8"),
        "{err}"
    );
    let big = vec![b'#'; usize::try_from(MAX_FILE_BYTES).expect("fits") + 1];
    std::fs::write(dir.path().join("0123abcd.namespaces"), big).expect("write");
    let err = load_for_hash(dir.path(), "0123abcd").expect_err("too big");
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn mode_names() {
    #[derive(Deserialize)]
    struct T {
        m: NamespaceMode,
    }
    for (text, mode) in [
        ("require", NamespaceMode::Require),
        ("if-present", NamespaceMode::IfPresent),
        ("off", NamespaceMode::Off),
    ] {
        let t: T = toml::from_str(&format!("m = \"{text}\"")).expect("parses");
        assert_eq!(t.m, mode);
        assert_eq!(mode.to_string(), text);
    }
    assert!(toml::from_str::<T>("m = \"yes\"").is_err());
    assert_eq!(NamespaceMode::default(), NamespaceMode::Require);
}
