//! URL paths of the HTTPS file API: percent decoding and the checks, and
//! what they let through is a canonical path that never climbs.
#![no_main]

use ferry_edge::https::paths;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = paths::percent_decode(raw);
    if let Ok(path) = paths::from_url(&format!("/api/v1/files/{raw}"), "/api/v1/files") {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(
            path.split('/').all(|c| c != ".." && c != "."),
            "{raw:?} gave {path:?}"
        );
    }
});
