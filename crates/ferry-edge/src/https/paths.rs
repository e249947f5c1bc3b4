//! Paths from URLs and JSON bodies, checked before anything is forwarded.
//!
//! The server canonicalises and confines every path again; this layer only
//! refuses, with a clear `400`, what no honest client sends: dot segments
//! (also between backslashes), control characters, invalid or overlong UTF-8, percent
//! escapes left after decoding once (double encoding), and paths or names
//! longer than the limits.

use axum::http::StatusCode;
use ferry_core::path::{MAX_COMPONENT_LEN, MAX_PATH_LEN};
use ferry_http::ApiError;

fn invalid(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the percent escapes of a URL path once. A `%` not followed by two
/// hex digits is refused, and so is a result that is not UTF-8 (overlong
/// encodings such as `%c0%ae` are not UTF-8).
pub fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let pair = bytes
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(bytes.get(i + 2).copied().and_then(hex));
            let Some((hi, lo)) = pair else {
                return Err(invalid("malformed percent escape in the path"));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("the path is not valid UTF-8"))
}

/// Checks a decoded path and returns it in canonical form (`/a/b`, `/` for
/// the home itself).
pub fn checked(path: &str) -> Result<String, ApiError> {
    if path.len() > MAX_PATH_LEN {
        return Err(invalid("the path is too long"));
    }
    let mut canonical = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(invalid("'.' and '..' are not allowed in paths"));
        }
        if segment.len() > MAX_COMPONENT_LEN {
            return Err(invalid("a name in the path is too long"));
        }
        if segment.chars().any(char::is_control) {
            return Err(invalid("control characters are not allowed in paths"));
        }
        // A backslash is an ordinary character (the repository is POSIX),
        // as over SFTP, but never around a '..'.
        if ferry_core::path::check_component(segment) == Err(ferry_core::path::PathError::Backslash)
        {
            return Err(invalid("a name may not contain '..' between backslashes"));
        }
        let lower = segment.to_ascii_lowercase();
        if ["%2e", "%2f", "%5c", "%00", "%25"]
            .iter()
            .any(|e| lower.contains(e))
        {
            return Err(invalid("the path is percent-encoded twice"));
        }
        canonical.push('/');
        canonical.push_str(segment);
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    Ok(canonical)
}

/// The path named by the part of a request URL after `prefix`.
pub fn from_url(uri_path: &str, prefix: &str) -> Result<String, ApiError> {
    let rest = uri_path.strip_prefix(prefix).unwrap_or("");
    checked(&percent_decode(rest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(p: &str) -> Result<String, String> {
        from_url(p, "/api/v1/files").map_err(|e| e.message)
    }

    #[test]
    fn plain_and_encoded_names_pass() {
        assert_eq!(url("/api/v1/files/a/b.txt").unwrap(), "/a/b.txt");
        assert_eq!(url("/api/v1/files/a%20b/%C3%BC.txt").unwrap(), "/a b/ü.txt");
        assert_eq!(url("/api/v1/files//a//").unwrap(), "/a");
        assert_eq!(url("/api/v1/files").unwrap(), "/");
        assert_eq!(url("/api/v1/files/100%25").unwrap(), "/100%");
    }

    #[test]
    fn traversal_and_hostile_bytes_are_refused() {
        for bad in [
            "/api/v1/files/../etc/passwd",
            "/api/v1/files/%2e%2e%2fetc%2fpasswd",
            "/api/v1/files/%2E%2E/x",
            "/api/v1/files/..%5c..%5cetc",
            "/api/v1/files/%252e%252e%252fetc",
            "/api/v1/files/%c0%ae%c0%ae%c0%afetc",
            "/api/v1/files/a%00b",
            "/api/v1/files/a%0ab",
            "/api/v1/files/%zz",
            "/api/v1/files/a%2",
            "/api/v1/files/./a",
        ] {
            assert!(url(bad).is_err(), "{bad} should be refused");
        }
        let long_name = format!("/api/v1/files/{}", "n".repeat(256));
        assert!(url(&long_name).is_err());
        let long_path = format!("/api/v1/files/{}", "abcdefgh/".repeat(600));
        assert!(url(&long_path).is_err());
    }
}
