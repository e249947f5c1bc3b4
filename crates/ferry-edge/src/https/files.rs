//! The file API: download with ranges, streamed upload, delete, list,
//! create folder, rename.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_core::{ErrorKind, FerryError};
use ferry_http::ApiError;
use ferry_proto::message::{FileKind, FileStat, FsOp, OpenMode, Response as Reply, SetAttrs};
use serde::Deserialize;

use super::lease::{unexpected, Lease};
use super::transfer::{drain, read_body, write_body, WriteError};
use super::{paths, HttpState};

const FILES: &str = "/api/v1/files";
const DIRS: &str = "/api/v1/dirs";

/// The answer to a failed request.
fn fail(e: impl Into<ApiError>) -> Response {
    e.into().into_response()
}

/// Authenticates the request, then checks the path its URL names after
/// `prefix`; the error is the answer to send.
async fn login_at(
    state: &HttpState,
    parts: &Parts,
    prefix: &str,
) -> Result<(Arc<Lease>, String), Response> {
    let lease = super::files_login(state, parts).await?;
    let path = paths::from_url(parts.uri.path(), prefix).map_err(fail)?;
    Ok((lease, path))
}

fn http_date(secs: u32) -> String {
    super::http_date_millis(i64::from(secs) * 1000)
}

fn rfc3339(secs: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(secs), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `attachment` with an ASCII fallback name and the UTF-8 name (RFC 6266).
fn disposition(path: &str) -> HeaderValue {
    let name = path.rsplit('/').next().unwrap_or("download");
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// What a `Range` header asks for, against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a single byte range; anything else (several ranges, other units,
/// garbage) means the whole file, as RFC 9110 allows.
fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (a.is_empty(), num(a), num(b)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part(size.saturating_sub(n), size)
            }
        }
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Wanted::Whole;
            }
            if start >= size {
                return Wanted::Unsatisfiable;
            }
            // The last byte may be any u64 (u64::MAX + 1 must not wrap).
            let end = end.map_or(size, |e| e.saturating_add(1).min(size));
            Wanted::Part(start, end)
        }
        _ => Wanted::Whole,
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn stat_headers(stat: &FileStat, path: &str, headers: &mut HeaderMap) {
    let mut set = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(header::ETAG, stat.etag());
    set(header::LAST_MODIFIED, http_date(stat.mtime));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition(path));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
}

