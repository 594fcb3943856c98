//! Name resolution for the HTTP(S) and S3 stores, once per host a minute. ureq resolves
//! the store's host before every request, pooled connection or not, and with a timeout
//! set it does so on a thread of its own: a DNS query and a thread per block fetched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is used before the host is resolved again (a store moved to
/// other addresses is found within this; connections already open are kept).
const FRESH_FOR: Duration = Duration::from_secs(60);

/// Scheme, host and port (never the URL's credentials).
type Host = (String, String, u16);
/// When the host was resolved, and to what.
type Answer = (Instant, Vec<SocketAddr>);

/// ureq's resolver with the answers kept for [`FRESH_FOR`].
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    answers: Mutex<HashMap<Host, Answer>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = uri.authority().map(|authority| {
            let scheme = uri.scheme_str().unwrap_or_default().to_string();
            let port = authority.port_u16().unwrap_or(0);
            (scheme, authority.host().to_string(), port)
        });
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addrs)) = key.as_ref().and_then(|key| answers.get(key)) {
            if at.elapsed() < FRESH_FOR {
                let mut out = self.inner.empty();
                for addr in addrs {
                    out.push(*addr);
                }
                return Ok(out);
            }
        }
        drop(answers);
        let resolved = self.inner.resolve(uri, config, timeout)?;
        if let Some(key) = key {
            answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            answers.insert(key, (Instant::now(), resolved.iter().copied().collect()));
        }
        Ok(resolved)
    }

    fn empty(&self) -> ResolvedSocketAddrs {
        self.inner.empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time::Duration as UreqDuration;

    fn resolve(resolver: &CachingResolver, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: ureq::http::Uri = url.parse().unwrap();
        let timeout = NextTimeout {
            after: UreqDuration::Exact(Duration::from_secs(5)),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let config = ureq::config::Config::default();
        resolver
            .resolve(&uri, &config, timeout)
            .map(|addrs| addrs.iter().copied().collect())
    }

    #[test]
    fn a_fresh_answer_is_used_without_asking_again() {
        let resolver = CachingResolver::default();
        let first = resolve(&resolver, "http://127.0.0.1:8080/store/ab/abcd").unwrap();
        assert_eq!(first, vec!["127.0.0.1:8080".parse().unwrap()]);
        // A name that no resolver knows is answered from what was kept for it.
        let kept: SocketAddr = "192.0.2.7:443".parse().unwrap();
        resolver.answers.lock().unwrap().insert(
            ("https".into(), "store.invalid".into(), 443),
            (Instant::now(), vec![kept]),
        );
        let url = "https://user:secret@store.invalid:443/bucket";
        assert_eq!(resolve(&resolver, url).unwrap(), vec![kept]);
        // Credentials never become part of what is kept.
        let answers = resolver.answers.lock().unwrap();
        assert!(answers.keys().all(|(_, host, _)| !host.contains("secret")));
    }

    #[test]
    fn a_stale_answer_is_asked_for_again() {
        let resolver = CachingResolver::default();
        let long_ago = Instant::now() - FRESH_FOR - Duration::from_secs(1);
        resolver.answers.lock().unwrap().insert(
            ("https".into(), "store.invalid".into(), 443),
            (long_ago, vec!["192.0.2.7:443".parse().unwrap()]),
        );
        assert!(resolve(&resolver, "https://store.invalid:443/").is_err());
    }
}
