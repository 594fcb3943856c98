//! `s3://AK:SK@host:port/bucket[/prefix]?region=R` (plain HTTP) and `s3s://…` (HTTPS):
//! path-style `GET /bucket/H` and `PUT`, signed with AWS Signature Version 4 when the
//! URL carries a secret (unsigned otherwise, as rfs does). The port is mandatory, as in
//! rfs. The secret never leaves this module: errors and descriptions are redacted.

use super::{redact, BlockStore, StoreError, StoreOptions};
use crate::flist::codec::hex;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An S3 bucket (or a prefix in one).
pub struct S3Store {
    endpoint: String,
    host: String,
    path: String,
    region: String,
    access_key: String,
    secret_key: Option<String>,
    shown: String,
    agent: ureq::Agent,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        <Hmac<Sha256> as Mac>::new_from_slice(&[0]).unwrap_or_else(|_| unreachable!())
    });
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// UTC `YYYYMMDDTHHMMSSZ` for a Unix time (no calendar crate needed).
pub fn amz_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let seconds = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

impl S3Store {
    /// Parses an s3:// or s3s:// URL.
    pub fn new(url: &str, options: &StoreOptions) -> Result<S3Store, StoreError> {
        let shown = redact(url);
        let bad = |why: &str| StoreError::BadUrl(format!("{shown}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let http = match scheme {
            "s3" => "http",
            "s3s" => "https",
            _ => return Err(bad("expected s3:// or s3s://")),
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let region = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("region="))
            .map(percent_decode)
            .unwrap_or_default();
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (access_key, secret_key) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((a, s)) => (percent_decode(a), Some(percent_decode(s))),
                None => (percent_decode(u), None),
            },
            None => (String::new(), None),
        };
        match host.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => {}
            _ => return Err(bad("the port is mandatory (s3://host:PORT/bucket)")),
        }
        let path = path.trim_end_matches('/').to_string();
        if path.is_empty() {
            return Err(bad("no bucket in the path"));
        }
        Ok(S3Store {
            endpoint: format!("{http}://{host}"),
            host: host.to_string(),
            path,
            region,
            access_key,
            secret_key,
            shown,
            agent: options.http_agent(),
        })
    }

    /// Headers for a signed request (SigV4): (name, value) pairs.
    fn sign(
        &self,
        method: &str,
        key_path: &str,
        payload_sha256: &str,
        now: u64,
    ) -> Vec<(String, String)> {
        let date_time = amz_date(now);
        let mut headers = vec![
            (
                "x-amz-content-sha256".to_string(),
                payload_sha256.to_string(),
            ),
            ("x-amz-date".to_string(), date_time.clone()),
        ];
        let Some(secret) = &self.secret_key else {
            return headers;
        };
        let date = &date_time[..8];
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let canonical = format!(
            "{method}\n{key_path}\n\nhost:{}\nx-amz-content-sha256:{payload_sha256}\nx-amz-date:{date_time}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_sha256}",
            self.host
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature: String = hmac(&key, to_sign.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        headers.push((
            "Authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                self.access_key
            ),
        ));
        headers
    }

    fn key_path(&self, id: &[u8; 32]) -> String {
        format!("/{}/{}", self.path, hex(id))
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl BlockStore for S3Store {
    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let key_path = self.key_path(id);
        let mut request = self.agent.get(format!("{}{key_path}", self.endpoint));
        for (name, value) in self.sign("GET", &key_path, EMPTY_SHA256, Self::now()) {
            request = request.header(name, value);
        }
        let response = request
            .call()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        super::http_blob(response, "", "access denied: wrong credentials or region?")?
            .ok_or(StoreError::NotFound)
    }

    fn put(&self, id: &[u8; 32], blob: &[u8]) -> Result<(), StoreError> {
        let key_path = self.key_path(id);
        let mut request = self.agent.put(format!("{}{key_path}", self.endpoint));
        for (name, value) in self.sign("PUT", &key_path, &sha256_hex(blob), Self::now()) {
            request = request.header(name, value);
        }
        let response = request
            .send(blob)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            status => Err(StoreError::Unavailable(format!(
                "PUT answered HTTP {status}"
            ))),
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
    }

    #[test]
    fn urls() {
        let s = S3Store::new(
            "s3://AK:S%2FK@127.0.0.1:19000/flbucket?region=garage",
            &StoreOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.path.as_str(), s.region.as_str()),
            ("http://127.0.0.1:19000", "flbucket", "garage")
        );
        assert_eq!(s.secret_key.as_deref(), Some("S/K"));
        assert!(!s.describe().contains("S/K") && !s.describe().contains("S%2FK"));
        assert!(
            S3Store::new("s3://AK:SK@host/bucket", &StoreOptions::default())
                .err()
                .unwrap()
                .to_string()
                .contains("port is mandatory")
        );
        let unsigned = S3Store::new("s3s://host:443/b/prefix", &StoreOptions::default()).unwrap();
        assert_eq!(unsigned.endpoint, "https://host:443");
        assert_eq!(
            unsigned.sign("GET", "/b/x", EMPTY_SHA256, 0).len(),
            2,
            "no Authorization without a secret"
        );
    }

    /// AWS's documented example: GET /test.txt (examplebucket, us-east-1, 20130524).
    #[test]
    fn signature_v4_reference_example() {
        let mut s = S3Store::new(
            "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY@examplebucket.s3.amazonaws.com:80/b?region=us-east-1",
            &StoreOptions::default(),
        )
        .unwrap();
        s.host = "examplebucket.s3.amazonaws.com".into();
        let headers = s.sign("GET", "/test.txt", EMPTY_SHA256, 1_369_353_600);
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1;
        // With the range header dropped from AWS's example, the signature differs from
        // the published one, so check the structure and a self-consistent value.
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="));
        assert_eq!(auth.rsplit('=').next().unwrap().len(), 64);
    }
}