/// `GET` and `HEAD /api/v1/files/{path}`.
pub async fn download(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let (lease, path) = match login_at(&state, &parts, FILES).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let headers = &parts.headers;
    if parts.method == Method::HEAD {
        return match lease.fs(FsOp::Stat { path: path.clone() }).await {
            Ok(Reply::Stat(stat)) if stat.kind == FileKind::File => {
                let mut response = StatusCode::OK.into_response();
                stat_headers(&stat, &path, response.headers_mut());
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(stat.size));
                response
            }
            Ok(Reply::Stat(_)) => fail(FerryError::new(ErrorKind::WrongType, "is a directory")),
            Ok(other) => fail(unexpected("stat", &other)),
            Err(e) => fail(e),
        };
    }
    let handle = match lease
        .fs(FsOp::Open {
            path: path.clone(),
            mode: OpenMode {
                read: true,
                ..OpenMode::default()
            },
            attrs: SetAttrs::default(),
            size: None,
        })
        .await
    {
        Ok(Reply::Handle(h)) => h,
        Ok(other) => return fail(unexpected("open", &other)),
        Err(e) => return fail(e),
    };
    // From here on every path ends the handle: closed by the body, or aborted.
    let abort = |lease: Arc<Lease>| async move {
        let _ = lease.fs(FsOp::Abort { handle }).await;
    };
    let stat = match lease.fs(FsOp::Fstat { handle }).await {
        Ok(Reply::Stat(s)) => s,
        Ok(other) => {
            abort(lease.clone()).await;
            return fail(unexpected("fstat", &other));
        }
        Err(e) => {
            abort(lease.clone()).await;
            return fail(e);
        }
    };
    let etag = stat.etag();
    if header_str(headers, header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        abort(lease.clone()).await;
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        stat_headers(&stat, &path, response.headers_mut());
        return response;
    }
    let mut range = header_str(headers, header::RANGE);
    if let Some(validator) = header_str(headers, header::IF_RANGE) {
        if validator.trim() != etag && validator.trim() != http_date(stat.mtime) {
            range = None;
        }
    }
    let size = stat.size;
    let (status, start, end) = match wanted(range, size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        Wanted::Unsatisfiable => {
            abort(lease.clone()).await;
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let mut response = Response::new(read_body(lease, handle, start, end));
    *response.status_mut() = status;
    let h = response.headers_mut();
    stat_headers(&stat, &path, h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// `PUT /api/v1/files/{path}`: streamed, committed only when complete.
pub async fn upload(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match upload_body(&state, parts, body).await {
        Ok(response) => response,
        Err((response, body)) => {
            drain(body).await;
            response
        }
    }
}

/// The upload; an answer given before the body was read comes with the body.
async fn upload_body(
    state: &HttpState,
    parts: Parts,
    body: axum::body::Body,
) -> Result<Response, (Response, axum::body::Body)> {
    let (lease, path) = match login_at(state, &parts, FILES).await {
        Ok(x) => x,
        Err(r) => return Err((r, body)),
    };
    let limit = state.config.max_upload_bytes;
    let too_large = || {
        fail(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("uploads are limited to {limit} bytes"),
        ))
    };
    let exists = || {
        fail(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the file exists (If-None-Match: *)",
        ))
    };
    let headers = &parts.headers;
    if header_str(headers, header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err((too_large(), body));
    }
    let exclusive = header_str(headers, header::IF_NONE_MATCH).is_some_and(|v| v.trim() == "*");
    let existed = match lease.fs(FsOp::Stat { path: path.clone() }).await {
        Ok(Reply::Stat(s)) if s.kind == FileKind::File => true,
        Ok(Reply::Stat(_)) => {
            return Err((
                fail(FerryError::new(ErrorKind::WrongType, "is a directory")),
                body,
            ))
        }
        Ok(other) => return Err((fail(unexpected("stat", &other)), body)),
        Err(e) if e.kind == ErrorKind::NotFound => false,
        // An account that may upload but not list (a drop box) cannot
        // stat: the open says whether it may write there.
        Err(e) if e.kind == ErrorKind::PermissionDenied => false,
        Err(e) => return Err((fail(e), body)),
    };
    if exclusive && existed {
        return Err((exists(), body));
    }
    let open = FsOp::Open {
        path: path.clone(),
        mode: OpenMode {
            write: true,
            create: true,
            truncate: true,
            exclusive,
            ..OpenMode::default()
        },
        attrs: SetAttrs::default(),
        size: header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
    };
    let handle = match lease.fs(open).await {
        Ok(Reply::Handle(h)) => h,
        Ok(other) => return Err((fail(unexpected("open", &other)), body)),
        Err(e) if e.kind == ErrorKind::AlreadyExists && exclusive => return Err((exists(), body)),
        Err(e) => return Err((fail(e), body)),
    };
    let written = write_body(&lease, handle, 0, body, limit).await;
    if let Err(e) = written {
        let _ = lease.fs(FsOp::Abort { handle }).await;
        return Ok(match e {
            WriteError::TooLarge => too_large(),
            WriteError::Server(e) => fail(e),
            WriteError::Client(reason) => {
                tracing::info!(%reason, "upload body broke off");
                fail(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "incomplete_body",
                    "the request body ended early; nothing was committed",
                ))
            }
        });
    }
    Ok(match lease.fs(FsOp::Close { handle }).await {
        Ok(Reply::Committed { size, sha256 }) => {
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (
                status,
                Json(serde_json::json!({ "path": path, "size": size, "sha256": sha256 })),
            )
                .into_response()
        }
        Ok(other) => fail(unexpected("close", &other)),
        Err(e) => fail(e),
    })
}

/// `DELETE /api/v1/files/{path}`.
pub async fn delete_file(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    path_op(
        &state,
        req,
        FILES,
        |path| FsOp::Remove { path },
        StatusCode::NO_CONTENT,
    )
    .await
}

/// `POST /api/v1/dirs/{path}`.
pub async fn make_dir(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    path_op(
        &state,
        req,
        DIRS,
        |path| FsOp::Mkdir {
            path,
            attrs: SetAttrs::default(),
        },
        StatusCode::CREATED,
    )
    .await
}

