//! Real servers for tests, on loopback only, killed on drop: Python's http.server over a
//! directory, and small misbehaving HTTP servers (5xx, never answering) for faults.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on port {port} never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `python3 -m http.server` serving `dir`.
pub fn http_dir(dir: &Path) -> Server {
    http_server(dir, Stdio::null())
}

/// `python3 -m http.server` serving `dir`, its request log (stderr) written to `log`.
pub fn http_dir_logged(dir: &Path, log: &Path) -> Server {
    http_server(dir, Stdio::from(std::fs::File::create(log).unwrap()))
}

fn http_server(dir: &Path, request_log: Stdio) -> Server {
    let port = free_port();
    let child = Command::new("/usr/bin/python3")
        .args([
            "-u",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(request_log)
        .spawn()
        .expect("python3");
    wait_listening(port);
    Server { child, port }
}

/// A Python script that serves on `port`, once it listens.
fn python_server(script: &str, port: u16) -> Server {
    let child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    Server { child, port }
}

/// Python's http.server over TLS (certificate and key in PEM), serving `dir`.
pub fn https_dir(dir: &Path, cert: &Path, key: &Path) -> Server {
    let port = free_port();
    let script = format!(
        "import functools, http.server, ssl\n\
         h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={dir:?})\n\
         s = http.server.ThreadingHTTPServer(('127.0.0.1', {port}), h)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain({cert:?}, {key:?})\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        dir = dir.display().to_string(),
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    python_server(&script, port)
}

/// An HTTP server that answers every request with this status.
pub fn http_status(status: u16) -> Server {
    let port = free_port();
    let script = format!(
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response({status}); self.send_header('Content-Length', '0'); self.end_headers()\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    python_server(&script, port)
}

/// A TCP server that accepts connections and never answers.
pub fn silent() -> Server {
    let port = free_port();
    let script = format!(
        "import socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen(64)\n\
         held = []\n\
         while True:\n\
         \x20   c, _ = s.accept(); held.append(c)\n"
    );
    python_server(&script, port)
}

/// A private CA (`ca.pem`) and a server certificate signed by it (`srv.pem`, `srv.key`)
/// for the subject alternative names `san` (`IP:127.0.0.1`, `IP:10.0.2.2,DNS:x`), made
/// with openssl in `dir`: (CA, certificate, key).
pub fn private_ca(dir: &Path, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat()
    .iter()
    .chain(&["-days", "2", "-subj", "/CN=initagent test CA"])
    .copied()
    .collect::<Vec<_>>());
    run(&[
        &["req"],
        &ec[..],
        &["-keyout", "srv.key", "-out", "srv.csr"],
    ]
    .concat()
    .iter()
    .chain(&["-subj", "/CN=initagent test store"])
    .copied()
    .collect::<Vec<_>>());
    std::fs::write(
        dir.join("srv.ext"),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "srv.ext",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// A foreground, single-process nginx configuration whose files stay in `dir` (`tmp` for
/// its buffers), with one `server` block holding `server`.
pub fn nginx_conf(dir: &Path, tmp: &Path, server: &str) -> String {
    let (d, t) = (dir.display(), tmp.display());
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20 access_log {d}/nginx.access;\n\
         \x20 client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t};\n\
         \x20 uwsgi_temp_path {t}; scgi_temp_path {t};\n\
         \x20 client_max_body_size 16m;\n\
         \x20 server {{\n    {server}\n  }}\n\
         }}\n"
    )
}

/// nginx (Debian's, with its WebDAV module) taking `PUT`s into `dir` and serving them
/// back, on 127.0.0.1:`port` — inside `ns` when given (where a VM reaches it as
/// 10.0.2.2:`port`). Where the nodes' reports go over plain HTTP. Killed on drop.
pub fn nginx_dav(dir: &Path, ns: Option<&super::netns::NetNs>, port: u16) -> super::vm::Killed {
    dav(dir, ns, port, None)
}

/// [`nginx_dav`] over TLS on the host's loopback, with this certificate and key (PEM).
pub fn nginx_dav_tls(dir: &Path, port: u16, cert: &Path, key: &Path) -> super::vm::Killed {
    dav(dir, None, port, Some((cert, key)))
}

fn dav(
    dir: &Path,
    ns: Option<&super::netns::NetNs>,
    port: u16,
    tls: Option<(&Path, &Path)>,
) -> super::vm::Killed {
    let listen = match tls {
        Some((cert, key)) => format!(
            "listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {};",
            cert.display(),
            key.display()
        ),
        None => format!("listen 127.0.0.1:{port};"),
    };
    let root = dir.join("root");
    let tmp = dir.join("nginx-tmp");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let server = format!(
        "{listen}\n    root {};\n    location / {{ dav_methods PUT; create_full_put_path on; dav_access user:rw group:r all:r; }}",
        root.display()
    );
    let config = nginx_conf(dir, &tmp, &server);
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    let mut command = match ns {
        Some(ns) => ns.command("nginx"),
        None => Command::new("nginx"),
    };
    let child = command
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (make setup installs it)");
    let killed = super::vm::Killed(child);
    match ns {
        Some(ns) => ns.wait_listening(port),
        None => wait_listening(port),
    }
    killed
}
