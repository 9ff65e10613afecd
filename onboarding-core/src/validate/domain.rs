//! Domain normalization: IDNA (UTS 46) to lowercase ASCII, DNS length rules,
//! and a registrable part under a known public suffix.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use super::problem::{codes, preview, FieldProblem};
use crate::model::Domain;

/// Longest normalized domain, in bytes (RFC 1035, without the root dot).
const MAX_DOMAIN_BYTES: usize = 253;
/// Longest label, in bytes.
const MAX_LABEL_BYTES: usize = 63;
/// Longest input accepted before IDNA processing, in bytes. A domain of 253
/// ASCII bytes is at most 4 × 253 bytes of UTF-8 in its Unicode form; longer
/// input is rejected without running the IDNA machinery on it.
const MAX_INPUT_BYTES: usize = 1024;

/// Normalizes a domain as a client typed it into the canonical [`Domain`].
///
/// Steps: trim surrounding Unicode whitespace; reject anything that looks
/// like a URL, an email address or a host with a port (`/`, `:`, `@`,
/// whitespace, control characters); map and convert to ASCII with IDNA
/// (UTS 46, STD3 ASCII rules, strict hyphen checks; this also lowercases);
/// remove one trailing dot; check the DNS limits (≤ 253 bytes, labels of
/// 1-63 letters, digits or hyphens, no leading or trailing hyphen); require a
/// registrable domain under a suffix that is explicitly in the public suffix
/// list (a bare suffix such as `com` or `co.uk` is rejected).
///
/// Subdomains are kept: `eu.acme.com` stays `eu.acme.com`.
/// `ACME.COM.` becomes `acme.com`, `Bücher.de` becomes `xn--bcher-kva.de`.
/// Normalizing a normalized domain returns it unchanged.
///
/// # Errors
///
/// A [`FieldProblem`] with code `domain_empty`, `domain_invalid`,
/// `domain_too_long` or `domain_no_public_suffix`.
pub fn normalize_domain(input: &str) -> Result<Domain, FieldProblem> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(FieldProblem::new(codes::DOMAIN_EMPTY, "domain is empty"));
    }
    if trimmed.len() > MAX_INPUT_BYTES {
        return Err(FieldProblem::new(
            codes::DOMAIN_TOO_LONG,
            format!(
                "domain is {} bytes long; a domain has at most {MAX_DOMAIN_BYTES}",
                trimmed.len()
            ),
        ));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|&c| matches!(c, '/' | ':' | '@') || c.is_whitespace() || c.is_control())
    {
        return Err(FieldProblem::new(
            codes::DOMAIN_INVALID,
            format!(
                "domain {} contains {c:?}; send a bare domain name such as example.com, \
                 without scheme, path, port, user or spaces",
                preview(trimmed)
            ),
        ));
    }

    let ascii = Uts46::new()
        .to_ascii(
            trimmed.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Ignore,
        )
        .map_err(|_| {
            FieldProblem::new(
                codes::DOMAIN_INVALID,
                format!(
                    "domain {} is not a valid domain name (letters, digits and hyphens per label, \
                     IDNA rules for non-ASCII)",
                    preview(trimmed)
                ),
            )
        })?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    check_dns_shape(ascii, trimmed)?;

    // UTS 46 already maps to lowercase; this only makes the invariant local.
    let ascii = ascii.to_ascii_lowercase();
    check_public_suffix(&ascii)?;
    Ok(Domain::from_normalized(ascii))
}

