#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vidinfer::fuzz::custom_attributes(data));
