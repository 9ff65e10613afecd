//! Rows of an import: a validated row to stage, or the problems of a refused one.

use serde::{Deserialize, Serialize};

use crate::model::{Domain, NewOrganization};
use crate::validate::{codes, normalize_domain, normalize_email, normalize_name, FieldProblem};

/// Longest `external_id`, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
/// Longest value echoed in a [`RowError`], in characters.
const VALUE_PREVIEW_CHARS: usize = 200;

/// Codes of the problems only files have (the field codes are
/// [`crate::validate::codes`]).
pub mod row_codes {
    /// A line longer than 64 KiB.
    pub const LINE_TOO_LONG: &str = "line_too_long";
    /// A quoted CSV field that is never closed (before the end of the file or 64 KiB).
    pub const UNTERMINATED_QUOTE: &str = "unterminated_quote";
    /// Bytes that are not UTF-8.
    pub const INVALID_UTF8: &str = "invalid_utf8";
    /// An NDJSON line that is not JSON.
    pub const INVALID_JSON: &str = "invalid_json";
    /// An `external_id` longer than 255 characters.
    pub const EXTERNAL_ID_TOO_LONG: &str = "external_id_too_long";
    /// A CSV header without a required column.
    pub const MISSING_COLUMNS: &str = "missing_columns";
}

/// One row that passed validation, ready to stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    /// Line of the file where the row begins (the CSV header is line 1).
    pub line: u32,
    /// The normalized organization.
    pub organization: NewOrganization,
    /// The client's own reference, when given.
    pub external_id: Option<String>,
}

/// One problem of a refused row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// Line of the file where the row begins.
    pub line: u32,
    /// The column (CSV) or field (NDJSON) at fault; `None` for the whole line.
    pub column: Option<String>,
    /// A stable code: a field code of [`crate::validate::codes`] or one of [`row_codes`].
    pub code: String,
    /// A sentence for humans.
    pub detail: String,
    /// The value as sent (at most 200 characters), when there is one.
    pub value: Option<String>,
    /// The row's `external_id`, when it could be read.
    pub external_id: Option<String>,
}

impl RowError {
    /// The refusal of `row` because line `earlier` has the same domain.
    pub fn duplicate(row: &ImportRow, earlier: u32) -> Self {
        Self::repeat(
            row.line,
            &row.organization.domain,
            row.external_id.clone(),
            earlier,
        )
    }

    /// The row at `line` repeats `domain`, first seen at line `earlier`
    /// (a store that finds repeats without the rows at hand).
    pub fn repeat(line: u32, domain: &Domain, external_id: Option<String>, earlier: u32) -> Self {
        Self {
            line,
            column: Some("domain".to_owned()),
            code: codes::DOMAIN_DUPLICATE.to_owned(),
            detail: format!("domain {domain} already appears at line {earlier}"),
            value: Some(domain.as_str().to_owned()),
            external_id,
        }
    }

    /// A problem of the whole line.
    pub fn line(line: u32, code: &str, detail: impl Into<String>) -> Self {
        Self {
            line,
            column: None,
            code: code.to_owned(),
            detail: detail.into(),
            value: None,
            external_id: None,
        }
    }
}

/// How many rows `errors` refuse (one row may have several problems, listed together).
pub fn refused_rows(errors: &[RowError]) -> u64 {
    let mut lines: Vec<u32> = errors.iter().map(|e| e.line).collect();
    lines.dedup();
    u64::try_from(lines.len()).unwrap_or(u64::MAX)
}

/// A row parsed from a file: accepted, or refused with its problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRow {
    /// Valid.
    Valid(ImportRow),
    /// Refused (at least one problem).
    Rejected(Vec<RowError>),
}

/// The raw fields of one row, as text (missing fields are `None`).
#[derive(Debug, Default)]
pub(crate) struct RawRow<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) domain: Option<&'a str>,
    pub(crate) contact_email: Option<&'a str>,
    pub(crate) external_id: Option<&'a str>,
}

/// Validates one row's fields, collecting every problem.
pub(crate) fn validate_row(line: u32, raw: &RawRow<'_>) -> ParsedRow {
    let mut errors = Vec::new();
    let external_id = match raw.external_id.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(id) if id.chars().nth(MAX_EXTERNAL_ID_CHARS).is_some() => {
            errors.push(problem(
                line,
                "external_id",
                id,
                FieldProblem::new(
                    row_codes::EXTERNAL_ID_TOO_LONG,
                    format!("external_id is longer than {MAX_EXTERNAL_ID_CHARS} characters"),
                ),
            ));
            None
        }
        Some(id) => Some(id.to_owned()),
    };
    let name = field(line, "name", raw.name, normalize_name, &mut errors);
    let domain = field(line, "domain", raw.domain, normalize_domain, &mut errors);
    let email = field(
        line,
        "contact_email",
        raw.contact_email,
        normalize_email,
        &mut errors,
    );
    match (name, domain, email) {
        (Some(name), Some(domain), Some(contact_email)) if errors.is_empty() => {
            ParsedRow::Valid(ImportRow {
                line,
                organization: NewOrganization {
                    name,
                    domain,
                    contact_email,
                },
                external_id,
            })
        }
        _ => {
            for e in &mut errors {
                e.external_id.clone_from(&external_id);
            }
            ParsedRow::Rejected(errors)
        }
    }
}

fn field<T>(
    line: u32,
    column: &str,
    value: Option<&str>,
    normalize: fn(&str) -> Result<T, FieldProblem>,
    errors: &mut Vec<RowError>,
) -> Option<T> {
    let Some(value) = value else {
        errors.push(RowError {
            column: Some(column.to_owned()),
            ..RowError::line(line, codes::REQUIRED, format!("{column} is missing"))
        });
        return None;
    };
    match normalize(value) {
        Ok(v) => Some(v),
        Err(p) => {
            errors.push(problem(line, column, value, p));
            None
        }
    }
}

fn problem(line: u32, column: &str, value: &str, p: FieldProblem) -> RowError {
    RowError {
        line,
        column: Some(column.to_owned()),
        code: p.code.to_owned(),
        detail: p.detail,
        value: Some(value.chars().take(VALUE_PREVIEW_CHARS).collect()),
        external_id: None,
    }
}
