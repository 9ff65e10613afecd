//! Whole requests: the input and output types, size limits, duplicate
//! detection, atomic and partial modes, and the request hash.

use std::collections::hash_map::{Entry, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::domain::normalize_domain;
use super::fields::{normalize_email, normalize_name};
use super::problem::{codes, FieldProblem};
use super::Limits;
use crate::error::{Error, ErrorKind, FieldError, Result};
use crate::model::{ConflictPolicy, NewOrganization, SubmitMode};

/// One organization as a client sent it (typed input for embedders).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationInput {
    /// Display name, as typed.
    pub name: String,
    /// Domain, as typed (any case, Unicode or punycode, optional trailing dot).
    pub domain: String,
    /// Contact email address, as typed.
    pub contact_email: String,
}

/// A whole request as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The organizations, in the client's order; positions are indexes into this list.
    pub organizations: Vec<OrganizationInput>,
    /// What to do with domains that already exist (default `update`).
    #[serde(default)]
    pub on_conflict: ConflictPolicy,
    /// Whether one invalid organization rejects the request (default `atomic`).
    #[serde(default)]
    pub mode: SubmitMode,
}

/// An organization rejected in partial mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Its index in the request's `organizations` array.
    pub position: u32,
    /// Every problem found with it, pointers into the whole request body.
    pub errors: Vec<FieldError>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    /// The accepted organizations, normalized, with their position in the
    /// request, in request order.
    pub organizations: Vec<(u32, NewOrganization)>,
    /// The conflict policy of the request.
    pub policy: ConflictPolicy,
    /// The submit mode of the request.
    pub mode: SubmitMode,
    /// The organizations rejected in partial mode, in request order (always
    /// empty in atomic mode).
    pub rejected: Vec<Rejection>,
}

impl ValidRequest {
    /// SHA-256 (lowercase hex) over a canonical, length-prefixed encoding of
    /// the policy, the mode, every accepted organization (position, name,
    /// domain, contact email, all normalized) and every rejected position.
    ///
    /// Two requests that normalize to the same thing have the same hash
    /// (e.g. domains differing only in case, surrounding whitespace or a
    /// trailing dot); any difference in the normalized data changes it.
    pub fn request_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"onboarding-core/request-hash/v1\0");
        hash_str(&mut hasher, policy_str(self.policy));
        hash_str(&mut hasher, mode_str(self.mode));
        hash_len(&mut hasher, self.organizations.len());
        for (position, org) in &self.organizations {
            hasher.update(position.to_be_bytes());
            hash_str(&mut hasher, &org.name);
            hash_str(&mut hasher, org.domain.as_str());
            hash_str(&mut hasher, &org.contact_email);
        }
        hash_len(&mut hasher, self.rejected.len());
        for rejection in &self.rejected {
            hasher.update(rejection.position.to_be_bytes());
        }
        hex(&hasher.finalize())
    }
}

fn hash_len(hasher: &mut Sha256, len: usize) {
    // usize is at most 64 bits on every supported target.
    hasher.update((len as u64).to_be_bytes());
}

fn hash_str(hasher: &mut Sha256, s: &str) {
    hash_len(hasher, s.len());
    hasher.update(s.as_bytes());
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The wire name of a conflict policy.
pub(crate) fn policy_str(policy: ConflictPolicy) -> &'static str {
    match policy {
        ConflictPolicy::Update => "update",
        ConflictPolicy::Skip => "skip",
    }
}

/// The wire name of a submit mode.
pub(crate) fn mode_str(mode: SubmitMode) -> &'static str {
    match mode {
        SubmitMode::Atomic => "atomic",
        SubmitMode::Partial => "partial",
    }
}

/// Validates a typed request: normalizes every organization, detects
/// duplicate domains, and applies the request's mode.
///
/// # Errors
///
/// - [`ErrorKind::TooLarge`] with one field error at `/organizations`
///   (`too_many_organizations`) when there are more organizations than
///   `limits.max_organizations`; decided before any organization is checked;
/// - [`ErrorKind::Invalid`] listing every problem, when the list is empty,
///   when any organization is invalid in atomic mode, or when no
///   organization is valid in partial mode.
pub fn validate_request(request: &SubmitRequest, limits: &Limits) -> Result<ValidRequest> {
    let header = Header {
        policy: request.on_conflict,
        mode: request.mode,
        errors: Vec::new(),
    };
    let items = request.organizations.iter().map(|org| {
        RawItem::Org(RawOrg {
            name: Ok(&org.name),
            domain: Ok(&org.domain),
            contact_email: Ok(&org.contact_email),
        })
    });
    validate_items(header, Some(items), limits)
}

