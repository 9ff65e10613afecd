//! Physical lines of an upload, fed in chunks of any size: a UTF-8 byte
//! order mark is dropped, `\r\n` and `\n` both end a line, and a line longer
//! than [`MAX_LINE_BYTES`] is reported (not buffered) so memory stays bounded.

/// Longest accepted line (and CSV record), in bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One line as the splitter hands it on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineEvent<'a> {
    /// A line (1-based number) without its terminator.
    Line(u32, &'a [u8]),
    /// A line (1-based number) longer than [`MAX_LINE_BYTES`]; its bytes were dropped.
    TooLong(u32),
}

/// Splits a byte stream into lines.
#[derive(Debug)]
pub(crate) struct Lines {
    /// The start of the body until the byte order mark is decided.
    head: Option<Vec<u8>>,
    /// The unfinished line carried over from the previous chunk.
    pending: Vec<u8>,
    /// The number of the line being read.
    line: u32,
    /// Whether the line being read is already too long (its bytes are skipped).
    overlong: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Self {
            head: Some(Vec::new()),
            pending: Vec::new(),
            line: 1,
            overlong: false,
        }
    }
}

impl Lines {
    /// Feeds the next chunk of the body; `emit` gets every line it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(LineEvent<'_>)) {
        if let Some(mut head) = self.head.take() {
            head.extend_from_slice(chunk);
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                self.head = Some(head);
                return;
            }
            let body = head.strip_prefix(BOM).unwrap_or(&head);
            self.split(body, emit);
            return;
        }
        self.split(chunk, emit);
    }

    /// Ends the body: the last line, when it has no terminator.
    pub(crate) fn finish(&mut self, emit: &mut dyn FnMut(LineEvent<'_>)) {
        if let Some(head) = self.head.take() {
            self.split(&head, emit);
        }
        if self.overlong {
            emit(LineEvent::TooLong(self.line));
        } else if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            emit(LineEvent::Line(self.line, trim_cr(&line)));
        }
        self.overlong = false;
    }

    fn split(&mut self, mut data: &[u8], emit: &mut dyn FnMut(LineEvent<'_>)) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let (part, rest) = (&data[..end], &data[end + 1..]);
            if self.overlong || self.pending.len() + part.len() > MAX_LINE_BYTES + 1 {
                emit(LineEvent::TooLong(self.line));
            } else if self.pending.is_empty() {
                emit(LineEvent::Line(self.line, trim_cr(part)));
            } else {
                self.pending.extend_from_slice(part);
                let line = std::mem::take(&mut self.pending);
                emit(LineEvent::Line(self.line, trim_cr(&line)));
            }
            self.pending.clear();
            self.overlong = false;
            self.line = self.line.saturating_add(1);
            data = rest;
        }
        if !self.overlong {
            if self.pending.len() + data.len() > MAX_LINE_BYTES + 1 {
                self.overlong = true;
                self.pending = Vec::new();
            } else {
                self.pending.extend_from_slice(data);
            }
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<(u32, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut splitter = Lines::default();
        let mut emit = |e: LineEvent<'_>| match e {
            LineEvent::Line(n, b) => out.push((n, Some(b.to_vec()))),
            LineEvent::TooLong(n) => out.push((n, None)),
        };
        for c in chunks {
            splitter.feed(c, &mut emit);
        }
        splitter.finish(&mut emit);
        out
    }

    #[test]
    fn crlf_lf_bom_and_last_line() {
        let got = lines(&[b"\xEF\xBB", b"\xBFa\r\nb\n", b"c"]);
        assert_eq!(
            got,
            vec![
                (1, Some(b"a".to_vec())),
                (2, Some(b"b".to_vec())),
                (3, Some(b"c".to_vec()))
            ]
        );
        assert_eq!(lines(&[b"a\n"]), vec![(1, Some(b"a".to_vec()))]);
        assert_eq!(lines(&[b""]), vec![]);
        assert_eq!(lines(&[b"\xEF"]), vec![(1, Some(b"\xEF".to_vec()))]);
    }

    #[test]
    fn overlong_lines_are_reported_and_skipped() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let got = lines(&[b"a\n", &long[..100], &long[100..], b"\nb"]);
        assert_eq!(
            got,
            vec![
                (1, Some(b"a".to_vec())),
                (2, None),
                (3, Some(b"b".to_vec()))
            ]
        );
        let exact = vec![b'x'; MAX_LINE_BYTES];
        assert_eq!(lines(&[&exact]), vec![(1, Some(exact.clone()))]);
        assert_eq!(lines(&[&long]), vec![(1, None)]);
    }
}
