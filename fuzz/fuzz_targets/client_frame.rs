//! `ClientFrame::parse` on any text a WebSocket client can send: it never panics, and its error
//! message (sent back to the client in an `error` frame) stays within 200 characters.

#![no_main]

use belfry::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer refuses anything else).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let _ = frame.reference();
        }
        Err(message) => assert!(message.chars().count() <= 200, "{message}"),
    }
});
