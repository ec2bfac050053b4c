//! The legacy request parser on arbitrary UTF-8 lines; see `sgw_fuzz::legacy_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| sgw_fuzz::legacy_request(text));
