//! A provider's answer, JSON or streamed, as every translator and tap sees it
//! (`sluice_core::fuzz::answer`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_core::fuzz::answer(data));
