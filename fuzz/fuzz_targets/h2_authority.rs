//! See `sgw_fuzz::h2_authority` for the input layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sgw_fuzz::h2_authority(data));
