//! Imports of any size: CSV and NDJSON files parsed, validated and staged
//! in chunks while the body arrives, then turned into one batch.
//!
//! - [`ImportParser`] turns chunks of bytes into [`ParsedRow`]s with line
//!   numbers (the CSV header is line 1), in bounded memory;
//! - [`ImportStore`] stages the rows of one upload and creates its batch at the end;
//! - [`crate::OnboardingService::import`] drives both from a stream of chunks.

mod lines;
mod parse;
mod rows;
mod run;
mod store;

pub use lines::MAX_LINE_BYTES;
pub use parse::{ImportFormat, ImportParser};
pub use rows::{refused_rows, row_codes, ImportRow, ParsedRow, RowError, MAX_EXTERNAL_ID_CHARS};
pub(crate) use run::finish_sealed_imports;
pub use run::{ImportOptions, ImportReceipt};
pub use store::{
    ImportProgress, ImportState, ImportStore, NewImport, RepeatsRefused, SealedOptions,
    RECEIVING_LISTED,
};

#[cfg(test)]
mod tests;
