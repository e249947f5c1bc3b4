//! One SFTP request packet, decoded and translated as the edge does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_edge::sftp::decode_for_fuzzing(data);
});
