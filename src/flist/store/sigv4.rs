//! AWS Signature Version 4 (header-based), pure: the canonical request, the string to
//! sign, the signing key chain and the `Authorization` header; plus the two date formats
//! S3 speaks. Checked against AWS's published examples (the S3 GET/PUT/lifecycle/list
//! examples and the `get-vanilla` case of the SigV4 test suite) in the tests below.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 of an empty payload (every GET).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (already URI-encoded, [`encode_path`]).
    pub path: &'a str,
    /// The canonical query (`a=1&b=2`, sorted and encoded), or "".
    pub query: &'a str,
    /// Every header to sign, `Host` included, with the value as sent.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the payload (also sent as `x-amz-content-sha256` to S3).
    pub payload_sha256: &'a str,
}

/// Who signs, for which region and service.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Lower-case hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The path with every byte but the unreserved ones and `/` percent-encoded (upper-case),
/// as SigV4 canonicalises S3 keys.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Signer<'_> {
    /// The canonical request (for tests and for explaining a mismatch).
    pub fn canonical_request(&self, request: &Request<'_>) -> (String, String) {
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| {
                let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        headers.sort();
        let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        let signed = signed.join(";");
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let canonical = format!(
            "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
            request.method, request.path, request.query, request.payload_sha256
        );
        (canonical, signed)
    }

    /// The `Authorization` header's value for `request` at `amz_date`
    /// (`YYYYMMDDTHHMMSSZ`, also sent as `x-amz-date`).
    pub fn authorization(&self, request: &Request<'_>, amz_date: &str) -> String {
        let (canonical, signed) = self.canonical_request(request);
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region, self.service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            self.access_key
        )
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTC `YYYYMMDDTHHMMSSZ` for a Unix time (no calendar crate needed).
pub fn amz_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
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

/// The Unix time of an HTTP date (`Sat, 05 Dec 2026 12:00:00 GMT`, RFC 9110's preferred
/// form, as S3 servers send `Date`), or of an S3 `<ServerTime>` / ISO 8601
/// (`2026-12-05T12:00:00Z`, fractions ignored).
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    let (year, month, day, clock) = if let Some((_, rest)) = text.split_once(", ") {
        let mut words = rest.split_whitespace();
        let day: i64 = words.next()?.parse().ok()?;
        let month = words.next()?;
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|m| *m == month)? as i64
            + 1;
        let year: i64 = words.next()?.parse().ok()?;
        (year, month, day, words.next()?)
    } else {
        let (date, clock) = text.split_once('T')?;
        let mut parts = date.split('-');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next()?.parse().ok()?;
        let day = parts.next()?.parse().ok()?;
        (year, month, day, clock.trim_end_matches('Z'))
    };
    let mut parts = clock.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hours > 23 || minutes > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hours * 3600 + minutes * 60 + seconds as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The S3 examples of AWS's SigV4 documentation ("Examples: Signature Calculations in
    /// AWS Signature Version 4"): examplebucket, us-east-1, 2013-05-24.
    const S3: Signer = Signer {
        access_key: "AKIAIOSFODNN7EXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "s3",
    };
    const HOST: (&str, &str) = ("Host", "examplebucket.s3.amazonaws.com");
    const DATE: &str = "20130524T000000Z";

    fn signature(signer: &Signer, request: &Request, date: &str) -> String {
        let auth = signer.authorization(request, date);
        auth.rsplit("Signature=").next().unwrap().to_string()
    }

    #[test]
    fn aws_s3_get_object_with_range() {
        let request = Request {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &[
                HOST,
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ],
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            sha256_hex(S3.canonical_request(&request).0.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            S3.authorization(&request, DATE),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_s3_put_object() {
        let payload = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            payload,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let path = encode_path("/test$file.text");
        assert_eq!(path, "/test%24file.text");
        let request = Request {
            method: "PUT",
            path: &path,
            query: "",
            headers: &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                HOST,
                ("x-amz-date", DATE),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", &payload),
            ],
            payload_sha256: &payload,
        };
        assert_eq!(
            signature(&S3, &request, DATE),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_s3_get_with_query() {
        let headers = [
            HOST,
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ];
        for (query, expected) in [
            (
                "lifecycle=",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            let request = Request {
                method: "GET",
                path: "/",
                query,
                headers: &headers,
                payload_sha256: EMPTY_SHA256,
            };
            assert_eq!(signature(&S3, &request, DATE), expected, "{query}");
        }
    }

    /// `get-vanilla` of AWS's SigV4 test suite (service "service", 2015-08-30).
    #[test]
    fn aws_test_suite_get_vanilla() {
        let signer = Signer {
            access_key: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
        };
        let request = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            signature(&signer, &request, "20150830T123600Z"),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
        assert_eq!(
            parse_date("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
        assert_eq!(parse_date("2024-02-29T23:59:59.123Z"), Some(1_709_251_199));
        assert_eq!(
            parse_date("Sat, 05 Dec 2026 12:00:00 GMT")
                .map(amz_date)
                .as_deref(),
            Some("20261205T120000Z")
        );
        for bad in [
            "",
            "yesterday",
            "Fri, 24 Foo 2013 00:00:00 GMT",
            "2013-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
