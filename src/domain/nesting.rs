//! How deep a JSON body may nest. Free-form values (an event's `data`, a
//! Durable Streams JSON message) are kept as the client wrote them and
//! served back to every reader, so nesting that serde_json accepts here
//! (it keeps such values raw) can break a reader's parser elsewhere:
//! Python's `json.loads` raises `RecursionError` near 1,000 levels, many
//! parsers stop far earlier. The limit is checked by one pass over the
//! bytes, before anything parses them; it never recurses and allocates
//! only for the path it reports.

use super::DomainError;

/// The deepest nesting of objects and arrays a JSON body may have, the
/// body's own brackets counting as one. Half of serde_json's own limit for
/// typed values (128), so a body that passes here parses everywhere; deep
/// enough for any document a person or a program means to send.
pub const MAX_JSON_DEPTH: usize = 64;

/// How many steps of the path to the first too-deep value an error names:
/// enough to reach a free-form field (`events[0].data`), not the whole
/// way down.
const NAMED_STEPS: usize = 4;

/// Refuses a JSON text (`body`, not yet parsed) that nests deeper than
/// [`MAX_JSON_DEPTH`]: 422 naming the field, as `data` or `events[0].data`
/// (`body` when the body itself is too deep). A text that is not JSON is
/// not refused here: the parser says what is wrong with it.
pub fn check_depth(body: &[u8]) -> Result<(), DomainError> {
    match too_deep(body, MAX_JSON_DEPTH) {
        None => Ok(()),
        Some(field) => Err(DomainError::validation(
            field,
            format!("must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep"),
        )),
    }
}

/// One open object or array, and where in it the scan is.
enum Open {
    /// The byte range of the current member's key (once it is read).
    Object { key: Option<(usize, usize)> },
    /// The current element's index.
    Array { index: usize },
}

/// The field where `text` first opens an object or array deeper than
/// `limit`, or `None` when it never does. Strings are skipped whole
/// (escaped quotes included), so brackets inside them do not count.
fn too_deep(text: &[u8], limit: usize) -> Option<String> {
    let mut open: Vec<Open> = Vec::new();
    // In an object, whether the next string is a key.
    let mut expect_key = false;
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b'"' => {
                let start = at + 1;
                at = start;
                while at < text.len() && text[at] != b'"' {
                    // An escape takes the next byte with it, `\"` included.
                    at += if text[at] == b'\\' { 2 } else { 1 };
                }
                if expect_key {
                    if let Some(Open::Object { key }) = open.last_mut() {
                        *key = Some((start, at.min(text.len())));
                    }
                    expect_key = false;
                }
            }
            bracket @ (b'{' | b'[') => {
                if open.len() == limit {
                    return Some(field_name(text, &open));
                }
                open.push(if bracket == b'{' {
                    Open::Object { key: None }
                } else {
                    Open::Array { index: 0 }
                });
                expect_key = bracket == b'{';
            }
            b'}' | b']' => {
                open.pop();
                expect_key = false;
            }
            b',' => match open.last_mut() {
                Some(Open::Object { key }) => {
                    *key = None;
                    expect_key = true;
                }
                Some(Open::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        at += 1;
    }
    None
}

/// The path to where the scan is, in the words of the body's other errors
/// (`events[0].data`): its first steps, without trailing indices (`data`
/// for a deep array in `data`), or `body` for the body itself.
fn field_name(text: &[u8], open: &[Open]) -> String {
    let mut steps: Vec<String> = open
        .iter()
        .take(NAMED_STEPS)
        .map(|step| match step {
            Open::Object {
                key: Some((from, to)),
            } => String::from_utf8_lossy(&text[*from..*to]).into_owned(),
            Open::Object { key: None } => "?".to_owned(),
            Open::Array { index } => format!("[{index}]"),
        })
        .collect();
    while steps.last().is_some_and(|step| step.starts_with('[')) {
        steps.pop();
    }
    if steps.is_empty() {
        return "body".to_owned();
    }
    let mut field = String::new();
    for step in steps {
        if !field.is_empty() && !step.starts_with('[') {
            field.push('.');
        }
        field.push_str(&step);
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, depth: usize, close: &str) -> String {
        format!("{}{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn nesting_up_to_the_limit_passes_and_one_more_level_is_refused() {
        let at_limit = nested("[", 4, "]");
        assert_eq!(too_deep(at_limit.as_bytes(), 4), None);
        let over = nested("[", 5, "]");
        assert_eq!(too_deep(over.as_bytes(), 4).as_deref(), Some("body"));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(5), "}".repeat(5));
        assert_eq!(too_deep(objects.as_bytes(), 5), None);
        assert_eq!(too_deep(objects.as_bytes(), 4).as_deref(), Some("a.a.a.a"));
    }

    #[test]
    fn the_error_names_the_field_that_holds_the_deep_value() {
        let deep = nested("[", 100, "]");
        let body = format!(r#"{{"type":"t","data":{deep}}}"#);
        assert_eq!(too_deep(body.as_bytes(), 64).as_deref(), Some("data"));
        let batch = format!(
            r#"{{"events":[{{"channel":"c","type":"t","data":1}},{{"channel":"c","type":"t","data":{deep}}}]}}"#
        );
        assert_eq!(
            too_deep(batch.as_bytes(), 64).as_deref(),
            Some("events[1].data")
        );
        let appended = format!(r#"[1, {{"a": [{deep}]}}]"#);
        assert_eq!(too_deep(appended.as_bytes(), 64).as_deref(), Some("[1].a"));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(
            r#"{{"a\"[{{": "[[[[{{{{", "b": ["\\", "]]]", "\"[[["], "c": {}}}"#,
            nested("[", 2, "]")
        );
        assert_eq!(too_deep(text.as_bytes(), 3), None);
        assert_eq!(too_deep(text.as_bytes(), 2).as_deref(), Some("c"));
        assert_eq!(too_deep(b"\"[[[[[[[[\"", 1), None);
    }

    #[test]
    fn text_that_is_not_json_is_left_to_the_parser() {
        for text in [
            &b""[..],
            b"]]]]",
            b"\"unterminated [[[",
            b"{\"a\": [1, 2",
            b"\\",
        ] {
            assert_eq!(
                too_deep(text, 2),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(too_deep(b"[[[", 2).as_deref(), Some("body"));
    }

    #[test]
    fn the_refusal_is_a_validation_error_naming_the_field() {
        let body = format!(r#"{{"data":{}}}"#, nested("[", 64, "]"));
        let err = check_depth(body.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data: must not nest objects and arrays more than 64 levels deep"
        );
        let fits = format!(r#"{{"data":{}}}"#, nested("[", 63, "]"));
        assert!(check_depth(fits.as_bytes()).is_ok());
    }
}
