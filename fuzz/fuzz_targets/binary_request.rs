//! Whatever a client sends: the bytes split into packets as the server
//! splits them, each packet decoded. Decoding never panics, and a packet
//! that decodes encodes back to the same bytes (nothing in it was ignored).

#![no_main]

use libfuzzer_sys::fuzz_target;
use matching_proto::binary::{decode_client, encode_client, frame_len};

/// The server's default packet limit.
const MAX_LEN: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let _ = decode_client(data);
    let mut rest = data;
    while let Ok(Some(len)) = frame_len(rest, MAX_LEN) {
        let (packet, tail) = rest.split_at(len);
        if let Ok(msg) = decode_client(packet) {
            let mut again = Vec::new();
            encode_client(&msg, &mut again);
            assert_eq!(again, packet, "{msg:?} encodes to other bytes than it was decoded from");
        }
        rest = tail;
    }
});
