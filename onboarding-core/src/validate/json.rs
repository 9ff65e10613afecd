//! Validation of a raw JSON body: JSON type errors become field errors.

use serde_json::{Map, Value};

use super::problem::{codes, preview, FieldProblem};
use super::request::{mode_str, policy_str, validate_items, Header, RawItem, RawOrg};
use super::{Limits, ValidRequest};
use crate::error::{Error, FieldError, Result};
use crate::model::{ConflictPolicy, SubmitMode};

/// Validates a JSON body as received over HTTP.
///
/// Applies the same rules as [`validate_request`](super::validate_request),
/// and reports JSON type problems as field errors instead of failing to
/// deserialize: a body that is not an object (the empty pointer `""`,
/// `wrong_type`), a missing or `null` `organizations` (`required`) or one
/// that is not an array (`wrong_type`), an organization that is not an object
/// (`/organizations/3`, `wrong_type`), a missing or `null` field
/// (`required`) or a field that is not a string (`wrong_type`), and an
/// `on_conflict` or `mode` that is not a string (`wrong_type`) or not one
/// of the known values (`invalid_value`). `on_conflict` and `mode` may be
/// left out or `null` (defaults `update`, `atomic`): clients generated from
/// the OpenAPI document send `null` for optional fields they leave unset.
/// Unknown keys are ignored.
///
/// # Errors
///
/// As [`validate_request`](super::validate_request); every problem found is
/// listed, request-level problems first, then by organization position.
pub fn validate_json(body: &Value, limits: &Limits) -> Result<ValidRequest> {
    let Some(body) = body.as_object() else {
        return Err(Error::invalid(vec![FieldError::new(
            "",
            codes::WRONG_TYPE,
            format!(
                "the request body must be a JSON object, got {}",
                type_name(body)
            ),
        )]));
    };

    let mut errors = Vec::new();
    let items = match body.get("organizations") {
        Some(Value::Array(list)) => Some(list.iter().map(raw_item)),
        Some(Value::Null) | None => {
            errors.push(FieldError::new(
                "/organizations",
                codes::REQUIRED,
                "organizations is required",
            ));
            None
        }
        Some(other) => {
            errors.push(
                wrong_type("organizations", "an array of organizations", other)
                    .into_field_error("/organizations"),
            );
            None
        }
    };
    let header = header(errors, sent(body, "on_conflict"), sent(body, "mode"));
    validate_items(header, items, limits)
}

/// The request-level part: `on_conflict` and `mode` as sent, checked, after
/// the problems already found in `errors`.
pub(super) fn header(mut errors: Vec<FieldError>, policy: Sent<'_>, mode: Sent<'_>) -> Header {
    let policy = choice(
        "on_conflict",
        policy,
        &[ConflictPolicy::Update, ConflictPolicy::Skip],
        policy_str,
        &mut errors,
    );
    let mode = choice(
        "mode",
        mode,
        &[SubmitMode::Atomic, SubmitMode::Partial],
        mode_str,
        &mut errors,
    );
    Header {
        policy,
        mode,
        errors,
    }
}

/// Reads one entry of `organizations`.
fn raw_item(value: &Value) -> RawItem<'_> {
    match value.as_object() {
        Some(org) => RawItem::Org(RawOrg {
            name: string_field(org, "name"),
            domain: string_field(org, "domain"),
            contact_email: string_field(org, "contact_email"),
        }),
        None => RawItem::NotAnObject(wrong_type("each organization", "an object", value)),
    }
}

/// A required string field.
fn string_field<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, FieldProblem> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(required(key)),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// The problem of a missing or `null` required field.
pub(super) fn required(key: &str) -> FieldProblem {
    FieldProblem::new(codes::REQUIRED, format!("{key} is required"))
}

/// What a body holds at an optional string key.
pub(super) enum Sent<'a> {
    /// Missing or `null`: the default applies.
    Nothing,
    /// A string.
    Text(&'a str),
    /// Another JSON type (its name, for the message).
    Other(&'static str),
}

/// What `object` holds at `key`.
fn sent<'a>(object: &'a Map<String, Value>, key: &str) -> Sent<'a> {
    match object.get(key) {
        None | Some(Value::Null) => Sent::Nothing,
        Some(Value::String(s)) => Sent::Text(s),
        Some(other) => Sent::Other(type_name(other)),
    }
}

