//! A client's request body, as every filter's core sees it (`sluice_core::fuzz::request`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_core::fuzz::request(data));
