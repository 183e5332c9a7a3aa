//! libFuzzer entry point of the `kallsyms` target; the body (and its invariants) is
//! `vmark_tests::fuzz_entry::fuzz_kallsyms`, replayed on stable by `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmark_tests::fuzz_entry::fuzz_kallsyms(data);
});