/// The request-level part of a request, already checked.
pub(crate) struct Header {
    /// The policy (the default if the sent one was invalid).
    pub(crate) policy: ConflictPolicy,
    /// The mode (the default if the sent one was invalid).
    pub(crate) mode: SubmitMode,
    /// Request-level problems (body, `organizations`, `on_conflict`, `mode`).
    pub(crate) errors: Vec<FieldError>,
}

/// One entry of `organizations` before normalization.
pub(crate) enum RawItem<'a> {
    /// An object; each field is its text or why it could not be read.
    Org(RawOrg<'a>),
    /// Not an object.
    NotAnObject(FieldProblem),
}

/// The fields of one organization: text, or why it is missing or unreadable.
pub(crate) struct RawOrg<'a> {
    pub(crate) name: Result<&'a str, FieldProblem>,
    pub(crate) domain: Result<&'a str, FieldProblem>,
    pub(crate) contact_email: Result<&'a str, FieldProblem>,
}

/// Validates the organizations. `items` is `None` when `organizations` itself
/// was unusable (and `header.errors` says why).
///
/// The size limit is checked from `items.len()` before a single item is
/// produced, so a huge array is refused without being walked.
pub(crate) fn validate_items<'a, I>(
    mut header: Header,
    items: Option<I>,
    limits: &Limits,
) -> Result<ValidRequest>
where
    I: ExactSizeIterator<Item = RawItem<'a>>,
{
    if let Some(items) = &items {
        let len = items.len();
        let max = limits.max_organizations.min(u32::MAX as usize);
        if len > max {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("the request has {len} organizations, more than the limit of {max}"),
            )
            .with_field_errors(vec![FieldError::new(
                "/organizations",
                codes::TOO_MANY_ORGANIZATIONS,
                format!("organizations has {len} entries; at most {max} are allowed"),
            )]));
        }
        if len == 0 {
            // `organizations` comes first among request-level errors.
            header.errors.insert(
                0,
                FieldError::new(
                    "/organizations",
                    codes::ORGANIZATIONS_EMPTY,
                    "organizations is empty; send at least one organization",
                ),
            );
        }
    }

    let checked: Vec<(u32, Result<NewOrganization, Vec<FieldError>>)> = match items {
        Some(items) => check_items(items),
        None => Vec::new(),
    };

    if !header.errors.is_empty() || header.mode == SubmitMode::Atomic {
        let mut errors = header.errors;
        let mut organizations = Vec::with_capacity(checked.len());
        for (position, outcome) in checked {
            match outcome {
                Ok(org) => organizations.push((position, org)),
                Err(org_errors) => errors.extend(org_errors),
            }
        }
        if !errors.is_empty() {
            return Err(Error::invalid(errors));
        }
        return Ok(ValidRequest {
            organizations,
            policy: header.policy,
            mode: header.mode,
            rejected: Vec::new(),
        });
    }

    let mut organizations = Vec::new();
    let mut rejected = Vec::new();
    for (position, outcome) in checked {
        match outcome {
            Ok(org) => organizations.push((position, org)),
            Err(errors) => rejected.push(Rejection { position, errors }),
        }
    }
    if organizations.is_empty() {
        return Err(Error::invalid(
            rejected.into_iter().flat_map(|r| r.errors).collect(),
        ));
    }
    Ok(ValidRequest {
        organizations,
        policy: header.policy,
        mode: header.mode,
        rejected,
    })
}

