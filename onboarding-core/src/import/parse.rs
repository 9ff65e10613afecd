//! Streaming parsers: CSV (RFC 4180, header row) and NDJSON, fed in chunks
//! of any size, producing validated rows with their line numbers.

use serde_json::Value;

use super::lines::{LineEvent, Lines, MAX_LINE_BYTES};
use super::rows::{row_codes, validate_row, ParsedRow, RawRow, RowError};
use crate::error::{Error, FieldError, Result};
use crate::validate::codes;

/// The formats an import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportFormat {
    /// `text/csv`: a header row naming `name`, `domain`, `contact_email` (any order; `external_id` optional).
    Csv,
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
}

impl ImportFormat {
    /// A stable name (`csv` or `ndjson`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// Parses an upload chunk by chunk. Memory is bounded by one line (64 KiB)
/// plus the rows of the chunk being parsed.
#[derive(Debug)]
pub struct ImportParser {
    lines: Lines,
    format: Format,
    /// The first error that refuses the whole file (a CSV header without a required column).
    fatal: Option<Error>,
}

#[derive(Debug)]
enum Format {
    Csv(Box<CsvState>),
    Ndjson,
}

impl ImportParser {
    /// A parser for `format`.
    pub fn new(format: ImportFormat) -> Self {
        Self {
            lines: Lines::default(),
            format: match format {
                ImportFormat::Csv => Format::Csv(Box::default()),
                ImportFormat::Ndjson => Format::Ndjson,
            },
            fatal: None,
        }
    }

    /// Parses the next chunk of the body, appending the rows it completes to `out`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Invalid`] when the CSV header lacks a required
    /// column (`missing_columns`, naming them); the whole import is refused.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<ParsedRow>) -> Result<()> {
        let Self {
            lines,
            format,
            fatal,
        } = self;
        lines.feed(chunk, &mut |event| on_line(format, fatal, event, out));
        self.check()
    }

    /// Ends the body: the last row, and an unterminated quote.
    ///
    /// # Errors
    /// As [`ImportParser::feed`]; also a CSV file without a header row.
    pub fn finish(&mut self, out: &mut Vec<ParsedRow>) -> Result<()> {
        let Self {
            lines,
            format,
            fatal,
        } = self;
        lines.finish(&mut |event| on_line(format, fatal, event, out));
        if let Format::Csv(csv) = &mut self.format {
            if let Some(start) = csv.record_start.take() {
                csv.record.clear();
                out.push(ParsedRow::Rejected(vec![RowError::line(
                    start,
                    row_codes::UNTERMINATED_QUOTE,
                    "a quoted field is not closed before the end of the file",
                )]));
            }
            if csv.columns.is_none() && self.fatal.is_none() {
                self.fatal = Some(missing_columns(&["name", "domain", "contact_email"]));
            }
        }
        self.check()
    }

    fn check(&mut self) -> Result<()> {
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn on_line(
    format: &mut Format,
    fatal: &mut Option<Error>,
    event: LineEvent<'_>,
    out: &mut Vec<ParsedRow>,
) {
    if fatal.is_some() {
        return;
    }
    match format {
        Format::Ndjson => ndjson_line(event, out),
        Format::Csv(csv) => {
            if let Err(e) = csv.line(event, out) {
                *fatal = Some(e);
            }
        }
    }
}

fn ndjson_line(event: LineEvent<'_>, out: &mut Vec<ParsedRow>) {
    let (line, bytes) = match event {
        LineEvent::TooLong(n) => {
            out.push(ParsedRow::Rejected(vec![too_long(n)]));
            return;
        }
        LineEvent::Line(n, bytes) => (n, bytes),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            out.push(ParsedRow::Rejected(vec![invalid_utf8(line, &e)]));
            return;
        }
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.push(ParsedRow::Rejected(vec![RowError::line(
                line,
                row_codes::INVALID_JSON,
                format!("the line is not JSON: {e}"),
            )]));
            return;
        }
    };
    let Value::Object(object) = &value else {
        out.push(ParsedRow::Rejected(vec![RowError::line(
            line,
            codes::WRONG_TYPE,
            "the line must be a JSON object",
        )]));
        return;
    };
    let mut type_errors = Vec::new();
    let mut text_of = |key: &str| -> Option<String> {
        match object.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A numeric client reference is common (database ids): taken as its text.
            Some(Value::Number(n)) if key == "external_id" => Some(n.to_string()),
            Some(other) => {
                type_errors.push(RowError {
                    column: Some(key.to_owned()),
                    value: Some(other.to_string().chars().take(200).collect()),
                    ..RowError::line(line, codes::WRONG_TYPE, format!("{key} must be a string"))
                });
                Some(String::new())
            }
        }
    };
    let (name, domain, email, external_id) = (
        text_of("name"),
        text_of("domain"),
        text_of("contact_email"),
        text_of("external_id"),
    );
    if !type_errors.is_empty() {
        out.push(ParsedRow::Rejected(type_errors));
        return;
    }
    out.push(validate_row(
        line,
        &RawRow {
            name: name.as_deref(),
            domain: domain.as_deref(),
            contact_email: email.as_deref(),
            external_id: external_id.as_deref(),
        },
    ));
}

/// Where the columns the import reads are in a CSV file.
#[derive(Debug, Clone, Copy)]
struct Columns {
    name: usize,
    domain: usize,
    contact_email: usize,
    external_id: Option<usize>,
}

