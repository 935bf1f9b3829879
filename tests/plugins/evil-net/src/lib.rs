//! Test plugin: tries to use the network in `cas.check` — a TCP connection
//! to every address given as an option `connect*=IP:PORT`, a name lookup,
//! UDP and a listening socket — and answers
//! `other("net report: …")` with one `what: ok|refused (…)` item per try.
use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use rumoci_driver_sdk::*;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-net", "0.0.0", &["cas"])
    }
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("refused ({e})"),
    }
}

impl Cas for Evil {
    fn check() -> Result<()> {
        let mut report = Vec::new();
        for (k, v) in config() {
            if !k.starts_with("connect") {
                continue;
            }
            let r = v
                .parse()
                .map_err(std::io::Error::other)
                .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)))
                .and_then(|mut s| s.write_all(b"GET / HTTP/1.0\r\n\r\n"));
            report.push(format!("connect {v}: {}", outcome(r)));
        }
        report.push(format!(
            "lookup localhost: {}",
            outcome(("localhost", 80).to_socket_addrs())
        ));
        let udp = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", "127.0.0.1:9"));
        report.push(format!("udp: {}", outcome(udp)));
        report.push(format!(
            "listen: {}",
            outcome(TcpListener::bind("127.0.0.1:0"))
        ));
        log(Level::Info, &format!("network attempts: {report:?}"));
        Err(Error::Other(format!("net report: {}", report.join("; "))))
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
