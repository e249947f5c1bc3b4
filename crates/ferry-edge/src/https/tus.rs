//! tus 1.0 resumable uploads at `/api/v1/uploads/`: core, creation,
//! termination, checksum (sha256, sha1, md5) and expiration. The upload's state lives on
//! the server side (see ferry-server's `uploads`), so an upload started
//! through one edge can continue through another.
//!
//! Helpers here return the finished HTTP answer as their error, which makes
//! the `Err` side large; that is deliberate.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ferry_core::{ErrorKind, FerryError};
use ferry_http::ApiError;
use ferry_proto::message::{Checksum, FsOp, Response as Reply, UploadInfo};

use super::lease::unexpected;
use super::transfer::{drain, write_body, WriteError};
use super::{paths, HttpState};

const PREFIX: &str = "/api/v1/uploads/";
const VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,termination,checksum,expiration";

fn tus_headers(headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(VERSION),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn respond(mut response: Response) -> Response {
    tus_headers(response.headers_mut());
    response
}

/// A tus error: the offset conflict gets its own code.
fn fail(e: impl Into<ApiError>) -> Response {
    let mut e: ApiError = e.into();
    if e.code == "conflict" {
        e.code = "offset_mismatch";
    }
    respond(e.into_response())
}

fn bad(message: impl Into<String>) -> Response {
    fail(FerryError::invalid(message))
}

/// `Upload-Checksum: ALGORITHM BASE64-DIGEST` → the checksum, or why not.
fn parse_checksum(value: &str) -> Result<Checksum, String> {
    let value = value.trim();
    let (algorithm, digest) = value.split_once(' ').unwrap_or((value, ""));
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| "Upload-Checksum: the digest is not base64".to_owned())?;
    Checksum::new(algorithm, &digest).map_err(|e| format!("Upload-Checksum: {e}"))
}

fn set(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<Result<u64, Response>> {
    headers.get(name).map(|v| {
        v.to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer")))
    })
}

fn check_version(headers: &HeaderMap) -> Result<(), Response> {
    match headers.get("tus-resumable").map(|v| v.as_bytes()) {
        Some(b"1.0.0") => Ok(()),
        _ => {
            let mut r = ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "this server speaks tus 1.0.0 (send Tus-Resumable: 1.0.0)",
            )
            .into_response();
            r.headers_mut().insert(
                HeaderName::from_static("tus-version"),
                HeaderValue::from_static(VERSION),
            );
            Err(respond(r))
        }
    }
}

/// The target path from `Upload-Metadata`: `path`, or `filename` in `dir`.
fn target(metadata: &str) -> Result<String, Response> {
    let mut path = None;
    let mut filename = None;
    let mut dir = None;
    for pair in metadata.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                bad(format!(
                    "Upload-Metadata: the value of {key:?} is not base64 UTF-8"
                ))
            })?;
        match key {
            "path" => path = Some(decoded),
            "filename" | "name" => filename = Some(decoded),
            "dir" => dir = Some(decoded),
            _ => {}
        }
    }
    let raw = match (path, filename) {
        (Some(p), _) => p,
        (None, Some(name)) => {
            if name.contains('/') {
                return Err(bad("Upload-Metadata: filename must not contain '/'"));
            }
            format!("{}/{name}", dir.unwrap_or_default())
        }
        (None, None) => {
            return Err(bad(
                "Upload-Metadata must name the target: `path`, or `filename` (and `dir`)",
            ))
        }
    };
    let checked = paths::checked(&raw).map_err(fail)?;
    if checked == "/" {
        return Err(bad("the target must be a file"));
    }
    Ok(checked)
}

fn upload_id(parts: &Parts) -> Result<String, Response> {
    let id = parts.uri.path().strip_prefix(PREFIX).unwrap_or("");
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(fail(FerryError::not_found("no such upload")))
    }
}

/// `OPTIONS /api/v1/uploads/`: what this server supports (no login needed).
pub async fn options(State(state): State<Arc<HttpState>>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    set(h, "tus-version", VERSION.into());
    set(h, "tus-extension", EXTENSIONS.into());
    set(h, "tus-max-size", state.config.max_upload_bytes.to_string());
    set(h, "tus-checksum-algorithm", Checksum::ALGORITHMS.join(","));
    respond(r)
}

/// `POST /api/v1/uploads/`: creation.
pub async fn create(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    if let Err(r) = check_version(&parts.headers) {
        return r;
    }
    let lease = match super::files_login(&state, &parts).await {
        Ok(l) => l,
        Err(r) => return respond(r),
    };
    let headers = &parts.headers;
    if headers.contains_key("upload-defer-length") {
        return bad("Upload-Defer-Length is not supported; send Upload-Length");
    }
    let length = match header_u64(headers, "upload-length") {
        Some(Ok(n)) => n,
        Some(Err(r)) => return r,
        None => return bad("Upload-Length is required"),
    };
    if length > state.config.max_upload_bytes {
        return fail(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "uploads are limited to {} bytes",
                state.config.max_upload_bytes
            ),
        ));
    }
    let metadata = headers
        .get("upload-metadata")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned())
        .unwrap_or_default();
    let path = match target(&metadata) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let op = FsOp::UploadCreate {
        path,
        length,
        metadata,
    };
    match lease.fs(op).await {
        Ok(Reply::Upload(info)) => {
            let mut r = StatusCode::CREATED.into_response();
            let h = r.headers_mut();
            set(h, "location", format!("{PREFIX}{}", info.id));
            set(
                h,
                "upload-expires",
                super::http_date_millis(info.expires_at),
            );
            set(h, "upload-offset", "0".into());
            respond(r)
        }
        Ok(other) => fail(unexpected("upload create", &other)),
        Err(e) => fail(e),
    }
}

