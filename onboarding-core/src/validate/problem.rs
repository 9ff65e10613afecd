//! The problem type of the single-field rules and the stable error codes.

use std::fmt;

use crate::error::FieldError;

/// Stable, machine-readable codes of every [`FieldError`] this module emits.
///
/// Clients may match on these strings; they never change meaning.
pub mod codes {
    /// A required field is missing or `null`.
    pub const REQUIRED: &str = "required";
    /// A field (or the body, or an organization) has the wrong JSON type.
    pub const WRONG_TYPE: &str = "wrong_type";
    /// A string field holds a value outside its allowed set (`on_conflict`, `mode`).
    pub const INVALID_VALUE: &str = "invalid_value";
    /// `organizations` is an empty array.
    pub const ORGANIZATIONS_EMPTY: &str = "organizations_empty";
    /// `organizations` has more entries than the configured limit.
    pub const TOO_MANY_ORGANIZATIONS: &str = "too_many_organizations";
    /// The name is empty after trimming whitespace.
    pub const NAME_EMPTY: &str = "name_empty";
    /// The name is longer than 255 characters after trimming.
    pub const NAME_TOO_LONG: &str = "name_too_long";
    /// The name contains control characters, line/paragraph separators or bidi overrides.
    pub const NAME_CONTROL_CHARS: &str = "name_control_chars";
    /// The domain is empty after trimming whitespace.
    pub const DOMAIN_EMPTY: &str = "domain_empty";
    /// The domain is not a valid (internationalized) host name.
    pub const DOMAIN_INVALID: &str = "domain_invalid";
    /// The domain is longer than 253 bytes, or one of its labels longer than 63.
    pub const DOMAIN_TOO_LONG: &str = "domain_too_long";
    /// The domain has no registrable part under a known public suffix.
    pub const DOMAIN_NO_PUBLIC_SUFFIX: &str = "domain_no_public_suffix";
    /// The domain (after normalization) already appears earlier in the request.
    pub const DOMAIN_DUPLICATE: &str = "domain_duplicate";
    /// The contact email is empty after trimming whitespace.
    pub const EMAIL_EMPTY: &str = "email_empty";
    /// The contact email is longer than 254 bytes.
    pub const EMAIL_TOO_LONG: &str = "email_too_long";
    /// The contact email is not a plain, valid address.
    pub const EMAIL_INVALID: &str = "email_invalid";

    /// Every code above.
    pub const ALL: [&str; 16] = [
        REQUIRED,
        WRONG_TYPE,
        INVALID_VALUE,
        ORGANIZATIONS_EMPTY,
        TOO_MANY_ORGANIZATIONS,
        NAME_EMPTY,
        NAME_TOO_LONG,
        NAME_CONTROL_CHARS,
        DOMAIN_EMPTY,
        DOMAIN_INVALID,
        DOMAIN_TOO_LONG,
        DOMAIN_NO_PUBLIC_SUFFIX,
        DOMAIN_DUPLICATE,
        EMAIL_EMPTY,
        EMAIL_TOO_LONG,
        EMAIL_INVALID,
    ];
}

/// Why one field value was rejected: a stable code and a sentence for humans.
///
/// Details never echo more than a short, escaped preview of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// A stable snake_case code from [`codes`].
    pub code: &'static str,
    /// A sentence for humans.
    pub detail: String,
}

impl FieldProblem {
    /// Builds a problem.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The [`FieldError`] for this problem at `pointer`.
    pub fn into_field_error(self, pointer: impl Into<String>) -> FieldError {
        FieldError::new(pointer, self.code, self.detail)
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.code)
    }
}

impl std::error::Error for FieldProblem {}

/// Longest input preview (in characters) quoted in a detail.
const PREVIEW_CHARS: usize = 40;

/// A short, escaped rendering of `input` for details: at most
/// [`PREVIEW_CHARS`] characters, control characters escaped, quoted.
pub(crate) fn preview(input: &str) -> String {
    let mut chars = input.chars();
    let head: String = chars.by_ref().take(PREVIEW_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// Whether `c` is forbidden in names and emails: Unicode category Cc, the
/// line and paragraph separators, and the bidi embedding/override/isolate
/// controls.
pub(crate) fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// The first forbidden character of `s` and its 1-based character index.
pub(crate) fn first_forbidden_char(s: &str) -> Option<(usize, char)> {
    s.chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_char(*c))
        .map(|(i, c)| (i + 1, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in codes::ALL {
            assert!(seen.insert(code), "{code} twice");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn preview_truncates_and_escapes() {
        assert_eq!(preview("ab"), "\"ab\"");
        assert_eq!(preview("a\u{0}b"), "\"a\\0b\"");
        let long = "x".repeat(1_000_000);
        let p = preview(&long);
        assert!(p.len() < 60, "{p}");
        assert!(p.ends_with('…'));
    }

    #[test]
    fn forbidden_chars() {
        for c in [
            '\u{0}', '\u{7}', '\n', '\t', '\u{7f}', '\u{85}', '\u{9f}', '\u{2028}', '\u{2029}',
            '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}',
        ] {
            assert!(is_forbidden_char(c), "{:?}", c);
        }
        for c in [
            'a', ' ', 'é', '\u{200b}', '\u{2065}', '\u{206a}', '😀', '<', '\'',
        ] {
            assert!(!is_forbidden_char(c), "{:?}", c);
        }
        assert_eq!(first_forbidden_char("ab\u{202e}c"), Some((3, '\u{202e}')));
        assert_eq!(first_forbidden_char("abc"), None);
    }

    #[test]
    fn problem_display_and_field_error() {
        let p = FieldProblem::new(codes::NAME_EMPTY, "name is empty");
        assert_eq!(p.to_string(), "name is empty (name_empty)");
        let e = p.into_field_error("/organizations/0/name");
        assert_eq!(e.pointer, "/organizations/0/name");
        assert_eq!(e.code, "name_empty");
    }
}
