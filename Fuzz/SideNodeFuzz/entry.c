// The libFuzzer binary. libFuzzer (linked by -sanitize=fuzzer) supplies main and calls
// LLVMFuzzerTestOneInput, defined in Swift by the FuzzEntry target. This target is C so
// that SwiftPM does not give it a Swift entry point of its own.
int sidenode_fuzz_binary;
