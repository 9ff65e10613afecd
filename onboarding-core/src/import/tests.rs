//! The parsers: formats, line numbers, malformed input, and a property test
//! (any chunking of any file gives the same rows).

use proptest::prelude::*;

use super::*;
use crate::error::ErrorKind;

fn parse(format: ImportFormat, chunks: &[&[u8]]) -> crate::Result<Vec<ParsedRow>> {
    let mut parser = ImportParser::new(format);
    let mut out = Vec::new();
    for c in chunks {
        parser.feed(c, &mut out)?;
    }
    parser.finish(&mut out)?;
    Ok(out)
}

/// `(line, domain)` of valid rows and `(line, code)` of refused ones.
fn summary(rows: &[ParsedRow]) -> Vec<(u32, String)> {
    rows.iter()
        .map(|r| match r {
            ParsedRow::Valid(r) => (r.line, r.organization.domain.to_string()),
            ParsedRow::Rejected(e) => (e[0].line, format!("!{}", e[0].code)),
        })
        .collect()
}

#[test]
fn csv_any_column_order_extra_columns_bom_crlf_quotes() {
    let body = "\u{feff}extra,Contact_Email,domain,NAME,external_id\r\n\
                x,a@acme.com,ACME.com,\"Acme, \"\"Inc\"\"\",A-1\r\n\
                \"y\nmore\",b@b.org,b.org,Multi,\r\n\
                z,c@c.net,c.net,C,\n";
    let rows = parse(ImportFormat::Csv, &[body.as_bytes()]).unwrap();
    assert_eq!(
        summary(&rows),
        vec![
            (2, "acme.com".into()),
            (3, "b.org".into()),
            (5, "c.net".into())
        ]
    );
    let ParsedRow::Valid(first) = &rows[0] else {
        panic!()
    };
    assert_eq!(first.organization.name, "Acme, \"Inc\"");
    assert_eq!(first.external_id.as_deref(), Some("A-1"));
    let ParsedRow::Valid(second) = &rows[1] else {
        panic!()
    };
    assert_eq!(second.external_id, None);
}

#[test]
fn csv_missing_columns_are_named() {
    let e = parse(ImportFormat::Csv, &[b"name,email\nA,a@b.com\n"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.field_errors()[0].code, "missing_columns");
    assert!(e.field_errors()[0].detail.contains("domain, contact_email"));
    let e = parse(ImportFormat::Csv, &[b""]).unwrap_err();
    assert_eq!(e.field_errors()[0].code, "missing_columns");
}

#[test]
fn csv_malformed_lines_are_refused_with_their_numbers() {
    let long = "x".repeat(MAX_LINE_BYTES + 1);
    let body = format!(
        "name,domain,contact_email\nA,a.com,a@a.com\nB,{long},b@b.com\nC,c.com,\\xFFc@c.com\nD,d.com,d@d.com\nE,e.com,\"e@e.com\n"
    );
    let mut bytes = body.into_bytes();
    // The \xFF above was escaped as text: put a real invalid byte in.
    let at = bytes.windows(4).position(|w| w == b"\\xFF").unwrap();
    bytes.splice(at..at + 4, [0xFF]);
    let rows = parse(ImportFormat::Csv, &[&bytes]).unwrap();
    assert_eq!(
        summary(&rows),
        vec![
            (2, "a.com".into()),
            (3, "!line_too_long".into()),
            (4, "!invalid_utf8".into()),
            (5, "d.com".into()),
            (6, "!unterminated_quote".into()),
        ]
    );
}

#[test]
fn csv_field_errors_name_line_column_and_value() {
    let rows = parse(
        ImportFormat::Csv,
        &[b"name,domain,contact_email,external_id\n,not a domain,x,R9\n"],
    )
    .unwrap();
    let ParsedRow::Rejected(errors) = &rows[0] else {
        panic!("{rows:?}")
    };
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.line, e.column.as_deref().unwrap(), e.code.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "name", "name_empty"),
            (2, "domain", "domain_invalid"),
            (2, "contact_email", "email_invalid")
        ]
    );
    assert_eq!(errors[1].value.as_deref(), Some("not a domain"));
    assert!(errors
        .iter()
        .all(|e| e.external_id.as_deref() == Some("R9")));
}