/// An optional string field with a fixed set of values; records a problem
/// and returns the default when it is unusable.
fn choice<T: Copy + Default>(
    key: &str,
    got: Sent<'_>,
    values: &[T],
    name: fn(T) -> &'static str,
    errors: &mut Vec<FieldError>,
) -> T {
    let pointer = || format!("/{key}");
    let allowed = || {
        values
            .iter()
            .map(|v| format!("\"{}\"", name(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match got {
        Sent::Nothing => T::default(),
        Sent::Text(s) => match values.iter().find(|v| name(**v) == s) {
            Some(value) => *value,
            None => {
                errors.push(FieldError::new(
                    pointer(),
                    codes::INVALID_VALUE,
                    format!("{key} must be one of {}, got {}", allowed(), preview(s)),
                ));
                T::default()
            }
        },
        Sent::Other(type_name) => {
            errors.push(FieldError::new(
                pointer(),
                codes::WRONG_TYPE,
                format!(
                    "{key} must be a string (one of {}), got {type_name}",
                    allowed()
                ),
            ));
            T::default()
        }
    }
}

fn wrong_type(what: &str, expected: &str, got: &Value) -> FieldProblem {
    FieldProblem::new(
        codes::WRONG_TYPE,
        format!("{what} must be {expected}, got {}", type_name(got)),
    )
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;
    use crate::validate::test_support::{field_errors, pairs};
    use crate::validate::{validate_request, SubmitRequest};

    fn errors_of(body: Value) -> Vec<(String, String)> {
        field_errors(validate_json(&body, &Limits::default()))
    }

    fn good_org() -> Value {
        json!({"name": "Acme", "domain": "acme.com", "contact_email": "ops@acme.com"})
    }

    #[test]
    fn valid_body() {
        let body = json!({
            "organizations": [good_org(), {"name": "B", "domain": "B.com.", "contact_email": "b@b.com", "ignored": [1]}],
            "on_conflict": "skip",
            "mode": "partial",
            "unknown": {"x": 1}
        });
        let valid = validate_json(&body, &Limits::default()).expect("valid");
        assert_eq!(valid.policy, ConflictPolicy::Skip);
        assert_eq!(valid.mode, SubmitMode::Partial);
        assert_eq!(valid.organizations[1].1.domain.as_str(), "b.com");
    }

    #[test]
    fn defaults_apply_when_omitted() {
        let valid = validate_json(&json!({"organizations": [good_org()]}), &Limits::default())
            .expect("valid");
        assert_eq!(valid.policy, ConflictPolicy::Update);
        assert_eq!(valid.mode, SubmitMode::Atomic);
    }

    #[test]
    fn body_not_an_object() {
        for body in [json!(null), json!([]), json!("x"), json!(1), json!(true)] {
            assert_eq!(errors_of(body), pairs(&[("", codes::WRONG_TYPE)]));
        }
    }

    #[test]
    fn organizations_missing_null_or_wrong_type() {
        assert_eq!(
            errors_of(json!({})),
            pairs(&[("/organizations", codes::REQUIRED)])
        );
        assert_eq!(
            errors_of(json!({"organizations": null})),
            pairs(&[("/organizations", codes::REQUIRED)])
        );
        for wrong in [json!("x"), json!(1), json!({"0": good_org()}), json!(false)] {
            assert_eq!(
                errors_of(json!({ "organizations": wrong })),
                pairs(&[("/organizations", codes::WRONG_TYPE)])
            );
        }
        assert_eq!(
            errors_of(json!({"organizations": []})),
            pairs(&[("/organizations", codes::ORGANIZATIONS_EMPTY)])
        );
    }

    #[test]
    fn request_level_errors_are_all_reported() {
        assert_eq!(
            errors_of(json!({"organizations": "x", "on_conflict": "replace", "mode": 7})),
            pairs(&[
                ("/organizations", codes::WRONG_TYPE),
                ("/on_conflict", codes::INVALID_VALUE),
                ("/mode", codes::WRONG_TYPE),
            ])
        );
        assert_eq!(
            errors_of(
                json!({"organizations": [good_org()], "on_conflict": false, "mode": "Atomic"})
            ),
            pairs(&[
                ("/on_conflict", codes::WRONG_TYPE),
                ("/mode", codes::INVALID_VALUE),
            ])
        );
    }

    #[test]
    fn null_policy_and_mode_mean_the_defaults() {
        let valid = validate_json(
            &json!({"organizations": [good_org()], "on_conflict": null, "mode": null}),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(valid.policy, ConflictPolicy::Update);
        assert_eq!(valid.mode, SubmitMode::Atomic);
    }

    #[test]
    fn request_level_errors_reject_even_in_partial_mode() {
        assert_eq!(
            errors_of(json!({
                "organizations": [good_org(), {"name": ""}],
                "on_conflict": "nope",
                "mode": "partial"
            })),
            pairs(&[
                ("/on_conflict", codes::INVALID_VALUE),
                ("/organizations/1/name", codes::NAME_EMPTY),
                ("/organizations/1/domain", codes::REQUIRED),
                ("/organizations/1/contact_email", codes::REQUIRED),
            ])
        );
    }

    #[test]
    fn wrong_types_inside_organizations() {
        assert_eq!(
            errors_of(json!({"organizations": [
                good_org(),
                "acme.com",
                null,
                [good_org()],
                {"name": 5, "domain": null, "contact_email": ["a@b.com"]},
                {},
                {"name": true, "domain": {"d": 1}, "contact_email": 1.5},
            ]})),
            pairs(&[
                ("/organizations/1", codes::WRONG_TYPE),
                ("/organizations/2", codes::WRONG_TYPE),
                ("/organizations/3", codes::WRONG_TYPE),
                ("/organizations/4/name", codes::WRONG_TYPE),
                ("/organizations/4/domain", codes::REQUIRED),
                ("/organizations/4/contact_email", codes::WRONG_TYPE),
                ("/organizations/5/name", codes::REQUIRED),
                ("/organizations/5/domain", codes::REQUIRED),
                ("/organizations/5/contact_email", codes::REQUIRED),
                ("/organizations/6/name", codes::WRONG_TYPE),
                ("/organizations/6/domain", codes::WRONG_TYPE),
                ("/organizations/6/contact_email", codes::WRONG_TYPE),
            ])
        );
    }

    #[test]
    fn too_many_is_decided_from_the_length() {
        let items = vec![json!(null); 1001];
        let err = validate_json(&json!({ "organizations": items }), &Limits::default())
            .expect_err("too large");
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(err.field_errors().len(), 1);
        assert_eq!(err.field_errors()[0].pointer, "/organizations");
        assert_eq!(err.field_errors()[0].code, codes::TOO_MANY_ORGANIZATIONS);
    }

    #[test]
    fn partial_mode_over_json() {
        let body = json!({
            "mode": "partial",
            "organizations": [good_org(), 42, {"name": "Dup", "domain": "ACME.COM.", "contact_email": "d@acme.com"}]
        });
        let valid = validate_json(&body, &Limits::default()).expect("partial");
        assert_eq!(valid.organizations.len(), 1);
        let rejected: Vec<_> = valid
            .rejected
            .iter()
            .map(|r| {
                (
                    r.position,
                    r.errors[0].pointer.as_str(),
                    r.errors[0].code.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rejected,
            vec![
                (1, "/organizations/1", codes::WRONG_TYPE),
                (2, "/organizations/2/domain", codes::DOMAIN_DUPLICATE),
            ]
        );
    }

    #[test]
    fn agrees_with_the_typed_entry_point() {
        let body = json!({
            "organizations": [
                {"name": " Acme ", "domain": "Acme.com", "contact_email": "x@ACME.com"},
                {"name": "Bücher", "domain": "bücher.de.", "contact_email": "y@b.de"},
                {"name": "bad", "domain": "acme.com", "contact_email": "nope"}
            ],
            "on_conflict": "skip",
            "mode": "partial"
        });
        let typed: SubmitRequest = serde_json::from_value(body.clone()).expect("typed");
        let from_json = validate_json(&body, &Limits::default()).expect("json");
        let from_typed = validate_request(&typed, &Limits::default()).expect("typed");
        assert_eq!(from_json, from_typed);
        assert_eq!(from_json.request_hash(), from_typed.request_hash());
    }
}