fn info_headers(info: &UploadInfo, h: &mut HeaderMap) {
    set(h, "upload-offset", info.offset.to_string());
    set(h, "upload-length", info.length.to_string());
    set(
        h,
        "upload-expires",
        super::http_date_millis(info.expires_at),
    );
    if !info.metadata.is_empty() {
        set(h, "upload-metadata", info.metadata.clone());
    }
}

/// `HEAD`, `PATCH` and `DELETE /api/v1/uploads/{id}`.
pub async fn upload(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match upload_request(&state, parts, body).await {
        Ok(response) => response,
        Err((response, body)) => {
            drain(body).await;
            response
        }
    }
}

/// One request on an upload; an answer given before a `PATCH` body was read
/// comes back with the body.
async fn upload_request(
    state: &HttpState,
    parts: Parts,
    body: Body,
) -> Result<Response, (Response, Body)> {
    if let Err(r) = check_version(&parts.headers) {
        return Err((r, body));
    }
    let lease = match super::files_login(state, &parts).await {
        Ok(l) => l,
        Err(r) => return Err((respond(r), body)),
    };
    let id = match upload_id(&parts) {
        Ok(id) => id,
        Err(r) => return Err((r, body)),
    };
    Ok(match parts.method {
        Method::HEAD => match lease.fs(FsOp::UploadStatus { id }).await {
            Ok(Reply::Upload(info)) => {
                let mut r = StatusCode::OK.into_response();
                info_headers(&info, r.headers_mut());
                respond(r)
            }
            Ok(other) => fail(unexpected("upload status", &other)),
            Err(e) => fail(e),
        },
        Method::DELETE => match lease.fs(FsOp::UploadDelete { id }).await {
            Ok(_) => respond(StatusCode::NO_CONTENT.into_response()),
            Err(e) => fail(e),
        },
        Method::PATCH => return patch(state, lease, id, parts, body).await,
        _ => fail(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use HEAD, PATCH or DELETE on an upload",
        )),
    })
}

async fn patch(
    state: &HttpState,
    lease: Arc<super::lease::Lease>,
    id: String,
    parts: Parts,
    body: Body,
) -> Result<Response, (Response, Body)> {
    let headers = &parts.headers;
    if headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes())
        != Some(b"application/offset+octet-stream")
    {
        return Err((
            fail(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "PATCH needs Content-Type: application/offset+octet-stream",
            )),
            body,
        ));
    }
    let offset = match header_u64(headers, "upload-offset") {
        Some(Ok(n)) => n,
        Some(Err(r)) => return Err((r, body)),
        None => return Err((bad("Upload-Offset is required"), body)),
    };
    let checksum = match headers.get("upload-checksum").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match parse_checksum(v) {
            Ok(c) => Some(c),
            Err(message) => return Err((bad(&message), body)),
        },
        Some(Err(_)) => return Err((bad("Upload-Checksum is not text"), body)),
    };
    let handle = match lease
        .fs(FsOp::UploadOpen {
            id,
            offset,
            checksum,
        })
        .await
    {
        Ok(Reply::Handle(h)) => h,
        Ok(other) => return Err((fail(unexpected("upload open", &other)), body)),
        Err(e) => return Err((fail(e), body)),
    };
    let limit = state.config.max_upload_bytes;
    if let Err(e) = write_body(&lease, handle, offset, body, limit).await {
        let _ = lease.fs(FsOp::Abort { handle }).await;
        return Ok(match e {
            WriteError::Server(e) if e.kind == ErrorKind::InvalidInput => fail(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                e.message,
            )),
            WriteError::Server(e) => fail(e),
            WriteError::TooLarge => fail(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "more data than the upload's length",
            )),
            WriteError::Client(reason) => {
                tracing::info!(%reason, "tus PATCH broke off; the bytes that arrived are kept");
                bad("the request body ended early")
            }
        });
    }
    Ok(match lease.fs(FsOp::Close { handle }).await {
        Ok(Reply::Upload(info)) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            set(h, "upload-offset", info.offset.to_string());
            set(
                h,
                "upload-expires",
                super::http_date_millis(info.expires_at),
            );
            if let Some(sha) = &info.sha256 {
                set(h, "upload-sha256", sha.clone());
            }
            respond(r)
        }
        Ok(other) => fail(unexpected("upload close", &other)),
        Err(e) => fail(e),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checksum_headers_of_each_algorithm_parse() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert_eq!(
            parse_checksum(&format!("sha1 {}", b64(20))).unwrap(),
            Checksum::Sha1([7; 20])
        );
        assert_eq!(
            parse_checksum(&format!("md5 {}", b64(16))).unwrap(),
            Checksum::Md5([7; 16])
        );
        assert_eq!(
            parse_checksum(&format!(" SHA256  {} ", b64(32))).unwrap(),
            Checksum::Sha256([7; 32])
        );
        let err = parse_checksum(&format!("sha1 {}", b64(32))).unwrap_err();
        assert_eq!(err, "Upload-Checksum: not a SHA-1 digest");
        let err = parse_checksum(&format!("crc32 {}", b64(4))).unwrap_err();
        assert!(err.contains("supports sha256, sha1, md5"), "{err}");
        assert!(parse_checksum("sha1 !!!").unwrap_err().contains("base64"));
        assert!(parse_checksum("sha1").is_err());
    }
}
