//! A JSON body read straight from its bytes: the fast path of
//! [`validate_json`](super::validate_json).
//!
//! Parsing a 1000-organization body into a [`serde_json::Value`] builds a
//! map and four owned strings per organization, only for validation to read
//! three of them and drop the rest. A well-typed body (what every working
//! client sends) is read into borrowed fields instead, with no allocation
//! per organization unless a string holds escapes. Any body the typed form
//! cannot take (a number where a string belongs, an organization that is not
//! an object) is read again as a `Value` and validated by
//! [`validate_json`](super::validate_json), which names each problem; so
//! both paths accept, reject and report alike. A body that is not JSON
//! fails both parses and answers the `Value` parser's error. A repeated key
//! is read as a `Value` reads it: the last one wins.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::json::{header, required, Sent};
use super::request::{mode_str, validate_items, RawItem, RawOrg};
use super::{Limits, ValidRequest};
use crate::error::Result;
use crate::model::SubmitMode;

/// A request body parsed for validation (see the module documentation).
#[derive(Debug)]
pub struct JsonBody<'a>(Parsed<'a>);

#[derive(Debug)]
enum Parsed<'a> {
    /// The well-typed shape, fields borrowed from the bytes.
    Typed(TypedRequest<'a>),
    /// Anything else that is JSON.
    Value(Value),
}

impl<'a> JsonBody<'a> {
    /// Parses `bytes`: into the typed shape when it fits, else into a
    /// [`Value`].
    ///
    /// # Errors
    ///
    /// `serde_json`'s error when `bytes` are not JSON (the error of the
    /// `Value` parse, which names the line and column).
    pub fn parse(bytes: &'a [u8]) -> std::result::Result<Self, serde_json::Error> {
        match serde_json::from_slice::<TypedRequest<'a>>(bytes) {
            Ok(typed) => Ok(Self(Parsed::Typed(typed))),
            Err(_) => serde_json::from_slice::<Value>(bytes).map(|v| Self(Parsed::Value(v))),
        }
    }

    /// A body already parsed into a [`Value`].
    pub fn from_value(value: Value) -> Self {
        Self(Parsed::Value(value))
    }

    /// The body with `on_conflict` and `mode` left out, so that their
    /// defaults apply (the original route, which has neither).
    pub fn without_options(self) -> Self {
        match self.0 {
            Parsed::Typed(mut typed) => {
                typed.on_conflict = None;
                typed.mode = None;
                Self(Parsed::Typed(typed))
            }
            Parsed::Value(mut value) => {
                if let Some(object) = value.as_object_mut() {
                    object.remove("on_conflict");
                    object.remove("mode");
                }
                Self(Parsed::Value(value))
            }
        }
    }

    /// Whether the body asks for partial mode (`"mode": "partial"`), as sent.
    pub fn asks_partial(&self) -> bool {
        let sent = match &self.0 {
            Parsed::Typed(typed) => typed.mode.as_ref().map(|m| m.0.as_ref()),
            Parsed::Value(value) => value.get("mode").and_then(Value::as_str),
        };
        sent == Some(mode_str(SubmitMode::Partial))
    }

    /// Validates the body by the rules of
    /// [`validate_json`](super::validate_json), with its answers.
    ///
    /// # Errors
    ///
    /// As [`validate_json`](super::validate_json).
    pub fn validate(&self, limits: &Limits) -> Result<ValidRequest> {
        let typed = match &self.0 {
            Parsed::Typed(typed) => typed,
            Parsed::Value(value) => return super::validate_json(value, limits),
        };
        let mut errors = Vec::new();
        let items = match &typed.organizations {
            Some(list) => Some(list.iter().map(raw_item)),
            None => {
                errors.push(required("organizations").into_field_error("/organizations"));
                None
            }
        };
        let header = header(
            errors,
            sent(typed.on_conflict.as_ref()),
            sent(typed.mode.as_ref()),
        );
        validate_items(header, items, limits)
    }
}

fn sent<'t>(text: Option<&'t Text<'_>>) -> Sent<'t> {
    match text {
        Some(text) => Sent::Text(&text.0),
        None => Sent::Nothing,
    }
}

fn raw_item<'t>(org: &'t TypedOrg<'_>) -> RawItem<'t> {
    let field = |text: &'t Option<Text<'_>>, key: &str| match text {
        Some(text) => Ok(text.0.as_ref()),
        None => Err(required(key)),
    };
    RawItem::Org(RawOrg {
        name: field(&org.name, "name"),
        domain: field(&org.domain, "domain"),
        contact_email: field(&org.contact_email, "contact_email"),
    })
}

/// The well-typed body: an object whose every known key is missing, `null`
/// or of its type; unknown keys ignored, as by
/// [`validate_json`](super::validate_json). Read by hand, not derived: a
/// derived struct would also take an array of its fields (`[[…]]` for an
/// organization), which [`validate_json`](super::validate_json) rejects.
#[derive(Debug, Default)]
struct TypedRequest<'a> {
    organizations: Option<Vec<TypedOrg<'a>>>,
    on_conflict: Option<Text<'a>>,
    mode: Option<Text<'a>>,
}

#[derive(Debug, Default)]
struct TypedOrg<'a> {
    name: Option<Text<'a>>,
    domain: Option<Text<'a>>,
    contact_email: Option<Text<'a>>,
}

/// An object read key by key, the unknown keys ignored. A repeated key
/// overwrites the earlier value: the last one wins, as in a parsed `Value`,
/// so both paths read the same fields.
trait Fields<'de>: Default {
    /// What the object is, for serde's error message.
    const EXPECTING: &'static str;

    /// Reads the value of `key` when it is a known one (`Ok(false)` when
    /// not, its value still unread).
    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<bool, A::Error>;
}

