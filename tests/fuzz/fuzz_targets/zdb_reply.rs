//! Arbitrary bytes as a 0-db server's reply: parsing never panics, a complete reply never
//! claims more bytes than it had, an incomplete one always asks for more than it has,
//! and no value is larger than a block.
#![no_main]

use initagent::flist::store::resp::{self, Parsed, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match resp::parse(data) {
        Parsed::Done(reply, used) => {
            assert!(used <= data.len() && used > 0);
            if let Reply::Bulk(Some(value)) = &reply {
                assert!(value.len() <= 1024 * 1024);
            }
            // A reply's bytes alone parse to the same reply.
            assert_eq!(resp::parse(&data[..used]), Parsed::Done(reply, used));
        }
        Parsed::NeedMore(need) => assert!(need > data.len()),
        Parsed::Bad(why) => assert!(!why.is_empty()),
    }
});
