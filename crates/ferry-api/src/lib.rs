//! The admin API of a Ferry server, as types: every endpoint is a request
//! type implementing [`Endpoint`] (method, path template, body, query,
//! answer, success status). The server's handlers, the `ferry` CLI and the
//! tests use these types, and [`openapi::document`] derives the OpenAPI 3.1
//! document from them, so the three cannot drift apart.
//!
//! Times are RFC 3339 strings (UTC) everywhere; durations keep a unit in
//! their name (`retry_base_ms`, `stable_ms`).

pub mod endpoints;
pub mod openapi;
pub mod types;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use endpoints::*;
pub use types::*;

/// A time in the API's JSON: RFC 3339, UTC.
pub type Time = chrono::DateTime<chrono::Utc>;

/// The API time of a stored unix-milliseconds value (the epoch for a value
/// out of chrono's range, which no stored time is).
pub fn time(unix_ms: i64) -> Time {
    chrono::DateTime::from_timestamp_millis(unix_ms).unwrap_or_default()
}

/// Unix milliseconds of an API time (for the store's filters).
pub fn unix_ms(t: &Time) -> i64 {
    t.timestamp_millis()
}

/// HTTP methods the admin API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Reads.
    Get,
    /// Creates and actions.
    Post,
    /// Removals.
    Delete,
}

impl Method {
    /// The method's name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One admin endpoint. The implementing type is the request: it holds the
/// path parameters, and the body or the query if the endpoint has one.
pub trait Endpoint {
    /// HTTP method.
    const METHOD: Method;
    /// Path template in the router's syntax (`/api/v1/accounts/{name}`).
    const PATH: &'static str;
    /// Status of a success (200, 201 or 204).
    const STATUS: u16;
    /// One line for the OpenAPI document.
    const SUMMARY: &'static str;
    /// Media type of a success's body.
    const CONTENT_TYPE: &'static str = "application/json";
    /// Whether the endpoint needs the admin token.
    const AUTH: bool = true;
    /// Whether a request carries [`Endpoint::Body`].
    const HAS_BODY: bool;
    /// JSON body of the request ([`NoBody`] when there is none).
    type Body: Serialize + DeserializeOwned + ToSchema;
    /// Query string of the request ([`NoQuery`] when there is none).
    type Query: Serialize + DeserializeOwned + utoipa::IntoParams;
    /// Body of a success ([`NoContent`] for 204).
    type Answer: Serialize + DeserializeOwned + ToSchema;
    /// The path with this request's parameters filled in (percent-encoded).
    fn path(&self) -> String;
    /// The body to send, if the endpoint takes one.
    fn body(&self) -> Option<&Self::Body> {
        None
    }
    /// The query to send, if the endpoint takes one.
    fn query(&self) -> Option<&Self::Query> {
        None
    }
    /// The answer's schema in the OpenAPI document: by default a `$ref` to
    /// the answer type, which is added to `components` with what it refers
    /// to.
    fn answer_schema(components: &mut openapi::Components) -> openapi::SchemaRef {
        openapi::named::<Self::Answer>(components)
    }
}

/// The JSON body of every error: `{"code": …, "message": …}`, with a
/// matching HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `not_found`, `already_exists`,
    /// `conflict`, `invalid_input`, `unauthorized`, `unavailable`,
    /// `outcome_unknown`, `partner_error`, `internal`, ….
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The body of an endpoint that takes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NoBody {}

/// The answer of a `204 No Content` endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NoContent {}

/// The query of an endpoint that takes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoQuery {}

impl utoipa::IntoParams for NoQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        Vec::new()
    }
}

/// Fills a path template's `{…}` parameters, in order, with `values`
/// percent-encoded.
pub fn fill(template: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut values = values.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let close = after.find('}').unwrap_or(after.len() - 1);
        out.push_str(&encode(values.next().copied().unwrap_or_default()));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The names of a path template's parameters, in order.
pub fn parameters(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
        .collect()
}

/// Percent-encodes one path segment (unreserved characters stay).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_parameters_in_order_encoded() {
        assert_eq!(
            fill("/api/v1/accounts/{name}/tokens/{id}", &["a b", "x/y"]),
            "/api/v1/accounts/a%20b/tokens/x%2Fy"
        );
        assert_eq!(fill("/api/v1/accounts", &[]), "/api/v1/accounts");
        assert_eq!(
            parameters("/api/v1/accounts/{name}/tokens/{id}"),
            ["name", "id"]
        );
    }

    #[test]
    fn times_are_rfc3339() {
        let t = time(1_700_000_000_123);
        assert_eq!(
            serde_json::to_value(t).unwrap_or_default(),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(unix_ms(&t), 1_700_000_000_123);
    }
}