/// Checks the DNS limits of an ASCII domain without its trailing dot.
fn check_dns_shape(ascii: &str, original: &str) -> Result<(), FieldProblem> {
    let invalid = |why: &str| {
        FieldProblem::new(
            codes::DOMAIN_INVALID,
            format!("domain {} {why}", preview(original)),
        )
    };
    if ascii.is_empty() {
        return Err(invalid("has no labels"));
    }
    if ascii.len() > MAX_DOMAIN_BYTES {
        return Err(FieldProblem::new(
            codes::DOMAIN_TOO_LONG,
            format!(
                "domain is {} bytes long in ASCII form; at most {MAX_DOMAIN_BYTES} are allowed",
                ascii.len()
            ),
        ));
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(invalid(
                "has an empty label (two dots in a row, or a leading dot)",
            ));
        }
        if label.len() > MAX_LABEL_BYTES {
            return Err(FieldProblem::new(
                codes::DOMAIN_TOO_LONG,
                format!(
                    "domain {} has a label of {} bytes in ASCII form; at most {MAX_LABEL_BYTES} \
                     are allowed",
                    preview(original),
                    label.len()
                ),
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("may only contain letters, digits and hyphens"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("has a label that starts or ends with a hyphen"));
        }
    }
    Ok(())
}

/// Requires a registrable domain under a suffix explicitly in the public suffix list.
fn check_public_suffix(ascii: &str) -> Result<(), FieldProblem> {
    match psl::domain(ascii.as_bytes()) {
        Some(registrable) if registrable.suffix().is_known() => Ok(()),
        Some(_) => Err(FieldProblem::new(
            codes::DOMAIN_NO_PUBLIC_SUFFIX,
            format!("{ascii} does not end in a known public suffix (such as .com or .co.uk)"),
        )),
        None => Err(FieldProblem::new(
            codes::DOMAIN_NO_PUBLIC_SUFFIX,
            match psl::suffix(ascii.as_bytes()) {
                Some(suffix) if suffix.is_known() => format!(
                    "{ascii} is a public suffix, not a registrable domain; send a domain such as \
                     example.{ascii}"
                ),
                _ => format!(
                    "{ascii} does not end in a known public suffix (such as .com or .co.uk)"
                ),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match normalize_domain(input) {
            Ok(d) => d.as_str().to_owned(),
            Err(e) => panic!("{input:?} rejected: {e}"),
        }
    }

    fn code(input: &str) -> &'static str {
        match normalize_domain(input) {
            Ok(d) => panic!("{input:?} accepted as {d}"),
            Err(e) => e.code,
        }
    }

    /// Asserts that each input normalizes to its expected form.
    fn assert_normalized(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            assert_eq!(ok(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn plain_and_uppercase_domains() {
        assert_normalized(&[
            ("acme.com", "acme.com"),
            ("ACME.COM.", "acme.com"),
            ("  Acme.Com\t", "acme.com"),
            ("acme.com.", "acme.com"),
            ("eu.acme.com", "eu.acme.com"),
            ("a-b.co.uk", "a-b.co.uk"),
            ("123.com", "123.com"),
            ("foo.github.io", "foo.github.io"),
        ]);
    }

    #[test]
    fn idn_domains() {
        assert_normalized(&[
            ("Bücher.de", "xn--bcher-kva.de"),
            ("BÜCHER.DE", "xn--bcher-kva.de"),
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
            ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
            // Ideographic full stop as separator and as trailing dot.
            ("bücher。de。", "xn--bcher-kva.de"),
            // Fullwidth letters are mapped.
            ("ＡＣＭＥ.com", "acme.com"),
            // A Unicode public suffix.
            ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
            ("xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
            ("😀.com", "xn--e28h.com"),
        ]);
    }

    #[test]
    fn normalization_is_idempotent_on_examples() {
        for input in [
            "ACME.COM.",
            "Bücher.de",
            "eu.Acme.co.uk",
            "пример.рф",
            "😀.com",
        ] {
            let once = ok(input);
            assert_eq!(ok(&once), once);
        }
    }

    #[test]
    fn urls_emails_ports_and_spaces_are_rejected() {
        for bad in [
            "https://acme.com",
            "acme.com/path",
            "acme.com:8080",
            "admin@acme.com",
            "ac me.com",
            "acme.com\u{0}",
            "ac\u{7}me.com",
            "acme\u{a0}x.com",
            "[::1]",
        ] {
            assert_eq!(code(bad), codes::DOMAIN_INVALID, "{bad:?}");
        }
    }

    #[test]
    fn invalid_labels_are_rejected() {
        for bad in [
            "-acme.com",
            "acme-.com",
            "ab--cd.com",
            "a..com",
            ".acme.com",
            "acme.com..",
            ".",
            "..",
            "acme_corp.com",
            "acme!.com",
            "xn--zz.com",
            "xn--.com",
            "acme.com\u{202e}",
            "a\u{200d}b.com",
        ] {
            assert_eq!(code(bad), codes::DOMAIN_INVALID, "{bad:?}");
        }
    }

    #[test]
    fn empty_domains() {
        assert_eq!(code(""), codes::DOMAIN_EMPTY);
        assert_eq!(code(" \t\n "), codes::DOMAIN_EMPTY);
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        assert_eq!(ok(&format!("{label63}.com")), format!("{label63}.com"));
        assert_eq!(
            code(&format!("{}.com", "a".repeat(64))),
            codes::DOMAIN_TOO_LONG
        );
        // 4 labels of 61 + ".com" = 4*62 + 3 = 251 bytes: fine.
        let l61 = "a".repeat(61);
        let fits = format!("{l61}.{l61}.{l61}.{l61}.com");
        assert_eq!(fits.len(), 251);
        assert_eq!(ok(&fits), fits);
        let too_long = format!("{l61}.{l61}.{l61}.{l61}.abc.com");
        assert!(too_long.len() > 253);
        assert_eq!(code(&too_long), codes::DOMAIN_TOO_LONG);
        // A long IDN label is measured in its punycode form.
        assert_eq!(
            code(&format!("{}.de", "ü".repeat(60))),
            codes::DOMAIN_TOO_LONG
        );
        // Huge inputs are refused up front.
        assert_eq!(code(&"a".repeat(1_000_000)), codes::DOMAIN_TOO_LONG);
        assert_eq!(
            code(&format!("{}.com", "a.".repeat(500_000))),
            codes::DOMAIN_TOO_LONG
        );
    }

    #[test]
    fn public_suffix_rules() {
        for bad in [
            "com",
            "co.uk",
            "COM.",
            "github.io",
            "localhost",
            "acme.invalidtld",
            "1.2.3.4",
        ] {
            assert_eq!(code(bad), codes::DOMAIN_NO_PUBLIC_SUFFIX, "{bad:?}");
        }
        let detail = normalize_domain("co.uk").err().map(|e| e.detail);
        assert!(detail.is_some_and(|d| d.contains("public suffix")));
    }

    #[test]
    fn accepted_domains_are_lowercase_ascii_without_trailing_dot() {
        for input in ["ÄÖÜ.de", "WWW.EXAMPLE.ORG.", "Straße.de", "ΑΘΗΝΑ.gr"] {
            let d = ok(input);
            assert!(d.is_ascii());
            assert_eq!(d, d.to_ascii_lowercase());
            assert!(!d.ends_with('.'));
        }
        // Nontransitional processing: ß is kept, not mapped to ss.
        assert_eq!(ok("Straße.de"), "xn--strae-oqa.de");
    }
}