#[derive(Debug)]
struct CsvState {
    /// The record being assembled (a quoted field may span lines).
    record: Vec<u8>,
    /// The line the record began on, while one is open.
    record_start: Option<u32>,
    /// Whether a quote is open at the end of `record`.
    quoted: bool,
    columns: Option<Columns>,
    reader: csv_core::Reader,
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for CsvState {
    fn default() -> Self {
        Self {
            record: Vec::new(),
            record_start: None,
            quoted: false,
            columns: None,
            reader: csv_core::Reader::new(),
            fields: Vec::new(),
            ends: Vec::new(),
        }
    }
}

impl CsvState {
    fn line(&mut self, event: LineEvent<'_>, out: &mut Vec<ParsedRow>) -> Result<()> {
        let (line, bytes) = match event {
            LineEvent::TooLong(n) => {
                let start = self.record_start.take().unwrap_or(n);
                self.record.clear();
                self.quoted = false;
                out.push(ParsedRow::Rejected(vec![too_long(start)]));
                return Ok(());
            }
            LineEvent::Line(n, bytes) => (n, bytes),
        };
        let start = match self.record_start {
            Some(start) => {
                self.record.push(b'\n');
                start
            }
            None if bytes.is_empty() => return Ok(()),
            None => line,
        };
        self.record.extend_from_slice(bytes);
        let quotes = bytes.iter().filter(|&&b| b == b'"').count();
        self.quoted ^= quotes % 2 == 1;
        if self.quoted {
            if self.record.len() > MAX_LINE_BYTES {
                self.record.clear();
                self.record_start = None;
                self.quoted = false;
                out.push(ParsedRow::Rejected(vec![RowError::line(
                    start,
                    row_codes::UNTERMINATED_QUOTE,
                    "a quoted field is not closed within 64 KiB",
                )]));
            } else {
                self.record_start = Some(start);
            }
            return Ok(());
        }
        self.record_start = None;
        let record = std::mem::take(&mut self.record);
        let result = self.record_done(start, &record, out);
        self.record = record;
        self.record.clear();
        result
    }

    fn record_done(&mut self, line: u32, record: &[u8], out: &mut Vec<ParsedRow>) -> Result<()> {
        if record.len() > MAX_LINE_BYTES {
            out.push(ParsedRow::Rejected(vec![too_long(line)]));
            return Ok(());
        }
        if let Err(e) = std::str::from_utf8(record) {
            if self.columns.is_none() {
                return Err(Error::invalid(vec![FieldError::new(
                    "/header",
                    row_codes::INVALID_UTF8,
                    "the header row is not UTF-8",
                )]));
            }
            out.push(ParsedRow::Rejected(vec![invalid_utf8(line, &e)]));
            return Ok(());
        }
        let fields = self.split(record);
        // Checked above: every field is a slice of UTF-8 split at ASCII bytes.
        let field = |i: usize| -> Option<&str> {
            fields
                .get(i)
                .and_then(|(a, b)| std::str::from_utf8(&self.fields[*a..*b]).ok())
        };
        let Some(columns) = self.columns else {
            let names: Vec<String> = (0..fields.len())
                .map(|i| field(i).unwrap_or_default().trim().to_ascii_lowercase())
                .collect();
            let find = |name: &str| names.iter().position(|n| n == name);
            let (name, domain, email) = (find("name"), find("domain"), find("contact_email"));
            let missing: Vec<&str> = [("name", name), ("domain", domain), ("contact_email", email)]
                .into_iter()
                .filter(|(_, at)| at.is_none())
                .map(|(n, _)| n)
                .collect();
            let (Some(name), Some(domain), Some(contact_email)) = (name, domain, email) else {
                return Err(missing_columns(&missing));
            };
            self.columns = Some(Columns {
                name,
                domain,
                contact_email,
                external_id: find("external_id"),
            });
            return Ok(());
        };
        out.push(validate_row(
            line,
            &RawRow {
                name: Some(field(columns.name).unwrap_or_default()),
                domain: Some(field(columns.domain).unwrap_or_default()),
                contact_email: Some(field(columns.contact_email).unwrap_or_default()),
                external_id: columns.external_id.and_then(field),
            },
        ));
        Ok(())
    }

    /// Splits a complete record (quotes balanced) into field ranges of `self.fields`.
    fn split(&mut self, record: &[u8]) -> Vec<(usize, usize)> {
        self.reader.reset();
        self.fields.clear();
        self.fields.resize(record.len() + 1, 0);
        self.ends.clear();
        self.ends.resize(record.len() + 2, 0);
        let mut input = record;
        let (mut nout, mut nend) = (0, 0);
        let mut at_end = false;
        loop {
            let (res, nin, o, e) =
                self.reader
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += o;
            nend += e;
            match res {
                // An empty input is the end of the record: ask once more to close it.
                csv_core::ReadRecordResult::InputEmpty if !at_end => at_end = true,
                _ => break,
            }
        }
        let mut start = 0;
        self.ends[..nend]
            .iter()
            .map(|&end| {
                let range = (start, end);
                start = end;
                range
            })
            .collect()
    }
}

fn missing_columns(missing: &[&str]) -> Error {
    Error::invalid(vec![FieldError::new(
        "/header",
        row_codes::MISSING_COLUMNS,
        format!(
            "the header row lacks the column(s) {}; it must name name, domain and contact_email (any order)",
            missing.join(", ")
        ),
    )])
}

fn too_long(line: u32) -> RowError {
    RowError::line(
        line,
        row_codes::LINE_TOO_LONG,
        format!("the line is longer than {MAX_LINE_BYTES} bytes"),
    )
}

fn invalid_utf8(line: u32, e: &std::str::Utf8Error) -> RowError {
    RowError::line(
        line,
        row_codes::INVALID_UTF8,
        format!("the line is not UTF-8 (byte {})", e.valid_up_to() + 1),
    )
}
