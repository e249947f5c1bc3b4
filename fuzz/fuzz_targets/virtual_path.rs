//! The path canonicaliser: whatever a client sends, a parsed path is a
//! list of plain names under the home.
#![no_main]

use ferry_core::VirtualPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let cwd = VirtualPath::parse_absolute("/some/dir").unwrap_or_else(|_| VirtualPath::root());
    for parsed in [VirtualPath::parse(raw, &cwd), VirtualPath::parse_absolute(raw)] {
        let Ok(v) = parsed else { continue };
        for c in v.components() {
            assert!(
                !c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\0'),
                "{raw:?} gave component {c:?}"
            );
        }
        // Canonical: printing and parsing again gives the same path.
        let again = VirtualPath::parse_absolute(&v.to_string());
        assert_eq!(again.ok().as_ref(), Some(&v), "{raw:?}");
    }
});
