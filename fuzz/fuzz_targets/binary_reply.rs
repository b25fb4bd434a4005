//! Whatever a server sends, as a client reads it: the bytes split into
//! packets, each packet decoded. Decoding never panics, and a packet that
//! decodes encodes back to the same bytes (nothing in it was ignored).

#![no_main]

use libfuzzer_sys::fuzz_target;
use matching_proto::binary::{SERVER_PACKET_LEN_MAX, decode_server, encode_server, frame_len};

fuzz_target!(|data: &[u8]| {
    let _ = decode_server(data);
    let mut rest = data;
    while let Ok(Some(len)) = frame_len(rest, SERVER_PACKET_LEN_MAX) {
        let (packet, tail) = rest.split_at(len);
        if let Ok(msg) = decode_server(packet) {
            let mut again = Vec::new();
            encode_server(&msg, &mut again);
            assert_eq!(again, packet, "{msg:?} encodes to other bytes than it was decoded from");
        }
        rest = tail;
    }
});