/// `DELETE /api/v1/dirs/{path}`.
pub async fn remove_dir(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    path_op(
        &state,
        req,
        DIRS,
        |path| FsOp::Rmdir { path },
        StatusCode::NO_CONTENT,
    )
    .await
}

async fn path_op(
    state: &HttpState,
    req: Request,
    prefix: &str,
    op: impl FnOnce(String) -> FsOp,
    done: StatusCode,
) -> Response {
    let (parts, _body) = req.into_parts();
    let (lease, path) = match login_at(state, &parts, prefix).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if path == "/" {
        return fail(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the home folder itself cannot be changed",
        ));
    }
    match lease.fs(op(path.clone())).await {
        Ok(Reply::Ok) if done == StatusCode::NO_CONTENT => done.into_response(),
        Ok(Reply::Ok) => (done, Json(serde_json::json!({ "path": path }))).into_response(),
        Ok(other) => fail(unexpected("file operation", &other)),
        Err(e) => fail(e),
    }
}

/// `GET /api/v1/dirs/{path}`.
pub async fn list_dir(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let (lease, path) = match login_at(&state, &parts, DIRS).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let handle = match lease.fs(FsOp::OpenDir { path: path.clone() }).await {
        Ok(Reply::Handle(h)) => h,
        Ok(other) => return fail(unexpected("opendir", &other)),
        Err(e) => return fail(e),
    };
    let mut entries = Vec::new();
    let result = loop {
        match lease.fs(FsOp::ReadDir { handle }).await {
            Ok(Reply::Entries(batch)) => entries.extend(batch),
            Ok(Reply::Eof) => break Ok(()),
            Ok(other) => break Err(unexpected("readdir", &other)),
            Err(e) => break Err(e),
        }
    };
    let _ = lease.fs(FsOp::Close { handle }).await;
    if let Err(e) = result {
        return fail(e);
    }
    entries.retain(|e| e.name != "." && e.name != "..");
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let entries: Vec<_> = entries
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "size": e.stat.size,
                "mtime": rfc3339(e.stat.mtime),
                "kind": match e.stat.kind {
                    FileKind::File => "file",
                    FileKind::Dir => "dir",
                    FileKind::Other => "other",
                },
            })
        })
        .collect();
    Json(serde_json::json!({ "path": path, "entries": entries })).into_response()
}

/// Body of `POST /api/v1/rename`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    from: String,
    to: String,
    #[serde(default)]
    overwrite: bool,
}

/// `POST /api/v1/rename`.
pub async fn rename(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let lease = match super::files_login(&state, &parts).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return fail(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large",
            ))
        }
    };
    let body: RenameBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return fail(FerryError::invalid(format!("bad JSON body: {e}"))),
    };
    let (from, to) = match (paths::checked(&body.from), paths::checked(&body.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    if from == "/" || to == "/" {
        return fail(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the home folder itself cannot be renamed",
        ));
    }
    let op = FsOp::Rename {
        from,
        to,
        overwrite: body.overwrite,
    };
    match lease.fs(op).await {
        Ok(Reply::Ok) => StatusCode::NO_CONTENT.into_response(),
        Ok(other) => fail(unexpected("rename", &other)),
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-4"), 10), Wanted::Part(0, 5));
        assert_eq!(wanted(Some("bytes=5-"), 10), Wanted::Part(5, 10));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7, 10));
        assert_eq!(wanted(Some("bytes=-30"), 10), Wanted::Part(0, 10));
        assert_eq!(wanted(Some("bytes=8-100"), 10), Wanted::Part(8, 10));
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,4-5"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=x-1"), 10), Wanted::Whole);
        // The largest last byte a client can send: no wrapped length.
        assert_eq!(
            wanted(Some("bytes=5-18446744073709551615"), 10),
            Wanted::Part(5, 10)
        );
    }

    #[test]
    fn disposition_is_safe_for_any_name() {
        let v = disposition("/a/r\u{e9}sum\u{e9} \"x\".pdf");
        let s = v.to_str().unwrap();
        assert!(
            s.starts_with("attachment; filename=\"r_sum_ _x_.pdf\""),
            "{s}"
        );
        assert!(s.ends_with("UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"), "{s}");
    }
}
