//! A small fault-injecting TCP proxy in front of a real store server (the HTTP server, or
//! s3s-fs): it forwards each connection's request as is and applies one fault to the
//! bytes of the answer, counted per connection from the first byte of the response (the
//! status line and headers included). A stand-in only for the network's misbehaviour;
//! the servers and the agent are the real ones.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded as they come.
    None,
    /// The answer starts this late, then each 4 KiB waits 2 ms (a slow store, yet
    /// within the store's timeout).
    Slow(Duration),
    /// After this many bytes nothing more comes, and the connection stays open.
    Stall(usize),
    /// After this many bytes, one byte a second.
    Trickle(usize),
    /// After this many bytes the connection is closed.
    Truncate(usize),
    /// The byte at this offset is flipped.
    Corrupt(usize),
    /// The first this many connections get `503 Service Unavailable`, the others pass.
    FailFirst(usize),
}

/// The proxy; it stops serving when dropped (connections in flight end on their own).
pub struct Proxy {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    connections: Arc<AtomicUsize>,
    applied: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on a free port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::None));
        let connections = Arc::new(AtomicUsize::new(0));
        let applied = Arc::new(AtomicUsize::new(0));
        let (shared, counter) = (Arc::clone(&fault), Arc::clone(&connections));
        let met = Arc::clone(&applied);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let fault = *shared.lock().unwrap();
                let number = counter.fetch_add(1, Ordering::SeqCst);
                let met = Arc::clone(&met);
                std::thread::spawn(move || {
                    if serve(client, upstream, fault, number) {
                        met.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Proxy {
            port,
            fault,
            connections,
            applied,
        }
    }

    /// The fault for the connections made from now on (counted from zero again).
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
        self.connections.store(0, Ordering::SeqCst);
        self.applied.store(0, Ordering::SeqCst);
    }

    /// On how many connections the fault was applied since [`Proxy::set`].
    pub fn applied(&self) -> usize {
        self.applied.load(Ordering::SeqCst)
    }
}

/// Serves one connection; whether the fault was applied to it.
fn serve(mut client: TcpStream, upstream: u16, fault: Fault, number: usize) -> bool {
    if let Fault::FailFirst(failing) = fault {
        if number < failing {
            let mut request = [0u8; 16 * 1024];
            let _ = client.read(&mut request);
            let _ = client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = client.shutdown(Shutdown::Both);
            return true;
        }
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return false;
    };
    let (mut client_reader, mut server_writer) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut server_writer);
        let _ = server_writer.shutdown(Shutdown::Write);
    });
    let mut sent = 0usize;
    let mut applied = false;
    let mut buffer = [0u8; 4096];
    loop {
        let n = match server.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buffer[..n];
        let ok = match fault {
            Fault::None | Fault::FailFirst(_) => client.write_all(chunk).is_ok(),
            Fault::Slow(first) => {
                std::thread::sleep(if sent == 0 {
                    first
                } else {
                    Duration::from_millis(2)
                });
                client.write_all(chunk).is_ok()
            }
            Fault::Corrupt(at) => {
                if (sent..sent + n).contains(&at) {
                    chunk[at - sent] ^= 0x5a;
                    applied = true;
                }
                client.write_all(chunk).is_ok()
            }
            Fault::Stall(after) | Fault::Trickle(after) | Fault::Truncate(after) => {
                let keep = after.saturating_sub(sent).min(n);
                if client.write_all(&chunk[..keep]).is_err() {
                    break;
                }
                if keep < n {
                    applied = true;
                    match fault {
                        Fault::Truncate(_) => {}
                        Fault::Stall(_) => {
                            // Hold the connection open until the client gives up.
                            let mut probe = [0u8; 1];
                            let _ = client.read(&mut probe);
                        }
                        _ => {
                            for byte in &chunk[keep..] {
                                std::thread::sleep(Duration::from_secs(1));
                                if client.write_all(std::slice::from_ref(byte)).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    break;
                }
                true
            }
        };
        if !ok {
            break;
        }
        sent += n;
    }
    let _ = client.shutdown(Shutdown::Both);
    applied
}