/// Implements [`Fields`] for a struct whose fields are named as its keys.
macro_rules! fields {
    ($object:ident, $expecting:literal, $($field:ident),+) => {
        impl<'de> Fields<'de> for $object<'de> {
            const EXPECTING: &'static str = $expecting;

            fn read<A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> std::result::Result<bool, A::Error> {
                match key {
                    $(stringify!($field) => self.$field = map.next_value()?,)+
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
    };
}

fields!(
    TypedRequest,
    "a request object",
    organizations,
    on_conflict,
    mode
);
fields!(
    TypedOrg,
    "an organization object",
    name,
    domain,
    contact_email
);

/// Reads a [`Fields`] object; only an object (a derived `Deserialize`
/// would also take an array of the fields).
struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<T, A::Error> {
        let mut object = T::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if !object.read(&key.0, &mut map)? {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(object)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TypedRequest<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor::<TypedRequest<'de>>(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TypedOrg<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor::<TypedOrg<'de>>(PhantomData))
    }
}

/// A JSON string, borrowed from the body unless it holds escapes. (Serde's
/// own `Cow<str>` always copies inside an `Option`.)
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;
    use crate::model::ConflictPolicy;

    /// Both paths' answers for `body`: accepted organizations with policy
    /// and mode, or the error's kind and field errors.
    fn both(body: &str) -> (String, String) {
        let limits = Limits::default().with_max_organizations(3);
        let fast = JsonBody::parse(body.as_bytes()).map(|b| b.validate(&limits));
        let slow =
            serde_json::from_str::<Value>(body).map(|v| super::super::validate_json(&v, &limits));
        (format!("{fast:?}"), format!("{slow:?}"))
    }

    #[test]
    fn answers_as_the_value_path_for_good_and_ugly_bodies() {
        let org = r#"{"name":"Acme","domain":"ACME.com.","contact_email":"ops@acme.com"}"#;
        let bodies = [
            format!(r#"{{"organizations":[{org}],"on_conflict":"skip","mode":"partial","x":[1]}}"#),
            format!(r#"{{"organizations":[{org},{org}]}}"#),
            format!(r#"{{"organizations":[{org},{org},{org},{org}]}}"#),
            r#"{"organizations":[]}"#.to_owned(),
            r#"{"organizations":null,"on_conflict":null,"mode":null}"#.to_owned(),
            r#"{"organizations":[{"name":null,"domain":"a.com"}],"mode":"Atomic"}"#.to_owned(),
            r#"{"organizations":[{"name":"A\u0000\"<b>","domain":"b\u00fccher.de","contact_email":"a@b.de"}]}"#.to_owned(),
            r#"{"organizations":[{"name":7,"domain":"a.com","contact_email":"a@a.com"}],"mode":"partial"}"#.to_owned(),
            r#"{"organizations":[1,{"name":"A"}],"on_conflict":false}"#.to_owned(),
            r#"{"organizations":[{"name":"A","name":"B","domain":"a.com","contact_email":"a@a.com"}]}"#.to_owned(),
            r#"{"organizations":{"0":{}}}"#.to_owned(),
            r#"{"organizations":[["A","a.com","a@a.com"]]}"#.to_owned(),
            r#"{"organizations":[{"name":"A","domain":"a.com","contact_email":"a@a.com"}],"organizations":[]}"#.to_owned(),
            r#"{"organizations":[{"name":"A","domain":"a.com","contact_email":"a@a.com","name":null}]}"#.to_owned(),
            r#"{"organizations":[{"name":"A","domain":"a.com","contact_email":"a@a.com"}],"mode":"partial","mode":7}"#.to_owned(),
            r#"{"organizations":[{"n\u0061me":"A","domain":"a.com","contact_email":"a@a.com"}]}"#.to_owned(),
            "[]".to_owned(),
            "null".to_owned(),
            r#""x""#.to_owned(),
        ];
        for body in &bodies {
            let (fast, slow) = both(body);
            assert_eq!(fast, slow, "{body}");
        }
    }

    #[test]
    fn a_well_typed_body_is_read_without_a_value() {
        let body = r#"{"organizations":[{"name":"A","domain":"a.com","contact_email":"a@a.com"}]}"#;
        let parsed = JsonBody::parse(body.as_bytes()).expect("json");
        assert!(matches!(parsed.0, Parsed::Typed(_)));
        let wrong = r#"{"organizations":[{"name":1}]}"#;
        let parsed = JsonBody::parse(wrong.as_bytes()).expect("json");
        assert!(matches!(parsed.0, Parsed::Value(_)));
    }

    #[test]
    fn not_json_answers_the_value_parsers_error() {
        let err = JsonBody::parse(b"{\"organizations\": [").expect_err("not json");
        let expected =
            serde_json::from_slice::<Value>(b"{\"organizations\": [").expect_err("not json");
        assert_eq!(err.to_string(), expected.to_string());
    }

    #[test]
    fn partial_and_options() {
        let body = r#"{"organizations":[{"name":"A","domain":"a.com","contact_email":"a@a.com"}],"mode":"partial","on_conflict":"skip"}"#;
        for parsed in [
            JsonBody::parse(body.as_bytes()).expect("json"),
            JsonBody::from_value(serde_json::from_str(body).expect("json")),
        ] {
            assert!(parsed.asks_partial());
            let plain = parsed.without_options();
            assert!(!plain.asks_partial());
            let valid = plain.validate(&Limits::default()).expect("valid");
            assert_eq!(valid.policy, ConflictPolicy::Update);
            assert_eq!(valid.mode, SubmitMode::Atomic);
        }
        let err = JsonBody::from_value(json!({"organizations": "x"}))
            .validate(&Limits::default())
            .expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}