#[test]
fn ndjson_lines() {
    let body =
        b"{\"name\":\"A\",\"domain\":\"a.com\",\"contact_email\":\"a@a.com\",\"external_id\":7}\n\
                 \n\
                 {\"name\":\"B\",\n\
                 [1]\n\
                 {\"name\":5,\"domain\":\"b.com\",\"contact_email\":\"b@b.com\"}\n\
                 {\"domain\":\"c.com\",\"contact_email\":\"c@c.com\",\"external_id\":\"x\"}\r\n";
    let rows = parse(ImportFormat::Ndjson, &[body]).unwrap();
    assert_eq!(
        summary(&rows),
        vec![
            (1, "a.com".into()),
            (3, "!invalid_json".into()),
            (4, "!wrong_type".into()),
            (5, "!wrong_type".into()),
            (6, "!required".into()),
        ]
    );
    let ParsedRow::Valid(first) = &rows[0] else {
        panic!()
    };
    assert_eq!(first.external_id.as_deref(), Some("7"));
}

fn field() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z ,\"\n\u{e9}]{0,12}").expect("regex")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

proptest! {
    /// Any rows, written as RFC 4180 CSV with either line ending and cut
    /// into chunks anywhere, parse to the same rows with the right lines.
    #[test]
    fn csv_any_chunking(
        rows in prop::collection::vec((field(), 0u8..40, field()), 1..20),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut body = format!("external_id,name,domain,contact_email{eol}");
        let mut expected = Vec::new();
        let mut line = 2u32;
        for (i, (name, n, id)) in rows.iter().enumerate() {
            let domain = format!("d{i}x{n}.com");
            body.push_str(&format!("{},{},{domain},c@d.com{eol}", quote(id), quote(name)));
            let trimmed = name.trim();
            let id = id.replace("\r\n", "\n");
            expected.push((line, domain, trimmed.to_owned(), id.trim().to_owned()));
            line += 1 + u32::try_from(name.matches('\n').count() + id.matches('\n').count()).unwrap();
        }
        let bytes = body.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        let parsed = parse(ImportFormat::Csv, &chunks).unwrap();
        prop_assert_eq!(parsed.len(), expected.len());
        for (row, (line, domain, name, id)) in parsed.iter().zip(expected) {
            match row {
                ParsedRow::Valid(r) => {
                    prop_assert_eq!(r.line, line);
                    prop_assert_eq!(r.organization.domain.as_str(), domain);
                    prop_assert_eq!(&r.organization.name, &name);
                    prop_assert_eq!(r.external_id.clone().unwrap_or_default(), id);
                }
                ParsedRow::Rejected(e) => {
                    prop_assert_eq!(e[0].line, line);
                    prop_assert!(name.is_empty() || name.contains('\n'), "{:?}", e);
                }
            }
        }
    }

    /// Arbitrary bytes never panic and never yield a row past the last line.
    #[test]
    fn any_bytes_are_safe(bytes in prop::collection::vec(any::<u8>(), 0..400), ndjson in any::<bool>()) {
        let format = if ndjson { ImportFormat::Ndjson } else { ImportFormat::Csv };
        let body = [b"name,domain,contact_email\n".as_slice(), &bytes].concat();
        let lines = u32::try_from(body.iter().filter(|&&b| b == b'\n').count()).unwrap() + 1;
        if let Ok(rows) = parse(format, &[&body]) {
            for r in rows {
                let line = match r { ParsedRow::Valid(r) => r.line, ParsedRow::Rejected(e) => e[0].line };
                prop_assert!(line >= 1 && line <= lines);
            }
        }
    }
}
