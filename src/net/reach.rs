//! After the network is up: can the node reach its flist stores? A TCP connect to each
//! store, all at once, within one deadline. Targets are store URLs, or flists whose
//! routes name the stores (`dir://` stores are local and are not checked). Credentials in
//! URLs are never shown. Pure target parsing; the connects are the only I/O.

use crate::flist::store::redact;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// One reachability result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reach {
    /// The store, redacted.
    pub store: String,
    /// `host:port` tried.
    pub endpoint: String,
    /// Milliseconds to connect, when it did.
    pub connect_ms: Option<u64>,
    /// Why not, when it did not.
    pub error: Option<String>,
}

/// `host:port` of a store URL, or `None` for a local (`dir://`) store. Errors name the URL.
pub fn endpoint(url: &str) -> Result<Option<(String, u16)>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{}: not a URL", redact(url)))?;
    let default_port = match scheme {
        "dir" | "file" => return Ok(None),
        "http" | "s3" => 80,
        "https" | "s3s" | "server" => 443,
        "zdb" => 9900,
        other => return Err(format!("{}: unknown store scheme {other}", redact(url))),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{}: unclosed [ in the host", redact(url)))?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{}: no host", redact(url)));
    }
    let port = match port {
        Some(text) => text
            .parse()
            .map_err(|_| format!("{}: port {text:?} is not a number", redact(url)))?,
        None => default_port,
    };
    Ok(Some((host.to_string(), port)))
}

/// The store URLs of `targets`: URLs as they are, `*.fl` files through their routes.
pub fn store_urls(targets: &[String]) -> (Vec<String>, Vec<String>) {
    let mut urls = Vec::new();
    let mut problems = Vec::new();
    for target in targets {
        if target.ends_with(".fl") && !target.contains("://") {
            match crate::flist::meta::Manifest::open(Path::new(target)) {
                Ok(manifest) => urls.extend(manifest.routes().iter().map(|r| r.url.clone())),
                Err(e) => problems.push(e.to_string()),
            }
        } else {
            urls.push(target.clone());
        }
    }
    urls.sort();
    urls.dedup();
    (urls, problems)
}

/// Connects to every store at once; each attempt ends by `deadline`.
pub fn check(urls: &[String], deadline: Duration) -> Vec<Reach> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = urls
            .iter()
            .map(|url| scope.spawn(move || check_one(url, started + deadline)))
            .collect();
        handles
            .into_iter()
            .zip(urls)
            .map(|(h, url)| {
                h.join().unwrap_or_else(|_| Reach {
                    store: redact(url),
                    endpoint: String::new(),
                    connect_ms: None,
                    error: Some("check thread panicked".into()),
                })
            })
            .collect()
    })
}

/// Resolves `address` (shown as `shown`) within `within`. libc's resolver has no deadline of
/// its own (musl's gives up after its own timeouts, per server, per attempt): the lookup
/// runs on a thread of its own, left behind if it does not answer in time.
pub fn resolve<A: ToSocketAddrs + Send + 'static>(
    address: A,
    shown: &str,
    within: Duration,
) -> std::io::Result<Vec<SocketAddr>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let result = address.to_socket_addrs().map(|a| a.collect::<Vec<_>>());
            let _ = sender.send(result);
        })?;
    receiver.recv_timeout(within).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer for {shown} within {:.1} s", within.as_secs_f32()),
        ))
    })
}

fn check_one(url: &str, deadline: Instant) -> Reach {
    let mut reach = Reach {
        store: redact(url),
        endpoint: String::new(),
        connect_ms: None,
        error: None,
    };
    let (host, port) = match endpoint(url) {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => {
            reach.endpoint = "local".into();
            reach.connect_ms = Some(0);
            return reach;
        }
        Err(e) => {
            reach.error = Some(e);
            return reach;
        }
    };
    reach.endpoint = format!("{host}:{port}");
    let started = Instant::now();
    let left = deadline.saturating_duration_since(Instant::now());
    let addresses: Vec<SocketAddr> = match resolve((host.clone(), port), &reach.endpoint, left) {
        Ok(addresses) => addresses,
        Err(e) => {
            reach.error = Some(format!("cannot resolve {host}: {e}"));
            return reach;
        }
    };
    let mut last = String::from("no address");
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = "deadline passed".into();
            break;
        }
        match TcpStream::connect_timeout(&address, left) {
            Ok(_) => {
                reach.connect_ms = Some(started.elapsed().as_millis() as u64);
                return reach;
            }
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    reach.error = Some(last);
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_every_scheme() {
        let cases = [
            ("http://hub.grid.tf/store", Some(("hub.grid.tf", 80))),
            ("https://hub.grid.tf:8443/x?y", Some(("hub.grid.tf", 8443))),
            (
                "s3://key:secret@10.0.0.5:9000/bucket?region=x",
                Some(("10.0.0.5", 9000)),
            ),
            ("s3s://key:secret@s3.example", Some(("s3.example", 443))),
            (
                "zdb://ns:pw@[2001:db8::1]:9900/ns",
                Some(("2001:db8::1", 9900)),
            ),
            ("zdb://10.1.1.1", Some(("10.1.1.1", 9900))),
            ("dir:///var/cache/store", None),
        ];
        for (url, expected) in cases {
            let got = endpoint(url).unwrap();
            assert_eq!(got, expected.map(|(h, p)| (h.to_string(), p)), "{url}");
        }
        let e = endpoint("s3://key:secret@host:port/b").unwrap_err();
        assert!(e.contains("port") && !e.contains("secret"), "{e}");
        assert!(endpoint("gopher://x").unwrap_err().contains("gopher"));
        assert!(endpoint("no-scheme").is_err());
        assert!(endpoint("http:///path").unwrap_err().contains("no host"));
    }

    #[test]
    fn reachable_unreachable_and_local() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let urls = vec![
            format!("http://user:pw@127.0.0.1:{port}/store"),
            format!("http://127.0.0.1:{closed}/"),
            "dir:///tmp".to_string(),
        ];
        let results = check(&urls, Duration::from_secs(5));
        assert!(results[0].connect_ms.is_some(), "{:?}", results[0]);
        assert!(!results[0].store.contains("pw"));
        assert!(
            results[1].error.as_deref().unwrap().contains("refused"),
            "{:?}",
            results[1]
        );
        assert_eq!(results[2].endpoint, "local");
    }
}
