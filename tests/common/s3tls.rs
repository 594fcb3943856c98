//! S3 as operators deploy it: a real S3 server (`s3s-fs`, which checks SigV4 and the
//! request time) behind a real TLS terminator (Debian's nginx) on port 443, inside a
//! network namespace of the test, with a private CA made by openssl. The access key's
//! secret has `/` and `+` in it, as AWS-style secrets do. Everything is killed on drop.

use super::netns::NetNs;
use super::vm::Killed;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The access key the server knows.
pub const ACCESS: &str = "AKIDINITAGENT";
/// Its secret: `/`, `+` and `=` in it.
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLE=KEY";
/// The bucket the server holds.
pub const BUCKET: &str = "flists";

/// The running store.
pub struct S3Tls {
    /// The CA the store's certificate is signed by.
    pub ca: PathBuf,
    /// `<dir>/buckets/<bucket>/<object>`: what the server stores.
    pub buckets: PathBuf,
    _s3: Killed,
    _nginx: Killed,
}

impl S3Tls {
    /// Starts s3s-fs on 127.0.0.1:9000 and nginx on 127.0.0.1:443 in `ns`, with a
    /// certificate for `san` (`IP:127.0.0.1` for the host, `IP:10.0.2.2` for a VM).
    pub fn start(dir: &Path, ns: &NetNs, san: &str) -> S3Tls {
        let buckets = dir.join("buckets");
        std::fs::create_dir_all(buckets.join(BUCKET)).unwrap();
        let (ca, cert, key) = super::servers::private_ca(dir, san);
        let s3 = ns
            .command("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", "9000"])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(&buckets)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("s3s-fs.log")).unwrap())
            .spawn()
            .expect("s3s-fs (make setup installs it)");
        let s3 = Killed(s3);
        ns.wait_listening(9000);
        let tmp = dir.join("nginx-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let server = format!(
            "listen 127.0.0.1:443 ssl;\n    ssl_certificate {}; ssl_certificate_key {};\n    \
             location / {{\n      proxy_pass http://127.0.0.1:9000;\n      \
             proxy_set_header Host $http_host;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Connection \"\";\n      proxy_request_buffering off;\n    }}",
            cert.display(),
            key.display()
        );
        let config = super::servers::nginx_conf(dir, &tmp, &server);
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let nginx = ns
            .command("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (make setup installs it)");
        let nginx = Killed(nginx);
        ns.wait_listening(443);
        S3Tls {
            ca,
            buckets,
            _s3: s3,
            _nginx: nginx,
        }
    }
}

/// `s3s://ACCESS:SECRET@host/bucket?region=garage`: no port (443 from the scheme).
pub fn url(host: &str, bucket: &str, secret: &str) -> String {
    format!("s3s://{ACCESS}:{secret}@{host}/{bucket}?region=garage")
}
