//! Whatever line a JSON client sends: parsing gives a request or a
//! rejection, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = matching_proto::json_session::parse_request(data, 7);
});
