//! The wording of refused bodies, query strings and path segments, from
//! real bodies and queries (no serde message text is fed in).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::parse_json;
use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Item {
    channel: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Body {
    name: Option<String>,
    count: Option<u64>,
    delta: Option<i64>,
    ratio: Option<f64>,
    flag: Option<bool>,
    tags: Option<Vec<String>>,
    order: Option<Order>,
    items: Option<Vec<Item>>,
    data: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "short")]
    short: Option<String>,
    #[serde(rename = "_session_id")]
    session: Option<String>,
}

/// A domain rule's own message, as a `Deserialize` impl gives it.
fn short<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if text.len() > 3 {
        return Err(serde::de::Error::custom("must be at most 3 characters"));
    }
    Ok(Some(text))
}

fn body_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str) -> (String, String) {
    match parse_json::<T>(body.as_bytes()) {
        Ok(value) => panic!("{body} was accepted: {value:?}"),
        Err(ApiError::Domain(DomainError::Validation { field, message })) => (field, message),
        Err(other) => panic!("{body}: not a validation error: {other:?}"),
    }
}

#[test]
fn problems_are_put_in_the_clients_words() {
    let cases = [
        (r#"{"name": 5}"#, "name", "must be a string"),
        (r#"{"name": ["a"]}"#, "name", "must be a string"),
        (
            r#"{"count": -5}"#,
            "count",
            "must be a non-negative integer",
        ),
        (
            r#"{"count": "60"}"#,
            "count",
            "must be a non-negative integer",
        ),
        (r#"{"delta": "x"}"#, "delta", "must be an integer"),
        (r#"{"delta": 1.5}"#, "delta", "must be an integer"),
        (r#"{"ratio": "x"}"#, "ratio", "must be a number"),
        (r#"{"flag": 1}"#, "flag", "must be true or false"),
        (r#"{"tags": {}}"#, "tags", "must be an array"),
        (r#"{"tags": [1]}"#, "tags[0]", "must be a string"),
        (r#"{"order": "x"}"#, "order", "must be one of: asc, desc"),
        (r#"{"order": 5}"#, "order", "must be one of: asc, desc"),
        (r#"{"items": [5]}"#, "items[0]", "must be an object"),
        (
            r#"{"short": "toolong"}"#,
            "short",
            "is invalid: must be at most 3 characters",
        ),
        // A RawValue before the error is read again as serde_json reads it.
        (
            r#"{"data": {"a": [1]}, "name": 5}"#,
            "name",
            "must be a string",
        ),
        (
            r#"{"foo": 1}"#,
            "foo",
            "is not a known field; allowed: name, count, delta, ratio, flag, tags, order, \
             items, data, short",
        ),
    ];
    for (body, field, message) in cases {
        assert_eq!(
            body_error::<Body>(body),
            (field.to_owned(), message.to_owned()),
            "{body}"
        );
    }
}

#[test]
fn a_body_error_names_the_field() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        events: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    let says = |field: &str, message: &str| (field.to_owned(), message.to_owned());
    assert_eq!(
        body_error::<Batch>("[]"),
        says("body", "must be a JSON object")
    );
    assert_eq!(
        body_error::<Batch>(r#""note""#),
        says("body", "must be a JSON object")
    );
    assert_eq!(body_error::<Batch>("{}"), says("events", "is required"));
    assert_eq!(
        body_error::<Batch>(r#"{"events": [{}]}"#),
        says("events[0].channel", "is required")
    );
    assert_eq!(
        body_error::<Batch>(r#"{"events": [{"channel": "a", "x": 1}]}"#),
        says("events[0].x", "is not a known field; allowed: channel")
    );
    assert_eq!(
        body_error::<Nothing>(r#"{"foo": 1}"#),
        says("foo", "is not a known field; allowed: none")
    );
    // serde_json's `Value` keeps one of two equal keys, so the re-run does
    // not meet the error again: the answer names the field, and no more.
    let (field, _) = body_error::<Batch>(r#"{"events": [], "events": []}"#);
    assert!(field == "events" || field == "body", "{field}");
}

#[test]
fn broken_json_is_invalid_json() {
    assert!(matches!(
        parse_json::<Body>(br#"{"name": "#),
        Err(ApiError::InvalidJson(_))
    ));
}

#[test]
fn a_query_error_names_the_parameter_and_what_it_must_be() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Q {
        after: Option<i64>,
        limit: Option<i64>,
        full: Option<bool>,
        order: Option<Order>,
    }
    let message = |query: &str| match Query::<Q>::from_query(query) {
        Ok(_) => panic!("{query} was accepted"),
        Err(err) => err.to_string(),
    };
    let cases = [
        (
            "after=x",
            "query parameter `after` must be a non-negative integer (an event id)",
        ),
        (
            "after=99999999999999999999",
            "query parameter `after` must be a non-negative integer (an event id)",
        ),
        (
            "limit=",
            "query parameter `limit` must be an integer (the page size)",
        ),
        ("full=maybe", "query parameter `full` must be true or false"),
        (
            "order=sideways",
            "query parameter `order` must be one of: asc, desc",
        ),
        ("after=1&after=2", "query parameter `after` is given twice"),
        (
            "foo=1",
            "unknown query parameter `foo`; allowed: after, limit, full, order",
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(message(query), expected, "{query}");
    }
    assert!(Query::<Q>::from_query("after=5&full=true&order=asc").is_ok());
}

#[test]
fn a_path_segment_error_names_the_integer_segment() {
    use serde::de::Error as _;
    let message = |segments: &[(&'static str, &'static str)]| {
        let mut req = actix_web::test::TestRequest::default();
        for (name, value) in segments {
            req = req.param(*name, *value);
        }
        let err = actix_web::error::PathError::Deserialize(serde::de::value::Error::custom(
            "whatever actix says",
        ));
        path_error(err, &req.to_http_request()).to_string()
    };
    assert_eq!(
        message(&[("id", "abc")]),
        "path segment `id` must be a non-negative integer (an event id)"
    );
    assert_eq!(
        message(&[("id", "f1"), ("n", "abc")]),
        "path segment `n` must be a positive integer (a version number)"
    );
    assert_eq!(
        message(&[("name", "x")]),
        "the path has a segment that is not valid here"
    );
}
