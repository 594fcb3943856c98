//! Any bytes as a datagram on the route socket: no panic; every message read is inside
//! the datagram, and links and addresses parse or fail cleanly.
#![no_main]

use initagent::net::rtnl_wire::{address, answers, link, Answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = answers(data) {
        for (_, answer) in list {
            if let Answer::Message(_, payload) = answer {
                assert!(payload.len() <= data.len());
                let _ = link(payload);
                let _ = address(payload);
            }
        }
    }
});