/// Normalizes every item and flags later occurrences of a domain.
fn check_items<'a>(
    items: impl Iterator<Item = RawItem<'a>>,
) -> Vec<(u32, Result<NewOrganization, Vec<FieldError>>)> {
    let expected = items.size_hint().0;
    let mut first_seen: HashMap<String, u32> = HashMap::with_capacity(expected);
    let mut checked = Vec::with_capacity(expected);
    // `zip` with `0u32..` caps positions at u32::MAX; the size check keeps
    // every request below that.
    for (item, position) in items.zip(0u32..) {
        // Only a rejected item needs its pointer: not formatted per item.
        let base = || format!("/organizations/{position}");
        let org = match item {
            RawItem::NotAnObject(problem) => {
                checked.push((position, Err(vec![problem.into_field_error(base())])));
                continue;
            }
            RawItem::Org(org) => org,
        };

        let name = org.name.and_then(normalize_name);
        let domain = org.domain.and_then(normalize_domain).and_then(|domain| {
            match first_seen.entry(domain.as_str().to_owned()) {
                Entry::Occupied(first) => Err(FieldProblem::new(
                    codes::DOMAIN_DUPLICATE,
                    format!("{domain} is also at /organizations/{}/domain", first.get()),
                )),
                Entry::Vacant(slot) => {
                    slot.insert(position);
                    Ok(domain)
                }
            }
        });
        let contact_email = org.contact_email.and_then(normalize_email);

        let outcome = match (name, domain, contact_email) {
            (Ok(name), Ok(domain), Ok(contact_email)) => Ok(NewOrganization {
                name,
                domain,
                contact_email,
            }),
            (name, domain, contact_email) => Err([
                ("name", name.err()),
                ("domain", domain.err()),
                ("contact_email", contact_email.err()),
            ]
            .into_iter()
            .filter_map(|(field, problem)| {
                problem.map(|p| p.into_field_error(format!("{}/{field}", base())))
            })
            .collect()),
        };
        checked.push((position, outcome));
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_support::{field_errors, pairs};

    fn org(name: &str, domain: &str, email: &str) -> OrganizationInput {
        OrganizationInput {
            name: name.to_owned(),
            domain: domain.to_owned(),
            contact_email: email.to_owned(),
        }
    }

    fn request(orgs: Vec<OrganizationInput>) -> SubmitRequest {
        SubmitRequest {
            organizations: orgs,
            on_conflict: ConflictPolicy::default(),
            mode: SubmitMode::default(),
        }
    }

    fn partial(orgs: Vec<OrganizationInput>) -> SubmitRequest {
        SubmitRequest {
            mode: SubmitMode::Partial,
            ..request(orgs)
        }
    }

    fn errors_of(result: Result<ValidRequest>) -> Vec<(String, String)> {
        field_errors(result)
    }

    #[test]
    fn valid_request_is_normalized() {
        let req = request(vec![
            org(" Acme ", "ACME.COM.", "Ops@ACME.com"),
            org("Bücher GmbH", "Bücher.de", "info@bücher.de"),
        ]);
        let valid = validate_request(&req, &Limits::default()).expect("valid");
        assert_eq!(valid.policy, ConflictPolicy::Update);
        assert_eq!(valid.mode, SubmitMode::Atomic);
        assert!(valid.rejected.is_empty());
        assert_eq!(valid.organizations.len(), 2);
        let (pos, first) = &valid.organizations[0];
        assert_eq!(*pos, 0);
        assert_eq!(first.name, "Acme");
        assert_eq!(first.domain.as_str(), "acme.com");
        assert_eq!(first.contact_email, "Ops@acme.com");
        assert_eq!(valid.organizations[1].1.domain.as_str(), "xn--bcher-kva.de");
    }

    #[test]
    fn empty_list_is_invalid() {
        let err = validate_request(&request(vec![]), &Limits::default());
        assert_eq!(
            errors_of(err),
            pairs(&[("/organizations", codes::ORGANIZATIONS_EMPTY)])
        );
    }

    #[test]
    fn too_many_organizations_is_too_large() {
        let orgs = vec![org("A", "acme.com", "a@acme.com"); 1001];
        let err = validate_request(&request(orgs), &Limits::default()).expect_err("too large");
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(err.field_errors().len(), 1);
        assert_eq!(err.field_errors()[0].pointer, "/organizations");
        assert_eq!(err.field_errors()[0].code, codes::TOO_MANY_ORGANIZATIONS);

        // Exactly at the limit is fine (and duplicates are then reported).
        let orgs: Vec<_> = (0..1000)
            .map(|i| org("A", &format!("acme{i}.com"), "a@acme.com"))
            .collect();
        assert!(validate_request(&request(orgs), &Limits::default()).is_ok());

        // A custom limit.
        let orgs = vec![
            org("A", "acme.com", "a@acme.com"),
            org("B", "b.com", "b@b.com"),
        ];
        let limits = Limits::default().with_max_organizations(1);
        assert_eq!(
            validate_request(&request(orgs), &limits)
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::TooLarge)
        );
    }

    #[test]
    fn size_is_decided_before_items_are_checked() {
        // Items that would be expensive or invalid are never looked at.
        let items = (0..1_000_000)
            .map(|_| -> RawItem<'static> { panic!("item produced before the size check") });
        let header = Header {
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Atomic,
            errors: Vec::new(),
        };
        let err = validate_items(header, Some(items), &Limits::default()).err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::TooLarge));
    }

    #[test]
    fn every_error_is_collected_in_position_order() {
        let req = request(vec![
            org("", "not a domain", "nope"),
            org("Fine", "fine.com", "ok@fine.com"),
            org("Bad\u{0}", "com", "x@y.com"),
        ]);
        assert_eq!(
            errors_of(validate_request(&req, &Limits::default())),
            pairs(&[
                ("/organizations/0/name", codes::NAME_EMPTY),
                ("/organizations/0/domain", codes::DOMAIN_INVALID),
                ("/organizations/0/contact_email", codes::EMAIL_INVALID),
                ("/organizations/2/name", codes::NAME_CONTROL_CHARS),
                ("/organizations/2/domain", codes::DOMAIN_NO_PUBLIC_SUFFIX),
            ])
        );
    }

    #[test]
    fn duplicate_domains_after_normalization() {
        let req = request(vec![
            org("A", "Acme.com", "a@acme.com"),
            org("B", "acme.com.", "b@acme.com"),
            org("C", " ACME.COM ", "c@acme.com"),
            org("D", "bücher.de", "d@x.com"),
            org("E", "XN--BCHER-KVA.DE.", "e@x.com"),
            org("F", "other.com", "f@x.com"),
        ]);
        let err = validate_request(&req, &Limits::default()).expect_err("duplicates");
        let found: Vec<_> = err
            .field_errors()
            .iter()
            .map(|f| (f.pointer.as_str(), f.code.as_str(), f.detail.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "/organizations/1/domain",
                    codes::DOMAIN_DUPLICATE,
                    "acme.com is also at /organizations/0/domain"
                ),
                (
                    "/organizations/2/domain",
                    codes::DOMAIN_DUPLICATE,
                    "acme.com is also at /organizations/0/domain"
                ),
                (
                    "/organizations/4/domain",
                    codes::DOMAIN_DUPLICATE,
                    "xn--bcher-kva.de is also at /organizations/3/domain"
                ),
            ]
        );
    }

    #[test]
    fn duplicate_of_an_otherwise_invalid_organization_is_still_a_duplicate() {
        let req = partial(vec![
            org("", "acme.com", "a@acme.com"),
            org("B", "ACME.com", "b@acme.com"),
            org("C", "c.com", "c@c.com"),
        ]);
        let valid = validate_request(&req, &Limits::default()).expect("partial");
        assert_eq!(valid.organizations.len(), 1);
        assert_eq!(valid.organizations[0].0, 2);
        let rejected: Vec<_> = valid
            .rejected
            .iter()
            .map(|r| (r.position, r.errors[0].code.as_str()))
            .collect();
        assert_eq!(
            rejected,
            vec![(0, codes::NAME_EMPTY), (1, codes::DOMAIN_DUPLICATE)]
        );
    }

    #[test]
    fn partial_mode_accepts_the_valid_ones() {
        let req = partial(vec![
            org("A", "a.com", "a@a.com"),
            org("B", "b", "b@b.com"),
            org("C", "c.com", "c@c.com"),
            org("A again", "A.COM", "x@a.com"),
        ]);
        let valid = validate_request(&req, &Limits::default()).expect("partial");
        assert_eq!(valid.mode, SubmitMode::Partial);
        let accepted: Vec<_> = valid
            .organizations
            .iter()
            .map(|(p, o)| (*p, o.domain.as_str()))
            .collect();
        assert_eq!(accepted, vec![(0, "a.com"), (2, "c.com")]);
        assert_eq!(valid.rejected.len(), 2);
        assert_eq!(valid.rejected[0].position, 1);
        assert_eq!(
            valid.rejected[0].errors[0].pointer,
            "/organizations/1/domain"
        );
        assert_eq!(valid.rejected[1].position, 3);
        assert_eq!(valid.rejected[1].errors[0].code, codes::DOMAIN_DUPLICATE);
    }

    #[test]
    fn partial_mode_with_nothing_valid_is_invalid() {
        let req = partial(vec![org("", "a.com", "a@a.com"), org("B", "b", "b@b.com")]);
        assert_eq!(
            errors_of(validate_request(&req, &Limits::default())),
            pairs(&[
                ("/organizations/0/name", codes::NAME_EMPTY),
                ("/organizations/1/domain", codes::DOMAIN_NO_PUBLIC_SUFFIX),
            ])
        );
    }

    #[test]
    fn atomic_mode_rejects_the_whole_request() {
        let req = request(vec![org("A", "a.com", "a@a.com"), org("B", "b", "b@b.com")]);
        assert_eq!(
            errors_of(validate_request(&req, &Limits::default())),
            pairs(&[("/organizations/1/domain", codes::DOMAIN_NO_PUBLIC_SUFFIX)])
        );
    }

    #[test]
    fn sql_and_html_names_are_kept_verbatim() {
        let names = [
            "<img src=x onerror=alert(1)>",
            "'; DELETE FROM organizations; --",
            "Tom & Jerry's \"Cheese\" Co.",
        ];
        let req = request(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| org(n, &format!("n{i}.com"), "a@b.com"))
                .collect(),
        );
        let valid = validate_request(&req, &Limits::default()).expect("valid");
        for ((_, o), n) in valid.organizations.iter().zip(names) {
            assert_eq!(o.name, n);
        }
    }

    #[test]
    fn huge_strings_do_not_hurt() {
        let huge = "x".repeat(1 << 20);
        let req = request(vec![org(&huge, &huge, &huge)]);
        let err = validate_request(&req, &Limits::default()).expect_err("invalid");
        let codes_found: Vec<_> = err.field_errors().iter().map(|f| f.code.as_str()).collect();
        assert_eq!(
            codes_found,
            vec![
                codes::NAME_TOO_LONG,
                codes::DOMAIN_TOO_LONG,
                codes::EMAIL_TOO_LONG
            ]
        );
        assert!(err.field_errors().iter().all(|f| f.detail.len() < 200));
    }

    #[test]
    fn request_hash_is_canonical() {
        let a = request(vec![org("Acme", "Acme.com", "x@ACME.com")]);
        let b = request(vec![org(" Acme ", " acme.com. ", "x@acme.com")]);
        let limits = Limits::default();
        let ha = validate_request(&a, &limits).expect("a").request_hash();
        let hb = validate_request(&b, &limits).expect("b").request_hash();
        assert_eq!(ha, hb);
        assert_eq!(ha.len(), 64);
        assert!(ha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

        let differs = |req: SubmitRequest| {
            let h = validate_request(&req, &limits)
                .expect("valid")
                .request_hash();
            assert_ne!(h, ha, "{req:?}");
        };
        differs(request(vec![org("Acme2", "acme.com", "x@acme.com")]));
        differs(request(vec![org("Acme", "acme.net", "x@acme.com")]));
        differs(request(vec![org("Acme", "acme.com", "X@acme.com")]));
        differs(SubmitRequest {
            on_conflict: ConflictPolicy::Skip,
            ..a.clone()
        });
        differs(SubmitRequest {
            mode: SubmitMode::Partial,
            ..a.clone()
        });
        // Moving text between fields is not ambiguous.
        let v1 = ValidRequest {
            organizations: vec![(
                0,
                NewOrganization {
                    name: "ab".into(),
                    domain: crate::model::Domain::from_normalized("c.com"),
                    contact_email: "d".into(),
                },
            )],
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Atomic,
            rejected: vec![],
        };
        let mut v2 = v1.clone();
        v2.organizations[0].1.name = "a".into();
        v2.organizations[0].1.domain = crate::model::Domain::from_normalized("bc.com");
        assert_ne!(v1.request_hash(), v2.request_hash());
        // Rejected positions count.
        let mut v3 = v1.clone();
        v3.rejected.push(Rejection {
            position: 1,
            errors: vec![],
        });
        assert_ne!(v1.request_hash(), v3.request_hash());
        let mut v4 = v1.clone();
        v4.organizations[0].0 = 1;
        assert_ne!(v1.request_hash(), v4.request_hash());
    }

    #[test]
    fn serde_defaults_and_unknown_keys() {
        let req: SubmitRequest = serde_json::from_value(serde_json::json!({
            "organizations": [{"name": "A", "domain": "a.com", "contact_email": "a@a.com", "x": 1}],
            "extra": true
        }))
        .expect("deserializes");
        assert_eq!(req.on_conflict, ConflictPolicy::Update);
        assert_eq!(req.mode, SubmitMode::Atomic);
        let back = serde_json::to_value(&req).expect("serializes");
        assert_eq!(back["on_conflict"], "update");
        assert_eq!(back["mode"], "atomic");
        assert_eq!(policy_str(ConflictPolicy::Skip), "skip");
        assert_eq!(mode_str(SubmitMode::Partial), "partial");
    }
}
