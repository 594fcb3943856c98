//! `zdb://host[:port][/namespace]` (0-db, redis protocol): `SELECT ns [password]` once per
//! connection when a namespace is named, then `GET <raw 32-byte id>`; writes `SET` unless
//! `EXISTS`. One connection, reused, re-established after an error. Every command has
//! one deadline for all of it (the name lookup and connect, the request, the whole
//! reply), so a server that trickles a byte at a time is cut off like a silent one.

use super::resp::{self, Parsed, Reply};
use super::{redact, BlockStore, StoreError, StoreOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A 0-db namespace.
pub struct ZdbStore {
    address: String,
    namespace: Option<(String, Option<String>)>,
    shown: String,
    connect_timeout: Duration,
    io_timeout: Duration,
    connection: Mutex<Option<TcpStream>>,
}

impl ZdbStore {
    /// Parses a zdb:// URL (default port 9900).
    pub fn new(url: &str, options: &StoreOptions) -> Result<ZdbStore, StoreError> {
        let shown = redact(url);
        let rest = url
            .strip_prefix("zdb://")
            .ok_or_else(|| StoreError::BadUrl(format!("{shown}: expected zdb://")))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (password, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (userinfo.split_once(':').map(|(_, p)| p.to_string()), host),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(StoreError::BadUrl(format!(
                "{shown}: no host (unix sockets are not supported)"
            )));
        }
        let address = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:9900")
        };
        let namespace = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "default")
            .map(|n| (n.to_string(), password));
        Ok(ZdbStore {
            address,
            namespace,
            shown,
            connect_timeout: options.connect_timeout,
            io_timeout: options.request_timeout,
            connection: Mutex::new(None),
        })
    }

    fn unavailable(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(why.to_string())
    }

    fn connect(&self) -> Result<TcpStream, StoreError> {
        let addresses =
            crate::net::reach::resolve(self.address.clone(), &self.address, self.connect_timeout)
                .map_err(|e| self.unavailable(format!("cannot resolve {}: {e}", self.address)))?;
        let address = addresses
            .first()
            .ok_or_else(|| self.unavailable("no address"))?;
        let mut stream = TcpStream::connect_timeout(address, self.connect_timeout)
            .map_err(|e| self.unavailable(e))?;
        if let Some((namespace, password)) = &self.namespace {
            let mut args: Vec<&[u8]> = vec![b"SELECT", namespace.as_bytes()];
            if let Some(password) = password {
                args.push(password.as_bytes());
            }
            match self.command(&mut stream, &args)? {
                Reply::Ok => {}
                _ => return Err(self.unavailable(format!("SELECT {namespace} was refused"))),
            }
        }
        Ok(stream)
    }

    /// Sends one command and reads its whole reply within the store's timeout.
    fn command(&self, stream: &mut TcpStream, args: &[&[u8]]) -> Result<Reply, StoreError> {
        let deadline = Instant::now() + self.io_timeout;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream
            .set_write_timeout(Some(self.io_timeout))
            .and_then(|()| stream.write_all(&request))
            .map_err(|e| self.unavailable(e))?;
        let mut reply = Vec::new();
        let mut need = 1;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if reply.len() >= need {
                match resp::parse(&reply) {
                    Parsed::Done(Reply::Error(text), _) => {
                        return Err(self.unavailable(format!("server error: {text}")))
                    }
                    Parsed::Done(answer, _) => return Ok(answer),
                    Parsed::NeedMore(more) => need = more,
                    Parsed::Bad(why) => return Err(self.unavailable(why)),
                }
            }
            let late = || {
                self.unavailable(format!(
                    "no whole reply within {} s ({} bytes came)",
                    self.io_timeout.as_secs_f32(),
                    reply.len()
                ))
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(late());
            }
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.unavailable(e))?;
            // The server sends nothing but the reply to the one command in flight.
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(self.unavailable(format!(
                        "the connection closed mid-reply ({} bytes came)",
                        reply.len()
                    )))
                }
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The read's timeout (what was left of the deadline) ran out.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(late())
                }
                Err(e) => return Err(self.unavailable(e)),
            }
        }
    }

    /// Runs a command on the shared connection, reconnecting once after a failure.
    fn run(&self, args: &[&[u8]]) -> Result<Reply, StoreError> {
        let mut guard = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(self.connect()?);
            }
            let Some(connection) = guard.as_mut() else {
                continue;
            };
            match self.command(connection, args) {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    *guard = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        Err(self.unavailable("no connection"))
    }
}

