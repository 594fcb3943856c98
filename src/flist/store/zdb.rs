//! `zdb://host[:port][/namespace]` (0-db, redis protocol): `SELECT ns [password]` once per
//! connection when a namespace is named, then `GET <raw 32-byte id>`; writes `SET` unless
//! `EXISTS`. One connection, reused, re-established after an error; every read and
//! write has a deadline.

use super::{redact, BlockStore, StoreError, StoreOptions, MAX_BLOB};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

/// A 0-db namespace.
pub struct ZdbStore {
    address: String,
    namespace: Option<(String, Option<String>)>,
    shown: String,
    connect_timeout: Duration,
    io_timeout: Duration,
    connection: Mutex<Option<BufReader<TcpStream>>>,
}

enum Reply {
    Ok,
    Integer(i64),
    Bulk(Option<Vec<u8>>),
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

    fn connect(&self) -> Result<BufReader<TcpStream>, StoreError> {
        let address = self
            .address
            .to_socket_addrs()
            .map_err(|e| self.unavailable(e))?
            .next()
            .ok_or_else(|| self.unavailable("no address"))?;
        let stream = TcpStream::connect_timeout(&address, self.connect_timeout)
            .map_err(|e| self.unavailable(e))?;
        stream
            .set_read_timeout(Some(self.io_timeout))
            .map_err(|e| self.unavailable(e))?;
        stream
            .set_write_timeout(Some(self.io_timeout))
            .map_err(|e| self.unavailable(e))?;
        let mut connection = BufReader::new(stream);
        if let Some((namespace, password)) = &self.namespace {
            let mut args: Vec<&[u8]> = vec![b"SELECT", namespace.as_bytes()];
            if let Some(password) = password {
                args.push(password.as_bytes());
            }
            match self.command(&mut connection, &args)? {
                Reply::Ok => {}
                _ => return Err(self.unavailable(format!("SELECT {namespace} was refused"))),
            }
        }
        Ok(connection)
    }

    fn command(
        &self,
        connection: &mut BufReader<TcpStream>,
        args: &[&[u8]],
    ) -> Result<Reply, StoreError> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        connection
            .get_mut()
            .write_all(&request)
            .map_err(|e| self.unavailable(e))?;
        let mut line = Vec::new();
        connection
            .read_until(b'\n', &mut line)
            .map_err(|e| self.unavailable(e))?;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        match text.as_bytes().first() {
            Some(b'+') => Ok(Reply::Ok),
            Some(b'-') => Err(self.unavailable(format!("server error: {}", &text[1..]))),
            Some(b':') => text[1..]
                .parse()
                .map(Reply::Integer)
                .map_err(|_| self.unavailable("bad integer reply")),
            Some(b'$') => {
                let length: i64 = text[1..]
                    .parse()
                    .map_err(|_| self.unavailable("bad bulk length"))?;
                if length < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let length = length as usize;
                if length > MAX_BLOB {
                    return Err(
                        self.unavailable(format!("a {length}-byte value is larger than any block"))
                    );
                }
                let mut data = vec![0u8; length + 2];
                connection
                    .read_exact(&mut data)
                    .map_err(|e| self.unavailable(e))?;
                data.truncate(length);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(self.unavailable(format!("unexpected reply {text:?}"))),
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
