//! Failures grouped by cause: a batch's failed items keyed by their last
//! error with the varying parts (numbers, ids, UUIDs, quoted values) folded,
//! so 2,000 failures from 3 causes read as 3 groups, and one group can be
//! re-driven on its own.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::model::{BatchId, BatchItem, ItemId, ItemStatus, TenantId};
use crate::repository::ItemQuery;
use crate::service::OnboardingService;

/// Most groups one answer holds; failures of further causes are counted in
/// [`FailureGroups::ungrouped`] (bounded memory whatever the batch).
pub const MAX_GROUPS: usize = 200;

/// Longest normalized cause kept (characters); longer ones are cut.
const MAX_CAUSE_CHARS: usize = 300;

/// Items read per page while grouping.
const PAGE: u32 = 1000;

/// What an item without a recorded error is grouped under.
const NO_ERROR: &str = "(no error recorded)";

/// One cause and the failed items it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    /// Stable key of the cause: 16 hex digits of its SHA-256 (a path segment).
    pub key: String,
    /// The normalized cause.
    pub cause: String,
    /// Failed items with this cause.
    pub count: u32,
    /// The first failed item (by position) with this cause.
    pub example: BatchItem,
}

/// A batch's failed items by cause, largest group first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailureGroups {
    /// Failed items in the batch.
    pub failed: u32,
    /// The groups, by count descending, then key.
    pub groups: Vec<FailureGroup>,
    /// Failed items whose cause did not fit in [`MAX_GROUPS`] groups.
    pub ungrouped: u32,
}

/// Folds the varying parts of an error message: quoted values → `"…"`,
/// words holding a digit (numbers, ids, UUIDs, hex, durations) → `<n>` when
/// numeric, else `<id>`; whitespace collapsed; cut to 300 characters.
pub fn normalize_error(message: &str) -> String {
    let chars: Vec<char> = message.chars().collect();
    let mut out = String::with_capacity(message.len().min(MAX_CAUSE_CHARS));
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            if let Some(len) = chars[i + 1..].iter().position(|&q| q == c) {
                out.push_str("\"…\"");
                i += len + 2;
                continue;
            }
        }
        if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word = &chars[start..i];
            if word.iter().any(char::is_ascii_digit) {
                let numeric = word.iter().all(|c| c.is_ascii_digit() || *c == '_');
                out.push_str(if numeric { "<n>" } else { "<id>" });
            } else {
                out.extend(word);
            }
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            if !out.ends_with(' ') && !out.is_empty() {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    let trimmed = out.trim_end();
    match trimmed.char_indices().nth(MAX_CAUSE_CHARS) {
        Some((cut, _)) => trimmed[..cut].to_owned(),
        None if trimmed.is_empty() => NO_ERROR.to_owned(),
        None => trimmed.to_owned(),
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// The group key of a normalized cause.
pub fn group_key(cause: &str) -> String {
    let digest = Sha256::digest(cause.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The normalized cause of one failed item: its last error.
fn cause_of(item: &BatchItem) -> String {
    item.errors
        .last()
        .map_or_else(|| NO_ERROR.to_owned(), |e| normalize_error(&e.message))
}

/// Reads every failed item of the batch, page by page, handing each page to `each`.
async fn for_each_failed_page<F>(
    service: &OnboardingService,
    tenant: &TenantId,
    batch: BatchId,
    mut each: F,
) -> Result<()>
where
    F: FnMut(&[BatchItem]) -> Vec<ItemId>,
{
    let mut after_position = None;
    loop {
        let query = ItemQuery {
            status: Some(ItemStatus::Failed),
            limit: PAGE,
            after_position,
        };
        let page = service.list_items(tenant, batch, &query).await?;
        let chosen = each(&page.items);
        if !chosen.is_empty() {
            service.retry_items(tenant, batch, &chosen).await?;
        }
        match page.next_cursor {
            Some(next) => after_position = Some(next),
            None => return Ok(()),
        }
    }
}

/// A batch's failed items grouped by cause (`NotFound` for an unknown or
/// another tenant's batch).
pub async fn group_failures(
    service: &OnboardingService,
    tenant: &TenantId,
    batch: BatchId,
) -> Result<FailureGroups> {
    let mut answer = FailureGroups::default();
    let mut groups: HashMap<String, FailureGroup> = HashMap::new();
    for_each_failed_page(service, tenant, batch, |items| {
        for item in items {
            answer.failed += 1;
            let cause = cause_of(item);
            let key = group_key(&cause);
            if let Some(group) = groups.get_mut(&key) {
                group.count += 1;
            } else if groups.len() < MAX_GROUPS {
                groups.insert(
                    key.clone(),
                    FailureGroup {
                        key,
                        cause,
                        count: 1,
                        example: item.clone(),
                    },
                );
            } else {
                answer.ungrouped += 1;
            }
        }
        Vec::new()
    })
    .await?;
    answer.groups = groups.into_values().collect();
    answer
        .groups
        .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    Ok(answer)
}

/// Re-drives the batch's failed items whose cause has this group key, one
/// page at a time; returns how many went back to pending (0 for an unknown key).
pub async fn retry_group(
    service: &OnboardingService,
    tenant: &TenantId,
    batch: BatchId,
    key: &str,
) -> Result<u32> {
    let mut requeued = 0u32;
    for_each_failed_page(service, tenant, batch, |items| {
        let chosen: Vec<ItemId> = items
            .iter()
            .filter(|item| group_key(&cause_of(item)) == key)
            .map(|item| item.id)
            .collect();
        requeued = requeued.saturating_add(u32::try_from(chosen.len()).unwrap_or(u32::MAX));
        chosen
    })
    .await?;
    Ok(requeued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varying_parts_are_folded() {
        let cases = [
            ("timeout after 3000 ms", "timeout after <n> ms"),
            (
                "org 0190b6a4-7c1e-7d3a-9f00-1234567890ab rejected",
                "org <id> rejected",
            ),
            ("HTTP 503 from 'crm-7'", "HTTP <n> from \"…\""),
            ("name \"<script>\" refused", "name \"…\" refused"),
            ("  spaced\t\nout  ", "spaced out"),
            ("", NO_ERROR),
            ("quote ' unbalanced 12", "quote ' unbalanced <n>"),
        ];
        for (message, expected) in cases {
            assert_eq!(normalize_error(message), expected, "{message:?}");
        }
        assert_eq!(
            normalize_error("ticket abc123 failed"),
            normalize_error("ticket 9f9f9f failed")
        );
        assert!(normalize_error(&"x ".repeat(1000)).chars().count() <= MAX_CAUSE_CHARS);
    }

    #[test]
    fn keys_are_short_stable_hex() {
        let key = group_key("timeout after <n> ms");
        assert_eq!(key.len(), 16);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, group_key("timeout after <n> ms"));
        assert_ne!(key, group_key("timeout after <n> s"));
    }
}