impl BlockStore for ZdbStore {
    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        match self.run(&[b"GET", id])? {
            Reply::Bulk(Some(data)) if !data.is_empty() => Ok(data),
            Reply::Bulk(_) => Err(StoreError::NotFound),
            _ => Err(self.unavailable("unexpected reply to GET")),
        }
    }

    fn put(&self, id: &[u8; 32], blob: &[u8]) -> Result<(), StoreError> {
        if let Reply::Integer(1) = self.run(&[b"EXISTS", id])? {
            return Ok(());
        }
        match self.run(&[b"SET", id, blob])? {
            Reply::Ok | Reply::Bulk(_) => Ok(()),
            _ => Err(self.unavailable("unexpected reply to SET")),
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A scripted redis-protocol server: every connection reads one command and answers
    /// with `answer` (which may stall, trickle or hang up).
    fn server(answer: fn(&mut TcpStream)) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut request = [0u8; 256];
                    let _ = stream.read(&mut request);
                    answer(&mut stream);
                });
            }
        });
        format!("zdb://{address}")
    }

    fn store(url: &str) -> ZdbStore {
        store_within(url, Duration::from_millis(800))
    }

    fn store_within(url: &str, request_timeout: Duration) -> ZdbStore {
        let options = StoreOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout,
            private_roots: None,
        };
        ZdbStore::new(url, &options).unwrap()
    }

    #[test]
    fn replies_that_trickle_stop_or_lie_end_within_the_deadline_and_never_give_bytes() {
        let whole = store(&server(|s| {
            let _ = s.write_all(b"$3\r\nab");
            std::thread::sleep(Duration::from_millis(200));
            let _ = s.write_all(b"c\r\n");
        }));
        assert_eq!(whole.get(&[1; 32]).unwrap(), b"abc");

        // A byte every 100 ms: each read answers, the reply never completes.
        let trickle = store(&server(|s| {
            let _ = s.write_all(b"$100\r\n");
            for _ in 0..200 {
                if s.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
        let started = Instant::now();
        let error = trickle.get(&[1; 32]).unwrap_err().to_string();
        // Two attempts (one reconnect) of 0.8 s each.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert!(error.contains("no whole reply within 0.8 s"), "{error}");

        // Not about time: a deadline a loaded machine cannot miss.
        let truncated = store_within(
            &server(|s| {
                let _ = s.write_all(b"$10\r\nabc");
            }),
            Duration::from_secs(10),
        );
        let error = truncated.get(&[1; 32]).unwrap_err().to_string();
        assert!(error.contains("closed mid-reply"), "{error}");

        let long_line = store_within(
            &server(|s| {
                let _ = s.write_all(&[b'+'; 4096]);
                std::thread::sleep(Duration::from_secs(2));
            }),
            Duration::from_secs(10),
        );
        let error = long_line.get(&[1; 32]).unwrap_err().to_string();
        assert!(error.contains("longer than 1024 bytes"), "{error}");

        // Silent: the read's timeout is reported as the deadline, not as EAGAIN.
        let silent = store(&server(|_| std::thread::sleep(Duration::from_secs(3))));
        let error = silent.get(&[1; 32]).unwrap_err().to_string();
        assert!(
            error.contains("no whole reply within 0.8 s (0 bytes came)"),
            "{error}"
        );
    }
}
