//! The collector's validation of what agents send: arbitrary protobuf bytes decoded as a Hello
//! and as a Report, then validated, and the report summarised as the committer would.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oqs_collector::config::Limits;
use oqs_proto::v1::{Hello, Report};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Hello::decode(data) {
        let _ = oqs_collector::validate::hello(&h);
    }
    if let Ok(r) = Report::decode(data) {
        if oqs_collector::validate::report(&r, &Limits::default()).is_ok() {
            let _ = oqs_collector::samples::samples(&r);
            let _ = oqs_guide::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
        }
    }
});
