//! Normalization of the free-text fields: organization name and contact email.

use email_address::{EmailAddress, Options};

use super::problem::{codes, first_forbidden_char, preview, FieldProblem};

/// Longest name, in characters (Unicode scalar values), after trimming.
const MAX_NAME_CHARS: usize = 255;
/// Longest email address, in bytes (RFC 5321 path limit minus the brackets).
const MAX_EMAIL_BYTES: usize = 254;

/// Normalizes an organization name: trims surrounding Unicode whitespace and
/// requires 1-255 characters without control characters (Unicode category
/// Cc), line/paragraph separators (U+2028, U+2029) or bidi controls
/// (U+202A-U+202E, U+2066-U+2069).
///
/// Anything else is kept verbatim, including markup and quotes: names are
/// data, escaping is the job of whoever renders or stores them.
///
/// # Errors
///
/// The first problem found, with code `name_empty`, `name_control_chars` or
/// `name_too_long`.
pub fn normalize_name(input: &str) -> Result<String, FieldProblem> {
    let name = input.trim();
    if name.is_empty() {
        return Err(FieldProblem::new(codes::NAME_EMPTY, "name is empty"));
    }
    if let Some((at, c)) = first_forbidden_char(name) {
        return Err(FieldProblem::new(
            codes::NAME_CONTROL_CHARS,
            format!(
                "name contains the control character U+{:04X} at character {at}",
                u32::from(c)
            ),
        ));
    }
    // Counting stops as soon as the limit is passed.
    if name.chars().nth(MAX_NAME_CHARS).is_some() {
        return Err(FieldProblem::new(
            codes::NAME_TOO_LONG,
            format!(
                "name is {} characters long; at most {MAX_NAME_CHARS} are allowed",
                name.chars().count()
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Normalizes a contact email: trims surrounding Unicode whitespace, requires
/// a plain address (`local@domain`, no display name, no domain literal, a
/// domain of at least two labels) of at most 254 bytes without control
/// characters, and lowercases the domain part. The local part is kept as
/// sent (it is case sensitive per RFC 5321).
///
/// # Errors
///
/// A problem with code `email_empty`, `email_too_long` or `email_invalid`.
pub fn normalize_email(input: &str) -> Result<String, FieldProblem> {
    let email = input.trim();
    if email.is_empty() {
        return Err(FieldProblem::new(
            codes::EMAIL_EMPTY,
            "contact_email is empty",
        ));
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(too_long(email.len()));
    }
    if let Some((at, c)) = first_forbidden_char(email) {
        return Err(FieldProblem::new(
            codes::EMAIL_INVALID,
            format!(
                "contact_email contains the control character U+{:04X} at character {at}",
                u32::from(c)
            ),
        ));
    }
    parse(email)?;
    let Some((local, domain)) = email.rsplit_once('@') else {
        // `parse` requires an `@`; kept as an error rather than a panic.
        return Err(invalid(email, "has no @"));
    };
    let mut normalized = String::with_capacity(email.len());
    normalized.push_str(local);
    normalized.push('@');
    push_lowercase_domain(&mut normalized, domain);
    if normalized.len() > MAX_EMAIL_BYTES {
        return Err(too_long(normalized.len()));
    }
    if normalized != email {
        // Lowercasing may in theory turn a valid letter into something else.
        parse(&normalized)?;
    }
    Ok(normalized)
}

/// Parses a plain address with the options this crate requires.
fn parse(email: &str) -> Result<(), FieldProblem> {
    let options = Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    EmailAddress::parse_with_options(email, options)
        .map(drop)
        .map_err(|e| invalid(email, &e.to_string()))
}

fn invalid(email: &str, why: &str) -> FieldProblem {
    FieldProblem::new(
        codes::EMAIL_INVALID,
        format!(
            "contact_email {} is not a plain email address such as name@example.com: {why}",
            preview(email)
        ),
    )
}

fn too_long(len: usize) -> FieldProblem {
    FieldProblem::new(
        codes::EMAIL_TOO_LONG,
        format!("contact_email is {len} bytes long; at most {MAX_EMAIL_BYTES} are allowed"),
    )
}

/// Appends `domain` lowercased character by character, keeping characters
/// whose lowercase form is not a single character (so the result stays
/// stable when lowercased again). An ASCII domain, the common case, is
/// lowercased byte by byte.
fn push_lowercase_domain(out: &mut String, domain: &str) {
    if domain.is_ascii() {
        out.extend(domain.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        return;
    }
    out.extend(domain.chars().map(|c| {
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) => l,
            _ => c,
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_code(input: &str) -> &'static str {
        match normalize_name(input) {
            Ok(n) => panic!("{input:?} accepted as {n:?}"),
            Err(e) => e.code,
        }
    }

    fn email_code(input: &str) -> &'static str {
        match normalize_email(input) {
            Ok(n) => panic!("{input:?} accepted as {n:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn names_are_trimmed_and_kept_verbatim() {
        assert_eq!(normalize_name("  Acme Corp \n").as_deref(), Ok("Acme Corp"));
        assert_eq!(
            normalize_name("\u{3000}Acme\u{2003}").as_deref(),
            Ok("Acme")
        );
        for verbatim in [
            "<script>alert('x')</script>",
            "Robert'); DROP TABLE organizations;--",
            "\" OR 1=1 --",
            "A & B <b>bold</b>",
            "Ünïcödé 株式会社 😀",
            "zero\u{200b}width",
        ] {
            assert_eq!(normalize_name(verbatim).as_deref(), Ok(verbatim));
        }
    }

    #[test]
    fn empty_names() {
        assert_eq!(name_code(""), codes::NAME_EMPTY);
        assert_eq!(name_code(" \t\r\n\u{85}\u{a0}\u{3000}"), codes::NAME_EMPTY);
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        assert!(normalize_name(&"a".repeat(255)).is_ok());
        assert!(normalize_name(&"é".repeat(255)).is_ok());
        assert!(normalize_name(&"😀".repeat(255)).is_ok());
        assert_eq!(name_code(&"a".repeat(256)), codes::NAME_TOO_LONG);
        assert_eq!(name_code(&"😀".repeat(256)), codes::NAME_TOO_LONG);
        // Surrounding whitespace does not count.
        assert!(normalize_name(&format!("  {}  ", "a".repeat(255))).is_ok());
    }

    #[test]
    fn huge_name() {
        let huge = "n".repeat(1 << 20);
        let err = normalize_name(&huge).err();
        assert_eq!(err.as_ref().map(|e| e.code), Some(codes::NAME_TOO_LONG));
        assert!(err.is_some_and(|e| e.detail.len() < 100));
    }

    #[test]
    fn control_characters_in_names() {
        for bad in [
            "Ac\u{0}me",
            "Acme\nCorp",
            "Acme\tCorp",
            "Acme\u{7f}",
            "Acme\u{85}Corp",
            "Acme\u{2028}Corp",
            "Acme\u{2029}Corp",
            "evil\u{202e}txt.exe",
            "a\u{2066}b\u{2069}",
            "\u{1b}[31mred",
        ] {
            assert_eq!(name_code(bad), codes::NAME_CONTROL_CHARS, "{bad:?}");
        }
        let detail = normalize_name("ab\u{0}").err().map(|e| e.detail);
        assert!(detail.is_some_and(|d| d.contains("U+0000") && d.contains("character 3")));
    }

    #[test]
    fn valid_emails() {
        assert_eq!(
            normalize_email(" Jane.Doe@ACME.Com ").as_deref(),
            Ok("Jane.Doe@acme.com")
        );
        assert_eq!(
            normalize_email("ops+onboarding@eu.acme.co.uk").as_deref(),
            Ok("ops+onboarding@eu.acme.co.uk")
        );
        assert_eq!(
            normalize_email("\"quoted name\"@Example.ORG").as_deref(),
            Ok("\"quoted name\"@example.org")
        );
        assert_eq!(
            normalize_email("user@BÜCHER.de").as_deref(),
            Ok("user@bücher.de")
        );
    }

    #[test]
    fn email_normalization_is_idempotent() {
        for input in [" Jane.Doe@ACME.Com ", "user@BÜCHER.de", "x@İSTANBUL.com.tr"] {
            if let Ok(once) = normalize_email(input) {
                assert_eq!(normalize_email(&once).as_deref(), Ok(once.as_str()));
            }
        }
    }

    #[test]
    fn invalid_emails() {
        for bad in [
            "Jane <jane@acme.com>",
            "<jane@acme.com>",
            "jane",
            "jane@",
            "@acme.com",
            "jane@localhost",
            "jane@[127.0.0.1]",
            "ja ne@acme.com",
            "jane@acme..com",
            "jane@-acme.com",
            "jane@@acme.com",
            "\"jane\u{202e}\"@acme.com",
            "jane@acme.com\u{0}",
            "jane\n@acme.com",
        ] {
            assert_eq!(email_code(bad), codes::EMAIL_INVALID, "{bad:?}");
        }
        assert_eq!(email_code(""), codes::EMAIL_EMPTY);
        assert_eq!(email_code("   "), codes::EMAIL_EMPTY);
    }

    #[test]
    fn email_length_limit() {
        let local = "a".repeat(64);
        let label = "b".repeat(60);
        let long = format!("{local}@{label}.{label}.{label}.com");
        assert!(long.len() <= 254);
        assert!(normalize_email(&long).is_ok());
        let too_long = format!("{local}@{label}.{label}.{label}.{label}.com");
        assert!(too_long.len() > 254);
        assert_eq!(email_code(&too_long), codes::EMAIL_TOO_LONG);
        assert_eq!(email_code(&"x".repeat(1 << 20)), codes::EMAIL_TOO_LONG);
    }
}
