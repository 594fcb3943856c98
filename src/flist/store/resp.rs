//! The redis protocol replies a 0-db store sends, parsed from bytes without I/O: the
//! caller reads until a reply is complete, so a server that trickles or lies about a
//! length is bounded by the caller's deadline and by the limits here, never by trust.

use super::MAX_BLOB;

/// The longest reply line (status, error, integer, bulk length) accepted.
pub const MAX_LINE: usize = 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+…`
    Ok,
    /// `-…`: the server's error text.
    Error(String),
    /// `:n`
    Integer(i64),
    /// `$n` then n bytes (`$-1`: none).
    Bulk(Option<Vec<u8>>),
}

/// What the bytes so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A reply and the bytes it took.
    Done(Reply, usize),
    /// Not complete: at least this many bytes are needed (more than given).
    NeedMore(usize),
    /// Not a reply this client accepts.
    Bad(String),
}

/// Parses the reply at the start of `input`.
pub fn parse(input: &[u8]) -> Parsed {
    let Some(end) = input.iter().take(MAX_LINE).position(|b| *b == b'\n') else {
        return if input.len() >= MAX_LINE {
            Parsed::Bad(format!("a reply line longer than {MAX_LINE} bytes"))
        } else {
            Parsed::NeedMore(input.len() + 1)
        };
    };
    let line = input.get(..end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line.get(1..).unwrap_or_default()).into_owned();
    let used = end + 1;
    match line.first() {
        Some(b'+') => Parsed::Done(Reply::Ok, used),
        Some(b'-') => Parsed::Done(Reply::Error(text), used),
        Some(b':') => match text.parse() {
            Ok(value) => Parsed::Done(Reply::Integer(value), used),
            Err(_) => Parsed::Bad(format!("bad integer reply {text:?}")),
        },
        Some(b'$') => {
            let length: i64 = match text.parse() {
                Ok(length) => length,
                Err(_) => return Parsed::Bad(format!("bad bulk length {text:?}")),
            };
            if length < 0 {
                return Parsed::Done(Reply::Bulk(None), used);
            }
            let length = length as usize;
            if length > MAX_BLOB {
                return Parsed::Bad(format!("a {length}-byte value is larger than any block"));
            }
            let total = used + length + 2;
            if input.len() < total {
                return Parsed::NeedMore(total);
            }
            if input.get(used + length..total) != Some(b"\r\n".as_slice()) {
                return Parsed::Bad(format!("a {length}-byte value not followed by CRLF"));
            }
            let data = input.get(used..used + length).unwrap_or_default().to_vec();
            Parsed::Done(Reply::Bulk(Some(data)), total)
        }
        _ => Parsed::Bad(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(line.get(..line.len().min(64)).unwrap_or_default())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_their_prefixes() {
        assert_eq!(parse(b"+OK\r\n"), Parsed::Done(Reply::Ok, 5));
        assert_eq!(parse(b":42\r\nrest"), Parsed::Done(Reply::Integer(42), 5));
        assert_eq!(parse(b"$-1\r\n"), Parsed::Done(Reply::Bulk(None), 5));
        assert_eq!(
            parse(b"-ERR nope\r\n"),
            Parsed::Done(Reply::Error("ERR nope".into()), 11)
        );
        let bulk = b"$3\r\nabc\r\n";
        assert_eq!(
            parse(bulk),
            Parsed::Done(Reply::Bulk(Some(b"abc".to_vec())), 9)
        );
        // Every prefix of a reply asks for more, and for more than it has.
        for cut in 0..bulk.len() {
            match parse(&bulk[..cut]) {
                Parsed::NeedMore(need) => assert!(need > cut, "{cut}"),
                other => panic!("{cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn lies_and_garbage_are_refused() {
        assert!(matches!(parse(b"$3\r\nabcd\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b"$99999999999\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b":x\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b"*1\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(&[b'+'; MAX_LINE]), Parsed::Bad(_)));
        assert_eq!(parse(b"+still coming"), Parsed::NeedMore(14));
    }
}
