//! Segment recovery on arbitrary file contents, trusted or not by the checkpoint.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (trusted, bytes) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    weir_log::fuzzing::recover_segment(bytes, trusted);
});
