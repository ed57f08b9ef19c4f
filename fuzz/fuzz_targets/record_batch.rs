//! RecordBatch v2 validation and record decoding (all codecs) on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_log::fuzzing::validate_batch(data);
});
