//! Request framing + decode across every advertised API and version, then batch validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_server::fuzzing::request_path(data);
});
